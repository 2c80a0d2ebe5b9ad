"""What learns and scores: the churn model, segments, anomaly detection, the Redis
similarity store, their bundles and signed checkpoints. A library: it imports nothing from
``streams`` and takes plain values (see :mod:`models.protocols`)."""

"""shopstream's runtime: Kafka records in, effects out. The layers, bottom to top (each
imports only the layers below it; ``make lint`` checks it with import-linter):

``core``       the contract: settings, errors, input events, output payloads
``domain``     pure event-time steps: profiles, churn labels and alerts, envelopes (the
               per-user fence), recommendation planning, privacy
``telemetry``, ``kafka``, ``patches``
               metrics; how to reach the broker; what we correct in faust-streaming
``worker``     one batch, top to bottom (``worker/batch.py``), and the state kept between
               batches: partitions, hand-over, checkpoints, erasure, the Redis client
``agents``, ``web``
               the Faust agent (thin) and the HTTP views
``app``, ``tools``
               the composition root (``create_app``); offline and operator tools
``cli``        the ``shopstream`` command

The models (:mod:`models`) are a separate library below all of this: it imports nothing
from ``streams``.
"""

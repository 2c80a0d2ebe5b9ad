"""Faust agents: thin loops that hand batches to :mod:`streams.worker`."""

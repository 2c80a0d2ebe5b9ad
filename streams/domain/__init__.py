"""Pure, event-time steps: no I/O, no asyncio, no Faust, no Redis. The live worker, the
offline evaluations and the unit tests run the same code."""

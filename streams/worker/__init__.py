"""One batch, top to bottom (:mod:`.batch`), and the state a worker keeps between batches."""

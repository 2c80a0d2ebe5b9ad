"""``python -m streams`` is the ``shopstream`` command."""

from streams.cli import main

main()

"""``python -m streams`` is the ``shopstream`` command."""

if __name__ == "__main__":  # not when a spawned child process imports it (the forecasts)
    from streams.cli import main

    main()

"""`python -m behavioral_analytics.cli`: the command line as a module, which is how the
worker and API child processes (`worker --workers N`, `up`, `loadtest`) are started."""

from behavioral_analytics.cli.root import main

if __name__ == "__main__":
    main()

"""The `behavioral-analytics` command line, one module per command group.

- `root`: the root command `app`, `--version`, the registration of every command, and `main`.
- `errors`: one-line errors and exit codes (2 for configuration, 1 for a failing port).
- `shared`: the stdout console, `--json`, settings and store loading, JSON and time printing.
- `pipeline`: `init`, `publish`, `worker` (and the worker child processes `up` also starts and
  supervises).
- `up`: the local stack with synthetic traffic and the live view.
- `verify`: recount the aggregates from the raw events.
- `config`: the configuration recorded with the data (`show`, `apply`).
- `dlq`: list and replay dead letters.
- `query`: profiles, timelines, events and series; `behavior`: sessions, funnels, identity
  links and `forget`.
- `loadgen`: `generate` and `loadtest`, and `script_main` for the repository's scripts.
- `api`: serve the API; the only command that needs an extra (fastapi, uvicorn).

Settings come from `behavioral_analytics.settings` and adapters from
`behavioral_analytics.wiring`: no command module imports an adapter. Every command module is
imported when the CLI starts, so a broken import fails loudly instead of losing a command.
"""

from behavioral_analytics.cli.root import app, main

__all__ = ["app", "main"]

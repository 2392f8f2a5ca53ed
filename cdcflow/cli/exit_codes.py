"""The exit codes of every ``cdcflow`` command (docs/cli.md).

``0`` success; ``1`` a run-time failure (a server refused, a worker failed, data could not be
written); ``2`` a usage or configuration problem found before any data moved.
"""

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

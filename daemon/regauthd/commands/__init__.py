"""One module per sub-command. Each exposes ``add_arguments(parser)`` and ``command(args) -> int``.

Exit statuses shared by every command: 0 all good, 1 problems found (or remaining), 2 usage or
settings error (so a service manager does not restart-loop on it).
"""

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

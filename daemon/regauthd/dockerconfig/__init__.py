"""The Docker config, in docker/cli's three seams: where the file is and what it holds (``file``,
``jsontext``, ``merge``), where the secret lives (``auth``, ``stores``), and which key serves which
registry (``keys``, ``normalize``); around them ``findings``, ``audit``, and ``fixer`` with its
``backups``, ``races`` and ``report``."""

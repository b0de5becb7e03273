"""regauthd: keeps container registry credentials working.

The public surface is the ``regauthd`` command (see :mod:`regauthd.cli`); the modules are
layered the way docker/cli's config code is: where the file is and what it holds
(:mod:`regauthd.dockerconfig.file`), where the secret lives (:mod:`regauthd.dockerconfig.stores`),
and which credential serves which registry (:mod:`regauthd.dockerconfig.keys`,
:mod:`regauthd.dockerconfig.normalize`).
"""

__version__ = "0.1.0"

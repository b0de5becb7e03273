"""``python -m regauthd``: the same entry point as the ``regauthd`` console script."""

import sys

from regauthd.cli import main

sys.exit(main())

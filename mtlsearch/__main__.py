"""``python -m mtlsearch``: the same as the ``mtlsearch`` command."""

from __future__ import annotations

import sys

from mtlsearch.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m mcproton``: the command line, the same as the ``mcproton`` command, for where that console script is
not on the PATH (``pip install --user``, a virtual environment that is not activated, Windows).  Before 2026-12-07
only ``python -m mcproton.cli`` worked (the packaging audit, F8)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m wfmctl`: the same as the `wfmctl` script."""

from __future__ import annotations

import sys

from wfmctl.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

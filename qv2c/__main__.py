"""`python -m qv2c` is `qv2c-run`."""

import sys

from qv2c.cli import main

if __name__ == "__main__":
    sys.exit(main())

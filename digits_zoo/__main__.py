"""`python -m digits_zoo COMMAND ...`: the `digits-zoo` command."""

import sys

from digits_zoo.command import main

if __name__ == "__main__":
    sys.exit(main())

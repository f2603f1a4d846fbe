"""`python -m jaxppo`: the `jaxppo` command line (see `jaxppo.cli`)."""

import sys

from jaxppo.cli import main

if __name__ == "__main__":
    sys.exit(main())

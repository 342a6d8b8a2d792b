"""``python -m shards``: the command-line tools, :mod:`shards.cli.main`."""

import sys

from shards.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m model``: use a trained model, :mod:`model.cli.main`."""

import sys

from model.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

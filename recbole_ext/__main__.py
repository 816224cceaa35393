"""``python -m recbole_ext``: the ``recbole-ext`` command line (:mod:`recbole_ext.cli`)."""

import sys

from recbole_ext.cli import run

if __name__ == "__main__":
    sys.exit(run())

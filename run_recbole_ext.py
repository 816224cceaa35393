"""Run, tune or list any RecBole or recbole-ext model: ``python run_recbole_ext.py --help``.

A thin wrapper of :mod:`recbole_ext.cli`, the same command as the installed ``recbole-ext``
script and ``python -m recbole_ext``.
"""

import sys

from recbole_ext.cli import run

if __name__ == "__main__":
    sys.exit(run())

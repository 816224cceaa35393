"""``python -m benchmarks <suite> [--quick] [--resume|--fresh] [--seeds 2020 2021 2022]``.

Each suite is ``benchmarks/suites/<suite>.py`` with a ``main(args)`` function. Results go to
``benchmarks/results/<suite>/<part>.{json,md,png}`` (``--quick`` pipeline checks to the
git-ignored ``benchmarks/results/quick/``); a rerun resumes where the last one stopped unless
``--fresh`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

import benchmarks.suites


def available_suites() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.suites.__path__))


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=available_suites())
    parser.add_argument("--quick", action="store_true",
                        help="subsampled data, few epochs: checks the pipeline in minutes on 2 CPU cores")
    parser.add_argument("--fresh", action="store_true", help="ignore earlier results of this suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the suite's seeds")
    parser.add_argument("--only", nargs="+", default=None, help="run only these run keys / models")
    args = parser.parse_args(argv)
    args.resume = not args.fresh
    importlib.import_module(f"benchmarks.suites.{args.suite}").main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m dataset_atomic <format> --input PATH --output DIR [--force] [opts]``.

Input problems (bad lines, wrong encodings, existing output, ...) print one line,
``error: file:line: message (offending text)``, on stderr and exit with status 2; no
traceback; an operating-system error (permissions, disk full) prints one line and exits
with status 1. The summary goes to stdout and, in full, to ``DIR/stats.json``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from dataset_atomic import FORMATS, ConversionError, __version__
from dataset_atomic._atomic import summary_lines

EXIT_INPUT_ERROR = 2
EXIT_SYSTEM_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_atomic",
        description="Convert a raw recommendation dataset into RecBole atomic files.")
    parser.add_argument("--version", action="version", version=f"dataset_atomic {__version__}")
    subparsers = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, module_name in FORMATS.items():
        module = importlib.import_module(f"dataset_atomic.{module_name}")
        doc = (module.__doc__ or "").strip()
        sub = subparsers.add_parser(name, help=doc.splitlines()[0] if doc else name,
                                    description=doc,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--input", required=True, help="raw input file or directory")
        sub.add_argument("--output", required=True,
                         help="output directory dataset/<name>; files are named <name>.<suffix>")
        sub.add_argument("--force", action="store_true",
                         help="replace an existing output directory")
        module.add_arguments(sub)
        sub.set_defaults(module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = args.module
    started = time.perf_counter()
    try:
        stats = module.convert(args.input, args.output, force=args.force,
                               **module.options_from_args(args))
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as exc:
        # A system problem (permissions, full disk), not bad input: status 1, still one line.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SYSTEM_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    for line in summary_lines(stats):
        print(line)
    print(f"  wrote {args.output} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

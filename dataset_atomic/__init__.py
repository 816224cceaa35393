"""Convert public recommendation datasets into strict RecBole atomic files.

One module per raw format, each with a public ``convert(input, output_dir, force=False,
**options) -> dict`` (the stats written to ``stats.json``); the command line is
``python -m dataset_atomic <format> --input PATH --output dataset/<name> [--force]``.
See ``dataset_atomic/README.md``.
"""

from dataset_atomic._atomic import (
    AtomicFileReport,
    ConversionError,
    __version__,
    check_atomic_file,
    validate_atomic_file,
)

# CLI name -> module name (``benchmarks.common.ensure_converted`` maps '-' to '_' the same way).
FORMATS = {
    "movielens": "movielens",
    "ripplenet-kg": "ripplenet_kg",
    "lightgcn": "lightgcn",
    "leporid": "leporid",
    "devooght": "devooght",
    "sequences": "sequences",
    "lastfm-hetrec": "lastfm_hetrec",
}

__all__ = ["FORMATS", "AtomicFileReport", "ConversionError", "__version__", "check_atomic_file",
           "validate_atomic_file"]

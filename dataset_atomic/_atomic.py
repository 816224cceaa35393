"""Shared core of the converters: strict reading, strict atomic-file writing, safe output.

Every converter goes through three steps, all defined here:

1. **Read** raw text with :func:`iter_records`. It decodes strictly, checks the column
   count of every line and raises :class:`ConversionError` as ``file:line: message
   (offending text)`` at the first problem, before anything is written.
2. **Write** RecBole atomic files with :meth:`Conversion.write`: tab separated, a
   ``field:type`` header, LF line endings, UTF-8. Every written file is re-read by
   :func:`validate_atomic_file`, so a converter bug cannot produce a file RecBole would
   misread (RecBole's ``_load_feat`` silently turns a malformed float into NaN).
3. **Publish** with :class:`Conversion`: files go into a temporary directory beside the
   output and are renamed into place only when complete, together with ``stats.json``
   (counts, source checksums, converter version, seed, options). On any error the
   temporary directory is removed, so an interrupted run leaves nothing behind. An
   existing output directory is only replaced with ``force=True``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

__version__ = "0.1.0"

FIELD_TYPES = ("token", "float", "token_seq", "float_seq")
# Inputs above this size get a progress bar (on a terminal; tqdm hides it otherwise).
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
# RecBole builds file names as <data_path>/<name>/<name>.<suffix>; keep names shell-safe.
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SEPARATOR_NAMES = {"\t": "tab", " ": "space", "::": "'::'", "|": "'|'", ",": "comma"}


class ConversionError(Exception):
    """A problem with the input or the output location, reported as ``file:line: message``.

    Args:
        message: what is wrong.
        path: the file concerned (optional).
        line: 1-based line number in ``path`` (optional).
        text: the offending text, shown shortened in parentheses (optional).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 line: int | None = None, text: str | None = None) -> None:
        self.message, self.path, self.line, self.text = message, path, line, text
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        shown = ""
        if self.text is not None:
            text = self.text if len(self.text) <= 80 else self.text[:77] + "..."
            shown = f" ({text!r})"
        return f"{where}{self.message}{shown}"


# ---------------------------------------------------------------------------- reading

def _open_binary(path: Path):
    """Open ``path`` for binary reading, transparently un-gzipping ``.gz`` content."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def detect_encoding(path: Path) -> str:
    """``utf-8`` if the whole file decodes as UTF-8, else ``latin-1``.

    MovieLens ships latin-1 titles; a copy re-saved as UTF-8 must not be double-decoded
    into mojibake, and latin-1 accepts any byte, so UTF-8 is tried first.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    with _open_binary(path) as handle:
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "latin-1"
    return "utf-8"


def iter_records(path: str | os.PathLike, *, sep: str, ncols: int | None = None,
                 min_cols: int = 1, encoding: str = "utf-8",
                 header: Sequence[str] | None = None,
                 allow_empty: bool = False) -> Iterator[tuple[int, list[str], str]]:
    """Yield ``(line_number, columns, line_text)`` for each line of a delimited text file.

    Args:
        path: the file (gzip content is detected and unpacked).
        sep: exact column separator (``"\\t"``, ``" "``, ``"::"``, ``"|"``).
        ncols: exact number of columns required on every line (``None``: any number
            ``>= min_cols``).
        min_cols: minimum number of columns when ``ncols`` is ``None``.
        encoding: text encoding; decoding is strict and a bad byte is an error naming the
            line.
        header: if given, the first line must consist of exactly these column names; it is
            checked and skipped.
        allow_empty: accept empty columns (ml-100k's ``u.item`` has an always-empty
            video-release-date column); otherwise an empty column is an error, since it
            usually means a doubled separator.

    A trailing ``\\r`` (CRLF files) is tolerated. Blank lines are tolerated only at the
    end of the file. An empty file, a wrong column count, an empty column and an
    undecodable line raise :class:`ConversionError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError("file not found", path)
    size = path.stat().st_size
    with open(path, "rb") as probe:
        packed = probe.read(2) == b"\x1f\x8b"
    sep_name = _SEPARATOR_NAMES.get(sep, repr(sep))
    blank_at = None
    seen = 0
    # Progress counts unpacked bytes, so a gzip file's bar has no known total.
    bar = tqdm(total=None if packed else size, unit="B", unit_scale=True, desc=path.name,
               leave=False, disable=True if size < PROGRESS_MIN_BYTES else None, file=sys.stderr)
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                bar.update(len(raw))
                complete = raw.endswith(b"\n")
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise ConversionError(
                        f"not valid {encoding} text (byte {raw[exc.start]:#04x} at column "
                        f"{exc.start + 1}); convert the file to UTF-8 first", path, number,
                        raw.decode("latin-1").rstrip("\r\n")) from None
                text = text.rstrip("\n").rstrip("\r")
                if not text.strip():
                    blank_at = blank_at or number
                    continue
                if blank_at is not None:
                    raise ConversionError("empty line in the middle of the file", path, blank_at)
                if header is not None and number == 1:
                    if text.split(sep) != list(header):
                        raise ConversionError(
                            f"expected the header {sep.join(header)!r}", path, number, text)
                    continue
                columns = text.split(sep)
                if (ncols is not None and len(columns) != ncols) or len(columns) < min_cols:
                    expected = f"{ncols}" if ncols is not None else f"at least {min_cols}"
                    hint = ""
                    if len(columns) == 1:
                        others = [name for s, name in _SEPARATOR_NAMES.items()
                                  if s != sep and s in text]
                        if others:
                            hint = f"; the line contains {others[0]}, wrong separator?"
                    elif not complete:
                        hint = "; the last line is incomplete, truncated file?"
                    raise ConversionError(
                        f"expected {expected} {sep_name}-separated columns, got "
                        f"{len(columns)}{hint}", path, number, text)
                if not allow_empty and "" in columns:
                    raise ConversionError(
                        f"empty column {columns.index('') + 1} (doubled or trailing "
                        f"{sep_name} separator?)", path, number, text)
                seen += 1
                yield number, columns, text
    except (OSError, EOFError) as exc:
        raise ConversionError(f"cannot read: {exc}", path) from None
    finally:
        bar.close()
    if seen == 0:
        raise ConversionError("empty file: no data lines", path)


def parse_int(text: str, path: Path, line: int, what: str, minimum: int | None = 0) -> int:
    """``int(text)`` or a :class:`ConversionError` naming ``what`` (e.g. "user id")."""
    try:
        value = int(text)
    except ValueError:
        raise ConversionError(f"{what} is not an integer", path, line, text) from None
    if minimum is not None and value < minimum:
        raise ConversionError(f"{what} must be >= {minimum}", path, line, text)
    return value


def parse_float(text: str, path: Path, line: int, what: str) -> float:
    """Finite ``float(text)`` or a :class:`ConversionError` naming ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise ConversionError(f"{what} is not a number", path, line, text) from None
    if not math.isfinite(value):
        raise ConversionError(f"{what} is not finite", path, line, text)
    return value


def format_number(value: float) -> str:
    """Shortest exact text for a float column: ``3`` for 3.0, ``repr`` otherwise."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_fraction_or_count(text: str, what: str) -> float | int:
    """``"500"`` -> 500 (a count), ``"0.1"`` -> 0.1 (a fraction in (0, 1))."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConversionError(f"{what} must be a count >= 1 or a fraction in (0, 1); got {text!r}") from None
    if value >= 1:
        if not value.is_integer():
            raise ConversionError(f"{what} must be a whole number when >= 1; got {text!r}")
        return int(value)
    if value <= 0:
        raise ConversionError(f"{what} must be a count >= 1 or a fraction in (0, 1); got {text!r}")
    return value


# ---------------------------------------------------------------------------- writing

def _check_header(header: Sequence[str], path: Path) -> list[tuple[str, str]]:
    fields = []
    for column, spec in enumerate(header, start=1):
        name, colon, ftype = spec.partition(":")
        if not colon or not name or ftype not in FIELD_TYPES:
            raise ConversionError(
                f"header column {column} must be 'name:type' with type one of "
                f"{', '.join(FIELD_TYPES)}", path, 1, spec)
        fields.append((name, ftype))
    names = [name for name, _ in fields]
    if len(set(names)) != len(names):
        raise ConversionError("duplicate field names in header", path, 1, "\t".join(header))
    return fields


def validate_atomic_file(path: str | os.PathLike) -> dict[str, Any]:
    """Check that ``path`` is a strict RecBole atomic file; return its fields and row count.

    Checks: UTF-8, LF line endings (no ``\\r``), a final newline, a ``name:type`` header
    with RecBole types and unique names, the same number of tab-separated columns on
    every line, finite numbers in ``float``/``float_seq`` columns, non-empty ``*_id``
    tokens. Raises :class:`ConversionError` with file, line, column and the offending
    text.

    Returns:
        ``{"fields": ["user_id:token", ...], "rows": <number of data lines>}``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError("file not found", path)
    rows = 0
    fields: list[tuple[str, str]] = []
    with open(path, "rb") as handle:
        number = 0
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                raise ConversionError("missing final newline (truncated file?)", path, number,
                                      raw.decode("utf-8", "replace"))
            if raw.endswith(b"\r\n"):
                raise ConversionError("CRLF line ending; atomic files use LF", path, number)
            try:
                text = raw[:-1].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConversionError(f"not valid UTF-8 (byte {raw[exc.start]:#04x})", path,
                                      number, raw.decode("latin-1").rstrip("\n")) from None
            columns = text.split("\t")
            if number == 1:
                fields = _check_header(columns, path)
                continue
            if len(columns) != len(fields):
                raise ConversionError(
                    f"expected {len(fields)} tab-separated columns, got {len(columns)}",
                    path, number, text)
            for (name, ftype), value in zip(fields, columns):
                if ftype == "float":
                    _check_float(value, path, number, name)
                elif ftype == "float_seq":
                    for part in value.split(" ") if value else []:
                        _check_float(part, path, number, name)
                elif ftype == "token" and name.endswith("_id") and not value:
                    raise ConversionError(f"empty id in column '{name}'", path, number, text)
            rows += 1
        if number == 0:
            raise ConversionError("empty file: no header", path)
    return {"fields": [f"{name}:{ftype}" for name, ftype in fields], "rows": rows}


def _check_float(value: str, path: Path, line: int, name: str) -> None:
    try:
        ok = math.isfinite(float(value))
    except ValueError:
        ok = False
    if not ok:
        raise ConversionError(f"column '{name}' needs a finite number", path, line, value)


def token_text(text: str) -> str:
    """Collapse whitespace so free text (titles) is a clean space-separated ``token_seq``."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------- output

def dataset_name(output_dir: str | os.PathLike) -> str:
    """The RecBole dataset name of an output directory (its last path component)."""
    name = Path(output_dir).name
    if not _DATASET_NAME.match(name):
        raise ConversionError(
            f"output directory name {name!r} is not a usable dataset name (letters, digits, "
            "'.', '_', '-')")
    return name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Conversion:
    """Context manager for one conversion: temp directory, atomic files, stats, publish.

    Usage::

        with Conversion("movielens", input_dir, output_dir, force, options) as conv:
            path = conv.source("u.data")          # registered for checksums
            conv.write("inter", header, rows)     # -> <tmp>/<name>.inter, validated
            conv.stats.update(users=..., ...)
        return conv.stats                          # after publishing

    Args:
        fmt: converter name, recorded in ``stats.json``.
        input_path: raw input (file or directory); source names are relative to it.
        output_dir: final directory ``.../<name>``; files are ``<name>.<suffix>``.
        force: replace an existing ``output_dir``; otherwise it is an error.
        options: converter options to record (plain JSON values).
        seed: random seed to record (``None`` for deterministic converters).
    """

    def __init__(self, fmt: str, input_path: str | os.PathLike, output_dir: str | os.PathLike,
                 force: bool, options: dict[str, Any], seed: int | None = None) -> None:
        self.fmt = fmt
        self.input_path = Path(input_path)
        self.output_dir = Path(output_dir)
        self.name = dataset_name(self.output_dir)
        self.force = force
        self.options = options
        self.seed = seed
        self.stats: dict[str, Any] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self._sources: list[Path] = []
        self._tmp: Path | None = None
        self._made_parents: list[Path] = []

    # The output is checked before any input is read so a forgotten --force fails fast.
    def __enter__(self) -> Conversion:
        if not self.input_path.exists():
            raise ConversionError("input not found", self.input_path)
        if self.output_dir.exists() and not self.force:
            raise ConversionError(
                "output already exists; pass --force (force=True) to replace it",
                self.output_dir)
        parent = self.output_dir.parent
        missing = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        self._made_parents = missing
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.name}.partial-", dir=parent))
        # mkdtemp creates mode 0700; the published dataset should get the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o777 & ~umask)
        return self

    def source(self, relative: str | os.PathLike) -> Path:
        """Path of a raw input file (relative to a directory input), recorded for checksums."""
        path = self.input_path / relative if self.input_path.is_dir() else self.input_path
        if not path.is_file():
            raise ConversionError("required input file not found", path)
        if path not in self._sources:
            self._sources.append(path)
        return path

    def write(self, suffix: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
        """Write ``<name>.<suffix>`` (e.g. ``inter``, ``train.inter``), validate it, return rows."""
        assert self._tmp is not None, "Conversion.write outside the with block"
        filename = f"{self.name}.{suffix}"
        path = self._tmp / filename
        _check_header(header, path)
        width = len(header)
        count = 0
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\t".join(header) + "\n")
            for row in rows:
                if len(row) != width:
                    raise ConversionError(f"internal error: row width {len(row)} != {width}",
                                          filename, count + 2, repr(row))
                line = "\t".join(row)
                if "\n" in line or "\r" in line or line.count("\t") != width - 1:
                    raise ConversionError("value contains a tab or newline", filename,
                                          count + 2, line)
                handle.write(line + "\n")
                count += 1
        checked = validate_atomic_file(path)
        self.files[filename] = {"fields": checked["fields"], "rows": checked["rows"]}
        return count

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._tmp is not None
        try:
            if exc_type is not None:
                return False
            for filename in self.files:
                self.files[filename]["sha256"] = sha256_file(self._tmp / filename)
            base = self.input_path if self.input_path.is_dir() else self.input_path.parent
            full = {
                "format": self.fmt,
                "dataset": self.name,
                "converter_version": __version__,
                "seed": self.seed,
                "options": self.options,
                **self.stats,
                "files": self.files,
                "sources": {_relative(p, base): sha256_file(p) for p in self._sources},
            }
            stats_path = self._tmp / "stats.json"
            stats_path.write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
            self._publish()
            self.stats = full
            return False
        finally:
            if self._tmp.exists():
                shutil.rmtree(self._tmp, ignore_errors=True)
            if exc_type is not None:
                for parent in self._made_parents:
                    if parent.exists() and not any(parent.iterdir()):
                        parent.rmdir()

    def _publish(self) -> None:
        """Rename the finished temp directory onto the output (replacing it with force)."""
        assert self._tmp is not None
        if self.output_dir.exists():
            if not self.force:
                raise ConversionError("output appeared during the conversion; not replaced",
                                      self.output_dir)
            old = Path(tempfile.mkdtemp(prefix=f".{self.name}.old-", dir=self.output_dir.parent))
            os.replace(self.output_dir, old / self.name)
            os.replace(self._tmp, self.output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.output_dir)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


# ---------------------------------------------------------------------------- statistics

def interaction_stats(users: set, items: set, interactions: int) -> dict[str, Any]:
    """Users, items, interactions and density (interactions / (users * items))."""
    density = interactions / (len(users) * len(items)) if users and items else 0.0
    return {"users": len(users), "items": len(items), "interactions": interactions,
            "density": round(density, 8)}


def label_balance(labels: Iterable[float]) -> dict[str, Any]:
    """Counts per label value and the positive fraction (label > 0)."""
    counts: dict[str, int] = {}
    for label in labels:
        key = format_number(label)
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    positive = sum(n for key, n in counts.items() if float(key) > 0)
    return {"counts": dict(sorted(counts.items())),
            "positive_fraction": round(positive / total, 6) if total else 0.0}


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """Human-readable summary of a stats dict (what the CLI prints)."""
    lines = [f"{stats['format']} -> {stats['dataset']} (dataset_atomic {stats['converter_version']}"
             + (f", seed {stats['seed']})" if stats.get("seed") is not None else ")")]
    if "users" in stats:
        lines.append(f"  users {stats['users']:,}  items {stats['items']:,}  interactions "
                     f"{stats['interactions']:,}  density {stats['density']:.6f}")
    if "splits" in stats:
        lines.append("  splits " + ", ".join(f"{k} {v['interactions']:,} rows / {v['users']:,} users"
                                             for k, v in stats["splits"].items()))
    if "labels" in stats:
        lines.append(f"  labels {stats['labels']['counts']} (positive fraction "
                     f"{stats['labels']['positive_fraction']})")
    if "kg" in stats:
        kg = stats["kg"]
        lines.append(f"  KG triples {kg['triples']:,}  relations {kg['relations']}  entities "
                     f"{kg['entities']:,}")
    for filename, info in stats.get("files", {}).items():
        lines.append(f"  {filename}: {info['rows']:,} rows")
    return lines

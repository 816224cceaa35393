"""Shared core of the converters: strict reading, strict atomic-file writing, safe output.

Every converter goes through three steps, all defined here:

1. **Read** raw text with :func:`iter_records`. It decodes strictly, checks the column
   count of every line and raises :class:`ConversionError` as ``file:line: message
   (offending text)`` at the first problem, before anything is written.
2. **Write** RecBole atomic files with :meth:`Conversion.write`: tab separated, a
   ``field:type`` header, LF line endings, UTF-8. Every written file is re-read by
   :func:`validate_atomic_file`, so a converter bug cannot produce a file RecBole would
   misread (RecBole's ``_load_feat`` pads a short line with missing values, which it then
   fills with the column mean). The same checker, :func:`check_atomic_file`, runs with a
   run's RecBole config on every file the run loads (:mod:`recbole_ext.data.validation`).
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
from collections.abc import Collection, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
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


# ---------------------------------------------------------------------------- validation

FLOAT_TYPES = ("float", "float_seq")
# pandas' Python parser, the one RecBole uses, reads a float column of only these as 1.0 / 0.0.
_PANDAS_BOOLEANS = frozenset(["True", "TRUE", "true", "False", "FALSE", "false"])
# Whole lines are scanned in blocks of about this size, so memory stays bounded on big files.
_SCAN_BYTES = 64 * 1024 * 1024


@dataclass
class AtomicFileReport:
    """What :func:`check_atomic_file` found in a file that passed.

    Attributes:
        fields: ``(name, type)`` pairs in header order.
        rows: number of data lines (blank lines, which RecBole skips, are not counted).
        warnings: problems that do not affect this read, each as ``file:line: message``.
        values: the ``collect`` fields as RecBole reads them (strings, NaN where missing).
    """

    fields: list[tuple[str, str]]
    rows: int
    warnings: list[str] = dataclass_field(default_factory=list)
    values: dict[str, Any] = dataclass_field(default_factory=dict)


def _check_header(header: Sequence[str], path: Path, sep: str = "\t") -> list[tuple[str, str]]:
    fields = []
    for column, spec in enumerate(header, start=1):
        name, colon, ftype = spec.partition(":")
        if not colon or not name or ftype not in FIELD_TYPES:
            hint = ""
            others = [label for s, label in _SEPARATOR_NAMES.items() if s != sep and s in spec]
            if len(header) == 1 and others:
                hint = f"; the header contains {others[0]}, wrong separator? (field_separator is " \
                       f"{_SEPARATOR_NAMES.get(sep, repr(sep))})"
            elif not colon and column == 1:
                hint = "; the first line must be the header, e.g. 'user_id:token'"
            raise ConversionError(
                f"header column {column} must be 'name:type' with type one of "
                f"{', '.join(FIELD_TYPES)}{hint}", path, 1, spec)
        if name.startswith('"'):
            raise ConversionError(f"header column {column} starts with a double quote, which "
                                  "pandas reads as a quoted field", path, 1, spec)
        fields.append((name, ftype))
    names = [name for name, _ in fields]
    if len(set(names)) != len(names):
        raise ConversionError("duplicate field names in header", path, 1, sep.join(header))
    return fields


def check_atomic_file(path: str | os.PathLike, *, sep: str = "\t", seq_sep: str = " ",
                      encoding: str = "utf-8", loaded: Container[str] | None = None,
                      id_fields: Collection[str] | None = None, strict: bool = True,
                      collect: Sequence[str] = ()) -> AtomicFileReport:
    """Check that RecBole reads ``path`` as written; raise :class:`ConversionError` if not.

    The rules follow RecBole 1.2.1's ``Dataset._load_feat``: it splits the first line at
    ``sep`` into ``name:type`` fields and hands the file to pandas' ``read_csv`` (floats as
    float64, the rest as strings), then splits ``token_seq``/``float_seq`` values at
    ``seq_sep``. A line with too few columns is padded with missing values there and a
    malformed float in a field it does not load is never read, so both pass unnoticed; this
    check catches them, naming the file, the line and what was expected.

    Always checked: the text decodes; the header is ``name:type`` (types token, float,
    token_seq, float_seq) with unique names and no byte-order mark; every line has the
    header's number of columns; no field opens with a double quote (pandas would read a
    quoted field across separators and lines); no id field is empty; every ``float`` value
    is a finite number as pandas reads it and every part of a ``float_seq`` value a finite
    number. The line scan works on whole blocks of lines and the numbers are parsed by
    pandas' C reader (RecBole's slower Python reader decides only where the two differ), so a
    million-row file takes a fraction of RecBole's own load time.

    Args:
        path: the atomic file.
        sep: column separator (RecBole's ``field_separator``).
        seq_sep: separator inside ``token_seq``/``float_seq`` values (``seq_separator``).
        encoding: text encoding (RecBole's ``encoding``).
        loaded: the fields RecBole loads (``None``: all); only they must hold ids. A bad
            number in any float field is an error, loaded or not.
        id_fields: token fields that must not be empty (``None``: every ``token`` field whose
            name ends in ``_id``).
        strict: the converters' output rules: LF line endings, a final newline, no blank
            line, no missing float. Without it, what RecBole reads correctly passes: CRLF,
            no final newline, blank lines (skipped), missing floats (empty or a pandas NA
            string such as ``nan``; RecBole fills in the field's mean); but at least one
            data row is required.
        collect: fields whose values are returned in :attr:`AtomicFileReport.values`.

    Returns:
        An :class:`AtomicFileReport`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError("file not found", path)
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ConversionError(f"unknown encoding {encoding!r} (config key 'encoding')",
                              path) from None
    label = "UTF-8" if codec in ("utf-8", "utf-8-sig") else encoding
    if not sep:
        raise ConversionError("the field separator is empty (config key 'field_separator')", path)
    probe = bytes(range(128))
    # In an ASCII-compatible encoding separators and line ends are single known bytes, so
    # the raw bytes can be scanned; any other text is scanned re-encoded as UTF-8.
    scan_codec = codec if probe.decode(codec, "replace") == probe.decode("ascii") else "utf-8"
    sep_bytes = sep.encode(scan_codec)
    fields: list[tuple[str, str]] | None = None
    ids: set[str] = set()
    blank: list[int] = []
    number = 1  # number of the first line of the current block
    ended = True
    with open(path, "rb") as handle:
        if scan_codec == codec:
            blocks = _line_blocks(handle)
        else:
            blocks = iter([_decoded(handle.read(), encoding, label, path, 1).encode("utf-8")])
        for block in blocks:
            if scan_codec == codec:
                _decoded(block, encoding, label, path, number)
            if fields is None:
                cut = block.find(b"\n") + 1 or len(block)
                fields = _parse_header(block[:cut], scan_codec, sep, strict, path)
                ids = set(id_fields) if id_fields is not None else {
                    name for name, ftype in fields if ftype == "token" and name.endswith("_id")}
                ids &= {name for name, _ in fields if loaded is None or name in loaded}
                block, number = block[cut:], 2
            if block:
                lines, ended = _check_lines(block, number, fields, sep_bytes, sep, strict, ids,
                                            blank, path)
                number += lines
    if fields is None:
        raise ConversionError("empty file: no header", path)
    if strict and not ended:
        raise ConversionError("missing final newline (truncated file?)", path, number - 1)
    rows = number - 2 - len(blank)
    if rows == 0 and not strict:
        raise ConversionError("no data rows after the header (empty dataset file?)", path)
    report = AtomicFileReport(fields, rows)
    report.values = _check_values(path, report, sep=sep, seq_sep=seq_sep, encoding=encoding,
                                  loaded=loaded, strict=strict, collect=collect, blank=blank)
    return report


def validate_atomic_file(path: str | os.PathLike) -> dict[str, Any]:
    """Check that ``path`` is a strict RecBole atomic file; return its fields and row count.

    :func:`check_atomic_file` with the converters' rules (``strict=True``): UTF-8, LF line
    endings, a final newline, a ``name:type`` header with RecBole types and unique names,
    the same number of tab-separated columns on every line, finite numbers in
    ``float``/``float_seq`` columns, non-empty ``*_id`` tokens. Raises
    :class:`ConversionError` with file, line and the offending text.

    Returns:
        ``{"fields": ["user_id:token", ...], "rows": <number of data lines>}``.
    """
    report = check_atomic_file(path)
    return {"fields": [f"{name}:{ftype}" for name, ftype in report.fields], "rows": report.rows}


def _line_blocks(handle) -> Iterator[bytes]:
    """Yield the content of ``handle`` in blocks of whole lines (the last may lack its LF)."""
    rest = b""
    while True:
        chunk = handle.read(_SCAN_BYTES)
        if not chunk:
            if rest:
                yield rest
            return
        chunk = rest + chunk
        cut = chunk.rfind(b"\n") + 1
        if cut:
            yield chunk[:cut]
        rest = chunk[cut:]


def _decoded(block: bytes, encoding: str, label: str, path: Path, first_line: int) -> str:
    """``block`` decoded, or a :class:`ConversionError` at the line of the first bad byte."""
    try:
        return block.decode(encoding)
    except UnicodeDecodeError as exc:
        before = block[:exc.start].decode(encoding, "replace")
        start = block.rfind(b"\n", 0, exc.start) + 1
        end = block.find(b"\n", exc.start)
        shown = block[start:end if end >= 0 else len(block)].decode("latin-1").rstrip("\r")
        raise ConversionError(
            f"not valid {label} (byte {block[exc.start]:#04x}) at column "
            f"{len(before) - before.rfind(chr(10))}; RecBole reads atomic files as {label} "
            "(config key 'encoding')", path, first_line + before.count("\n"), shown) from None


def _parse_header(raw: bytes, codec: str, sep: str, strict: bool,
                  path: Path) -> list[tuple[str, str]]:
    text = raw.decode(codec)
    if text.startswith("\ufeff"):
        raise ConversionError("the file starts with a byte-order mark, which RecBole reads as "
                              "part of the first field name; save it without one", path, 1)
    if strict and not text.endswith("\n"):
        raise ConversionError("missing final newline (truncated file?)", path, 1, text)
    if strict and text.endswith("\r\n"):
        raise ConversionError("CRLF line ending; atomic files use LF", path, 1)
    return _check_header(text.rstrip("\n").rstrip("\r").split(sep), path, sep)


def _check_lines(block: bytes, first: int, fields: list[tuple[str, str]], sep_bytes: bytes,
                 sep: str, strict: bool, ids: set[str], blank: list[int],
                 path: Path) -> tuple[int, bool]:
    """Check a block of whole data lines, the first numbered ``first``.

    Lines and fields are located with numpy on the raw bytes (no Python object per line).
    Blank lines are appended to ``blank`` as read_csv's 0-based ``skiprows``. Returns the
    number of lines and whether the block ends with a line feed.
    """
    if strict and (b"\r\n" in block or block.endswith(b"\r")):
        at = block.find(b"\r\n") if b"\r\n" in block else len(block)
        raise ConversionError("CRLF line ending; atomic files use LF", path,
                              first + block.count(b"\n", 0, at))
    stand_in = sep_bytes
    if len(sep_bytes) > 1:  # the scan needs a one-byte separator: use a byte the block lacks
        stand_in = next((bytes([b]) for b in [*range(1, 9), *range(14, 32), 0]
                         if bytes([b]) not in block), b"")
        if not stand_in:
            raise ConversionError(f"cannot scan for the separator {sep!r}: every control "
                                  "character occurs in the file", path, first)
        block = block.replace(sep_bytes, stand_in)
    data = np.frombuffer(block, np.uint8)
    ended = block.endswith(b"\n")
    ends = np.flatnonzero(data == 10)
    if not ended:
        ends = np.append(ends, len(block))
    starts = np.concatenate(([0], ends[:-1] + 1))
    # a CRLF line's content stops before its CR
    stops = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == 13))
    seps = np.flatnonzero(data == stand_in[0])
    first_sep = np.searchsorted(seps, starts)
    counts = np.searchsorted(seps, ends) - first_sep
    want = len(fields) - 1

    def line(i: int) -> str:
        return block[starts[i]:stops[i]].replace(stand_in, sep_bytes).decode("latin-1")

    odd = np.flatnonzero(counts != want)
    if want == 0:  # one column: a blank line has the right count
        odd = np.flatnonzero((stops == starts) | np.isin(data[np.minimum(starts, len(data) - 1)],
                                                         list(b" \t\r\x0b\x0c")))
    keep = np.ones(len(ends), dtype=bool)
    for i in odd.tolist():
        if counts[i] == 0 and not line(i).strip():  # pandas skips a blank line
            if strict:
                raise ConversionError("empty line", path, first + i)
            blank.append(first + i - 1)
            keep[i] = False
            continue
        if want == 0:
            continue
        hint = ""
        if counts[i] == 0:
            others = [name for s, name in _SEPARATOR_NAMES.items() if s != sep and s in line(i)]
            if others:
                hint = f"; the line contains {others[0]}, wrong separator?"
        elif i == len(ends) - 1 and not ended:
            hint = "; the last line is incomplete, truncated file?"
        raise ConversionError(
            f"expected {want + 1} {_SEPARATOR_NAMES.get(sep, repr(sep))}-separated columns, "
            f"got {counts[i] + 1}{hint}", path, first + i, line(i))
    quotes = np.flatnonzero(data == ord('"'))
    if len(quotes):
        opening = quotes[(quotes == 0) | np.isin(data[quotes - 1], [10, stand_in[0]])]
        if len(opening):
            i = int(np.searchsorted(ends, opening[0]))
            column = int(np.searchsorted(seps, opening[0]) - first_sep[i])
            raise ConversionError(
                f"column '{fields[column][0]}' starts with a double quote, which RecBole's reader "
                "(pandas read_csv) takes as the start of a quoted field; remove it",
                path, first + i, line(i))
    rows = np.flatnonzero(keep)
    for column, (name, _) in enumerate(fields):
        if name not in ids:
            continue
        begin = starts[rows] if column == 0 else seps[first_sep[rows] + column - 1] + 1
        end = stops[rows] if column == want else seps[first_sep[rows] + column]
        empty = np.flatnonzero(begin == end)
        if len(empty):
            i = int(rows[empty[0]])
            raise ConversionError(f"empty id in column '{name}'", path, first + i, line(i))
    return len(ends), ended


def _check_values(path: Path, report: AtomicFileReport, *, sep: str, seq_sep: str,
                  encoding: str, loaded: Container[str] | None, strict: bool,
                  collect: Sequence[str], blank: list[int]) -> dict[str, Any]:
    """Parse the float fields (and ``collect`` fields) with pandas; report bad numbers."""
    specs = {f"{name}:{ftype}": (name, ftype) for name, ftype in report.fields
             if ftype in FLOAT_TYPES or name in collect}
    if not specs:
        return {}
    import pandas as pd

    options = {"sep": sep, "usecols": list(specs), "encoding": encoding,
               "skiprows": blank or None, "engine": "c" if len(sep) == 1 else "python"}
    fast = {spec: np.float64 if ftype == "float" else str for spec, (_, ftype) in specs.items()}
    try:
        frame, parsed = pd.read_csv(path, dtype=fast, **options), True
    except ValueError:
        # The C parser is stricter than the Python one RecBole uses ('1_000', '1e400');
        # read strings and decide value by value as RecBole's reader would.
        try:
            frame, parsed = pd.read_csv(path, dtype=str, **options), False
        except ValueError as exc:
            raise ConversionError(f"pandas cannot read the file: {exc}", path) from None
    if len(frame) != report.rows:
        raise ConversionError(f"pandas reads {len(frame)} rows, but the file has {report.rows} "
                              "data lines", path)
    for spec, (name, ftype) in specs.items():
        if ftype == "float":
            bad = _bad_floats(frame[spec].to_numpy(), parsed, strict)
            expected = "a finite number"
        elif ftype == "float_seq":
            bad = _bad_float_seqs(frame[spec].to_numpy(), seq_sep)
            expected = f"finite numbers separated by {seq_sep!r}"
        else:
            continue
        if not bad.any():
            continue
        where = np.flatnonzero(bad)
        line = _line_number(int(where[0]), blank)
        text = _field_text(path, line, encoding, sep, [n for n, _ in report.fields].index(name))
        more = f", here and in {len(where) - 1} more rows" if len(where) > 1 else ""
        # an error even in a field this run does not load: the file contradicts its own header
        raise ConversionError(f"column '{name}' needs {expected}{more}", path, line, text)
    return {name: frame[spec].to_numpy() for spec, (name, _) in specs.items() if name in collect}


def _bad_floats(values: np.ndarray, parsed: bool, strict: bool) -> np.ndarray:
    """Mask of the values RecBole would not read as a usable number.

    ``parsed``: ``values`` are pandas' C-parser floats; otherwise they are strings (NaN where
    pandas saw a missing value) and are judged as RecBole's Python-parser read turns them
    into float64: Python's ``float()`` for each value, or booleans if the whole column is.
    """
    if parsed:
        return ~np.isfinite(values) if strict else np.isinf(values)
    present = [text for text in values if isinstance(text, str)]
    booleans = bool(present) and all(text in _PANDAS_BOOLEANS for text in present)
    bad = np.zeros(len(values), dtype=bool)
    for i, text in enumerate(values):
        if not isinstance(text, str):
            bad[i] = strict
        elif not booleans:
            try:
                number = float(text)
            except ValueError:
                bad[i] = True
                continue
            bad[i] = math.isinf(number) or (strict and math.isnan(number))
    return bad


def _bad_float_seqs(values: np.ndarray, seq_sep: str) -> np.ndarray:
    """Mask of ``float_seq`` values with a part RecBole's ``float()`` rejects or that is not finite."""
    bad = np.zeros(len(values), dtype=bool)
    for i, text in enumerate(values):
        if isinstance(text, str):
            try:
                bad[i] = not all(math.isfinite(float(part))
                                 for part in text.split(seq_sep) if part)
            except ValueError:
                bad[i] = True
    return bad


def _line_number(row: int, blank: list[int]) -> int:
    """File line number of data row ``row`` (0-based), skipping the blank lines."""
    number = row + 2
    for index in sorted(blank):
        if index + 1 <= number:
            number += 1
    return number


def _field_text(path: Path, line: int, encoding: str, sep: str, column: int) -> str:
    """The text of column ``column`` on line ``line`` (for error messages)."""
    with open(path, encoding=encoding, newline="") as handle:
        for number, text in enumerate(handle, start=1):
            if number == line:
                parts = text.rstrip("\n").rstrip("\r").split(sep)
                return parts[column] if column < len(parts) else text
    return ""


# ---------------------------------------------------------------------------- writing

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

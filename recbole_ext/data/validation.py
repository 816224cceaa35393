"""Validation of the atomic files a run will read, before RecBole reads them.

RecBole's ``Dataset._load_feat`` hands atomic files to pandas without checks: a truncated
last row is padded with a missing value (then filled with the column mean), a malformed
float in a field that is not loaded is never looked at, and most other defects surface as
an unpacking error or a traceback that names no file. :func:`validate_dataset_files` runs
the converters' validator (:func:`dataset_atomic._atomic.check_atomic_file`) with the
run's config on every file RecBole will load, then checks the knowledge-graph files
against each other, and raises :class:`AtomicFileError` as ``file:line: what was
expected``.

Which files: the ``.inter`` file, or ``<dataset>.<part>.inter`` for each part of
``benchmark_filename``; ``.user`` and ``.item`` when they exist and ``load_col`` loads them;
``.kg`` and ``.link`` when the dataset class is a RecBole ``KnowledgeBasedDataset``; one
file per ``additional_feat_suffix`` entry (``.net``, for instance). The config keys that
RecBole reads are followed: ``field_separator``, ``seq_separator``, ``encoding``,
``load_col``/``unload_col``, and the ``*_FIELD`` keys naming the fields each file must carry.
A bad number in a float field is an error even when this run does not load the field: the
file contradicts its own header, and another run (or model) will read it.

Each file's result is cached by its size, modification time and inode, together with the
settings it was checked under, in ``atomic_validation.json`` in the user's cache directory
(``$RECBOLE_EXT_CACHE_DIR``, else ``$XDG_CACHE_HOME/recbole_ext``, else
``~/.cache/recbole_ext``). The data folder may be read-only or shared by several users, and
``checkpoint_dir`` is relative to the working directory and often per run, so neither would
keep a result for the next run. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from logging import getLogger
from pathlib import Path

import numpy as np
import pandas as pd
from recbole.utils import ModelType

from dataset_atomic import AtomicFileReport, ConversionError, check_atomic_file

CACHE_ENV = "RECBOLE_EXT_CACHE_DIR"
_CACHE_NAME = "atomic_validation.json"
# Part of every cache key: bump it when the rules of check_atomic_file change.
_RULES_VERSION = 1
_MAX_CACHE_ENTRIES = 512
_SHOWN_IDS = 5  # ids quoted in a warning


class AtomicFileError(ValueError):
    """An atomic file RecBole would reject or misread, reported as ``file:line: message``."""


class _Loaded:
    """The fields RecBole loads from one file, as its ``_get_load_and_unload_col`` decides."""

    def __init__(self, load: list[str] | None, unload: list[str] | None) -> None:
        self.load = None if load is None else sorted(load)
        self.unload = None if unload is None else sorted(unload)

    def __contains__(self, name: object) -> bool:
        return ((self.load is None or name in self.load)
                and (self.unload is None or name not in self.unload))

    def key(self) -> list:
        return [self.load, self.unload]


@dataclass
class _FileCheck:
    """One atomic file to check, with the fields the run needs from it."""

    path: Path
    source: str  # RecBole's name for the file's features: inter, user, item, kg, link, ...
    loaded: _Loaded
    ids: set[str]  # id fields: never empty
    required: dict[str, str]  # field -> config key that names it
    collect: list[str] = field(default_factory=list)  # values wanted by the KG cross-check


def validate_dataset_files(config, dataset_class: type | None = None) -> list[str]:
    """Check every atomic file the run will load; return the warnings (also logged).

    Args:
        config: the run's RecBole config.
        dataset_class: the dataset class the run will build (``None``: the one RecBole's
            ``create_dataset`` picks); it decides whether ``.kg`` and ``.link`` are read.

    Raises:
        AtomicFileError: the first problem, as ``file:line: message``.
    """
    start = time.perf_counter()
    checks = planned_checks(config, dataset_class)
    cache = _Cache(default_cache_file())
    settings = [_RULES_VERSION, config["field_separator"] or "\t",
                config["seq_separator"] or " ", config["encoding"] or "utf-8"]
    link_key, link_cached, link_stamps = None, None, {}
    link_files = [check.path for check in checks if check.collect]
    if link_files:
        link_key = json.dumps(["kg-link", settings,
                               *[[str(c.path), c.collect] for c in checks if c.collect]])
        link_cached = cache.get(link_key, link_files)
        link_stamps = {str(path): _stamp(path) for path in link_files}
    need_values = link_key is not None and link_cached is None
    warnings: list[str] = []
    values: dict[str, list[np.ndarray]] = {}
    cached = 0
    try:
        for check in checks:
            key = json.dumps(["file", str(check.path), settings, check.loaded.key(),
                              sorted(check.ids)])
            result = None if need_values and check.collect else cache.get(key, [check.path])
            if result is None:
                stamp = _stamp(check.path)
                report = _check_file(check, settings)
                result = {"fields": report.fields, "rows": report.rows,
                          "warnings": report.warnings}
                cache.put(key, {str(check.path): stamp}, result)
                for name, column in report.values.items():
                    values.setdefault(f"{check.source}:{name}", []).append(column)
            else:
                cached += 1
            _check_required(check, [name for name, _ in result["fields"]])
            warnings += result["warnings"]
        if need_values:
            link_cached = {"warnings": _link_warnings(config, checks, values)}
            cache.put(link_key, link_stamps, link_cached)
        if link_cached is not None:
            warnings += link_cached["warnings"]
    finally:
        cache.save()
    logger = getLogger()
    for warning in warnings:
        logger.warning(warning)
    logger.info(f"atomic files checked in {time.perf_counter() - start:.2f} s "
                f"({len(checks)} files, {cached} unchanged since an earlier check)")
    return warnings


def planned_checks(config, dataset_class: type | None = None) -> list[_FileCheck]:
    """The files RecBole will load under ``config``, in the order it loads them."""
    root = Path(config["data_path"])
    name = config["dataset"]
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    kg_fields = {config["HEAD_ENTITY_ID_FIELD"]: "HEAD_ENTITY_ID_FIELD",
                 config["RELATION_ID_FIELD"]: "RELATION_ID_FIELD",
                 config["TAIL_ENTITY_ID_FIELD"]: "TAIL_ENTITY_ID_FIELD"}
    inter_fields = {uid: "USER_ID_FIELD", iid: "ITEM_ID_FIELD"}
    link_fields = {iid: "ITEM_ID_FIELD", config["ENTITY_ID_FIELD"]: "ENTITY_ID_FIELD"}
    planned: list[tuple[Path, str, dict[str, str]]] = []
    parts = config["benchmark_filename"]
    for path in ([root / f"{name}.{part}.inter" for part in parts] if parts
                 else [root / f"{name}.inter"]):
        planned.append((path, "inter", inter_fields))
    for source, required in (("user", {uid: "USER_ID_FIELD"}), ("item", {iid: "ITEM_ID_FIELD"})):
        if (root / f"{name}.{source}").is_file():
            planned.append((root / f"{name}.{source}", source, required))
    kg = _loads_kg(config, dataset_class)
    if kg:
        planned += [(root / f"{name}.kg", "kg", kg_fields),
                    (root / f"{name}.link", "link", link_fields)]
    for suffix in config["additional_feat_suffix"] or []:
        planned.append((root / f"{name}.{suffix}", suffix, {}))
    checks = []
    for path, source, required in planned:
        loaded = _loaded_fields(config, source)
        if loaded is None:  # RecBole skips a file whose source load_col leaves out
            continue
        required = {f: key for f, key in required.items() if f is not None}
        checks.append(_FileCheck(path, source, loaded, set(required), required))
    if kg and {"inter", "kg", "link"} <= {check.source for check in checks}:
        collect = {"inter": [iid], "link": [iid, config["ENTITY_ID_FIELD"]],
                   "kg": [config["HEAD_ENTITY_ID_FIELD"], config["TAIL_ENTITY_ID_FIELD"]]}
        for check in checks:
            check.collect = collect.get(check.source, [])
    return checks


def default_cache_file() -> Path:
    """``atomic_validation.json`` in the user's cache directory (see the module docstring)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "recbole_ext"
    return Path(root) / _CACHE_NAME


def _loads_kg(config, dataset_class: type | None) -> bool:
    """Whether the dataset class reads ``.kg`` and ``.link`` (RecBole's class choice if None)."""
    import recbole.data.dataset as recbole_datasets

    if dataset_class is None:
        dataset_class = getattr(recbole_datasets, f"{config['model']}Dataset", None)
    if dataset_class is None:
        return config["MODEL_TYPE"] == ModelType.KNOWLEDGE
    return issubclass(dataset_class, recbole_datasets.KnowledgeBasedDataset)


def _loaded_fields(config, source: str) -> _Loaded | None:
    """RecBole's load_col/unload_col rule for one source; None when the file is not loaded."""
    load_col, unload_col = config["load_col"], config["unload_col"]
    load = None
    if load_col is not None:
        if source not in load_col:
            return None
        if load_col[source] != "*":
            load = list(load_col[source])
    unload = list(unload_col[source]) if unload_col and source in unload_col else None
    return _Loaded(load, unload)


def _check_file(check: _FileCheck, settings: list) -> AtomicFileReport:
    _, sep, seq_sep, encoding = settings
    try:
        return check_atomic_file(check.path, sep=sep, seq_sep=seq_sep, encoding=encoding,
                                 loaded=check.loaded, id_fields=check.ids, strict=False,
                                 collect=check.collect)
    except ConversionError as err:
        raise AtomicFileError(str(err)) from None


def _check_required(check: _FileCheck, names: list[str]) -> None:
    """The fields the config names for this file must be in its header and loaded."""
    for name, key in check.required.items():
        if name not in names:
            raise AtomicFileError(
                f"{check.path}:1: needs the field '{name}' (config key {key}); the header "
                f"has {', '.join(names)}")
        if name not in check.loaded:
            raise AtomicFileError(
                f"{check.path}:1: needs the field '{name}' (config key {key}), but "
                f"load_col/unload_col leave it out for '{check.source}'")


def _link_warnings(config, checks: list[_FileCheck], values: dict[str, list[np.ndarray]]) -> list[str]:
    """What RecBole's KnowledgeBasedDataset silently drops when .inter, .link and .kg disagree.

    Its ``_filter_link`` drops every ``.link`` row whose item is in no interaction or whose
    entity is in no triple, and then every interaction whose item is left without a link.
    """
    iid, entity = config["ITEM_ID_FIELD"], config["ENTITY_ID_FIELD"]
    head, tail = config["HEAD_ENTITY_ID_FIELD"], config["TAIL_ENTITY_ID_FIELD"]
    link = next(c.path for c in checks if c.source == "link")
    inter_files = ", ".join(c.path.name for c in checks if c.source == "inter")

    def present(key: str) -> np.ndarray:
        arrays = [a[~pd.isna(a)] for a in values.get(key, [])]
        return np.concatenate(arrays) if arrays else np.array([], dtype=object)

    interactions = present(f"inter:{iid}")
    inter_items = set(interactions.tolist())
    entities = set(present(f"kg:{head}").tolist()) | set(present(f"kg:{tail}").tolist())
    link_items, link_entities = values[f"link:{iid}"][0], values[f"link:{entity}"][0]
    for name, column in ((iid, link_items), (entity, link_entities)):
        _refuse_repeats(link, name, column)
    item2entity = dict(zip(link_items.tolist(), link_entities.tolist()))
    warnings = []
    unknown = [item for item in link_items.tolist() if item not in inter_items]
    if unknown:
        warnings.append(
            f"{link}: {len(unknown)} of {len(link_items)} rows name an item that is in no "
            f"interaction ({inter_files}), e.g. {_some(unknown)}; RecBole's "
            "knowledge-graph dataset drops them")
    orphans = [ent for ent in link_entities.tolist() if ent not in entities]
    if orphans:
        warnings.append(
            f"{link}: {len(orphans)} of {len(link_entities)} rows link to an entity that is in "
            f"no .kg triple, e.g. {_some(orphans)}; RecBole's knowledge-graph dataset drops them")
    items, counts = np.unique(interactions.astype(str), return_counts=True)
    unlinked = [(item, n) for item, n in zip(items.tolist(), counts.tolist())
                if item2entity.get(item) not in entities]
    if unlinked:
        lost = sum(n for _, n in unlinked)
        warnings.append(
            f"{inter_files}: {len(unlinked)} of {len(items)} items have no .link row to a KG "
            f"entity, e.g. {_some([item for item, _ in unlinked])}; RecBole's knowledge-graph "
            f"dataset drops their {lost} of {len(interactions)} interactions")
    return warnings


def _refuse_repeats(link: Path, field: str, column: np.ndarray) -> None:
    """RecBole maps items and entities one to one through ``.link``; a repeated id makes its
    remapping fail with a bare ``KeyError`` deep inside the dataset."""
    seen: dict = {}
    for row, value in enumerate(column.tolist()):
        if value in seen:
            raise AtomicFileError(
                f"{link}:{row + 2}: '{field}' {value!r} is linked a second time (first on line "
                f"{seen[value] + 2}); .link maps each item to one entity and each entity to one item")
        seen[value] = row


def _some(ids: list) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOWN_IDS])
    return shown + (", ..." if len(ids) > _SHOWN_IDS else "")


def _stamp(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


class _Cache:
    """Results keyed by settings, valid while the files keep their size, mtime and inode."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = False
        try:
            self.entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            self.entries = {}

    def get(self, key: str, files: list[Path]) -> dict | None:
        entry = self.entries.get(key)
        if not isinstance(entry, dict) or set(entry.get("files", {})) != {str(p) for p in files}:
            return None
        if any(_stamp(Path(p)) != stamp for p, stamp in entry["files"].items()):
            return None
        return entry["result"]

    def put(self, key: str, files: dict[str, list[int] | None], result: dict) -> None:
        self.entries.pop(key, None)  # re-inserted last: the oldest entries go first
        self.entries[key] = {"files": files, "result": result}
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        fresh = {key: entry for key, entry in self.entries.items()
                 if all(_stamp(Path(p)) == stamp for p, stamp in entry["files"].items())}
        fresh = dict(list(fresh.items())[-_MAX_CACHE_ENTRIES:])
        temp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".atomic_validation.")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"entries": fresh}, out)
            os.replace(temp, self.path)  # readers see the old file or the new one, never half
        except OSError as err:
            getLogger().debug(f"atomic file check cache not written ({err})")
            if temp is not None and os.path.exists(temp):
                os.unlink(temp)

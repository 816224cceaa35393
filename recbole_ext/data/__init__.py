"""Dataset creation with clear errors for missing or malformed files, and plugin dataset classes.

RecBole's ``create_dataset`` silently tries to download any dataset whose atomic files
are missing (there is no network in many research clusters, and a typo in a dataset
name should not trigger a download), and reads the files it finds without checks. Here
the files are checked first: that they exist, then that RecBole will read them as written
(:mod:`recbole_ext.data.validation`). A model listed in
:data:`recbole_ext.registry.PLUGIN_DATASETS` gets its own dataset class. Any other model
chooses a protocol through config: ``labeled_protocol: True`` gives it the labelled
click-through datasets of :mod:`recbole_ext.data.labeled` (KNI's split, used for its
baselines), and a sequential model with ``devooght_protocol: True`` gets
:class:`recbole_ext.data.devooght.DevooghtDataset`.
"""

from __future__ import annotations

from pathlib import Path

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.utils import ModelType

from recbole_ext.data.validation import AtomicFileError, validate_dataset_files
from recbole_ext.registry import get_dataset_class

__all__ = ["AtomicFileError", "DatasetNotFoundError", "check_dataset_files", "create_dataset",
           "data_preparation", "required_files", "validate_dataset_files"]


class DatasetNotFoundError(FileNotFoundError):
    """The atomic files of a dataset are not where the config says."""


def required_files(config) -> list[Path]:
    """Atomic files the config will read: the interaction file(s), plus KG files for KG models."""
    root = Path(config["data_path"])
    name = config["dataset"]
    benchmark = config["benchmark_filename"]
    if benchmark:
        files = [root / f"{name}.{part}.inter" for part in benchmark]
    else:
        files = [root / f"{name}.inter"]
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        files += [root / f"{name}.kg", root / f"{name}.link"]
    return files


def check_dataset_files(config) -> None:
    """Raise :class:`DatasetNotFoundError` naming every missing file and how to create it."""
    missing = [str(p) for p in required_files(config) if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Dataset '{config['dataset']}' not found: missing {', '.join(missing)}. "
            "Convert the raw data with `python -m dataset_atomic <format> --input RAW "
            f"--output dataset/{config['dataset']}` (see dataset_atomic/README.md), or set "
            "`data_path` to the folder that holds the dataset's directory."
        )


def create_dataset(config):
    """RecBole's ``create_dataset`` after checking the files; plugin dataset classes first.

    Raises:
        DatasetNotFoundError: an atomic file is missing.
        AtomicFileError: an atomic file is malformed (``file:line: message``).
    """
    check_dataset_files(config)
    dataset_class = get_dataset_class(config["model"]) or protocol_dataset_class(config)
    validate_dataset_files(config, dataset_class)
    if dataset_class is not None:
        return dataset_class(config)
    return recbole_create_dataset(config)


def protocol_dataset_class(config) -> type | None:
    """The dataset class of the protocol the config asks for, or None for RecBole's choice."""
    if config["labeled_protocol"]:
        from recbole_ext.data.labeled import LabeledDataset, LabeledKGDataset

        return LabeledKGDataset if config["MODEL_TYPE"] == ModelType.KNOWLEDGE else LabeledDataset
    if config["devooght_protocol"] and config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        # any RecBole sequential model (GRU4Rec, SASRec, ...) can be scored on RNNCCE's split
        from recbole_ext.data.devooght import DevooghtDataset

        return DevooghtDataset
    return None


def data_preparation(config, dataset):
    """Split and wrap ``dataset`` into train/valid/test dataloaders.

    A plugin dataset may define ``data_preparation(config)`` for a protocol RecBole's
    splitter cannot express; otherwise RecBole's is used.
    """
    custom = getattr(dataset, "data_preparation", None)
    if callable(custom):
        return custom(config)
    return recbole_data_preparation(config, dataset)

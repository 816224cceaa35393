"""RecBole ``Config`` that also reads recbole-ext's property files.

Precedence, lowest first (each layer overrides the ones before it):

1. RecBole's internal defaults (``overall.yaml``, RecBole's model/dataset yaml, the
   quick-start yaml of the model type);
2. ``properties/init/*.yaml`` (defaults shared by all models: embedding initialisers, data protocols);
3. ``properties/model/<Model>.yaml`` (our model defaults);
4. ``properties/dataset/<dataset>.yaml`` (field mapping of a dataset);
5. ``properties/paper/<preset>.yaml`` (``preset=`` / ``--preset``);
6. the user's config files, in the order given;
7. ``config_dict`` (the CLI's ``--key=value`` pairs arrive here).

Layers 2-6 are passed to RecBole as its ``config_file_list``, so RecBole's own merge
logic is untouched. Unlike RecBole, this Config never reads ``sys.argv`` (the CLI
parses it) and checks every user file and key before anything runs: a malformed yaml
raises :class:`ConfigError` naming file and line, and an unknown key warns with the
file and the closest known keys.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import recbole
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils.argument_list import (
    dataset_arguments,
    evaluation_arguments,
    general_arguments,
    training_arguments,
)

from recbole_ext.model.init import EMBEDDING_INIT_PARAMS
from recbole_ext.params import CORE_PARAMS
from recbole_ext.plugin import register_with_recbole
from recbole_ext.registry import get_model
from recbole_ext.utils import global_rank


def _properties_dir() -> Path:
    """The property files: ``$RECBOLE_EXT_PROPERTIES``, else the copy an installed wheel carries
    (``recbole_ext/properties``), else the repository's top-level ``properties/`` (a source
    checkout or an editable install, where that folder is the only copy)."""
    if os.environ.get("RECBOLE_EXT_PROPERTIES"):
        return Path(os.environ["RECBOLE_EXT_PROPERTIES"])
    packaged = Path(__file__).resolve().parent / "properties"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "properties"


PROPERTIES_DIR = _properties_dir()

# Keys that are set by recbole-ext's runners or RecBole's internals, not by yaml files.
_RUNTIME_KEYS = {
    "model", "dataset", "preset", "local_rank", "world_size", "nproc", "offset", "ip",
    "port", "init_method", "results_path", "trust_legacy_checkpoint", "single_spec", "device",
    "valid_metric_bigger", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type",
    "encoding",  # read by RecBole's Dataset._load_feat, yet in none of its property files
}
_DDP_KEYS = ("local_rank", "world_size", "nproc", "offset", "ip", "port", "init_method")


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message names file/line/key."""


class UnknownConfigKeyWarning(UserWarning):
    """A config key that no RecBole or recbole-ext component reads."""


class _YamlLoader(yaml.SafeLoader):
    """Safe loader that, like RecBole's, reads ``1e-3`` as a float (plain YAML 1.1 does not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_file(path: str | os.PathLike) -> dict:
    """Read a yaml mapping; errors name the file and the line.

    Raises:
        ConfigError: missing file, malformed yaml, or a top level that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: malformed yaml: {problem}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of `key: value` lines, "
                          f"got a {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """Parse a command-line value the way a yaml value would be read (``0.01``, ``[10,20]``, ``None``)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        value = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError:
        return text
    return text if value is None else value


@lru_cache(maxsize=None)
def known_config_keys() -> frozenset[str]:
    """Every key that some RecBole or recbole-ext property file or argument list defines."""
    keys = set(general_arguments + training_arguments + evaluation_arguments + dataset_arguments)
    keys |= _RUNTIME_KEYS
    recbole_props = Path(recbole.__file__).parent / "properties"
    for root in (recbole_props, PROPERTIES_DIR):
        for path in root.rglob("*.yaml"):
            try:
                keys |= set(load_yaml_file(path))
            except ConfigError:
                continue
    return frozenset(keys)


def warn_unknown_keys(config: dict, source: str) -> None:
    """Warn once per key that no component reads, naming ``source`` (a file or 'command line')."""
    known = known_config_keys()
    for key in config:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        warnings.warn(f"{source}: unknown config key '{key}' is not read by RecBole or "
                      f"recbole-ext{hint}", UnknownConfigKeyWarning, stacklevel=3)


def available_presets() -> list[str]:
    return sorted(p.stem for p in (PROPERTIES_DIR / "paper").glob("*.yaml"))


def resolve_preset(preset: str) -> Path:
    """A preset name (``kni-book-crossing``) or a path to a yaml file."""
    as_path = Path(preset)
    if as_path.suffix in {".yaml", ".yml"} and as_path.is_file():
        return as_path
    path = PROPERTIES_DIR / "paper" / f"{preset}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(preset, available_presets(), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown preset '{preset}' (no file {path}).{hint} "
                          f"Available: {', '.join(available_presets()) or 'none'}.")
    return path


class Config(RecBoleConfig):
    """RecBole's Config plus recbole-ext's property layers (see the module docstring).

    Args:
        model: a model name (ours or RecBole's) or a model class; if None, taken from
            ``config_dict``, the config files or the preset, in that order.
        dataset: a dataset name; if None, found the same way as ``model``.
        config_file_list: the user's yaml files (later files win).
        config_dict: key/value overrides; highest precedence.
        preset: a file name under ``properties/paper/`` (without ``.yaml``) or a path.

    Attributes:
        loaded_files: the yaml files merged over RecBole's defaults, lowest first.
        preset: the preset name, or None.
    """

    def __init__(self, model: str | type | None = None, dataset: str | None = None,
                 config_file_list: list[str] | None = None,
                 config_dict: dict | None = None, preset: str | None = None) -> None:
        register_with_recbole()  # RecBole's Config checks `metrics` against its registry
        config_dict = dict(config_dict or {})
        preset = preset or config_dict.pop("preset", None)
        user_files = [str(f) for f in (config_file_list or [])]
        user_layers = [(f, load_yaml_file(f)) for f in user_files]
        preset_path = resolve_preset(preset) if preset else None
        preset_layer = load_yaml_file(preset_path) if preset_path else {}
        for path, layer in user_layers + ([(str(preset_path), preset_layer)] if preset_path else []):
            warn_unknown_keys(layer, path)
        warn_unknown_keys(config_dict, "config_dict/command line")

        search = [config_dict] + [layer for _, layer in reversed(user_layers)] + [preset_layer]
        model = model or _first(search, "model")
        dataset = dataset or _first(search, "dataset")
        if model is None:
            raise ConfigError("No model given: pass --model, or set `model:` in a config file or preset.")
        if dataset is None:
            raise ConfigError("No dataset given: pass --dataset, or set `dataset:` in a config file or preset.")
        model_class = get_model(model) if isinstance(model, str) else model

        self.preset = preset
        self.loaded_files = self._property_files(model_class.__name__, dataset, preset_path) + user_files
        super().__init__(model=model_class, dataset=dataset,
                         config_file_list=self.loaded_files, config_dict=config_dict)
        self.final_config_dict["preset"] = preset

    @staticmethod
    def _property_files(model_name: str, dataset: str, preset_path: Path | None) -> list[str]:
        files = sorted(str(p) for p in (PROPERTIES_DIR / "init").glob("*.yaml"))
        for path in (PROPERTIES_DIR / "model" / f"{model_name}.yaml",
                     PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"):
            if path.is_file():
                load_yaml_file(path)  # fail early, with file and line, on a broken shipped file
                files.append(str(path))
        if preset_path is not None:
            files.append(str(preset_path))
        return files

    def _set_default_parameters(self):
        # checked before RecBole derives anything from the values (its own errors on bad ones are
        # tracebacks from deep inside, or none at all, e.g. for train_batch_size: 0)
        CORE_PARAMS.apply(self.model, self)
        if self["embedding_init"] not in (None, "default"):
            EMBEDDING_INIT_PARAMS.apply("embedding_init", self)
        spec = getattr(self.model_class, "PARAMS", None)
        if spec is not None:
            spec.apply(self.model, self)
        super()._set_default_parameters()

    def _load_config_files(self, file_list):
        merged: dict = {}
        for file in file_list or []:
            merged.update(load_yaml_file(file))
        return merged

    def _load_cmd_line(self):
        # the CLI (recbole_ext.cli) parses the command line and hands overrides in as
        # config_dict; reading sys.argv here would also pick up pytest's or a host
        # program's arguments.
        return {}

    def _init_device(self):
        """RecBole's single-process set-up; for DDP our own, because RecBole's hard-codes nccl, a
        TCP rendezvous and one GPU per local rank (``cuda:<local_rank>``).

        DDP here: gloo on CPU, nccl when every local process has a GPU of its own, gloo when
        processes share a GPU (nccl refuses two ranks on one device); the rendezvous is
        ``init_method`` (``env://`` under torchrun) or ``tcp://<ip>:<port>``; the global rank is
        ``local_rank + offset`` (RecBole's ``--group_offset``), so processes on several machines
        form one group.
        """
        import torch
        import torch.distributed as dist

        cfg = self.final_config_dict
        if "local_rank" not in cfg:
            super()._init_device()
            return
        n_gpus = torch.cuda.device_count() if cfg.get("use_gpu") and torch.cuda.is_available() else 0
        if n_gpus:
            device = torch.device("cuda", cfg["local_rank"] % n_gpus)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        backend = "nccl" if n_gpus and n_gpus >= cfg["nproc"] else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=global_rank(cfg), world_size=cfg["world_size"],
                                    init_method=cfg.get("init_method") or f"tcp://{cfg['ip']}:{cfg['port']}")
        cfg["device"] = device
        cfg["single_spec"] = False
        if global_rank(cfg) != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False

    def external_config(self) -> dict:
        """The merged yaml layers and overrides, enough to rebuild this Config elsewhere."""
        return {k: v for k, v in self.external_config_dict.items() if k not in _DDP_KEYS}


def _first(layers: list[dict], key: str) -> Any:
    for layer in layers:
        if layer.get(key) is not None:
            return layer[key]
    return None


def config_from_checkpoint(ckpt: dict, overrides: dict | None = None):
    """The run's config rebuilt from a loaded checkpoint (ours, or RecBole's pickled Config),
    with ``overrides`` on top (e.g. another evaluation protocol for the same weights).

    Ours records the model, dataset, preset and the run's external config
    (:func:`recbole_ext.checkpoint.trainer_checkpoint`), from which the same layers are rebuilt.
    """
    if isinstance(ckpt.get("config"), dict):
        return Config(model=ckpt["model"], dataset=ckpt["dataset"],
                      config_dict={**ckpt["external_config"], **(overrides or {})},
                      preset=ckpt.get("preset"))
    config = ckpt["config"]
    for key, value in (overrides or {}).items():
        config[key] = value
    return config

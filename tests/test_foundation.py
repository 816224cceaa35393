"""Registry, Config layering, checkpoints and errors of the foundation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_ext import (
    Config,
    get_model,
    get_trainer,
    list_models,
    load_data_and_model,
    run_recbole_ext,
)
from recbole_ext.checkpoint import LegacyCheckpointError, load_checkpoint
from recbole_ext.config import ConfigError, UnknownConfigKeyWarning, parse_value
from recbole_ext.data import DatasetNotFoundError
from recbole_ext.registry import PLUGIN_MODELS, UnknownModelError
from recbole_ext.trainer.mixin import ExtTrainerMixin
from recbole_ext.utils import to_plain

# --- registry ---------------------------------------------------------------------

def test_get_model_falls_back_to_recbole():
    from recbole.model.general_recommender.bpr import BPR

    assert get_model("BPR") is BPR


def test_plugin_models_are_found_first(monkeypatch):
    monkeypatch.setitem(PLUGIN_MODELS, "BPR", "recbole.model.general_recommender.lightgcn:LightGCN")
    assert get_model("BPR").__name__ == "LightGCN"


def test_unknown_model_lists_close_names():
    with pytest.raises(UnknownModelError, match=r"Unknown model 'LightGC'.*Did you mean: LightGCN"):
        get_model("LightGC")
    with pytest.raises(UnknownModelError, match="Did you mean: BPR"):
        get_model("bpr")


def test_list_models_has_families_and_sources():
    rows = {name: (family, source) for name, family, source in list_models()}
    assert rows["BPR"] == ("general", "recbole")
    assert rows["GRU4Rec"] == ("sequential", "recbole")
    assert rows["KGCN"] == ("knowledge", "recbole")
    for name in PLUGIN_MODELS:
        assert rows[name][1] == "recbole-ext"


def test_get_trainer_adds_mixin_to_recbole_trainers():
    from recbole.trainer import KGTrainer, Trainer
    from recbole.utils import ModelType

    trainer = get_trainer(ModelType.GENERAL, "BPR")
    assert issubclass(trainer, Trainer) and issubclass(trainer, ExtTrainerMixin)
    kg_trainer = get_trainer(ModelType.KNOWLEDGE, "KGCN")
    assert issubclass(kg_trainer, KGTrainer) and kg_trainer.__mro__[0] is not KGTrainer
    assert get_trainer(ModelType.GENERAL, "BPR") is trainer  # cached, not rebuilt


# --- config -----------------------------------------------------------------------

@pytest.fixture
def props(tmp_path, monkeypatch):
    """A temporary properties/ tree so precedence can be tested layer by layer."""
    import recbole_ext.config as config_module

    root = tmp_path / "properties"
    for sub in ("model", "dataset", "paper", "init"):
        (root / sub).mkdir(parents=True)
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", root)
    config_module.known_config_keys.cache_clear()
    yield root
    config_module.known_config_keys.cache_clear()


def test_precedence_model_dataset_preset_file_dict(props, tmp_path, tiny_dataset):
    data_path, name = tiny_dataset
    (props / "model" / "BPR.yaml").write_text("embedding_size: 8\nlearning_rate: 0.1\n"
                                              "weight_decay: 0.1\nepochs: 3\nstopping_step: 3\n")
    (props / "dataset" / "tiny.yaml").write_text("learning_rate: 0.2\nweight_decay: 0.2\n"
                                                 "epochs: 4\nstopping_step: 4\n")
    (props / "paper" / "p.yaml").write_text("weight_decay: 0.3\nepochs: 5\nstopping_step: 5\n")
    user = tmp_path / "user.yaml"
    user.write_text("epochs: 6\nstopping_step: 6\n")
    config = Config(model="BPR", dataset=name, preset="p", config_file_list=[str(user)],
                    config_dict={"data_path": data_path, "stopping_step": 7})
    assert config["embedding_size"] == 8      # model yaml beats RecBole's BPR.yaml (64)
    assert config["learning_rate"] == 0.2     # dataset beats model
    assert config["weight_decay"] == 0.3      # preset beats dataset
    assert config["epochs"] == 6              # user file beats preset
    assert config["stopping_step"] == 7       # config_dict beats user file
    assert config["preset"] == "p"
    assert config.loaded_files[-1] == str(user)


def test_model_and_dataset_can_come_from_a_config_file(tmp_path, tiny_dataset):
    data_path, name = tiny_dataset
    user = tmp_path / "run.yaml"
    user.write_text(f"model: BPR\ndataset: {name}\ndata_path: {data_path}\n")
    config = Config(config_file_list=[str(user)])
    assert (config["model"], config["dataset"]) == ("BPR", name)


def test_unknown_key_warns_with_file_and_suggestion(tmp_path, tiny_dataset):
    data_path, name = tiny_dataset
    user = tmp_path / "typo.yaml"
    user.write_text("learning_rat: 0.1\n")
    with pytest.warns(UnknownConfigKeyWarning, match=r"typo.yaml: unknown config key 'learning_rat'.*'learning_rate'"):
        Config(model="BPR", dataset=name, config_file_list=[str(user)], config_dict={"data_path": data_path})


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nmetrics: [Recall\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: malformed yaml"):
        Config(model="BPR", dataset="ml-100k", config_file_list=[str(bad)])


def test_non_mapping_yaml_and_missing_file_are_errors(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml:1: expected a mapping"):
        Config(model="BPR", dataset="ml-100k", config_file_list=[str(listing)])
    with pytest.raises(ConfigError, match="config file not found"):
        Config(model="BPR", dataset="ml-100k", config_file_list=[str(tmp_path / "nope.yaml")])


def test_unknown_preset_lists_available(props):
    (props / "paper" / "kni-book-crossing.yaml").write_text("epochs: 1\n")
    with pytest.raises(ConfigError, match="Unknown preset 'kni-book'.*kni-book-crossing"):
        Config(model="BPR", dataset="ml-100k", preset="kni-book")


def test_config_ignores_sys_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "--epochs=99"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Config(model="BPR", dataset="ml-100k")["epochs"] != 99


def test_parse_value_reads_literals():
    assert parse_value("0.01") == 0.01
    assert parse_value("1e-3") == 0.001
    assert parse_value("[10,20]") == [10, 20]
    assert parse_value("None") is None
    assert parse_value("False") is False
    assert parse_value("{'RS': [0.8, 0.1, 0.1]}") == {"RS": [0.8, 0.1, 0.1]}
    assert parse_value("coarse,fine") == "coarse,fine"
    assert parse_value("leporid") == "leporid"


def test_parameter_spec_message_rules_and_derived_defaults():
    from recbole_ext.params import ParamSpec, Rule, choice, integer

    spec = ParamSpec({"cell": choice("gru", "lstm"), "dim": integer(1), "width": integer(1)},
                     rules=(Rule(("dim", "width"), lambda d, w: d <= w, "dim {dim} must be at most width {width}"),),
                     derived={"width": lambda config: config["dim"] * 2})
    with pytest.raises(ValueError, match=r"The 'cell' parameter of M must be one of \['gru', 'lstm'\]. Got 'rnn' instead."):
        spec.apply("M", {"cell": "rnn", "dim": 4, "width": 4})
    with pytest.raises(ValueError, match="The 'dim' parameter of M must be a positive int. Got 0 instead"):
        spec.apply("M", {"cell": "gru", "dim": 0, "width": 4})
    with pytest.raises(ValueError, match="^M: dim 5 must be at most width 4$"):
        spec.apply("M", {"cell": "gru", "dim": 5, "width": 4})
    config = {"cell": "gru", "dim": 3, "width": None}
    spec.apply("M", config)
    assert config["width"] == 6  # unset: follows dim


# --- data -------------------------------------------------------------------------

def test_missing_dataset_is_a_clear_error_not_a_download(make_config):
    with pytest.raises(DatasetNotFoundError, match=r"Dataset 'nope' not found: missing .*nope.inter.*dataset_atomic"):
        run_recbole_ext(config_dict=make_config(model="BPR", dataset="nope"))


# --- checkpoints ------------------------------------------------------------------

def test_bpr_run_checkpoint_is_weights_only_and_reloads(make_config):
    result = run_recbole_ext(config_dict=make_config(model="BPR"))
    ckpt = torch.load(result["checkpoint"], weights_only=True)
    assert ckpt["format"] == "recbole-ext/1" and ckpt["model"] == "BPR"
    assert isinstance(ckpt["config"], dict) and ckpt["config"]["MODEL_TYPE"] == "GENERAL"
    config, model, *_ = load_data_and_model(result["checkpoint"])
    assert config["model"] == "BPR"
    torch.testing.assert_close(model.state_dict()["user_embedding.weight"],
                               ckpt["state_dict"]["user_embedding.weight"])


@pytest.mark.parametrize("model", ["ItemKNN", "EASE"])
def test_memory_based_model_state_survives_a_weights_only_checkpoint(make_config, model):
    # ItemKNN keeps a scipy sparse matrix, EASE a numpy array, outside the state_dict.
    result = run_recbole_ext(config_dict=make_config(model=model, epochs=1))
    assert result["test_result"]
    torch.load(result["checkpoint"], weights_only=True)
    config, reloaded, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, reloaded)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])


def test_packed_other_parameter_round_trip():
    import numpy as np
    import scipy.sparse as sp

    from recbole_ext.checkpoint import pack_other_parameter, unpack_other_parameter

    csr = sp.random(5, 4, density=0.4, format="csr", random_state=0)
    array = np.arange(6.0).reshape(2, 3)
    back = unpack_other_parameter(pack_other_parameter({"w": csr, "a": array, "n": 3, "t": torch.ones(2)}))
    assert back["w"].format == "csr" and (back["w"] != csr).nnz == 0
    np.testing.assert_array_equal(back["a"], array)
    assert back["n"] == 3 and torch.equal(back["t"], torch.ones(2))


def test_defaultdict_other_parameter_survives_a_weights_only_load(tmp_path):
    from collections import defaultdict

    from recbole_ext.checkpoint import pack_other_parameter, unpack_other_parameter

    ripple = defaultdict(list, {3: [(torch.arange(2), torch.zeros(2, dtype=torch.long))]})
    path = tmp_path / "other.pth"
    torch.save({"other_parameter": pack_other_parameter({"ripple_set": ripple})}, path)
    back = unpack_other_parameter(load_checkpoint(path)["other_parameter"])["ripple_set"]
    assert isinstance(back, defaultdict) and back.default_factory is list and back[7] == []
    assert torch.equal(back[3][0][0], torch.arange(2))


def test_checkpoint_names_are_unique_per_run(make_config):
    first = run_recbole_ext(config_dict=make_config(model="BPR"))
    second = run_recbole_ext(config_dict=make_config(model="BPR"))
    assert first["checkpoint"] != second["checkpoint"]


def test_legacy_recbole_checkpoint_needs_trust(tmp_path):
    from recbole.config import Config as RecBoleConfig

    legacy = tmp_path / "legacy.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = RecBoleConfig(model="BPR", dataset="ml-100k")
    torch.save({"config": config, "epoch": 0}, legacy, pickle_protocol=4)
    with pytest.raises(LegacyCheckpointError, match="trust-legacy-checkpoint"):
        load_checkpoint(legacy)
    assert load_checkpoint(legacy, trust_legacy=True)["epoch"] == 0


def test_to_plain_converts_config_values():
    from recbole.utils import ModelType

    plain = to_plain({"t": ModelType.GENERAL, "d": torch.device("cpu"), "l": (1, 2), 3: None})
    assert plain == {"t": "GENERAL", "d": "cpu", "l": [1, 2], "3": None}
    # numpy.float64 is a float subclass, yet torch.load(weights_only=True) refuses it
    assert type(to_plain(np.float64(0.5))) is float and type(to_plain(np.int64(3))) is int


def test_results_json_has_timings_and_config(make_config, tmp_path):
    import json

    out = tmp_path / "r" / "res.json"
    result = run_recbole_ext(config_dict=make_config(model="BPR", epochs=2), results_path=str(out))
    data = json.loads(out.read_text())
    assert data["test_result"] == result["test_result"]
    assert data["timings"]["epochs_trained"] == 2
    assert len(data["timings"]["train_epoch_seconds"]) == 2
    # one validation per epoch (eval_step 1): the epoch count and the metrics of each pass
    assert [epoch for epoch, _ in data["valid_history"]] == [1, 2]
    assert set(data["valid_history"][-1][1]) == set(data["best_valid_result"])
    assert data["config"]["epochs"] == 2 and data["n_params"] > 0


def test_runs_started_in_the_same_second_write_their_own_results_files(make_config):
    from unittest import mock

    config = make_config(model="BPR", epochs=1)
    with mock.patch("recbole_ext.trainer.mixin.get_local_time", return_value="Dec-04-2026_16-00-00"):
        first, second = run_recbole_ext(config_dict=config), run_recbole_ext(config_dict=config)
    assert first["results_file"] != second["results_file"]
    files = sorted(Path(config["checkpoint_dir"], "results").glob("*.json"))
    assert [str(f) for f in files] == sorted([first["results_file"], second["results_file"]])
    for result in (first, second):  # results file and checkpoint carry the same run token
        assert Path(result["results_file"]).stem == Path(result["checkpoint"]).stem

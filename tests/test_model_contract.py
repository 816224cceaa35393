"""The model contract, run on every registered plugin model.

A model is covered the day it is added to ``PLUGIN_MODELS``: it must train one epoch
on the tiny dataset through our pipeline, evaluate with its family's metrics, survive
a checkpoint round trip with identical predictions, give identical results for the
same seed, and resume training from a checkpoint.
"""

from __future__ import annotations

import math

import pytest
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType

from contract_settings import MODEL_OVERRIDES
from recbole_ext import prepare_run
from recbole_ext.checkpoint import load_checkpoint
from recbole_ext.config import config_from_checkpoint
from recbole_ext import get_model, load_data_and_model, run_recbole_ext
from recbole_ext.registry import PLUGIN_MODELS

RANKING = {"metrics": ["Recall", "NDCG"], "topk": [5], "valid_metric": "NDCG@5"}
FAMILY_DEFAULTS = {
    ModelType.GENERAL: dict(RANKING),
    ModelType.SEQUENTIAL: dict(RANKING, load_col={"inter": ["user_id", "item_id", "timestamp"]},
                               train_neg_sample_args=None, MAX_ITEM_LIST_LENGTH=10),
    ModelType.KNOWLEDGE: dict(RANKING, load_col={
        "inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
        "link": ["item_id", "entity_id"]}),
}


def contract_config(make_config, name: str, **extra) -> dict:
    model_type = get_model(name).type
    config = make_config(model=name, **FAMILY_DEFAULTS.get(model_type, RANKING))
    config.update(MODEL_OVERRIDES.get(name, {}))
    config.update(extra)
    return config


def finite_metrics(result: dict) -> None:
    assert result, "evaluation returned no metrics"
    for key, value in result.items():
        assert isinstance(value, float) and math.isfinite(value), f"{key}={value!r}"


def first_eval_predictions(model, eval_data) -> torch.Tensor:
    batch = next(iter(eval_data))[0].to(model.device)
    torch.manual_seed(0)
    with torch.no_grad():
        model.eval()
        if isinstance(eval_data, FullSortEvalDataLoader):
            return model.full_sort_predict(batch)
        return model.predict(batch)


def train_pipeline(config_dict: dict):
    run = prepare_run(config_dict=config_dict)
    return run.config, run.model, run.trainer, (run.train_data, run.valid_data, run.test_data)


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_train_evaluate_and_seed_determinism(name, make_config):
    config = contract_config(make_config, name)
    first = run_recbole_ext(config_dict=config)
    finite_metrics(first["test_result"])
    expected = {m.lower() for m in config["metrics"]}
    got = {key.split("@")[0] for key in first["test_result"]}
    assert expected <= got, f"missing metrics {expected - got}"
    assert first["n_params"] > 0
    second = run_recbole_ext(config_dict=config)
    assert second["test_result"] == first["test_result"]
    assert second["best_valid_result"] == first["best_valid_result"]


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_checkpoint_round_trip_and_resume(name, make_config):
    config_dict = contract_config(make_config, name)
    config, model, trainer, (train_data, valid_data, test_data) = train_pipeline(config_dict)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    checkpoint = trainer.saved_model_file
    trainer.load_best_model()
    expected = first_eval_predictions(model, test_data)

    _, reloaded, _, _, _, reloaded_test = load_data_and_model(checkpoint)
    torch.testing.assert_close(first_eval_predictions(reloaded, reloaded_test), expected)
    if model.device.type != "cpu":  # written on a GPU (make gpu-check): the CPU reads it alike
        ckpt = load_checkpoint(checkpoint, "cpu")
        on_cpu = prepare_run(config=config_from_checkpoint(ckpt, {"use_gpu": False}), checkpoint=ckpt,
                             with_trainer=False)
        assert on_cpu.model.device.type == "cpu"
        # KNI samples neighbours: other random streams on the two devices, so an average, not a copy
        tolerance = {"rtol": 0.05, "atol": 0.02} if name in ("KNI", "NI") else {"rtol": 1e-4, "atol": 1e-5}
        torch.testing.assert_close(first_eval_predictions(on_cpu.model, on_cpu.test_data), expected.cpu(),
                                   **tolerance)

    config_dict["epochs"] = 2
    config, model, resumed, (train_data, valid_data, _) = train_pipeline(config_dict)
    resumed.resume_checkpoint(checkpoint)
    assert resumed.start_epoch == 1
    restored = load_checkpoint(checkpoint, "cpu")["history"]  # before the resumed run overwrites it
    resumed.fit(train_data, valid_data, saved=True, show_progress=False)
    # the checkpoint carries the history up to its epoch; only the remaining epoch is trained
    assert resumed.epoch_seconds[:-1] == restored["epoch_seconds"], "resume should train only the remaining epoch"
    assert [list(entry) for entry in resumed.valid_history[:len(restored["valid_history"])]] == restored["valid_history"]

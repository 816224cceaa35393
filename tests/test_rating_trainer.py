"""RatingTrainer's weight averaging: the average equals the hand-folded EMA of the trained
weights; validation and the checkpoint see the average; training and resuming continue from
the trained weights."""

from __future__ import annotations

import pytest
import torch

from recbole_ext.registry import get_trainer
from tests.test_nrp import pipeline

DECAY = 0.5


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def assert_weights(model: torch.nn.Module, expected: list[torch.Tensor]) -> None:
    for weight, want in zip(snapshot(model), expected):
        torch.testing.assert_close(weight, want)


@pytest.fixture
def averaged(make_config):
    config, _, model, (train, valid, _) = pipeline(make_config, "NRP", learner="adam", learning_rate=1.0e-3,
                                                   weight_averaging=DECAY, use_side_info=False)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return config, model, trainer, train, valid


def test_average_is_the_ema_of_every_step_and_validation_uses_it(averaged):
    _, model, trainer, train, valid = averaged
    expected = snapshot(model)
    trained: list[list[torch.Tensor]] = []
    trainer.optimizer.register_step_post_hook(lambda *_: trained.append(snapshot(model)))
    trainer._train_epoch(train, 0)
    assert len(trained) > 2
    for weights in trained:
        expected = [DECAY * a + (1 - DECAY) * w for a, w in zip(expected, weights)]
    assert_weights(model, trained[-1])  # training leaves the trained weights in the model
    trainer._valid_epoch(valid)
    assert_weights(model, expected)
    trainer._save_checkpoint(0, verbose=False)
    saved = torch.load(trainer.saved_model_file, weights_only=False)["state_dict"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, want in zip(names, expected):
        torch.testing.assert_close(saved[name], want)


def test_training_and_resuming_continue_from_the_trained_weights(averaged, make_config):
    config, model, trainer, train, valid = averaged
    trainer._train_epoch(train, 0)
    trained = snapshot(model)
    trainer._valid_epoch(valid)
    trainer._save_checkpoint(0, verbose=False)
    seen: list[list[torch.Tensor]] = []
    hook = trainer.optimizer.register_step_pre_hook(lambda *_: seen.append(snapshot(model)) if not seen else None)
    trainer._train_epoch(train, 1)
    hook.remove()
    for weight, want in zip(seen[0], trained):
        torch.testing.assert_close(weight, want)

    _, _, fresh_model, _ = pipeline(make_config, "NRP", learner="adam", learning_rate=1.0e-3,
                                    weight_averaging=DECAY, use_side_info=False)
    resumed = get_trainer(config["MODEL_TYPE"], config["model"])(config, fresh_model)
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.weight_average.in_use
    resumed.weight_average.use_trained()
    assert_weights(fresh_model, trained)


def test_without_averaging_nothing_is_swapped(make_config):
    config, _, model, (train, valid, _) = pipeline(make_config, "NRP", use_side_info=False)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert trainer.weight_average is None
    trainer._train_epoch(train, 0)
    trained = snapshot(model)
    trainer._valid_epoch(valid)
    assert_weights(model, trained)


@pytest.mark.parametrize("value", [1.0, -0.1, "strong"])
def test_bad_decay_is_named(make_config, value):
    with pytest.raises(ValueError, match=r"'weight_averaging' parameter of NRP must be a float in \[0, 1\)"):
        pipeline(make_config, "NRP", use_side_info=False, weight_averaging=value)

"""NRP family: leakage-free rating inputs, shapes, side-information checks, learning on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recbole.utils import init_seed

from recbole_ext import prepare_run
from recbole_ext import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.model.general_recommender._rating_encoders import (
    FirstLayer,
    SparseRatingRows,
    observed_mse,
)
from recbole_ext.quick_start import build_model
from recbole_ext.registry import get_trainer

MODELS = ["NRP", "NRPaSDAE", "NRPDHA", "ASDAE", "DHA", "BiasedMF"]
TINY = {
    "load_col": {"inter": ["user_id", "item_id", "rating"],
                 "user": ["user_id", "age", "gender", "occupation", "zip_code"],
                 "item": ["item_id", "title", "genre"]},
    "item_side_fields": ["title", "genre"], "encoder_layers": [16, 8], "prediction_layers": [8, 1],
    "embedding_size": 8,
}


def pipeline(make_config, model: str, **overrides):
    run = prepare_run(config_dict=make_config(model=model, **{**TINY, **overrides}), with_trainer=False)
    return run.config, run.dataset, run.model, (run.train_data, run.valid_data, run.test_data)


def test_sparse_rows_gather_matches_dense():
    dense = np.array([[0, 3, 0, 5], [0, 0, 0, 0], [1, 0, 2, 0]], dtype=np.float32)
    rows = SparseRatingRows(sp.csr_matrix(dense))
    ids = torch.tensor([2, 0, 1, 2])
    torch.testing.assert_close(rows(ids), torch.from_numpy(dense[[2, 0, 1, 2]]))
    # the item side is the transpose: column 3 holds user 0's rating 5
    cols = SparseRatingRows(sp.csr_matrix(dense).T)
    torch.testing.assert_close(cols(torch.tensor([3])), torch.tensor([[5.0, 0.0, 0.0]]))


def test_token_first_layer_equals_dense_layer_on_multi_hot():
    from recbole.utils import FeatureType

    layer = FirstLayer(FeatureType.TOKEN_SEQ, width=5, out_features=3)
    tokens = torch.tensor([[2, 4, 4, 0], [1, 0, 0, 0]])  # 4 repeated, 0 padding
    multi_hot = torch.tensor([[0, 0, 1, 0, 1], [0, 1, 0, 0, 0]], dtype=torch.float)
    expected = multi_hot @ layer.bag.weight + layer.bias
    torch.testing.assert_close(layer(tokens), expected)


def test_rating_first_layer_equals_dense_layer_on_the_rating_vector():
    dense = np.array([[0, 3, 0, 5], [0, 0, 0, 0], [1, 0, 2, 0]], dtype=np.float32)
    rows = SparseRatingRows(sp.csr_matrix(dense))
    layer = FirstLayer(None, width=4, out_features=3)
    ids = torch.tensor([2, 1, 0])
    expected = torch.from_numpy(dense[[2, 1, 0]]) @ layer.bag.weight + layer.bias
    torch.testing.assert_close(layer(rows.gather(ids)), expected)
    # masking noise drops single ratings: keep weights follow the gathered entries (2, 1, 3, 5)
    keep = torch.tensor([1.0, 0.0, 0.0, 1.0])
    masked = dense[[2, 1, 0]].copy()
    masked[0, 2] = masked[2, 1] = 0
    torch.testing.assert_close(layer(rows.gather(ids), keep), torch.from_numpy(masked) @ layer.bag.weight + layer.bias)


def test_observed_mse_equals_dense_reconstruction_masked_to_known_ratings():
    dense = torch.tensor([[4.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    rows = SparseRatingRows(sp.csr_matrix(dense.numpy()))
    output = torch.nn.Linear(2, 3)
    hidden = torch.randn(3, 2)
    reconstruction = output(hidden)
    mask = dense != 0
    expected = ((reconstruction - dense) ** 2 * mask).sum() / mask.sum()
    torch.testing.assert_close(observed_mse(hidden, output, rows.gather(torch.arange(3))), expected)
    assert observed_mse(hidden[1:2], output, rows.gather(torch.tensor([1]))).item() == 0.0


@pytest.mark.parametrize("model_name", ["NRP", "NRPaSDAE", "DHA"])
def test_rating_inputs_come_from_the_training_split_only(make_config, model_name):
    config, dataset, model, (train, valid, test) = pipeline(make_config, model_name)
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    test_inter = test._dataset.inter_feat
    user, item = int(test_inter[uid][0]), int(test_inter[iid][0])
    train_inter = train._dataset.inter_feat
    user_rows = model.user_tower.rows(torch.tensor([user]))[0]
    # the training row equals the user's training ratings and nothing else
    mask = train_inter[uid] == user
    expected = torch.zeros(model.n_items)
    expected[train_inter[iid][mask]] = train_inter["rating"][mask]
    torch.testing.assert_close(user_rows, expected)
    assert user_rows[item] == 0, "a test rating leaked into the user's input vector"

    # rebuild everything with that test rating changed: the model's input is unchanged
    init_seed(config["seed"], config["reproducibility"])
    changed = create_dataset(config)
    frame = changed.inter_feat
    row = (frame[uid] == user) & (frame[iid] == item)
    old_rating = float(frame.loc[row, "rating"].iloc[0])
    frame.loc[row, "rating"] = 1.0 if old_rating != 1.0 else 5.0
    train2, _, test2 = data_preparation(config, changed)
    inter2 = test2._dataset.inter_feat
    in_test = (inter2[uid] == user) & (inter2[iid] == item)
    assert float(inter2["rating"][in_test][0]) != old_rating, "the changed rating should sit in the test split"
    rebuilt = build_model(config, train2._dataset)
    torch.testing.assert_close(rebuilt.user_tower.rows(torch.tensor([user]))[0], user_rows)


@pytest.mark.parametrize("model_name", MODELS)
def test_predict_and_full_sort_shapes_agree(make_config, model_name):
    config, _, model, (_, _, test) = pipeline(make_config, model_name)
    model.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        scores = model.predict(batch)
        full = model.full_sort_predict(batch).reshape(len(batch), model.n_items)
    assert scores.shape == (len(batch),)
    rows = torch.arange(len(batch))
    torch.testing.assert_close(full[rows, batch[config["ITEM_ID_FIELD"]]], scores, rtol=1e-4, atol=1e-4)


def test_nrp_representation_width_and_parameter_count(make_config):
    _, dataset, model, _ = pipeline(make_config, "NRP", use_id_embedding=True, id_embedding_size=4)
    # user: ratings + 4 fields + id -> 5 * 8 + 4; item: ratings + 2 fields + id -> 3 * 8 + 4
    assert model.user_tower.out_features == 44
    assert model.item_tower.out_features == 28
    z = model.user_tower(torch.tensor([1, 2, 3]))
    assert z.shape == (3, 44)
    assert model.predictor[0].in_features == 72
    _, _, plain, _ = pipeline(make_config, "NRP", use_side_info=False)
    assert plain.user_tower.out_features == 8 and len(plain.user_tower.side_encoders) == 0


def test_l2_row_norm_divides_each_rating_vector_by_its_length():
    dense = np.array([[0, 3, 0, 4], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32)
    rows = SparseRatingRows(sp.csr_matrix(dense), norm="l2")
    expected = torch.tensor([[0, 0.6, 0, 0.8], [0, 0, 0, 0], [1, 0, 0, 0]])
    torch.testing.assert_close(rows(torch.arange(3)), expected)
    with pytest.raises(ValueError, match="norm must be 'none' or 'l2'"):
        SparseRatingRows(sp.csr_matrix(dense), norm="max")


def test_mask_target_rating_hides_exactly_the_predicted_rating(make_config):
    config, _, model, (train, _, _) = pipeline(make_config, "NRP", use_side_info=False, mask_target_rating=True)
    batch = next(iter(train))
    user, item = batch[config["USER_ID_FIELD"]][:4], batch[config["ITEM_ID_FIELD"]][:4]
    first = model.user_tower.rating_encoder.first
    # the user's input with R_jk removed, through the same first layer
    dense = model.user_tower.rows(user)
    dense[torch.arange(4), item] = 0.0
    expected = dense @ first.bag.weight + first.bias
    ratings = model.user_tower.rows.gather(user)
    keep = (ratings.cols != item[ratings.rows]).float()
    assert int((keep == 0).sum()) == 4, "each training pair's own rating is in its training row once"
    torch.testing.assert_close(first(ratings, keep), expected)
    model.eval()
    with torch.no_grad():
        hidden = model.forward(user, item, hide_target=True)
        shown = model.forward(user, item)
        manual = model.predictor(torch.cat([model.user_tower(user, item), model.item_tower(item, user)], 1))
    torch.testing.assert_close(hidden, manual.squeeze(-1))
    assert not torch.allclose(hidden, shown), "hiding the target must change the inputs"
    model.train()
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_rating_input_dropout_drops_entries_in_training_only(make_config):
    _, _, model, (train, _, _) = pipeline(make_config, "NRP", use_side_info=False, rating_input_dropout=0.25)
    tower = model.user_tower
    seen = []
    tower.rating_encoder.first.register_forward_hook(lambda _m, args, _out: seen.append(args))
    users = torch.arange(1, model.n_users).repeat(40)
    tower(users)
    ratings, keep = seen[-1]
    torch.testing.assert_close(torch.unique(keep), torch.tensor([0.0, 1.0 / 0.75]))
    assert abs(float((keep == 0).float().mean()) - 0.25) < 0.02
    model.eval()
    tower(users)
    assert seen[-1][1] is None, "evaluation sees the whole rating vector"
    with pytest.raises(ValueError, match="'rating_input_dropout' parameter of NRP"):
        pipeline(make_config, "NRP", rating_input_dropout=1.0)


def test_clip_predictions_bounds_predictions_to_the_training_ratings(make_config):
    _, _, model, (train, _, _) = pipeline(make_config, "NRP", clip_predictions=True)
    assert model.rating_range == (1.0, 5.0)
    with torch.no_grad():
        model.predictor[-1].bias.fill_(100.0)
    model.eval()
    batch = next(iter(train))
    with torch.no_grad():
        assert torch.all(model.predict(batch) == 5.0)
        assert torch.all(model.full_sort_predict(batch) == 5.0)
        assert torch.all(model.forward(batch["user_id"], batch["item_id"]) > 5.0), "the loss sees the raw output"


@pytest.mark.parametrize("model_name", ["NRP", "NRPDHA", "ASDAE"])
def test_missing_side_field_is_named(make_config, model_name):
    with pytest.raises(ValueError, match="'release_year'.*load_col\\['item'\\]"):
        pipeline(make_config, model_name, item_side_fields=["title", "release_year"])


def test_normalised_ratings_are_refused(make_config):
    with pytest.raises(ValueError, match="normalize_all"):
        pipeline(make_config, "NRP", normalize_all=True)


@pytest.mark.parametrize(("key", "value"), [("activation", "gelu"), ("prediction_layers", [8, 2]),
                                            ("encoder_layers", []), ("rating_input_norm", "max"),
                                            ("mask_target_rating", "yes")])
def test_bad_hyper_parameters_raise(make_config, key, value):
    with pytest.raises(ValueError, match=f"'{key}' parameter of NRP"):
        pipeline(make_config, "NRP", **{key: value})


@pytest.mark.parametrize("model_name", MODELS)
def test_training_loss_decreases(make_config, model_name):
    # MF starts from near-zero factors and needs a larger step to leave the global mean
    rate = 1.0e-1 if model_name == "BiasedMF" else 1.0e-2
    overrides = {"learner": "adam", "learning_rate": rate, "weight_decay": 0.0, "train_batch_size": 128}
    config, _, model, (train, _, _) = pipeline(make_config, model_name, epochs=4, **overrides)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    losses = [trainer._train_epoch(train, epoch) for epoch in range(4)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_alternating_trainer_moves_mf_factors_only_in_the_mf_step(make_config):
    config, _, model, (train, _, _) = pipeline(make_config, "ASDAE")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(model.user_factors.weight) not in optimised
    assert id(model.item_factors.weight) not in optimised
    assert len(optimised) == len(list(model.parameters())) - 2
    before = model.user_factors.weight.detach().clone()
    trainer._train_epoch(train, 0)
    assert not torch.equal(before, model.user_factors.weight)


@pytest.mark.parametrize(("preset", "model", "learner", "rate", "layers"), [
    ("nrp-ml-100k", "NRP", "rmsprop", 1.0e-3, [500, 200, 100]),
    ("nrp-ml-100k-averaged", "NRP", "rmsprop", 5.0e-4, [500, 200, 100]),
    ("nrp-ml-1m", "NRP", "sgd", 5.0e-4, [1000, 500, 300, 100]),
    ("nrp-ml-1m-nrpasdae", "NRPaSDAE", "rmsprop", 1.0e-3, [1000, 500, 300, 100]),
    ("nrp-ml-1m-nrpdha", "NRPDHA", "rmsprop", 1.0e-3, [1000, 500, 300, 100]),
    ("nrp-ml-1m-asdae", "ASDAE", "rmsprop", 1.0e-3, [1000, 500, 300, 100]),
    ("nrp-ml-1m-dha", "DHA", "rmsprop", 1.0e-3, [1000, 500, 300, 100]),
    ("nrp-ml-1m-mf", "BiasedMF", "sgd", 0.1, None),
])
def test_presets_carry_table6_and_only_known_keys(preset, model, learner, rate, layers):
    import warnings

    from recbole_ext.config import UnknownConfigKeyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownConfigKeyWarning)
        config = Config(preset=preset)
    assert (config["model"], config["learner"], config["learning_rate"]) == (model, learner, rate)
    assert config["encoder_layers"] == layers
    assert config["normalize_all"] is False and config["LABEL_FIELD"] == "rating"
    assert config["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]}


def test_ml100k_preset_uses_each_model_yaml_for_table6():
    # the ml-100k rows of Table 6 live in the model yamls, so one preset serves the family
    config = Config(model="DHA", preset="nrp-ml-100k")
    assert (config["learner"], config["learning_rate"], config["weight_decay"], config["activation"]) == (
        "sgd", 0.1, 1.0e-5, "tanh")


def test_rmsprop_takes_keras_defaults_from_config(make_config):
    config, _, model, _ = pipeline(make_config, "NRP", learner="rmsprop", rmsprop_rho=0.9, rmsprop_eps=1.0e-7)
    optimizer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).optimizer
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert (optimizer.defaults["alpha"], optimizer.defaults["eps"]) == (0.9, 1.0e-7)
    config, _, model, _ = pipeline(make_config, "ASDAE", learner="rmsprop", rmsprop_rho=0.8, rmsprop_eps=None)
    optimizer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).optimizer
    assert (optimizer.defaults["alpha"], optimizer.defaults["eps"]) == (0.8, 1.0e-8)
    assert id(model.user_factors.weight) not in {id(p) for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("model_name", ["ASDAE", "DHA"])
def test_mf_terms_fit_training_ratings_well_below_the_constant_predictor(make_config, model_name):
    # Eq. (1) baselines with their default U,V step (per-rating SGD around the mean rating):
    # with a batch-mean step from N(0, 0.01) factors U V^T stayed near zero for epochs
    config, _, model, (train, _, _) = pipeline(make_config, model_name, epochs=8, train_batch_size=64)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    ratings = train._dataset.inter_feat[config["LABEL_FIELD"]].float()
    constant_rmse = ratings.std(unbiased=False).item()
    for epoch in range(8):
        trainer._train_epoch(train, epoch)
    model.eval()
    with torch.no_grad():
        predicted = model.predict(train._dataset.inter_feat)
    train_rmse = (predicted - ratings).pow(2).mean().sqrt().item()
    assert train_rmse < 0.6 * constant_rmse, (train_rmse, constant_rmse)

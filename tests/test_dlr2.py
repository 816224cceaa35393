"""DLR2: state construction, shapes, losses by hand, vectorised ranking, training, trainer."""

from __future__ import annotations

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_ext import prepare_run
from recbole_ext.model.sequential_recommender.dlr2 import ResidualStateEncoder
from recbole_ext.registry import get_trainer

@pytest.fixture(autouse=True)
def _one_thread():
    """oneDNN convolutions spin between threads; on an oversubscribed CPU two threads make
    a tiny conv ~50x slower than one (measured 37 ms vs 0.7 ms), so these tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = dict(model="DLR2", embedding_size=8, embedding_init_dim=8, dlr2_channels=[4, 8],
             dlr2_hidden_size=[16, 8], train_batch_size=64)


def build(make_config, **overrides):
    run = prepare_run(config_dict=make_config(**dict(SMALL, **overrides)), with_trainer=False)
    return run.config, run.train_data, run.model


def user_histories(train):
    """{user: items in time order} from the training split, computed independently."""
    users = train.inter_feat["user_id"].tolist()
    items = train.inter_feat["item_id"].tolist()
    times = train.inter_feat["timestamp"].tolist()
    histories: dict[int, list] = {}
    for t, u, i in sorted(zip(times, users, items)):
        histories.setdefault(u, []).append(i)
    return histories


def test_states_are_the_previous_training_items(make_config):
    _, train_data, model = build(make_config, embedding_init="default")
    histories = user_histories(train_data._dataset)
    user = max(histories, key=lambda u: len(histories[u]))
    seq = histories[user]
    users = torch.full((len(seq),), user)
    got = model.training_state_items(users, torch.tensor(seq))
    for k in range(len(seq)):
        window = seq[max(0, k - 5):k]
        assert got[k].tolist() == [0] * (5 - len(window)) + window
    for u, items in histories.items():
        tail = items[-5:]
        assert model.last_items[u].tolist() == [0] * (5 - len(tail)) + tail
    with pytest.raises(KeyError, match="not in the training split"):
        unseen = next(i for i in range(1, model.n_items) if i not in seq)
        model.training_state_items(torch.tensor([user]), torch.tensor([unseen]))


def test_encoder_shapes():
    encoder = ResidualStateEncoder(rows=6, dim=64)
    assert encoder.project.in_features == 128 * 3 * 32  # official 128*(state_num-2)*d/2
    assert encoder(torch.randn(4, 6, 64)).shape == (4, 64)
    odd = ResidualStateEncoder(rows=4, dim=9, channels=(2, 3))
    assert odd.project.in_features == 3 * 2 * 5
    assert odd(torch.randn(2, 4, 9)).shape == (2, 9)


def test_losses_match_the_formulas(make_config):
    _, train_data, model = build(make_config, embedding_init="default")
    batch = next(iter(train_data)).to(model.device)
    critic_loss, actor_loss = model.calculate_loss(batch)
    assert critic_loss.shape == () and actor_loss.shape == ()
    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    state = model.state(user, model.training_state_items(user, pos))
    assert state.shape == (len(user), 8)
    c_pos = model.critic(torch.cat([state, model.item_embedding(pos)], 1)).squeeze(1)
    c_neg = model.critic(torch.cat([state, model.item_embedding(neg)], 1)).squeeze(1)
    expected_critic = torch.mean(c_pos ** 2 + torch.clamp(0.5 - c_neg, min=0) ** 2)
    action = torch.tanh(model.actor(state))
    d_pos = ((action - model.item_embedding(pos)) ** 2).mean(1)
    d_neg = ((action - model.item_embedding(neg)) ** 2).mean(1)
    expected_actor = torch.mean(torch.clamp(d_pos - d_neg + 0.5, min=0))
    torch.testing.assert_close(critic_loss, expected_critic)
    torch.testing.assert_close(actor_loss, expected_actor)


@pytest.mark.parametrize("score", ["critic", "actor"])
def test_full_sort_equals_pairwise_predict(make_config, score):
    _, _, model = build(make_config, embedding_init="default", dlr2_score=score, dlr2_eval_pairs=50)
    model.eval()
    users = torch.tensor([1, 2, 3])
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({"user_id": users})).view(3, model.n_items)
        items = torch.arange(model.n_items)
        pairs = Interaction({"user_id": users.repeat_interleave(model.n_items), "item_id": items.repeat(3)})
        pairwise = model.predict(pairs).view(3, model.n_items)
    torch.testing.assert_close(full, pairwise, rtol=1e-5, atol=1e-5)


def test_loss_decreases_on_a_fixed_batch(make_config):
    torch.manual_seed(0)
    _, train_data, model = build(make_config, embedding_init="default")
    batch = next(iter(train_data)).to(model.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = sum(model.calculate_loss(batch))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_leporid_init_is_the_default_and_frozen(make_config, tmp_path):
    config, _, model = build(make_config, embedding_init_cache_dir=str(tmp_path / "cache"))
    assert config["embedding_init"] == "leporid" and config["embedding_init_freeze"] is True
    assert not model.user_embedding.weight.requires_grad and not model.item_embedding.weight.requires_grad
    assert model.item_embedding.weight[0].abs().sum() == 0  # padding item
    columns = model.item_embedding.weight[1:]
    assert columns.std(dim=0, unbiased=False).mean().item() == pytest.approx(1.0, abs=0.1)
    _, _, tuned = build(make_config, embedding_init_freeze=False, embedding_init_cache_dir=None)
    assert tuned.user_embedding.weight.requires_grad


def test_invalid_scorer_is_rejected(make_config):
    with pytest.raises(ValueError, match=r"'dlr2_score' parameter of DLR2 must be one of \['actor', 'critic'\]"):
        build(make_config, embedding_init="default", dlr2_score="both")


def test_trainer_anneals_and_checkpoints_the_schedule(make_config):
    config, train_data, model = build(make_config, embedding_init="default", epochs=4)
    trainer = get_trainer(config["MODEL_TYPE"], "DLR2")(config, model)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    trainer._train_epoch(train_data, 0)
    # cosine annealing, T_max = 4 epochs: lr_1 = 1e-3 * (1 + cos(pi / 4)) / 2
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 + 2 ** -0.5) / 2)
    state = trainer.extra_checkpoint_state()
    fresh = get_trainer(config["MODEL_TYPE"], "DLR2")(config, model)
    fresh.load_extra_checkpoint_state(state)
    assert fresh.scheduler.last_epoch == 1


def test_batch_budget_stops_each_epoch_and_anneals_per_batch(make_config):
    config, train_data, model = build(make_config, embedding_init="default", epochs=2,
                                      train_batch_size=8, dlr2_batches_per_epoch=3)
    assert len(train_data) > 3
    trainer = get_trainer(config["MODEL_TYPE"], "DLR2")(config, model)
    seen = []
    trainer._train_epoch(train_data, 0, loss_func=lambda batch: seen.append(len(batch)) or model.calculate_loss(batch))
    assert seen == [8, 8, 8]
    # cosine annealing per batch, T_max = 2 epochs x 3 batches: lr_3 = 1e-3 * (1 + cos(3 pi / 6)) / 2
    assert trainer.scheduler.last_epoch == 3
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 2)
    trainer._train_epoch(train_data, 1)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_batch_budget_must_be_positive(make_config):
    with pytest.raises(ValueError, match=r"'dlr2_batches_per_epoch' parameter of DLR2 must be a positive int or None"):
        build(make_config, embedding_init="default", dlr2_batches_per_epoch=0)

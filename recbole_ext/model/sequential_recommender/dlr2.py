r"""DLR2: the Dual-Loss Residual Recommendation network.

Reference:
    Yinan Zhang, Boyang Li, Yong Liu, Hao Wang and Chunyan Miao. "Initialization Matters:
    Regularizing Manifold-informed Initialization for Neural Recommendation Systems".
    KDD 2021, arXiv:2106.04993. Code: https://github.com/zhangynnancy/Leporid_DLR2
    (``codes/DLR2/{main,model}.py``).

Model. A user ``u`` with the last ``T`` (= 5) items ``i_1..i_T`` of their history
(oldest first) is a state. Its embeddings, stacked into a ``(T+1) x d`` one-channel
image ``[e_u; e_{i_1}; ...; e_{i_T}]``, go through a residual conv encoder

    conv1x1(1->64) -> ReLU -> BasicBlock(64) -> BasicBlock(128, stride 2, conv1x1+BN
    downsample) -> flatten -> Linear(128 * ceil((T+1)/2) * ceil(d/2) -> d) = s

(BasicBlock: conv3x3 -> ReLU -> conv3x3, + shortcut, ReLU; no BatchNorm inside, as in the
official ``ifrevnet=0`` encoder). Two heads read the state:

- critic ``c(s, e_i) = MLP([s; e_i])`` (2d -> 256 -> 256 -> 128 -> 1), lower = better;
- actor ``a(s) = tanh(MLP(s))`` (d -> 256 -> 256 -> 128 -> d), a point in embedding space.

Loss, for the next item ``i+`` and one sampled negative ``i-`` sharing the state, margin
``m`` (0.5)::

    L_critic = mean( c(s, e+)^2 + max(0, m - c(s, e-))^2 )                   # square-square
    L_actor  = mean( max(0, mean_d (a(s) - e+)^2 - mean_d (a(s) - e-)^2 + m) )   # hinge
    L = L_critic + L_actor

Full ranking scores every item by ``-c(s, e_i)`` (``dlr2_score: critic``) or by
``-mean_d |e_i - a(s)|`` (``actor``), vectorised over items. The user and item embeddings
are LEPORID-initialised and frozen by default (``embedding_init: leporid``,
``embedding_init_freeze: True``), as the official code's ``nn.Embedding.from_pretrained``.
Training uses Adam (lr 1e-3) with a cosine learning-rate schedule
(:class:`recbole_ext.trainer.dlr2.DLR2Trainer`).

Deviations from the official code:

- The model runs as a RecBole *general* recommender (``ModelType.GENERAL``): training
  rows are (user, next item, sampled negative) and the state is looked up from the
  user's time-ordered training history kept in the model; validation and test rank all
  items for each user against the user's whole held-out item set, so DLR2 is evaluated
  exactly like BPR, NeuMF or ItemKNN on the same split (the paper's protocol). It lives
  in ``sequential_recommender`` because its input is a sequence state.
- Every training interaction is a sample, including the first ``T`` of a user (their
  missing predecessors are the padding item 0, whose embedding is zero); the official
  code only slides full windows. The evaluation state is the last ``T`` *training*
  items; the official test state also includes the validation items (the model never
  sees the validation split here).
- Negatives come from RecBole's sampler (``train_neg_sample_args``, uniform over the
  items the user has not interacted with in training), one per positive and epoch; the
  official code pre-samples 100 per user and re-draws a memory of 2000 every 50
  iterations.
- One Adam optimiser over all parameters instead of one per sub-network (identical
  updates: Adam is per-parameter). By default the cosine schedule steps once per epoch
  with ``T_max = epochs`` and an epoch is the whole training split; the official budget of
  5000 iterations of 32, annealed per iteration, is ``dlr2_batches_per_epoch``
  (:class:`recbole_ext.trainer.dlr2.DLR2Trainer`).
- Critic full ranking splits the first critic layer into its state and item halves, so
  the ``[B, n_items, 256]`` hidden layer is built from two small products, in chunks of
  ``dlr2_eval_pairs`` user-item pairs to bound memory.
"""

from __future__ import annotations

from logging import getLogger

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_ext.params import ParamSpec, choice, custom, int_list, integer, real

SCORERS = ("critic", "actor")


class BasicBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus a shortcut, then ReLU (no BatchNorm, as the official block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class ResidualStateEncoder(nn.Module):
    """``[B, T+1, d]`` stacked user/item embeddings -> state ``[B, d]``."""

    def __init__(self, rows: int, dim: int, channels: tuple[int, int] = (64, 128)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels[0], 1, bias=False)
        self.layer1 = BasicBlock(channels[0], channels[0])
        self.layer2 = BasicBlock(channels[0], channels[1], stride=2)
        out_rows, out_cols = (rows - 1) // 2 + 1, (dim - 1) // 2 + 1  # 3x3 conv, stride 2, pad 1
        self.project = nn.Linear(channels[1] * out_rows * out_cols, dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(stacked.unsqueeze(1)))  # [B, 64, T+1, d]
        x = self.layer2(self.layer1(x))  # [B, 128, ceil((T+1)/2), ceil(d/2)]
        return self.project(x.flatten(1))  # [B, d]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLR2(GeneralRecommender):
    """Dual-loss residual recommender over (user, last T items) states.

    Config keys (defaults in ``properties/model/DLR2.yaml``):

    Args:
        embedding_size (int): width d of user/item embeddings and of the state (64).
        dlr2_state_items (int): T, the number of most recent items in a state (5).
        dlr2_channels (list of int): channels of the two residual blocks ([64, 128]).
        dlr2_hidden_size (list of int): hidden widths of the critic and actor MLPs ([256, 256, 128]).
        dlr2_margin (float): margin m of both losses (0.5).
        dlr2_score (str): full-ranking scorer, ``critic`` or ``actor``.
        dlr2_eval_pairs (int): user-item pairs per chunk in critic full ranking.
        embedding_init, embedding_init_freeze, embedding_init_dim: LEPORID initialisation
            (applied by the pipeline; see ``properties/init/leporid.yaml``).
    """

    input_type = InputType.PAIRWISE

    PARAMS = ParamSpec({
        "embedding_size": integer(1),
        "dlr2_state_items": integer(1),
        "dlr2_hidden_size": int_list(1),
        "dlr2_channels": custom("a list of two positive ints",
                                lambda v: int_list(2).accepts(v) and len(v) == 2),
        "dlr2_margin": real(0, low_open=True),
        "dlr2_score": choice(*SCORERS),
        "dlr2_eval_pairs": integer(1),
        # read by DLR2Trainer: batches per epoch, or ~ for whole epochs
        "dlr2_batches_per_epoch": integer(1).or_none(),
    })

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)

        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(type(self).__name__, config)
        self.embedding_size = config["embedding_size"]
        self.state_items = config["dlr2_state_items"]
        hidden = config["dlr2_hidden_size"]
        channels = config["dlr2_channels"]
        self.margin = config["dlr2_margin"]
        self.score_by = config["dlr2_score"]
        self.eval_pairs = config["dlr2_eval_pairs"]

        # layers
        d = self.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.encoder = ResidualStateEncoder(self.state_items + 1, d, tuple(channels))
        self.critic = _mlp([2 * d, *hidden, 1])
        self.actor = _mlp([d, *hidden, d])

        # init: the official random initialisation N(0, 0.01); embedding_init replaces it
        nn.init.normal_(self.user_embedding.weight, std=0.01)
        nn.init.normal_(self.item_embedding.weight, std=0.01)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

        # caches: the time-ordered training histories (derived from the dataset, not saved)
        history, starts, keys, key_order, last_items = self._build_history(dataset)
        self.register_buffer("history", history, persistent=False)
        self.register_buffer("history_start", starts, persistent=False)
        self.register_buffer("history_keys", keys, persistent=False)
        self.register_buffer("history_key_order", key_order, persistent=False)
        self.register_buffer("last_items", last_items, persistent=False)

    def _build_history(self, dataset):
        """Flat time-ordered training items with per-user starts, a (user, item) -> position
        index, and each user's last ``T`` items (padding 0 first)."""
        users = dataset.inter_feat[self.USER_ID].numpy()
        items = dataset.inter_feat[self.ITEM_ID].numpy()
        time_field = dataset.time_field
        if time_field is not None and time_field in dataset.inter_feat:
            times = dataset.inter_feat[time_field].numpy()
        else:
            getLogger().warning("DLR2: no timestamp field loaded; the file order is taken as time order")
            times = np.zeros(len(users))
        order = np.lexsort((np.arange(len(users)), times, users))  # by user, then time, stable
        users, items = users[order], items[order]
        counts = np.bincount(users, minlength=self.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        keys = users.astype(np.int64) * self.n_items + items
        key_order = np.argsort(keys, kind="stable")
        ends = starts + counts
        offsets = np.arange(-self.state_items, 0)
        positions = ends[:, None] + offsets[None, :]  # [n_users, T]
        valid = positions >= starts[:, None]
        last = np.where(valid, items[np.clip(positions, 0, None)], 0)
        return (torch.as_tensor(items, dtype=torch.long), torch.as_tensor(starts, dtype=torch.long),
                torch.as_tensor(keys[key_order], dtype=torch.long), torch.as_tensor(key_order, dtype=torch.long),
                torch.as_tensor(last, dtype=torch.long))

    def training_state_items(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The ``T`` training items before ``(user, item)`` in the user's history, ``[B, T]``.

        Raises:
            KeyError: if a pair is not a training interaction.
        """
        keys = user * self.n_items + item
        found = torch.searchsorted(self.history_keys, keys).clamp(max=len(self.history_keys) - 1)
        if not torch.equal(self.history_keys[found], keys):
            raise KeyError("DLR2.calculate_loss got a (user, item) pair that is not in the training split")
        position = self.history_key_order[found]  # [B]
        previous = position[:, None] + torch.arange(-self.state_items, 0, device=position.device)
        valid = previous >= self.history_start[user][:, None]
        return torch.where(valid, self.history[previous.clamp(min=0)], torch.zeros_like(previous))

    def state(self, user: torch.Tensor, state_items: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([self.user_embedding(user).unsqueeze(1), self.item_embedding(state_items)], dim=1)
        return self.encoder(stacked)  # [B, d]

    def critic_score(self, state: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
        return self.critic(torch.cat([state, item_emb], dim=-1)).squeeze(-1)  # [B]

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        state = self.state(user, self.training_state_items(user, pos_item))
        pos_emb, neg_emb = self.item_embedding(pos_item), self.item_embedding(neg_item)

        critic_pos = self.critic_score(state, pos_emb)
        critic_neg = self.critic_score(state, neg_emb)
        critic_loss = (critic_pos.pow(2) + F.relu(self.margin - critic_neg).pow(2)).mean()

        action = torch.tanh(self.actor(state))
        pos_dist = (action - pos_emb).pow(2).mean(dim=-1)
        neg_dist = (action - neg_emb).pow(2).mean(dim=-1)
        actor_loss = F.relu(pos_dist - neg_dist + self.margin).mean()
        return critic_loss, actor_loss

    def predict(self, interaction):
        user = interaction[self.USER_ID]
        item_emb = self.item_embedding(interaction[self.ITEM_ID])
        state = self.state(user, self.last_items[user])
        if self.score_by == "critic":
            return -self.critic_score(state, item_emb)
        action = torch.tanh(self.actor(state))
        return -(item_emb - action).abs().mean(dim=-1)

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        state = self.state(user, self.last_items[user])  # [B, d]
        items = self.item_embedding.weight  # [n_items, d]
        if self.score_by == "actor":
            action = torch.tanh(self.actor(state))
            return (-torch.cdist(action, items, p=1) / self.embedding_size).view(-1)
        first = self.critic[0]
        d = self.embedding_size
        state_part = state @ first.weight[:, :d].T + first.bias  # [B, h]
        item_part = items @ first.weight[:, d:].T  # [n_items, h]
        chunk = max(1, self.eval_pairs // len(user))
        scores = []
        for start in range(0, self.n_items, chunk):
            hidden = state_part[:, None, :] + item_part[None, start:start + chunk, :]  # [B, c, h]
            scores.append(self.critic[1:](hidden).squeeze(-1))  # [B, c]
        return -torch.cat(scores, dim=1).view(-1)  # [B * n_items]

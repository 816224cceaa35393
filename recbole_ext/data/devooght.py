"""Devooght & Bersini's user-disjoint protocol for sequential models (``devooght_protocol: True``).

Reference: R. Devooght and H. Bersini, "Long and Short-Term Recommendations with Recurrent
Neural Networks", UMAP 2017 (arXiv:1608.07400); protocol of ``preprocess.py`` / ``test.py``
in https://github.com/rdevooght/sequence-based-recommendations.

Input: ``benchmark_filename: [train, valid, test]`` naming three plain interaction files
``<dataset>.<part>.inter`` (``user_id``, ``item_id``, ``timestamp``, ...: one row per
interaction, as written by ``python -m dataset_atomic devooght``) whose *users* are
disjoint: validation and test users hold out their whole sequence.

- Training: the training users' sequences, prefix-augmented exactly like RecBole's
  :class:`~recbole.data.dataset.SequentialDataset` (every prefix of at most
  ``MAX_ITEM_LIST_LENGTH`` items -> next item), so RecBole's sequential models train on it
  unchanged.
- Validation/test: one row per user with at least 2 interactions. With the chronological
  sequence ``S`` of length ``n``, the model input is the last ``MAX_ITEM_LIST_LENGTH`` items of
  ``viewed = S[:n // 2]``; the RecBole positives are the whole ``goal = S[n // 2:]``, so
  ``recall``/``precision``/``ndcg`` are Devooght's; the row's item field and its
  ``LABEL_FIELD`` hold ``goal[0]`` (for ``sps``). With ``exclude_viewed: True`` every item of
  ``viewed`` (not only the last ``MAX_ITEM_LIST_LENGTH``) is removed from the ranking, as in
  Devooght's evaluation, whatever the model.
- ``blockbuster_share`` popularity counts every training interaction (Devooght's
  ``train_set_triplets``), not only the augmented targets.

With ``devooght_protocol: False`` the class behaves as RecBole's ``SequentialDataset``
(leave-one-out or any other ``eval_args``), except that ``item_counter`` is an
:class:`~recbole_ext.evaluator.sequence_metrics.ItemPopularity` that RecBole's collector
can handle.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data import data_preparation as recbole_data_preparation
from recbole.data.dataloader import FullSortEvalDataLoader, TrainDataLoader
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from recbole_ext.evaluator.sequence_metrics import ItemPopularity


class DevooghtDataset(SequentialDataset):
    """RecBole ``SequentialDataset`` plus Devooght's half-sequence evaluation (see module doc).

    Attributes (evaluation splits only):
        goal_items: per row, the item ids of the second half, in order.
        viewed_items: per row, the item ids of the first half.
    """

    def __init__(self, config):
        self.devooght = bool(config["devooght_protocol"])
        if self.devooght:
            parts = config["benchmark_filename"]
            if not parts or len(parts) != 3:
                raise ValueError(
                    "The 'benchmark_filename' parameter must name the [train, valid, test] "
                    f"interaction files when 'devooght_protocol' is True. Got {parts!r} instead.")
        self.popularity: ItemPopularity | None = None
        self.goal_items: list[torch.Tensor] | None = None
        self.viewed_items: list[torch.Tensor] | None = None
        super().__init__(config)

    def _benchmark_presets(self):
        # Devooght split files hold plain interactions; item lists are built in build().
        if not self.devooght:
            super()._benchmark_presets()

    @property
    def item_counter(self) -> ItemPopularity:
        if self.popularity is not None:
            return self.popularity
        return ItemPopularity(super().item_counter, self.item_num)

    def build(self) -> list:
        if not self.devooght:
            return super().build()
        self._change_feat_format()  # no augmentation: benchmark files skip it
        self._drop_unused_col()
        bounds = np.cumsum([0, *self.file_size_list])
        parts = [self.inter_feat[int(start):int(end)] for start, end in zip(bounds[:-1], bounds[1:])]
        self._check_users_disjoint(parts)
        self._aug_presets()

        train = self.copy(parts[0])
        counts = np.bincount(parts[0][self.iid_field].numpy(), minlength=self.item_num)
        train.popularity = ItemPopularity(
            {int(i): int(c) for i, c in enumerate(counts) if c > 0}, self.item_num)
        train.data_augmentation()
        return [train, *(self._half_split(part) for part in parts[1:])]

    def _check_users_disjoint(self, parts: list[Interaction]) -> None:
        names = self.config["benchmark_filename"]
        users = [set(part[self.uid_field].numpy().tolist()) for part in parts]
        for a in range(3):
            for b in range(a + 1, 3):
                shared = users[a] & users[b]
                if shared:
                    example = self.id2token(self.uid_field, [min(shared)])[0]
                    raise ValueError(
                        f"devooght_protocol needs user-disjoint splits, but {len(shared)} users "
                        f"(e.g. '{example}') are in both '{names[a]}' and '{names[b]}'.")

    def _half_split(self, part: Interaction) -> "DevooghtDataset":
        """One evaluation row per user: input = first half, positives = second half."""
        order = np.lexsort((part[self.time_field].numpy(), part[self.uid_field].numpy()))
        part = part[torch.from_numpy(order)]
        uids = part[self.uid_field].numpy()
        items = part[self.iid_field]
        starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
        ends = np.r_[starts[1:], len(uids)]
        max_len = self.max_item_list_len

        rows, windows, goals, viewed = [], [], [], []
        for start, end in zip(starts.tolist(), ends.tolist()):
            if end - start < 2:
                continue  # Devooght drops sequences that cannot be split
            half = start + (end - start) // 2
            rows.append(half)  # the first goal interaction supplies the row's own fields
            windows.append((max(start, half - max_len), half))
            goals.append(items[half:end].clone())
            viewed.append(items[start:half].clone())

        rows_t = torch.tensor(rows, dtype=torch.long)
        new_data = part[rows_t]
        lengths = torch.tensor([end - start for start, end in windows], dtype=torch.long)
        new_dict = {self.item_list_length_field: lengths}
        for field in part.interaction:
            if field == self.uid_field:
                continue
            values = part[field]
            if values.dim() != 1:
                raise ValueError(f"devooght_protocol supports scalar interaction fields only; "
                                 f"'{field}' has shape {tuple(values.shape)}.")
            column = torch.zeros((len(rows), max_len), dtype=values.dtype)
            for row, (start, end) in enumerate(windows):
                column[row, : end - start] = values[start:end]
            new_dict[getattr(self, f"{field}_list_field")] = column
        new_dict[self.label_field] = new_data[self.iid_field].float()  # goal[0], read by sps
        new_data.update(Interaction(new_dict))

        split = self.copy(new_data)
        split.goal_items, split.viewed_items = goals, viewed
        return split

    def data_preparation(self, config) -> tuple:
        """Train/valid/test dataloaders; Devooght evaluation loaders when the protocol is on."""
        if not self.devooght:
            return recbole_data_preparation(config, self)
        train, valid, test = self.build()
        return (TrainDataLoader(config, train, None, shuffle=config["shuffle"]),
                DevooghtEvalDataLoader(config, valid, None, shuffle=False),
                DevooghtEvalDataLoader(config, test, None, shuffle=False))


class DevooghtEvalDataLoader(FullSortEvalDataLoader):
    """Full-ranking loader whose positives are each row's whole second half.

    Returns ``(interaction, history_index, positive_u, positive_i)`` like RecBole's loader;
    ``history_index`` masks the whole first half when ``exclude_viewed`` is True.
    """

    def __init__(self, config, dataset: DevooghtDataset, sampler, shuffle: bool = False):
        self.exclude_viewed = bool(config["exclude_viewed"])
        super().__init__(config, dataset, sampler, shuffle=shuffle)

    def collate_fn(self, index):
        index = np.array(index)
        interaction = self.transform(self._dataset, self._dataset[index])
        goals = [self._dataset.goal_items[i] for i in index]
        positive_u = torch.cat([torch.full_like(goal, row) for row, goal in enumerate(goals)])
        positive_i = torch.cat(goals)
        history = None
        if self.exclude_viewed:
            seen = [self._dataset.viewed_items[i] for i in index]
            history = (torch.cat([torch.full_like(items, row) for row, items in enumerate(seen)]),
                       torch.cat(seen))
        return interaction, history, positive_u, positive_i

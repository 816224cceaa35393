"""Datasets for the labelled click-through protocol (KNI, and the baselines on its split).

The KNI paper's data (RippleNet's Book-Crossing, Last.FM) carry pre-sampled negatives as
``label = 0`` rows, split randomly 6:2:2 and evaluated pointwise (AUC, LogLoss, ACC). Two
things RecBole's datasets cannot express are added in :meth:`LabeledSplitMixin.build` and
:meth:`LabeledSplitMixin.data_preparation`:

- ``acc_threshold: auto`` (or unset) becomes the mean label of the *training* split, the
  threshold of the reference code's accuracy (``../shared/reference/kni_rnncce.md`` 1.3),
  written into the config before the trainer builds its evaluator, so the ``ACC`` metric
  (:mod:`recbole_ext.evaluator.label_metrics`) reads a number.
- For a pairwise model (BPR-style losses, e.g. RecBole's KGCN, KGNNLS, CKE, BPR) the training
  split keeps only its positive rows (``label > 0.5``): a pairwise loss treats every row as a
  positive, so the pre-sampled negatives would otherwise be learnt as likes. Negatives are then
  drawn by ``train_neg_sample_args``. Validation and test rows keep both labels.
- ``drop_cold_users: True`` removes, after the split, every user without a positive training
  row from all three splits (:func:`drop_cold_users`), as RippleNet's split and the official
  KNI code do; the paper presets set it. Off, every labelled row stays (cold users included).
- The interaction matrix (``inter_matrix``) holds the positive rows only: a ``label = 0`` row
  is a pre-sampled negative, not an interaction. Models that read their user histories from
  it (RecBole's RippleNet builds its ripple sets there; LEPORID its similarity graphs) thus see
  the clicked items only, as the official RippleNet code's ``user_history_dict``.
- ``select_on_test: True`` hands the *test* loader to the trainer as the validation loader,
  reproducing the official KNI code's model selection and early stopping on the test split.
  It is for comparison with the paper only; the default selects on the validation split.
  The choice is recorded in the run's config (and by :class:`recbole_ext.trainer.kni.KNITrainer`
  as ``model_selection`` in the results).

KNI and NI always use these datasets (``recbole_ext.registry.PLUGIN_DATASETS``); any other
model opts in with ``labeled_protocol: True`` (the kni benchmark suite does for its baselines).
"""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.data import data_preparation as recbole_data_preparation
from recbole.data.dataset import Dataset, KnowledgeBasedDataset
from recbole.utils import InputType

POSITIVE_LABEL = 0.5  # a row is a positive when its label exceeds this


def resolve_acc_threshold(config, train_labels: torch.Tensor | None) -> float:
    """Set ``config['acc_threshold']`` to a float and return it.

    ``auto`` / unset -> the mean training label (0.5 when the training split has no labels);
    a number is kept.

    Raises:
        ValueError: a value that is neither ``auto`` nor a number in [0, 1].
    """
    value = config["acc_threshold"]
    if value is None or value == "auto":
        value = float(train_labels.float().mean()) if train_labels is not None and len(train_labels) else 0.5
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"The 'acc_threshold' config key must be 'auto' (mean training label) or a "
                         f"number in [0, 1]. Got {value!r} instead.")
    config["acc_threshold"] = float(value)
    return float(value)


def drop_cold_users(train, valid, test, label: str) -> list:
    """Keep, in all three splits, only the users with a positive row in ``train``.

    RippleNet's split (which the official KNI code copies) does this after its random 6:2:2
    split, so its validation and test rows never belong to a user without a training click.
    """
    uid = train.uid_field
    warm = torch.unique(train.inter_feat[uid][train.inter_feat[label] > POSITIVE_LABEL])
    kept = [part.copy(part.inter_feat[torch.isin(part.inter_feat[uid], warm)]) for part in (train, valid, test)]
    getLogger().info("drop_cold_users: kept the %d users with a positive training row; rows kept "
                     "train %d/%d, valid %d/%d, test %d/%d", len(warm),
                     *(n for old, new in zip((train, valid, test), kept) for n in (len(new), len(old))))
    return kept


class LabeledSplitMixin:
    """Adds the labelled-protocol steps to a RecBole dataset class (see the module docstring)."""

    def build(self):
        train, valid, test = super().build()
        label = self.config["LABEL_FIELD"]
        if self.config["drop_cold_users"] and label in train.inter_feat:
            train, valid, test = drop_cold_users(train, valid, test, label)
        labels = train.inter_feat[label] if label in train.inter_feat else None
        threshold = resolve_acc_threshold(self.config, labels)
        getLogger().info(f"acc_threshold = {threshold:.6f}")
        if labels is not None and self.config["MODEL_INPUT_TYPE"] == InputType.PAIRWISE:
            positive = labels > POSITIVE_LABEL
            getLogger().info(f"pairwise model: training on the {int(positive.sum())} positive rows "
                             f"of {len(labels)} (label-0 rows dropped from the training split)")
            train = train.copy(train.inter_feat[positive])
        return [train, valid, test]

    def inter_matrix(self, form="coo", value_field=None):
        """Sparse user x item matrix of the positive rows (all rows when a value field is asked for)."""
        label = self.config["LABEL_FIELD"]
        if value_field is not None or label not in self.inter_feat:
            return super().inter_matrix(form, value_field)
        positives = self.inter_feat[self.inter_feat[label] > POSITIVE_LABEL]
        return self._create_sparse_matrix(positives, self.uid_field, self.iid_field, form, value_field)

    def data_preparation(self, config):
        train_data, valid_data, test_data = recbole_data_preparation(config, self)
        if config["select_on_test"]:
            getLogger().warning("select_on_test: model selection and early stopping use the TEST "
                                "split (official KNI protocol, for comparison only)")
            return train_data, test_data, test_data
        return train_data, valid_data, test_data


class LabeledKGDataset(LabeledSplitMixin, KnowledgeBasedDataset):
    """RecBole's knowledge-graph dataset with the labelled-protocol steps."""


class LabeledDataset(LabeledSplitMixin, Dataset):
    """RecBole's plain dataset with the labelled-protocol steps (general models such as BPR)."""

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
- ``select_on_test: True`` hands the *test* loader to the trainer as the validation loader,
  reproducing the official KNI code's model selection and early stopping on the test split.
  It is for comparison with the paper only; the default selects on the validation split.
  The choice is recorded in the run's config (and by :class:`recbole_ext.trainer.kni.KNITrainer`
  as ``model_selection`` in the results).

Models opt in through ``recbole_ext.registry.PLUGIN_DATASETS`` (KNI and NI do; the benchmark
suite registers its baselines for its runs).
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


class LabeledSplitMixin:
    """Adds the labelled-protocol steps to a RecBole dataset class (see the module docstring)."""

    def build(self):
        train, valid, test = super().build()
        label = self.config["LABEL_FIELD"]
        labels = train.inter_feat[label] if label in train.inter_feat else None
        threshold = resolve_acc_threshold(self.config, labels)
        getLogger().info(f"acc_threshold = {threshold:.6f}")
        if labels is not None and self.config["MODEL_INPUT_TYPE"] == InputType.PAIRWISE:
            positive = labels > POSITIVE_LABEL
            getLogger().info(f"pairwise model: training on the {int(positive.sum())} positive rows "
                             f"of {len(labels)} (label-0 rows dropped from the training split)")
            train = train.copy(train.inter_feat[positive])
        return [train, valid, test]

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

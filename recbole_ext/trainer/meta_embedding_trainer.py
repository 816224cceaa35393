"""Two-stage trainer of the meta-embedding models LEGCF and C2F.

Each *stage* of the model (``model.stages``: LEGCF ``coarse``; C2F ``coarse``, ``fine``
or both) is trained in two *sub-stages*, as in the official ``engine.run`` of
https://github.com/xurong-liang/LEGCF and https://github.com/htyjers/C2F-MetaEmbed:

1. ``fixed``: the assignment stays as initialised, until RecBole's early stopping on
   ``valid_metric`` fires (``stopping_step`` evaluations without improvement);
2. ``update``: training continues from the current weights and the assignment is
   re-estimated in closed form before every epoch (``model.update_assignment()``)
   until early stopping fires again.

``epochs`` is the budget of each stage; a stage whose fixed sub-stage uses it up has no
update sub-stage (the official behaviour). ``fixed_assignment_epochs`` (> 0) also ends the
fixed sub-stage after that many epochs, so that a short epoch budget (a CPU benchmark)
still reaches the assignment update; 0 keeps the official rule (early stopping only). Every sub-stage keeps its own best checkpoint,
``<run>-<stage>-<sub-stage>.pth``, so both the best model before and with assignment
updates stay on disk. A stage ends with the better of its two checkpoints (by the
validation metric). The next stage starts, as the official fine stage does
(``best_checkpoint_with_assignment_update``), from the best checkpoint of the earlier
stage's update sub-stage (from its fixed sub-stage if no update sub-stage was validated),
with a fresh optimiser, calling ``model.enter_stage(stage)`` (C2F: SparsePCA and METIS
initialisation of the fine part).
A run that starts at a later stage takes the earlier stage's weights from
``model.init_checkpoint``. Every log line of an epoch names ``[stage/sub-stage]``.

The model provides ``stages``, ``enter_stage(stage)``, ``update_assignment()``,
``optimizer_groups()`` (named parameter groups), ``stage_learning_rates(stage)`` and
``stage_summary()``. Phase bookkeeping is saved in checkpoints, so ``--resume`` continues
in the right sub-stage.
"""

from __future__ import annotations

import os

import numpy as np
from recbole.trainer import Trainer

from recbole_ext.utils import to_plain

SUB_STAGES = ("fixed", "update")
_SUB_STAGE_TEXT = {"fixed": "assignment fixed", "update": "assignment re-estimated every epoch"}


class MetaEmbeddingTrainer(Trainer):
    """RecBole ``Trainer`` running ``model.stages`` x (fixed, update) sub-stages.

    Attributes:
        phases: ``[(stage, sub_stage), ...]`` in training order.
        phase_records: per ``"stage/sub_stage"``: checkpoint, best validation score and
            result, first and last epoch, and whether early stopping ended it.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.phases = [(stage, sub) for stage in model.stages for sub in SUB_STAGES]
        self.phase_index = 0
        self.stage_ready = False
        self.phase_records: dict[str, dict] = {}
        self.phase_start_epoch = 0
        self._checkpoint_stem: str | None = None
        self._last_epoch = -1
        self._resumed = False
        self.total_epochs = self.epochs
        self.fixed_assignment_epochs = int(config["fixed_assignment_epochs"] or 0)  # checked in LEGCF.PARAMS

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self.model.optimizer_groups())
        return super()._build_optimizer(**kwargs)

    @property
    def phase(self) -> tuple[str, str]:
        return self.phases[self.phase_index]

    # ---------------------------------------------------------------- training loop
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        if self._checkpoint_stem is None:
            self._checkpoint_stem = os.path.splitext(self.saved_model_file)[0]
        while True:
            stage, sub = self.phase
            if not self.stage_ready:
                self._start_stage(stage, saved)
            self._start_phase(stage, sub, saved)
            super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                        show_progress=show_progress, callback_fn=callback_fn)
            early_stopped = self.cur_step > self.stopping_step
            capped = self.epochs < self.total_epochs and self._last_epoch + 1 >= self.epochs
            self.epochs = self.total_epochs
            self._record_phase(stage, sub, saved, early_stopped)
            if sub == "fixed" and (early_stopped or capped) and self._last_epoch + 1 < self.epochs:
                reason = ("early stop" if early_stopped
                          else f"fixed_assignment_epochs={self.fixed_assignment_epochs} reached")
                self.logger.info(f"[{stage}/fixed] {reason} at epoch {self._last_epoch}: "
                                 f"switching to [{stage}/update]")
                self.phase_index += 1
                self._reset_phase(self._last_epoch + 1)
                continue
            next_stage = self._next_stage_index()
            if next_stage is None:
                break
            self.logger.info(f"stage {stage} finished; next stage: {self.phases[next_stage][0]}")
            self.phase_index = next_stage
            self.stage_ready = False
            self._reset_phase(0)
        final = self._best_record(self.phase[0])
        if saved and final["checkpoint"]:
            self.saved_model_file = final["checkpoint"]
        if final["best_valid_result"] is not None:
            self.best_valid_score = final["best_valid_score"]
            self.best_valid_result = final["best_valid_result"]
        self.logger.info(f"final model: {final['phase']} ({final['checkpoint']})")
        return self.best_valid_score, self.best_valid_result

    def _next_stage_index(self) -> int | None:
        stage = self.phase[0]
        for index in range(self.phase_index + 1, len(self.phases)):
            if self.phases[index][0] != stage:
                return index
        return None

    def _reset_phase(self, start_epoch: int) -> None:
        self.start_epoch = start_epoch
        self.cur_step = 0
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None

    def _start_stage(self, stage: str, saved: bool) -> None:
        earlier = [r for r in self.phase_records.values() if r["stage"] != stage]
        if earlier:
            start = self._handoff_record(earlier[-1]["stage"])
            if saved and start["checkpoint"]:
                self.load_best_model(start["checkpoint"])
                self.logger.info(f"stage {stage} starts from {start['phase']} ({start['checkpoint']})")
        elif stage != "coarse" and getattr(self.model, "init_checkpoint", None):
            self.model.load_coarse_checkpoint(self.model.init_checkpoint)
            self.logger.info(f"stage {stage}: weights of the earlier stage from {self.model.init_checkpoint}")
        self.model.enter_stage(stage)
        self.optimizer = self._build_optimizer()
        self.stage_ready = True

    def _start_phase(self, stage: str, sub: str, saved: bool) -> None:
        rates = self.model.stage_learning_rates(stage)
        for group in self.optimizer.param_groups:
            group["lr"] = rates[group["name"]]
        if saved:
            self.saved_model_file = f"{self._checkpoint_stem}-{stage}-{sub}.pth"
        if not self._resumed:
            self.phase_start_epoch = self.start_epoch
        self._resumed = False
        self.epochs = self.total_epochs
        if sub == "fixed" and self.fixed_assignment_epochs > 0:
            self.epochs = min(self.total_epochs, self.phase_start_epoch + self.fixed_assignment_epochs)
        self._last_epoch = self.start_epoch - 1
        self.logger.info(f"[{stage}/{sub}] {_SUB_STAGE_TEXT[sub]}; epochs {self.start_epoch}.."
                         f"{self.epochs - 1}; learning rates {rates}; {self.model.stage_summary()}")

    def _record_phase(self, stage: str, sub: str, saved: bool, early_stopped: bool) -> None:
        has_result = self.best_valid_result is not None
        self.phase_records[f"{stage}/{sub}"] = {
            "phase": f"{stage}/{sub}",
            "stage": stage,
            "checkpoint": self.saved_model_file if saved else None,
            "best_valid_score": float(self.best_valid_score) if has_result else None,
            # float(): numpy.float64 subclasses float, so to_plain would keep it and a
            # weights-only torch.load of the checkpoint would then refuse the numpy scalar.
            "best_valid_result": ({str(k): float(v) for k, v in self.best_valid_result.items()}
                                  if has_result else None),
            "first_epoch": self.phase_start_epoch,
            "last_epoch": self._last_epoch,
            "early_stopped": early_stopped,
        }

    def _best_record(self, stage: str) -> dict:
        records = [r for r in self.phase_records.values() if r["stage"] == stage]
        scored = [r for r in records if r["best_valid_score"] is not None]
        if not scored:
            return records[-1]
        sign = 1.0 if self.valid_metric_bigger else -1.0
        # ties go to the later sub-stage, the one the official code reports
        return max(reversed(scored), key=lambda r: sign * r["best_valid_score"])

    def _handoff_record(self, stage: str) -> dict:
        """The record whose checkpoint the next stage starts from: the validated update sub-stage."""
        update = self.phase_records.get(f"{stage}/update")
        if update is not None and update["best_valid_score"] is not None:
            return update
        return self._best_record(stage)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        stage, sub = self.phase
        if sub == "update":
            self.model.update_assignment()
            self.logger.info(f"[{stage}/update] epoch {epoch_idx}: assignment re-estimated; "
                             f"{self.model.stage_summary()}")
        self._last_epoch = epoch_idx
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                    show_progress=show_progress)

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        stage, sub = self.phase
        return f"[{stage}/{sub}] " + super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)

    # ------------------------------------------------------- checkpoints and results
    def extra_checkpoint_state(self) -> dict:
        return {"phase_index": self.phase_index, "phase_records": to_plain(self.phase_records),
                "phase_start_epoch": self.phase_start_epoch,
                "checkpoint_stem": self._checkpoint_stem}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        self.phase_index = int(state["phase_index"])
        self.phase_records = dict(state["phase_records"])
        self.phase_start_epoch = int(state["phase_start_epoch"])
        self._checkpoint_stem = state["checkpoint_stem"]
        self.stage_ready = True
        self._resumed = True

    def extra_results(self) -> dict:
        """Per sub-stage checkpoints and validation results for the results JSON."""
        return {"stages": to_plain(self.phase_records)}

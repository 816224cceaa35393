"""Trainers for the explicit-rating models (NRP family and its baselines).

* :class:`RatingTrainer`: RecBole's ``Trainer`` whose evaluation collector also records
  user ids, which precision@p% (:class:`recbole_ext.evaluator.rating_metrics.RatingPrecision`)
  groups by, and which can validate, save and test an exponential moving average of the
  weights (``weight_averaging``, :class:`WeightAverage`).
* :class:`AlternatingTrainer`: the alternating optimisation of the autoencoder baselines
  with MF terms (aSDAE, DHA; Eq. 1 of Raziperchikolaei et al., arXiv:2010.06070): for
  every batch, first a plain-SGD step on the free representations U, V with the networks
  fixed, then a step of the configured optimiser on the network weights with U, V fixed.
  The paper alternates the two blocks without saying how often; once per batch keeps
  both blocks in step with RecBole's batching.
"""

from __future__ import annotations

import torch
from recbole.trainer import Trainer

from recbole_ext.evaluator.rating_metrics import RatingCollector


class RMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` whose plain update (no momentum, not centered) does less memory traffic.

    The same element-wise operations in the same order as PyTorch's single-tensor RMSprop,

    .. math::
        g \\leftarrow g + \\lambda w,\\quad v \\leftarrow \\alpha v + (1-\\alpha) g^2,\\quad
        w \\leftarrow w - \\eta\\, g / (\\sqrt{v} + \\epsilon),

    computed in two ways that save work:

    * **Slices.** Every parameter is updated in slices of ``CHUNK`` elements that reuse two
      scratch buffers. PyTorch allocates a parameter-sized ``sqrt(v)`` (and, with weight
      decay, ``g + λw``) for every parameter at every step and streams each through memory
      several times; for the NRP-family autoencoders' tens of millions of weights that cost
      about as much as the rest of the step's update. Slices start at multiples of
      ``CHUNK``, so every element takes the same vectorised code path as in one whole-tensor
      call: the results are the same floats.
    * **Rows without gradient, weight decay 0.** A row of a weight matrix whose gradient is
      zero (the row of an embedding or bag table that no input of the batch used; found
      by a zero row norm) is left as it is: the dense update would leave ``w`` unchanged and only multiply ``v`` by
      ``α``. The ``k`` skipped multiplications are applied as one factor ``α**k`` when the
      row next has a gradient, and to all rows before :meth:`state_dict`, so the saved state
      is the dense one. The only difference from the dense update is the rounding of
      ``α**k`` against ``k`` successive products (relative 1e-7 per step of ``v``, and
      ``w``'s update depends on ``sqrt(v)``). Used for a matrix only when at most
      ``LAZY_SHARE`` of its rows have a gradient; with weight decay every row changes at
      every step and all rows are updated.

    ``state_dict`` is PyTorch's. Other options (momentum, centered, maximize, foreach,
    capturable, differentiable) fall back to PyTorch's step.
    """

    CHUNK = 1 << 18
    LAZY_SHARE = 0.5

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # for matrices updated row-wise: the step after which each row's v was last brought up to date
        self._row_step: dict[torch.Tensor, torch.Tensor] = {}

    def _plain(self) -> bool:
        return not any(group["momentum"] or group["centered"] or group["maximize"] or group["foreach"]
                       or group["capturable"] or group["differentiable"] for group in self.param_groups)

    @torch.no_grad()
    def step(self, closure=None):
        if not self._plain():
            self._catch_up()
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scratch: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        for group in self.param_groups:
            params, grads, square_avgs, steps = [], [], [], []
            if self._init_group(group, params, grads, square_avgs, [], [], steps):
                raise RuntimeError("recbole_ext RMSprop: complex parameters are not supported")
            for param, grad, square_avg, step in zip(params, grads, square_avgs, steps):
                step += 1
                if group["weight_decay"] == 0 and param.dim() == 2 and self._sparse_step(
                        param, grad, square_avg, int(step), group):
                    continue
                self._catch_up_param(param, square_avg, int(step) - 1, group["alpha"])
                key = (param.dtype, param.device)
                if key not in scratch:
                    scratch[key] = (torch.empty(self.CHUNK, dtype=param.dtype, device=param.device),
                                    torch.empty(self.CHUNK, dtype=param.dtype, device=param.device))
                self._dense_step(param, grad, square_avg, group, *scratch[key])
        return loss

    def _dense_step(self, param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor, group: dict,
                    decayed: torch.Tensor, avg: torch.Tensor) -> None:
        lr, alpha, eps, decay = group["lr"], group["alpha"], group["eps"], group["weight_decay"]
        flat_param, flat_grad, flat_avg = param.view(-1), grad.reshape(-1), square_avg.view(-1)
        for start in range(0, flat_param.numel(), self.CHUNK):
            w = flat_param[start:start + self.CHUNK]
            g = flat_grad[start:start + self.CHUNK]
            v = flat_avg[start:start + self.CHUNK]
            if decay != 0:
                g = torch.add(g, w, alpha=decay, out=decayed[:len(w)])
            v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
            root = torch.sqrt(v, out=avg[:len(w)]).add_(eps)
            w.addcdiv_(g, root, value=-lr)

    def _sparse_step(self, param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor, step: int,
                     group: dict) -> bool:
        """Update only the rows with a gradient; False (nothing done) when too many have one."""
        # a row norm is one cheap pass; it is 0 for an all-zero row (and for entries so small,
        # below ~1e-22, that their squares round to 0, which leave w unchanged in float32)
        rows = torch.linalg.vector_norm(grad, dim=1).nonzero().squeeze(1)
        if len(rows) > self.LAZY_SHARE * len(param):
            return False
        alpha = group["alpha"]
        last = self._row_step.get(param)
        if last is None:
            last = self._row_step[param] = torch.full((len(param),), step - 1, dtype=torch.long,
                                                      device=param.device)
        g, v = grad[rows], square_avg[rows]
        skipped = (step - 1 - last[rows]).to(v.dtype).unsqueeze(1)
        v.mul_(torch.pow(alpha, skipped)).mul_(alpha).addcmul_(g, g, value=1 - alpha)
        w = param[rows].addcdiv_(g, v.sqrt().add_(group["eps"]), value=-group["lr"])
        square_avg.index_copy_(0, rows, v)
        param.index_copy_(0, rows, w)
        last[rows] = step
        return True

    def _catch_up_param(self, param: torch.Tensor, square_avg: torch.Tensor, step: int, alpha: float) -> None:
        """Bring every row's ``v`` of a row-wise updated matrix up to date at ``step``."""
        last = self._row_step.pop(param, None)
        if last is not None:
            square_avg.mul_(torch.pow(alpha, (step - last).to(square_avg.dtype)).unsqueeze(1))

    def _catch_up(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param in self._row_step:
                    state = self.state[param]
                    self._catch_up_param(param, state["square_avg"], int(state["step"]), group["alpha"])

    def state_dict(self) -> dict:
        self._catch_up()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._row_step.clear()


class WeightAverage:
    """Exponential moving average of a model's trainable weights (Polyak averaging).

    After every optimiser step the average moves towards the trained weights,
    ``a <- decay * a + (1 - decay) * w``. :meth:`use_average` and :meth:`use_trained`
    swap the two copies in place, so the optimiser keeps pointing at the same tensors.
    The copy not in the model is ``stored``.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.stored = [p.detach().clone() for p in self.params]
        self.decay = decay
        self.in_use = False  # True while the model holds the average

    def update(self) -> None:
        if self.in_use:
            raise RuntimeError("WeightAverage.update needs the trained weights in the model")
        with torch.no_grad():
            for average, weight in zip(self.stored, self.params):
                average.lerp_(weight, 1.0 - self.decay)

    def _swap(self) -> None:
        with torch.no_grad():
            for other, weight in zip(self.stored, self.params):
                held = weight.clone()
                weight.copy_(other)
                other.copy_(held)
        self.in_use = not self.in_use

    def use_average(self) -> None:
        if not self.in_use:
            self._swap()

    def use_trained(self) -> None:
        if self.in_use:
            self._swap()

    def state(self) -> dict:
        return {"stored": [t.clone() for t in self.stored], "in_use": self.in_use}

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for mine, saved in zip(self.stored, state["stored"]):
                mine.copy_(saved)
        self.in_use = bool(state["in_use"])


class RatingTrainer(Trainer):
    """RecBole's trainer with :class:`RatingCollector` (user ids for precision@p%).

    ``weight_averaging`` (decay in [0, 1); 0 or unset: off) keeps a :class:`WeightAverage`
    of the weights, updated after every optimiser step. Validation, the best checkpoint and
    the test then use the averaged weights, and training continues from the trained ones.
    With a noisy optimiser the average is a better model than any single iterate: NRP-direct
    on ml-100k (RMSprop 1e-3, Table 6) jumps by 0.01-0.03 validation RMSE from epoch to epoch,
    while its average at decay 0.999 (about 3 epochs of memory at batch 256) improves smoothly.
    The optimiser never sees the average, so it is not a regulariser of the training path.

    ``learner: rmsprop`` builds :class:`RMSprop` (PyTorch's update with less memory
    traffic) and takes its decay and epsilon from ``rmsprop_rho`` and
    ``rmsprop_eps`` when they are set. The paper trained with Keras, whose RMSprop
    defaults are rho 0.9 and eps 1e-7 (PyTorch's: alpha 0.99, eps 1e-8); the model yamls
    use Keras' values. With PyTorch's, the first steps of NRP-direct on ml-100k blew the
    batch MSE up to ~17,000 and 300 batches ended at validation RMSE 1.060; with Keras'
    the peak was ~650 and the same 300 batches ended at 0.974.
    """

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.eval_collector = RatingCollector(config)
        decay = config["weight_averaging"] or 0.0  # checked with the model's PARAMS
        self.weight_average = WeightAverage(self.model, float(decay)) if decay else None
        if self.weight_average is not None:
            self.optimizer.register_step_post_hook(lambda *_: self.weight_average.update())

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.weight_average is not None:
            self.weight_average.use_trained()
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _valid_epoch(self, valid_data, show_progress=False):
        # the average stays in the model until the next epoch, so fit's checkpoint holds it
        if self.weight_average is not None:
            self.weight_average.use_average()
        return super()._valid_epoch(valid_data, show_progress=show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        result = super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                             show_progress=show_progress, callback_fn=callback_fn)
        if self.weight_average is not None:  # a test of the last weights (saved=False) tests the average
            self.weight_average.use_average()
        return result

    def extra_checkpoint_state(self) -> dict:
        return {} if self.weight_average is None else {"weight_average": self.weight_average.state()}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        if self.weight_average is not None and "weight_average" in state:
            self.weight_average.load_state(state["weight_average"])

    def _build_optimizer(self, **kwargs):
        learner = kwargs.get("learner", self.learner)
        if str(learner).lower() != "rmsprop":
            return super()._build_optimizer(**kwargs)
        rho, eps = self.config["rmsprop_rho"], self.config["rmsprop_eps"]
        defaults = torch.optim.RMSprop([torch.zeros(1)]).defaults
        return RMSprop(kwargs.get("params", self.model.parameters()),
                       lr=kwargs.get("learning_rate", self.learning_rate),
                       alpha=defaults["alpha"] if rho is None else rho,
                       eps=defaults["eps"] if eps is None else eps,
                       weight_decay=kwargs.get("weight_decay", self.weight_decay))


class AlternatingTrainer(RatingTrainer):
    """Alternating U,V / network updates for models with ``mf_parameters()`` and ``calculate_mf_loss()``.

    Config keys (in the model's yaml): ``mf_learning_rate`` (SGD step on U, V; the paper
    uses 0.1; the model's U,V loss is summed over the batch's ratings, so this is a
    per-rating step). The main optimiser (``learner``, ``learning_rate``, ``weight_decay``,
    and RecBole's ``clip_grad_norm``) updates every other parameter.
    """

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.mf_optimizer = torch.optim.SGD(model.mf_parameters(), lr=config["mf_learning_rate"])

    def _build_optimizer(self, **kwargs):
        mf_ids = {id(p) for p in self.model.mf_parameters()}
        kwargs.setdefault("params", [p for p in self.model.parameters() if id(p) not in mf_ids])
        return super()._build_optimizer(**kwargs)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        network_loss = loss_func or self.model.calculate_loss

        def alternate(interaction):
            self.mf_optimizer.zero_grad()
            mf_loss = self.model.calculate_mf_loss(interaction)
            mf_loss.backward()
            self.mf_optimizer.step()
            # U,V gradients are spent: keep them out of the network step's gradient-norm clip
            self.mf_optimizer.zero_grad(set_to_none=True)
            return network_loss(interaction)

        return super()._train_epoch(train_data, epoch_idx, loss_func=alternate, show_progress=show_progress)

    def extra_checkpoint_state(self) -> dict:
        return {**super().extra_checkpoint_state(), "mf_optimizer": self.mf_optimizer.state_dict()}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        super().load_extra_checkpoint_state(state)
        self.mf_optimizer.load_state_dict(state["mf_optimizer"])

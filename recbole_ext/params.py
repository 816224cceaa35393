"""One declarative way to state and check hyper-parameters, and the core keys every run reads.

A model declares its hyper-parameters once, as a :class:`ParamSpec` in its ``PARAMS`` class
attribute: each key's type and range or choices (:class:`Param`), the conditions between keys
(:class:`Rule`) and the defaults that follow another key (``derived``). :class:`recbole_ext.Config`
checks the spec of the run's model and :data:`CORE_PARAMS` (keys every run reads, RecBole's
models included) as soon as the configuration is merged, before anything is loaded or written.
Every violation is reported in one format::

    The 'cell' parameter of RNNCCE must be one of ['gru', 'lstm']. Got 'rnn' instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ParamError(ValueError):
    """A hyper-parameter value outside what its spec allows (the message names key, value, rule)."""


@dataclass(frozen=True)
class Param:
    """What one key accepts: ``test(value)`` and its wording (``"a positive int"``)."""

    expected: str
    test: Callable[[Any], bool]
    optional: bool = False  # None (``~`` in yaml) is allowed too

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False

    def or_none(self) -> "Param":
        return Param(f"{self.expected} or None", self.test, optional=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def choice(*values: Any) -> Param:
    return Param(f"one of {sorted(values, key=str)}", lambda v: v in values)


def boolean() -> Param:
    return Param("True or False", lambda v: isinstance(v, bool))


def integer(low: int | None = None) -> Param:
    words = {1: "a positive int", 0: "an int >= 0"}.get(low, f"an int >= {low}" if low is not None else "an int")
    return Param(words, lambda v: _is_int(v) and (low is None or v >= low))


def real(low: float | None = None, high: float | None = None, low_open: bool = False,
         high_open: bool = False) -> Param:
    """A finite number in the interval; ``real(0, low_open=True)`` is "a positive float"."""
    if low is not None and high is not None:
        words = f"a float in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low == 0 and low_open:
        words = "a positive float"
    elif low is not None:
        words = f"a float {'>' if low_open else '>='} {low:g}"
    else:
        words = "a float"

    def test(value: Any) -> bool:
        if not _is_number(value):
            return False
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    return Param(words, test)


def int_list(min_length: int = 1, last: int | None = None) -> Param:
    """A list of positive ints, at least ``min_length`` long (and ending in ``last`` if given)."""
    words = f"a list of at least {min_length} positive ints" + (f" ending in {last}" if last is not None else "")
    return Param(words, lambda v: isinstance(v, (list, tuple)) and len(v) >= min_length
                 and all(_is_int(x) and x > 0 for x in v) and (last is None or v[-1] == last))


def custom(expected: str, test: Callable[[Any], bool], optional: bool = False) -> Param:
    return Param(expected, test, optional)


@dataclass(frozen=True)
class Rule:
    """A condition between keys; ``message`` is formatted with the config's values of ``keys``."""

    keys: tuple[str, ...]
    holds: Callable[..., bool]
    message: str


@dataclass(frozen=True)
class ParamSpec:
    """The hyper-parameters of one model (or of every run, :data:`CORE_PARAMS`).

    Attributes:
        params: key -> :class:`Param`.
        rules: conditions between keys, checked after every key passed.
        derived: key -> function of the config giving the key's value when it is None (unset),
            e.g. RNNCCE's ``tying_loss`` follows ``output``.
    """

    params: Mapping[str, Param]
    rules: Sequence[Rule] = ()
    derived: Mapping[str, Callable[[Mapping], Any]] = field(default_factory=dict)

    def apply(self, owner: str, config: Any) -> None:
        """Fill derived defaults into ``config`` (a RecBole Config or a dict), then check it.

        Raises:
            ParamError: the first key or rule that fails, in the module's message format.
        """
        for key, default in self.derived.items():
            if _lookup(config, key) is None:
                config[key] = default(config)
        for key, param in self.params.items():
            value = _lookup(config, key)
            if not param.accepts(value):
                raise ParamError(f"The '{key}' parameter of {owner} must be {param.expected}. Got {value!r} instead.")
        for rule in self.rules:
            values = [_lookup(config, key) for key in rule.keys]
            if not rule.holds(*values):
                raise ParamError(f"{owner}: " + rule.message.format(**dict(zip(rule.keys, values))))

    def __or__(self, other: "ParamSpec") -> "ParamSpec":
        """The union of two specs (a subclass's spec on top of its parent's)."""
        return ParamSpec({**self.params, **other.params}, (*self.rules, *other.rules),
                         {**self.derived, **other.derived})


def _lookup(config: Any, key: str) -> Any:
    # a RecBole Config answers None for a missing key; a plain dict (a model built by hand) raises
    return config.get(key) if isinstance(config, Mapping) else config[key]


# ----------------------------------------------------------------------- core keys
_EVAL_SPLITS = {"RS", "LS"}
_EVAL_ORDERS = {"RO", "TO"}
_EVAL_GROUPS = {None, "user", "none"}
_EVAL_MODES = re.compile(r"^(full|labeled|uni\d+|pop\d+)$")
_NEG_DISTRIBUTIONS = {"uniform", "popularity", "none"}


def _eval_args_ok(value: Any) -> bool:
    if not isinstance(value, Mapping) or not set(value) <= {"split", "order", "group_by", "mode"}:
        return False
    split = value.get("split")
    if split is not None and not (isinstance(split, Mapping) and len(split) == 1 and set(split) <= _EVAL_SPLITS):
        return False
    if split and "RS" in split and not (isinstance(split["RS"], (list, tuple)) and len(split["RS"]) in (2, 3)
                                         and all(_is_number(x) and x >= 0 for x in split["RS"])
                                         and sum(split["RS"]) > 0):
        return False
    mode = value.get("mode")
    modes = mode.values() if isinstance(mode, Mapping) else [mode]
    return (value.get("order") in _EVAL_ORDERS | {None} and value.get("group_by") in _EVAL_GROUPS
            and all(m is None or (isinstance(m, str) and _EVAL_MODES.match(m)) for m in modes))


def _neg_sample_ok(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, Mapping):
        return False
    distribution = value.get("distribution", "uniform")
    sample_num = value.get("sample_num", 1)
    return (distribution in _NEG_DISTRIBUTIONS and (distribution == "none" or (_is_int(sample_num) and sample_num > 0))
            and set(value) <= {"distribution", "sample_num", "alpha", "dynamic", "candidate_num"})


def _topk_ok(value: Any) -> bool:
    values = [value] if _is_int(value) else value
    return isinstance(values, (list, tuple)) and values and all(_is_int(k) and k > 0 for k in values)


def _valid_metric_matches(valid_metric: Any, metrics: Any, topk: Any) -> bool:
    if not isinstance(valid_metric, str):
        return False
    names = [m.lower() for m in ([metrics] if isinstance(metrics, str) else metrics or [])]
    name, _, k = valid_metric.lower().partition("@")
    if name not in names:
        return False
    ks = [topk] if _is_int(topk) else list(topk or [])
    return not k or (k.isdigit() and int(k) in ks)


CORE_PARAMS = ParamSpec(
    params={
        "learning_rate": real(0, low_open=True),
        "weight_decay": real(0),
        "epochs": integer(0),
        "train_batch_size": integer(1),
        "eval_batch_size": integer(1),
        "stopping_step": integer(0),
        "eval_step": integer(1),
        "embedding_size": integer(1).or_none(),  # read by most models, absent for a few
        "topk": custom("a positive int or a list of positive ints", _topk_ok),
        "metrics": custom("a metric name or a list of them", lambda v: isinstance(v, str) or (
            isinstance(v, (list, tuple)) and v and all(isinstance(m, str) for m in v))),
        "eval_args": custom("a dict of split ({RS: [train, valid, test]} or {LS: ...}), order (RO|TO), "
                            "group_by (user|None) and mode (full|labeled|uniN|popN)", _eval_args_ok,
                            optional=True),
        "train_neg_sample_args": custom("None or a dict with distribution (uniform|popularity|none), a "
                                        "positive sample_num, alpha, dynamic, candidate_num", _neg_sample_ok,
                                        optional=True),
    },
    rules=(Rule(("valid_metric", "metrics", "topk"), _valid_metric_matches,
                "valid_metric '{valid_metric}' must be one of the metrics {metrics}, with @k for a k in "
                "topk {topk} for a ranking metric (e.g. valid_metric: recall@10 with metrics: [Recall])"),),
)

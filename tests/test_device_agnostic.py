"""Every registered model follows its device, checked without a GPU.

Two checks per model, on the tiny dataset with its contract settings:

- while ``calculate_loss`` (with backward), ``predict`` and ``full_sort_predict`` run (and the
  meta-embedding models' assignment update and fine stage), no tensor factory is called from
  recbole-ext code without ``device=``: such a tensor would be created on the CPU in a GPU run;
- after those calls, ``model.to("meta")`` moves every tensor the model holds: a tensor kept in
  a plain attribute (a cache, a lookup table) that ``.to()`` misses would stay on the old device.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from recbole.utils import KGDataLoaderState
from torch.overrides import TorchFunctionMode

from recbole_ext import prepare_run
from recbole_ext.registry import PLUGIN_MODELS
from test_model_contract import contract_config

PACKAGE = str(Path(__file__).resolve().parent.parent / "recbole_ext")
FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.rand, torch.randn,
             torch.randint, torch.randperm, torch.tensor, torch.as_tensor, torch.eye, torch.linspace}


class FactoryAudit(TorchFunctionMode):
    """Records ``file:line`` of every tensor factory called from recbole-ext without ``device=``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            caller = next((frame for frame in reversed(traceback.extract_stack())
                           if frame.filename.startswith(PACKAGE)), None)
            if caller is not None:
                self.calls.add(f"{caller.filename[len(PACKAGE) + 1:]}:{caller.lineno} {func.__name__}")
        return func(*args, **kwargs)


def loss_of(model, batch) -> torch.Tensor:
    loss = model.calculate_loss(batch.to(model.device))
    return sum(loss) if isinstance(loss, tuple) else loss  # a tuple of losses, as RecBole's trainer sums


def exercise(run) -> None:
    """Training step with backward, then every evaluation entry point the model has."""
    model, train = run.model, run.train_data
    if hasattr(train, "set_mode"):  # knowledge-aware loaders
        train.set_mode(KGDataLoaderState.RS)
    model.train()
    loss_of(model, next(iter(train))).backward()
    if hasattr(model, "update_assignment"):
        model.update_assignment()
        model.graph()
    if "fine" in getattr(model, "stages", ()):
        model.enter_stage("fine")
        loss_of(model, next(iter(train))).backward()
    model.eval()
    batch = next(iter(run.test_data))
    interaction = (batch[0] if isinstance(batch, tuple) else batch).to(model.device)
    with torch.no_grad():
        for method in ("full_sort_predict", "predict"):
            try:
                getattr(model, method)(interaction)
            except (NotImplementedError, KeyError):  # not a ranking model / a field the loader lacks
                continue


def stray_tensors(model: torch.nn.Module, device: str) -> list[str]:
    """Tensors in plain attributes (any depth of list/tuple/dict) of any submodule, off ``device``."""
    found = []
    for name, module in model.named_modules():
        for attribute, value in vars(module).items():
            if attribute in ("_parameters", "_buffers", "_modules"):
                continue
            stack = [value]
            while stack:
                item = stack.pop()
                if isinstance(item, torch.Tensor):
                    if item.device.type != device:
                        found.append(f"{name or type(model).__name__}.{attribute} on {item.device}")
                elif isinstance(item, (list, tuple)):
                    stack.extend(item)
                elif isinstance(item, dict):
                    stack.extend(item.values())
    return found


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_model_follows_its_device(name, make_config):
    run = prepare_run(config_dict=contract_config(make_config, name), with_trainer=False)
    audit = FactoryAudit()
    with audit:
        exercise(run)
    assert not audit.calls, f"{name}: tensors created without device=: {sorted(audit.calls)}"
    run.model.to("meta")
    tensors = list(run.model.parameters()) + list(run.model.buffers())
    assert all(t.device.type == "meta" for t in tensors)
    assert not stray_tensors(run.model, "meta"), stray_tensors(run.model, "meta")


def test_the_checks_catch_a_model_that_does_not_follow_its_device():
    class Careless(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3))
            self.cache = [torch.zeros(3)]

        def forward(self):
            return self.weight + torch.zeros(3)

    audit = FactoryAudit()
    model = Careless()
    Careless.__module__ = "recbole_ext.fake"  # only recbole-ext frames are audited: pretend
    forward_code = Careless.forward.__code__
    Careless.forward.__code__ = forward_code.replace(co_filename=f"{PACKAGE}/fake.py")
    with audit:
        model()
    assert audit.calls == {"fake.py:" + str(forward_code.co_firstlineno + 1) + " zeros"}
    model.to("meta")
    assert stray_tensors(model, "meta") == ["Careless.cache on cpu"]

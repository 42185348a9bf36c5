"""trainer.config.validate and trainer.config.arguments: a config is checked from the config alone,
building no torch object, in torch's own words; the checks that need the data's task run once."""

from __future__ import annotations

import functools
import importlib

import pytest
import torch
from hydra.utils import get_object

from tests.conftest import make_cfg
from trainer.config.arguments import check_arguments
from trainer.config.validate import check_loaded, validate
from trainer.runtime.errors import ConfigError

validate_module = importlib.import_module("trainer.config.validate")  # the package exports the function

GOOD = [(), ("optimizer=adam", "scheduler=cosine"), ("optimizer=nesterov", "scheduler=plateau"),
        ("optimizer=rmsprop", "scheduler=step", "averaging=swa"), ("optimizer=lbfgs", "batch_size=full"),
        ("ensemble=bagging", "ensemble.members=2"),
        ("+experiment=digits_schedules", "scheduler=inverse_time")]
BAD = [(("optimizer=momentum", "optimizer.momentum=-0.5"), "Invalid momentum value: -0.5"),
       (("optimizer=adam", "optimizer.betas=[0.9,2.0]"), "Invalid beta parameter at index 1: 2.0"),
       (("+optimizer.lrr=0.1",), "Adam.__init__() got an unexpected keyword argument 'lrr'"),
       (("scheduler=plateau", "scheduler.factor=2"), "Factor should be < 1.0."),
       (("optimizer=nesterov", "optimizer.momentum=0"), "Nesterov momentum requires a momentum")]


@pytest.fixture
def nothing_built(monkeypatch):
    """Every torch optimizer, scheduler and module raises when constructed (its signature kept:
    `inspect.signature` reads it through `functools.wraps`)."""
    def refusing(init):
        @functools.wraps(init)
        def refuse(self, *args, **kwargs):
            raise AssertionError(f"{type(self).__name__} was constructed")
        return refuse

    bases = (torch.optim.Optimizer, torch.nn.Module, torch.optim.lr_scheduler.LRScheduler)
    for module in (torch.optim, torch.optim.lr_scheduler, torch.optim.swa_utils, torch.nn):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, bases) and "__init__" in vars(cls):
                monkeypatch.setattr(cls, "__init__", refusing(vars(cls)["__init__"]))
    for cls in bases:
        monkeypatch.setattr(cls, "__init__", refusing(vars(cls)["__init__"]))
    with pytest.raises(AssertionError, match="SGD was constructed"):  # the patch works
        torch.optim.SGD([torch.zeros(1)], lr=0.1)


@pytest.mark.parametrize("overrides", GOOD, ids=" ".join)
def test_validate_builds_no_torch_object_for_a_good_config(overrides, nothing_built):
    validate(make_cfg(*overrides))


@pytest.mark.parametrize(("overrides", "words"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_validate_names_a_bad_argument_in_torchs_words_without_building(overrides, words, nothing_built):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    group = overrides[-1].lstrip("+").split(".")[0].split("=")[0]
    assert words in str(err.value) and f"Fix or remove the {group}.* value it names" in str(err.value)


# (target, arguments): each breaks one rule of trainer.config.arguments' table.
RULES = [("torch.optim.SGD", {"lr": 0.1, "momentum": -0.5}),
         ("torch.optim.SGD", {"lr": 0.1, "weight_decay": -1}),
         ("torch.optim.SGD", {"lr": 0.1, "nesterov": True}), ("torch.optim.Adam", {"betas": [2.0, 0.9]}),
         ("torch.optim.Adam", {"eps": -1.0}), ("torch.optim.RMSprop", {"alpha": -1.0}),
         ("torch.optim.Adagrad", {"lr_decay": -1.0}),
         ("torch.optim.Adagrad", {"initial_accumulator_value": -1}),
         ("torch.optim.Adadelta", {"rho": 1.5}), ("torch.optim.NAdam", {"momentum_decay": -1.0}),
         ("torch.optim.Rprop", {"etas": [2.0, 3.0]}), ("torch.optim.SGD", {"lr": -1.0}),
         ("torch.optim.lr_scheduler.ReduceLROnPlateau", {"factor": 2.0}),
         ("torch.optim.lr_scheduler.ReduceLROnPlateau", {"mode": "up"}),
         ("torch.optim.lr_scheduler.ReduceLROnPlateau", {"threshold_mode": "x"}),
         ("torch.optim.lr_scheduler.CosineAnnealingWarmRestarts", {"T_0": 0}),
         ("torch.optim.lr_scheduler.StepLR", {"step_size": 2, "gama": 0.5})]


@pytest.mark.parametrize(("target", "args"), RULES, ids=[f"{t.rsplit('.', 1)[-1]}-{a}" for t, a in RULES])
def test_the_table_says_what_torch_says_when_it_builds(target, args):
    """The declared rules and the signature check agree with torch itself (a torch upgrade that
    changes a rule or its words fails here)."""
    scheduler = "lr_scheduler" in target
    params = [torch.zeros(1, requires_grad=True)]
    first = torch.optim.SGD(params, lr=0.1) if scheduler else params
    with pytest.raises((TypeError, ValueError)) as built:
        get_object(target)(first, **args)
    with pytest.raises(ConfigError) as checked:
        check_arguments({"_target_": target, **args}, "scheduler" if scheduler else "optimizer")
    assert str(built.value) in str(checked.value), (str(built.value), str(checked.value))


def test_an_unknown_target_is_named():
    with pytest.raises(ConfigError, match="optimizer=torch.optim.Foo cannot be built .* 'torch.optim.Foo'"):
        check_arguments({"_target_": "torch.optim.Foo", "lr": 0.1}, "optimizer")


@pytest.mark.parametrize(("overrides", "known"), [(("data=regression",), True),
                                                  (("data=csv", "data.path=x.csv"), False)])
def test_the_task_checks_run_once_before_or_after_the_data_loads(monkeypatch, overrides, known):
    """A config that fixes its task is checked against it by validate; a file's task only once it
    is loaded (check_loaded): either way once."""
    calls = []
    monkeypatch.setattr(validate_module, "check_task", lambda cfg, task: calls.append(task))
    cfg = make_cfg(*overrides)
    validate(cfg)
    assert calls == (["regression"] if known else [])
    check_loaded(cfg, "regression")
    assert calls == ["regression"]


def test_a_file_task_is_checked_once_loaded():
    cfg = make_cfg("data=csv", "data.path=x.csv", "monitor=val/acc")
    validate(cfg)  # the file's task is not known yet
    with pytest.raises(ConfigError, match="monitor=val/acc needs classes"):
        check_loaded(cfg, "regression")
    check_loaded(cfg, "classification")

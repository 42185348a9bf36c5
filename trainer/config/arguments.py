"""The optimizer's and the scheduler's arguments, checked from the config alone before anything is
built: their names against the class's signature (`inspect`, which constructs nothing), their values
against a declared table of the rules torch applies when it builds them, in torch's own words.
trainer.config.build then constructs them; a rule this table lacks still stops the run there, with
the same paragraph (`refusal`), once the data is loaded.

Importing this module loads no torch; checking a node imports the class it names (`_target_`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainer.runtime.errors import ConfigError


def refusal(group: str, target: object, options: Mapping[str, Any], cause: object) -> ConfigError:
    """The one paragraph for an optimizer or scheduler that its options cannot build."""
    return ConfigError(f"{group}={target} cannot be built from the config {dict(options)}: {cause}. Fix "
                       f"or remove the {group}.* value it names")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _at_least_zero(words: str) -> Callable[[Any], str | None]:
    return lambda v: f"{words}: {v}" if _number(v) and v < 0 else None


def _betas(v: Any) -> str | None:
    for i, beta in enumerate(v if isinstance(v, list | tuple) else []):
        if _number(beta) and not 0.0 <= beta < 1.0:
            return f"Invalid beta parameter at index {i}: {beta}"
    return None


def _etas(v: Any) -> str | None:
    if isinstance(v, list | tuple) and len(v) == 2 and all(map(_number, v)) and not 0.0 < v[0] < 1.0 < v[1]:
        return f"Invalid eta values: {v[0]}, {v[1]}"
    return None


def _nesterov(args: Mapping[str, Any]) -> str | None:
    wrong = args.get("momentum", 0) <= 0 or args.get("dampening", 0) != 0
    if args.get("nesterov") and wrong:
        return "Nesterov momentum requires a momentum and zero dampening"
    return None


# torch.optim's checks in its optimizers' __init__ (torch 2.x), by argument name, with its messages.
OPTIMIZER_RULES: dict[str, Callable[[Any], str | None]] = {
    "lr": _at_least_zero("Invalid learning rate"),
    "momentum": _at_least_zero("Invalid momentum value"),
    "weight_decay": _at_least_zero("Invalid weight_decay value"),
    "eps": _at_least_zero("Invalid epsilon value"),
    "alpha": _at_least_zero("Invalid alpha value"),
    "lr_decay": _at_least_zero("Invalid lr_decay value"),
    "momentum_decay": _at_least_zero("Invalid momentum_decay value"),
    "initial_accumulator_value": _at_least_zero("Invalid initial_accumulator_value value"),
    "rho": lambda v: f"Invalid rho value: {v}" if _number(v) and not 0.0 <= v <= 1.0 else None,
    "betas": _betas,
    "etas": _etas,
}
# torch.optim.lr_scheduler's, likewise, by class.
SCHEDULER_RULES: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "ReduceLROnPlateau": {
        "factor": lambda v: "Factor should be < 1.0." if _number(v) and v >= 1.0 else None,
        "mode": lambda v: f"mode {v} is unknown!" if v not in ("min", "max") else None,
        "threshold_mode": lambda v: f"threshold mode {v} is unknown!" if v not in ("rel", "abs") else None,
    },
    "CosineAnnealingWarmRestarts": {
        "T_0": lambda v: f"Expected positive integer T_0, but got {v}" if not isinstance(v, int) or v <= 0
        else None,
    },
}


def _rules(target: object) -> Mapping[str, Callable[[Any], str | None]]:
    """torch's rules for the arguments of `target` (none for a class or function of another package)."""
    module, name = getattr(target, "__module__", ""), getattr(target, "__name__", "")
    if module.startswith("torch.optim.lr_scheduler"):
        return SCHEDULER_RULES.get(name, {})
    return OPTIMIZER_RULES if module.startswith("torch.optim") else {}


def momentum_below_one(node: DictConfig | Mapping[str, Any], group: str) -> None:
    """torch takes any momentum >= 0, but from 1 on the velocity never decays: every step adds the
    whole past, and the run diverges whatever the learning rate (its message would say lower lr)."""
    momentum = node.get("momentum")
    if _number(momentum) and momentum >= 1:
        raise ConfigError(f"{group}.momentum={momentum} must be below 1 (e.g. 0.9): with momentum >= 1 "
                          "the velocity never decays and the steps grow without bound, whatever the "
                          "learning rate")


def numbers_where_numbers(node: Mapping[str, Any], group: str,
                          params: Mapping[str, inspect.Parameter]) -> None:
    """A word where the target's argument is a number (`optimizer.lr=abc`), named by its key: torch's
    own message would be a comparison of a str with a float."""
    for name, value in node.items():
        if not isinstance(value, str) or name.startswith("_") or name not in params:
            continue
        default, annotation = params[name].default, str(params[name].annotation)
        if not (isinstance(default, str) or "str" in annotation or "Literal" in annotation):
            raise ConfigError(f"{group}.{name}={value!r} must be a number")


def check_arguments(node: DictConfig | Mapping[str, Any], group: str,
                    extra: Mapping[str, Any] | None = None) -> None:
    """`node` (an optimizer or scheduler, `_target_` and its options, plus `extra` options) would
    build: the target imports, takes these arguments (after its first, the parameters or the
    optimizer), and each value passes torch's rule for it."""
    from hydra.utils import get_object

    resolved = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    options = {**resolved, **(extra or {})}  # the values checked
    shown = {**(OmegaConf.to_container(node) if isinstance(node, DictConfig) else node), **(extra or {})}
    target = options.get("_target_")
    try:
        built = get_object(str(target))
        signature = inspect.signature(built)
    except Exception as exc:  # not importable, or not a callable
        raise refusal(group, target, shown, exc.__cause__ or exc) from None
    numbers_where_numbers(options, group, signature.parameters)
    momentum_below_one(options, group)
    given = {k: v for k, v in options.items() if not str(k).startswith("_")}
    try:
        bound = signature.bind(None, **given)  # None: the parameters (or the optimizer) of the run
    except TypeError as exc:  # an argument the target does not take, or one it needs: torch's words
        called = f"{built.__name__}.__init__()" if isinstance(built, type) else f"{built.__name__}()"
        raise refusal(group, target, shown, f"{called} {exc}") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    problems = [rule(args[k]) for k, rule in _rules(built).items() if k in given]
    problems.append(_nesterov(args) if "nesterov" in args else None)
    for problem in problems:
        if problem:
            raise refusal(group, target, shown, problem)


def arm_options(target: str, per_arm: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Of a sweep's per-arm options (`schedule.per_arm`: `tau` is the 1/k arm's), those the arm
    `target` takes, and the names of those it does not (an unknown target: none taken)."""
    from hydra.utils import get_object

    if not per_arm:
        return {}, []
    try:
        accepted = inspect.signature(get_object(target)).parameters
    except Exception:  # an unknown target: check_arguments reports it
        return {}, []
    return {k: v for k, v in per_arm.items() if k in accepted}, [k for k in per_arm if k not in accepted]

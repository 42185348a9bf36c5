"""The search space checked before the first trial, and each trial's config before it is launched.

Every value a trial can draw (each choice, each point of a `range`, both bounds of an `interval`)
must compose with the command line's other overrides into a config whose keys each pass the checks
a command-line value passes (trainer.config.validate's check_values and check_optimization: the
optimizer's and scheduler's arguments against torch's rules, nothing built). Checks that relate
keys are left to the trials: a pair of values is only wrong for the trials that draw both, and such
a trial's job logs the error and the study goes on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution

from hydra_plugins.trainer_optuna_sweeper import _space
from trainer.runtime.checks import did_you_mean
from trainer.runtime.errors import ConfigError, UserError

FIX = "fix it in hydra.sweeper.params or on the command line"


def drawn(dist: BaseDistribution) -> list[Any]:
    """The values to check: every choice or point of a stepped range, else the interval's bounds
    (each key's own check is a range, so the bounds stand for the values between them)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if step is not None:
        n = round((dist.high - dist.low) / step) + 1
        if n <= 1_000:
            return [dist.low + i * step if isinstance(step, int) else round(dist.low + i * step, 12)
                    for i in range(n)]
    return [dist.low, dist.high]


def compose(loader: Any, master: DictConfig, overrides: list[str]) -> DictConfig:
    """The job's config as the launcher composes it; ConfigError if it cannot be composed (a group
    option or a key that does not exist)."""
    try:
        return loader.load_sweep_config(master, overrides)
    except Exception as exc:  # Hydra's ConfigCompositionException and its kin: their first line says why
        raise ConfigError(str(exc).strip().split("\n")[0]) from None


# The config whose Hydra node HydraConfig last copied, and that copy: check_space sets value after
# value into one config (`with_value`), and the copy (~10 ms) is made once for it. Emptied after.
_HYDRA_COPY: list[DictConfig] = []


def check_config(cfg: DictConfig) -> None:
    """What a command-line value must pass on its own (no check that relates two keys), with the
    job's own Hydra config in place, as the job sees it (`${hydra:runtime.choices.optimizer}`)."""
    from hydra.core.hydra_config import HydraConfig

    from hydra_plugins.trainer_vectorized_launcher._jobs import without_hydra
    from trainer.config.validate import check_optimization, check_values

    saved = HydraConfig.instance().cfg
    if not (_HYDRA_COPY and _HYDRA_COPY[0] is cfg):
        HydraConfig.instance().set_config(cfg)  # also makes cfg.hydra read-only: the copy stays equal
        _HYDRA_COPY[:] = [cfg, HydraConfig.instance().cfg]
    HydraConfig.instance().cfg = _HYDRA_COPY[1]
    try:
        job = without_hydra(cfg)  # a copy of the rest only: the search's check makes hundreds
        check_values(job)
        check_optimization(job)
    finally:
        HydraConfig.instance().cfg = saved


def problem(loader: Any, master: DictConfig, params: dict[str, Any], fixed: dict[str, str],
            cfg: DictConfig | None = None) -> str | None:
    """Why the config of these values (or `cfg`, already composed) is rejected, or None."""
    try:
        check_config(compose(loader, master, _space.as_overrides(params, fixed)) if cfg is None else cfg)
    except UserError as exc:
        return str(exc)
    return None


def partners(space: dict[str, BaseDistribution], key: str) -> Iterator[dict[str, Any]]:
    """One other choice at a time: a value may need another key's choice (an optimizer's argument)."""
    for other, dist in space.items():
        if other != key and isinstance(dist, CategoricalDistribution):
            for choice in dist.choices:
                yield {other: choice}


def group_hint(loader: Any, key: str, value: Any) -> str:
    """`(did you mean adam?)` and the options, where `key` is a config group."""
    options = group_options(loader, key)
    if not options:
        return ""
    return f"{did_you_mean(value, options)}; the configs of {key} are {sorted(options)}"


def group_options(loader: Any, key: str) -> list[str]:
    """The configs of the group `key` names (`optimizer`, `+experiment/arm`); empty for a value key."""
    try:
        return list(loader.get_group_options(key.lstrip("+~")))
    except Exception:  # not a group
        return []


def with_value(base: DictConfig | None, key: str, value: Any) -> DictConfig | None:
    """`base` with one value key set, as composing it would set it (None where only composing can
    tell: no base, a key the base does not have, a typed key that refuses the value)."""
    path = key.lstrip("+")
    if base is None or key.startswith("~") or OmegaConf.select(base, path, default=_ABSENT) is _ABSENT:
        return None
    try:
        OmegaConf.update(base, path, value, merge=False)
    except Exception:
        return None
    return base


_ABSENT = object()


def check_space(space: dict[str, BaseDistribution], fixed: dict[str, str], loader: Any,
                master: DictConfig) -> None:
    """Raise ConfigError, naming the key and the value, if a trial could draw a value no run accepts.

    The command line's config is composed once; a value key's values are set into a copy of it, and
    only a group's choices (`optimizer=adam`) are composed each (about 0.2 s each on a 2-core CPU)."""
    try:
        _check_space(space, fixed, loader, master)
    finally:
        _HYDRA_COPY.clear()


def _check_space(space: dict[str, BaseDistribution], fixed: dict[str, str], loader: Any,
                 master: DictConfig) -> None:
    try:
        base_cfg: DictConfig | None = compose(loader, master, _space.as_overrides({}, fixed))
    except ConfigError:
        base_cfg = None
    base = problem(loader, master, {}, fixed, base_cfg)
    for key, dist in space.items():
        values = drawn(dist)
        own = None if group_options(loader, key) or base_cfg is None else copy.deepcopy(base_cfg)
        for value in values:
            cfg = with_value(own, key, value)
            why = problem(loader, master, {key: value}, fixed, cfg)
            if why is None or any(problem(loader, master, {key: value, **p}, fixed) is None
                                  for p in partners(space, key)):
                continue
            if why == base:  # the command line's fixed values are wrong for every trial
                raise ConfigError(why)
            shown = _space.as_overrides({key: value}, {})[0]
            kind = "choices" if isinstance(dist, CategoricalDistribution) else "values"
            why = why.removeprefix("error: ") + group_hint(loader, key, value)
            raise ConfigError(f"the search space of {key} cannot be searched: its {kind} include {shown}, "
                              f"which a run rejects: {why}; {FIX}")


def composable(loader: Any, master: DictConfig, params: dict[str, Any], fixed: dict[str, str]) -> str | None:
    """Why this trial's config cannot be composed (a pair of values the space check let through),
    or None: such a trial is marked failed instead of stopping the launcher's batch."""
    try:
        compose(loader, master, _space.as_overrides(params, fixed))
    except ConfigError as exc:
        return str(exc)
    return None

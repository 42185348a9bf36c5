"""The search space: Hydra's sweep syntax (`interval`, `choice`, `range`, `tag(log, ...)`, and
`tag(int, interval(...))` for whole numbers) as Optuna distributions, and a trial's values back as
command-line overrides."""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from trainer.runtime.errors import ConfigError


def distribution(override: Override) -> BaseDistribution | str:
    """The distribution of a sweep override; the value itself (a string) for a plain `key=value`."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():  # range(start, stop, step): stop excluded, as in Python
        assert isinstance(value, RangeSweep)
        if value.step == 0:
            raise ConfigError(f"the search space {override.input_line} cannot be searched: its step is 0; "
                              "write range(start, stop, step) with a step that is not 0")
        values = sorted(v if isinstance(v, int) else round(v, 12) for v in override.sweep_iterator())
        if not values:
            raise ConfigError(f"{override.input_line} is empty; range(start, stop, step) excludes stop")
        if all(isinstance(v, int) for v in values):  # a negative step: the same points, from the lowest
            return IntDistribution(values[0], values[-1], step=abs(int(value.step)))
        return FloatDistribution(values[0], values[-1], step=abs(float(value.step)))
    assert isinstance(value, IntervalSweep)  # Hydra reads its bounds as floats; tag(int, ...): whole numbers
    check_interval(override.input_line, value)
    log = "log" in value.tags
    if "int" in value.tags:
        return IntDistribution(int(value.start), int(value.end), log=log)
    return FloatDistribution(float(value.start), float(value.end), log=log)


def check_interval(line: str, value: IntervalSweep) -> None:
    """The bounds Optuna would refuse with a traceback, or truncate (`tag(int, ...)` of 8.5)."""
    low, high = float(value.start), float(value.end)
    problem = None
    if not low <= high:
        problem = (f"its low bound {value.start:g} is above its high bound {value.end:g}: write "
                   "interval(low, high)")
    elif "log" in value.tags and low <= 0:
        problem = "a log scale needs bounds above 0" + (
            f", not {value.start:g}: e.g. tag(log, interval(1e-05, {value.end:g}))" if high > 0 else "")
    elif "int" in value.tags and not (low.is_integer() and high.is_integer()):
        problem = (f"tag(int, ...) draws whole numbers, so its bounds must be whole numbers, not "
                   f"{value.start:g} and {value.end:g}")
    if problem:
        raise ConfigError(f"the search space {line} cannot be searched: {problem}")


def parse(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Searched keys with their distributions, and keys with one fixed value (later ones win)."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
    except Exception as exc:  # Hydra's OverrideParseException, with the position of the error
        raise ConfigError(f"hydra.sweeper.params cannot be read: {exc}") from None
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        found = distribution(override)
        if isinstance(found, BaseDistribution):
            space[key] = found
        else:
            fixed[key] = found
    return space, fixed


def grid(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of each key, for the grid sampler: choices, or the points of a stepped range."""
    out = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[key] = list(dist.choices)
        elif getattr(dist, "step", None) is not None:
            n = round((dist.high - dist.low) / dist.step) + 1
            out[key] = [dist.low + i * dist.step for i in range(n)]
        else:
            raise ConfigError(f"the grid sampler cannot enumerate {key}, a continuous interval; give "
                              f"it as choice(...) or range(start, stop, step)")
    return out


def suggest(trial: Trial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """Draw every searched key from the trial's sampler (a retried trial gets its stored values)."""
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return dict(trial.params)


def as_overrides(params: dict[str, Any], fixed: dict[str, str]) -> list[str]:
    """The job's command-line overrides: the trial's values, then the fixed ones."""
    def text(value: Any) -> str:
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return [f"{k}={text(v)}" for k, v in params.items()] + [f"{k}={v}" for k, v in fixed.items()]


def quoted(value: str) -> str:
    """`value` as a quoted override value (paths and URLs hold characters Hydra's grammar reserves)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

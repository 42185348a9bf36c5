"""What a config value may be, declared beside its key in the schema, and the one-paragraph error
a value outside it gets.

`key(check)` is a dataclass field whose metadata carries `check`; `trainer.config.validate` walks
the schema and calls every check before any work. A check names the key, the value, what is
allowed and, where there is one, the fix.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, ListConfig

from trainer.runtime.errors import ConfigError


def did_you_mean(value: object, allowed: Sequence[object], prefix: str = "", suffix: str = "") -> str:
    """' (did you mean PREFIX+X+SUFFIX?)' for the allowed word X closest to `value`, or ''."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.5)
    return f" (did you mean {prefix}{close[0]}{suffix}?)" if close else ""


class Check:
    """A rule for one key's value; `__call__(key, value)` raises ConfigError when it is broken."""

    def __call__(self, key: str, value: Any) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class OneOf(Check):
    """One of a fixed set of values (words, or true/false); `values` may be a function that
    returns them, read when a value is checked (e.g. the keys of models.mlp.ACTIVATIONS, declared
    beside what they build)."""

    values: tuple[Any, ...] | Callable[[], Sequence[Any]]

    def __call__(self, key: str, value: Any) -> None:
        values = tuple(self.values() if callable(self.values) else self.values)
        if not any(type(value) is type(v) and value == v for v in values):  # 1 is not true
            shown = [str(v).lower() if isinstance(v, bool) else v for v in values]
            raise ConfigError(f"{key}={value!r} is not allowed{did_you_mean(value, shown)}; "
                              f"choose one of {shown}")


@dataclass(frozen=True)
class Flag(Check):
    """true or false."""

    def __call__(self, key: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")


def _number(value: Any, whole: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if whole else isinstance(value, int | float) and not math.isnan(value)


@dataclass(frozen=True)
class Number(Check):
    """A number (`whole`: an int) in a range; `words` are allowed too (e.g. `auto`), and None when
    `optional`. `low_open`/`high_open` exclude the ends. `hint` is appended to the message."""

    whole: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = True
    words: tuple[str, ...] = ()
    optional: bool = False
    hint: str = ""

    def allowed(self) -> str:
        kind = "whole number" if self.whole else "number"
        if self.low == 0 and self.low_open and self.high is None:
            text = f"a positive {kind}"
        elif self.high is None:
            text = f"a {kind} >= {self.low:g}" if self.low is not None else f"a {kind}"
        else:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            text = f"a {kind} in {left}{self.low:g}, {self.high:g}{right}"
        words = [*(repr(w) for w in self.words), *(["null"] if self.optional else [])]
        return text + (f" or {' or '.join(words)}" if words else "")

    def __call__(self, key: str, value: Any) -> None:
        if (value is None and self.optional) or value in self.words:
            return
        ok = _number(value, self.whole)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        if not ok:
            near = did_you_mean(value, self.words) if isinstance(value, str) and self.words else ""
            raise ConfigError(f"{key}={value!r} must be {self.allowed()}{near}{self.hint}")


@dataclass(frozen=True)
class Widths(Check):
    """A positive whole number, or a list of them (one per hidden layer)."""

    def __call__(self, key: str, value: Any) -> None:
        for w in value if isinstance(value, ListConfig | list) else [value]:
            Number(whole=True, low=0, low_open=True)(key, w)


@dataclass(frozen=True)
class Text(Check):
    """A string (a path, a column name), or None when `optional`; `required` names the fix."""

    optional: bool = True
    required: str = ""
    number_ok: bool = False  # e.g. a column given by its number

    def __call__(self, key: str, value: Any) -> None:
        if value is None or value == "":
            if self.required:
                raise ConfigError(f"{key} is required {self.required}")
            if self.optional:
                return
        if not (isinstance(value, str) or (self.number_ok and _number(value, True))):
            raise ConfigError(f"{key}={value!r} must be a text (a path or a name)")


@dataclass(frozen=True)
class OneChar(Check):
    """One character (e.g. a delimiter), or one of `words`."""

    words: tuple[str, ...] = ()

    def __call__(self, key: str, value: Any) -> None:
        if not (isinstance(value, str) and (len(value) == 1 or value in self.words)):
            words = " or ".join(self.words)
            raise ConfigError(f"{key}={value!r} must be one character, e.g. ',' or ';'"
                              + (f", or {words}" if words else ""))


@dataclass(frozen=True)
class Anything(Check):
    """Checked elsewhere (e.g. by the object it configures) or free."""

    def __call__(self, key: str, value: Any) -> None:
        return


def key(check: Check, default: Any = MISSING, number: bool = False) -> Any:
    """A schema field whose values must pass `check`; the value itself comes from the YAML file.

    Typed `Any` for OmegaConf, so a wrong type reaches `check`, whose message names the allowed
    values and the fix (OmegaConf's own says only that the type differs). `number`: a numeric key
    whose range someone else checks (torch), for the HParams column's type."""
    return field(default=default, metadata={"check": check, "number": number or isinstance(check, Number)})


POSITIVE = Number(whole=True, low=0, low_open=True)
POSITIVE_NUMBER = Number(low=0, low_open=True)
WHOLE = Number(whole=True, low=0)
FRACTION = Number(low=0, high=1)

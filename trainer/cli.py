"""Shared by the command lines: `key=value` options and the one-paragraph error with its exit status."""

from __future__ import annotations

import sys
import textwrap
from typing import NoReturn

from trainer.errors import ConfigError


def paragraph(message: str) -> str:
    """An error message as the one paragraph the user reads."""
    # Never break inside a word: file paths in the message must stay whole to be copied.
    return "error: " + textwrap.fill(message, width=100, subsequent_indent="  ",
                                     break_long_words=False, break_on_hyphens=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """One paragraph on stderr, then exit with `code`."""
    print(paragraph(message), file=sys.stderr)
    sys.exit(code)


def parse_options(argv: list[str], defaults: dict[str, str | None], usage: str,
                  positional: str | None = None) -> dict[str, str | None]:
    """`key=value` arguments in the style of the trainer's Hydra command line.

    `positional` names the option that a bare argument sets (e.g. the sweep folder); a default of
    None marks an option as required.
    """
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    options = dict(defaults)
    given: set[str] = set()
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep and positional is not None and positional not in given:
            key, value = positional, arg
        elif not sep or key not in defaults:
            raise ConfigError(f"{arg!r} is not an option; the options are "
                              f"{', '.join(f'{k}=...' for k in defaults)}. Usage: {usage}")
        options[key] = value
        given.add(key)
    missing = [k for k, v in options.items() if v is None]
    if missing:
        raise ConfigError(f"{missing[0]}=... is required. Usage: {usage}")
    return options

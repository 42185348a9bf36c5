"""Shared by the command lines: `key=value` options and the one-paragraph error with its exit status."""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib.util
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from trainer.runtime.errors import ConfigError, UserError


def paragraph(message: str) -> str:
    """An error message as the one paragraph the user reads."""
    # Never break inside a word: file paths in the message must stay whole to be copied.
    return "error: " + textwrap.fill(message, width=100, subsequent_indent="  ",
                                     break_long_words=False, break_on_hyphens=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """One paragraph on stderr, then exit with `code`."""
    print(paragraph(message), file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A command's user error (trainer.runtime.errors.UserError) as its one paragraph and exit 2; with
    HYDRA_FULL_ERROR=1, as Hydra's own commands do, the traceback instead."""
    try:
        yield
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(exc))


def quick_start() -> None:
    """Keep Python's garbage collector off the objects of the imports (`python -m trainer`, once
    its module imports, torch included, are done).

    A full collection walks every object the collector tracks: after torch, TensorBoard and
    torch._dynamo (which `torch.optim` imports at the first optimizer) hundreds of thousands, and
    Python's finalization ends with one more. On this project's 2-core CPU that was 1 s of the
    3.7 s of CPU time of a run of the default experiment. `gc.freeze()` moves the objects alive now
    (torch's, Hydra's) out of the collector's sight for good, and again as the last atexit handler
    (registered first: they run last-in, first-out), after logging's, Hydra's and TensorBoard's
    handlers have run. Reference cycles made later are still collected while the process runs;
    only those left at exit stay unfreed, which the operating system reclaims anyway, and nothing
    is written then (every run closes its files before it returns)."""
    gc.freeze()
    atexit.register(gc.freeze)


# Our Hydra plugins (hydra_plugins/ in the repository root, installed as that namespace's packages).
PLUGINS = ("hydra_plugins.trainer_vectorized_launcher", "hydra_plugins.trainer_optuna_sweeper")


def expose_hydra_plugins() -> None:
    """Let Hydra find our plugins from any folder under an editable install (`make`, `pip install -e .`).

    Hydra never imports a plugin by name: it lists the folders of the `hydra_plugins` namespace
    package and imports what it finds (hydra/core/plugins.py, `_scan_all_plugins`:
    `pkgutil.walk_packages(hydra_plugins.__path__)`), and `hydra/launcher=vectorized` or
    `hydra/sweeper=optuna` names a class from that list ("Unknown plugin class" otherwise). A real
    install (`pip install .`, a wheel) puts our plugins in site-packages/hydra_plugins/, which lists.
    setuptools' editable install (PEP 660) serves them through an import hook instead, whose entry
    in `hydra_plugins.__path__` (`__editable__.trainer-*.finder.__path_hook__`) pkgutil cannot list:
    they import, but Hydra never sees them; in the repository root they were only found because the
    current folder is on sys.path. So, when a plugin's `hydra_plugins/` folder is not a listed entry,
    the folder that holds it goes at the end of sys.path (nothing installed is shadowed), and Python
    recomputes a namespace package's `__path__` when sys.path changes. Call it before Hydra's first
    plugin scan (the start of an entry point); with a real install it changes nothing. Rather than
    `pip install -e . --config-settings editable_mode=compat` in the Makefile (a .pth line with the
    repository root, which lists too): that fixes only `make`'s venv, not a user's own plain
    `pip install -e .`, and setuptools marks the compat mode deprecated.
    """
    for name in PLUGINS:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # no hydra_plugins at all: Hydra says what is missing
            continue
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).resolve().parent.parent  # .../hydra_plugins
        listed = sys.modules["hydra_plugins"].__path__  # imported by find_spec
        if not any(Path(entry).is_dir() and Path(entry).resolve() == folder for entry in listed):
            sys.path.append(str(folder.parent))


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


def probe_folder(path: Path) -> None:
    """Make `path` a folder if it is not one, and write and remove a file in it; an OSError says why
    it cannot hold files (a file in its place, a read-only or virtual file system)."""
    import os
    import tempfile

    if path.exists() and not path.is_dir():
        raise NotADirectoryError(20, "it is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
    os.close(fd)
    os.unlink(probe)

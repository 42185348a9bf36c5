"""trainer.runtime.cli.quick_start: the collector no longer walks the start's objects, nor at exit."""

from __future__ import annotations

import atexit
import gc

import pytest

from trainer.runtime.cli import quick_start


def test_quick_start_freezes_now_and_last_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    alive = object.__new__(type("Alive", (), {}))  # a tracked object made before the start
    try:
        quick_start()
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(alive) and not any(alive is o for o in gc.get_objects())  # frozen: unseen
        assert registered == [gc.freeze]  # at exit, after the handlers registered later
    finally:
        gc.unfreeze()

"""trainer.vectorized.runner: threads=auto counts by the group's step, M members' work at once."""

from __future__ import annotations

import pytest

from tests.conftest import make_cfg, read_metrics
from trainer.runtime import device
from trainer.vectorized import runner


@pytest.mark.parametrize(("members", "threads"), [(1, 1), (3, 2)])
def test_auto_threads_by_the_groups_work(tmp_path, monkeypatch: pytest.MonkeyPatch, members: int,
                                         threads: int) -> None:
    # gaussians (2 features, 3 classes) on the default 2-128-128-3 net: 17,283 parameters at batch 64,
    # 1.1e6 a job, under a line of 2e6; 3 jobs' 3.3e6 above it, where auto gives torch's default (2)
    monkeypatch.setattr(device, "DEFAULT_THREADS", 2)
    monkeypatch.setattr(device, "ONE_THREAD_WORK", 2e6)
    counts = []
    real = runner.set_threads
    monkeypatch.setattr(runner, "set_threads",  # the count auto would set, recorded; the test runs on one
                        lambda *a: counts.append(device.threads_for(*a)) or real(1, *a[1:]))
    cfgs = [make_cfg("data=gaussians", "epochs=1", f"seed={s}") for s in range(members)]
    results = runner.run_members(cfgs, [tmp_path / str(s) for s in range(members)])
    assert counts == [threads]
    assert [r["status"] for r in results] == ["completed"] * members
    assert read_metrics(tmp_path / "0")["status"] == "completed"

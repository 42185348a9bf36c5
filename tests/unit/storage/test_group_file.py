"""The group's checkpoint file: a vectorized group that crashes, or is killed before it can write its
members' own checkpoints, continues with `resume=true` to the numbers of an uninterrupted group."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import make_cfg, read_metrics, read_scalars
from trainer.run import run
from trainer.storage.checkpoint import load_checkpoint
from trainer.storage.group_file import GroupSaver, group_file
from trainer.vectorized.runner import run_members

JOBS = [["seed=0", "optimizer.lr=0.003"], ["seed=1", "optimizer.lr=0.01"]]
PER_EPOCH = 20  # updates of batch 64 on the digits' training split


def cfgs(*extra: str) -> list:
    return [make_cfg("epochs=3", *job, *extra) for job in JOBS]


class CrashAt:
    """A fault injected into the group's loop: the stop check raises at the n-th update."""

    received = None

    def __init__(self, step: int) -> None:
        self.step, self.calls = step, 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls == self.step:
            raise RuntimeError("injected fault")
        return False


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return run_members(cfgs(), [out / str(i) for i in range(len(JOBS))]), out


@pytest.mark.parametrize(("spilled", "alone"), [(True, False), (False, False), (False, True)],
                         ids=["crash", "killed", "killed-resumed-alone"])
def test_a_stopped_group_resumes_to_the_uninterrupted_numbers(spilled, alone, uninterrupted, tmp_path,
                                                              monkeypatch, caplog):
    whole, whole_dir = uninterrupted
    outs = [tmp_path / str(i) for i in range(len(JOBS))]
    if not spilled:  # killed without warning: nothing runs after the fault, as after a SIGKILL
        monkeypatch.setattr(GroupSaver, "stored_files", lambda self, member: None)
    with pytest.raises(RuntimeError, match="injected fault"):
        run_members(cfgs(), outs, stop=CrashAt(PER_EPOCH + 5))  # in epoch 2
    monkeypatch.undo()
    for out in outs:
        files = sorted(p.name for p in (out / "checkpoints").iterdir())
        if spilled:  # the crash wrote each member's last epoch end (epoch 1) into its own files
            assert load_checkpoint(out / "checkpoints" / "last.pt")["fit"]["step"] == PER_EPOCH
        else:  # only the group file (beside the members' folders) holds it
            assert "in_group.pt" in files and "last.pt" not in files and "best.pt" not in files
    assert group_file(outs[0]).is_file()

    caplog.set_level(logging.INFO, logger="trainer")
    if alone:  # each job resumed as an ordinary run (the basic launcher, or `python -m trainer`)
        resumed = [run(cfg, out_dir=out) for cfg, out in zip(cfgs("resume=true"), outs, strict=True)]
    else:
        resumed = run_members(cfgs("resume=true"), outs)
    assert ("was in the group file" in caplog.text) is not spilled
    assert not group_file(outs[0]).exists()  # resumed job by job too: nothing left in the sweep folder
    rel = 1e-4 if alone else 1e-5  # a lone run's update sums in another order than the group's
    for i, out in enumerate(outs):
        mine, reference = resumed[i], whole[i]
        assert mine["status"] == "completed" and mine["steps"] == reference["steps"] == 3 * PER_EPOCH
        assert mine["resume"].startswith("continued from") and f"step {PER_EPOCH}" in mine["resume"]
        for key in ("val/loss", "val/acc", "test/loss", "test/acc", "train/loss", "best_epoch"):
            assert mine[key] == pytest.approx(reference[key], rel=rel), key
        val = read_scalars(out)["val/loss"]
        assert [s for s, _ in val] == [1, 2, 3]
        curve = [v for _, v in read_scalars(whole_dir / str(i))["val/loss"]]
        assert [v for _, v in val] == pytest.approx(curve, rel=rel)
        assert read_metrics(out)["status"] == "completed"
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_a_group_killed_at_its_first_group_file_write_starts_afresh_without_its_old_events(
        uninterrupted, tmp_path, monkeypatch):
    """Issue 29 item 4: the first group file was never written, so no member has a checkpoint; a
    resume starts each afresh, and TensorBoard shows each epoch once (not epoch 1 twice)."""
    whole, _ = uninterrupted
    outs = [tmp_path / str(i) for i in range(len(JOBS))]
    monkeypatch.setattr(GroupSaver, "_write", lambda self, bests, lasts, epoch: None)  # killed in it
    monkeypatch.setattr(GroupSaver, "stored_files", lambda self, member: None)  # nothing after a kill
    with pytest.raises(RuntimeError, match="injected fault"):
        run_members(cfgs(), outs, stop=CrashAt(PER_EPOCH + 5))  # in epoch 2
    monkeypatch.undo()
    for out in outs:
        assert [s for s, _ in read_scalars(out)["val/loss"]] == [1]
        assert not (out / "checkpoints" / "last.pt").exists()
    resumed = run_members(cfgs("resume=true"), outs)
    for i, out in enumerate(outs):
        assert "started afresh" in resumed[i]["resume"]
        assert resumed[i]["val/loss"] == pytest.approx(whole[i]["val/loss"], rel=1e-5)
        assert [s for s, _ in read_scalars(out)["val/loss"]] == [1, 2, 3]
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

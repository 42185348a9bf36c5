"""What a person sees in a terminal: the command run in a pseudo-terminal with a window size
(pty + TIOCSWINSZ), its output replayed on a terminal emulator (pyte), the screen read back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import script

BAR = re.compile(r"\d+%\||step/s|it/s")
EPOCH = re.compile(r"epoch +\d+/\d+ +train loss")


def in_terminal(args: list[str], cwd: Path, cols: int = 120, rows: int = 400) -> list[str]:
    """The screen's non-empty rows after `python -m trainer ARGS` ran in a cols x rows terminal
    (tall enough that nothing scrolls away): scripts/screenshots.py's pty and terminal emulator."""
    screen = script("screenshots").screen_of(["-m", "trainer", *args], cwd, cols=cols, rows=rows)
    return [row for row in screen if row.strip()]


@pytest.mark.slow
def test_epoch_lines_never_share_a_row_with_the_progress_bar(tmp_path):
    # digits with small batches: each epoch is long enough for the bar to be drawn mid-epoch
    rows = in_terminal(["epochs=4", "batch_size=8", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    epochs = [r for r in rows if EPOCH.search(r)]
    assert len(epochs) == 4, rows  # one row per epoch, each whole
    for row in rows:
        assert not (EPOCH.search(row) and BAR.search(row)), row
    assert not any(BAR.search(r) for r in rows), rows  # the bar is gone once the run has ended
    # a terminal's short prefix: the time, then the line
    assert all(re.match(r"\d\d:\d\d:\d\d epoch \d/4  train loss \d\.\d{4} acc \d\.\d{4}  val loss ", r)
               for r in epochs), epochs
    assert all(len(r) <= 110 for r in epochs)  # the time, then a line of about 100 characters
    assert any(r.startswith("run completed in") for r in rows)


@pytest.mark.slow
def test_a_sweep_ends_with_one_line_per_job_and_one_place_to_look(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "data=gaussians", "epochs=2", "optimizer.lr=0.01,0.1", f"hydra.sweep.dir={sweep}"]
    rows = in_terminal(args, tmp_path, cols=400)  # the temporary folder's long path on one row
    jobs = [r for r in rows if re.match(r"\d_optimizer\.lr=0\.0?1: completed in ", r)]
    assert len(jobs) == 2, rows
    assert not any("view with" in r and str(sweep) + "/" in r for r in rows)  # no per-job folder lines
    assert rows[-3:] == [f"sweep done: {sweep}", f"  compare the jobs: python -m trainer.report {sweep}",
                         f"  view with: tensorboard --logdir {sweep}"]

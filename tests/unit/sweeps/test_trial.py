"""A search job's link to its trial (trainer/sweeps/trial.py): the epochs it reports."""

from __future__ import annotations

import warnings

import optuna

from trainer.runtime.job import JobContext
from trainer.sweeps.trial import SWEEPER, epoch_reporter


def test_a_resumed_job_reports_each_epoch_once_without_a_warning(tmp_path):
    """A job killed after reporting epoch 1 but before its checkpoint trains epoch 1 again when
    resumed: the report of that epoch is the one the study holds, and Optuna has nothing to warn of."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="minimize")
    trial = study.ask()
    trial.report(0.5, 1)  # the killed process's report
    job = JobContext(hydra=True, num=trial.number, sweep_dir=tmp_path,
                     sweeper={"_target_": SWEEPER, "study_name": "s", "storage": url, "pruner": "none"})
    report = epoch_reporter(3, job)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report(1, 0.5) == "" and report(2, 0.4) == "" and report(3, 0.3) == ""
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3}

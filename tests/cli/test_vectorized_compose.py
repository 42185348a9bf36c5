"""The vectorized launcher, and Hydra's basic launcher, compose once per choice of config groups
(hydra_plugins/.../_compose.py), and not at all for a sweep that chooses none (the sweep's own
composition is its jobs' base); the vectorized launcher writes YAML with libyaml's emitter
(`_launch.save_yaml`): each job's `.hydra` files are those of Hydra's own composition and
`_save_config`, byte for byte."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra.core.utils import _save_config

from hydra_plugins.trainer_vectorized_launcher import _compose, _launch
from tests.conftest import cli_in_process, job_dirs

SWEEP = ("-m", "hydra/launcher=vectorized", "optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "seed=0,1",
         "data=gaussians", "epochs=1", "progress=false")
FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


# No sweep of a config group: every job's base is the sweep's own composition (`_compose.master_base`).
VALUES = ("-m", "hydra/launcher=vectorized", "optimizer=sgd", "optimizer.lr=0.1,0.01", "seed=0,1",
          "data=gaussians", "++model.width=16", "epochs=1", "progress=false")


def launched(tmp_path: Path, name: str, sweep_args: Sequence[str] = SWEEP) -> dict[int, Path]:
    """The sweep run in-process into tmp_path/sweep, then moved to tmp_path/NAME (hydra.yaml holds
    the sweep folder: both ways write into the same one)."""
    sweep = tmp_path / "sweep"
    done = cli_in_process(*sweep_args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sweep.rename(tmp_path / name)
    return job_dirs(tmp_path / name)


def fast_and_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweep_args: Sequence[str]
                  ) -> tuple[dict[int, Path], dict[int, Path], list[list[str]]]:
    """The sweep's job folders through the launcher's composer and through Hydra's composition of
    each job (and its files written by Hydra), and the composer's real compositions."""
    real_composer, compositions = _compose.composer, []

    def counting(loader, compose):  # the launcher's composer, with Hydra's real compositions counted
        def counted(master, overrides):
            compositions.append(list(overrides))
            return compose(master, overrides)
        return real_composer(loader, counted)

    with monkeypatch.context() as patch:
        patch.setattr(_compose, "composer", counting)
        fast = launched(tmp_path, "fast", sweep_args)
    with monkeypatch.context() as patch:
        patch.setattr(_compose, "composer", lambda loader, compose: compose)  # Hydra composes each job
        patch.setattr(_launch, "save_yaml", _save_config)  # and writes its files (OmegaConf.to_yaml)
        each = launched(tmp_path, "each", sweep_args)
    assert sorted(fast) == sorted(each)
    for num in fast:
        assert fast[num].name == each[num].name
        for name in FILES:
            assert (fast[num] / ".hydra" / name).read_bytes() == (each[num] / ".hydra" / name).read_bytes(), \
                f"job {num}: {name}"
    return fast, each, compositions


def test_job_files_equal_hydras_own_composition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _each, compositions = fast_and_each(tmp_path, monkeypatch, SWEEP)
    # one real composition per choice of groups (optimizer and data), with those choices alone; 8 jobs
    assert compositions == [["optimizer=sgd", "data=gaussians"], ["optimizer=adam", "data=gaussians"]]
    assert sorted(fast) == list(range(8))
    overrides = (fast[7] / ".hydra" / "overrides.yaml").read_text()
    assert overrides == ("- optimizer=adam\n- optimizer.lr=0.01\n- seed=1\n- data=gaussians\n- epochs=1\n"
                         "- progress=False\n")


def test_a_sweep_without_group_choices_composes_no_job(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Its jobs are copies of the sweep's own composition, with their values: no composition of
    their own, and the same files as Hydra's composition of each job."""
    fast, _each, compositions = fast_and_each(tmp_path, monkeypatch, VALUES)
    assert compositions == []
    assert sorted(fast) == list(range(4))
    config = (fast[3] / ".hydra" / "config.yaml").read_text()
    assert "seed: 1\n" in config and "lr: 0.01\n" in config and "width: 16\n" in config


# An Optuna search: each trial's job also sets the study's keys (`hydra.sweeper.study_name=...`).
SEARCH = ("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=0",
          "hydra.sweeper.study_name=s", "optimizer=sgd", "optimizer.lr=choice(0.1,0.01)", "data=gaussians",
          "epochs=1", "progress=false")


def test_a_search_composes_no_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values the Optuna sweeper gives each trial in the `hydra` node are applied as Hydra
    applies them, and listed in `hydra.overrides.hydra` after the sweep's own: no trial is composed,
    and its files are those of Hydra's composition of the trial."""
    fast, _each, compositions = fast_and_each(tmp_path, monkeypatch, SEARCH)
    assert compositions == [] and sorted(fast) == [0, 1]
    hydra_yaml = (fast[1] / ".hydra" / "hydra.yaml").read_text()
    assert "    - hydra.mode=MULTIRUN\n    - hydra.sweeper.storage='sqlite:" in hydra_yaml
    assert ("    - hydra.sweeper.study_name='s'\n    - hydra.sweeper.direction=maximize\n    task:\n"
            in hydra_yaml)


class Groups:
    """A config repository that knows only which names are config groups."""

    def group_exists(self, name: str) -> bool:
        return name in ("optimizer", "data")


@pytest.mark.parametrize(("task", "groups", "base"), [
    (["optimizer=sgd", "seed=0,1", "++model.width=16", "data=gaussians"], ["optimizer=sgd", "data=gaussians"],
     True),
    (["optimizer=sgd,adam", "seed=0,1"], ["optimizer=sgd"], False),  # a sweep of a config group
    (["optimizer=sgd", "seed=0,1", "+foo=1"], ["optimizer=sgd"], False),  # `+key=` twice: "already at"
    (["optimizer=sgd", "seed=0,1", "~model.norm"], ["optimizer=sgd"], False),  # `~key` twice: "not there"
    (["seed=0,1"], ["optimizer=sgd"], False),  # the jobs choose a group that the command line does not
])
def test_the_sweeps_own_composition_as_base(monkeypatch: pytest.MonkeyPatch, task: list[str],
                                            groups: list[str], base: bool) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    monkeypatch.setattr(_compose, "repository", lambda loader, master: Groups())
    master = OmegaConf.create({"hydra": {"overrides": {"task": task},
                                         "runtime": {"choices": {"optimizer": "sgd"}}}})
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides=groups)
    needed = _compose.master_base(None, master, parser, parsed)
    assert needed == ({"model.width"} if base else None)  # the plain value each job must set again
    master.hydra.runtime.choices.data = "???"  # a group left out: a job's composition refuses it
    assert _compose.master_base(None, master, parser, parsed) is None


def test_a_job_without_the_sweeps_values_goes_to_hydra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that does not set one of the command line's values again (a sweeper that drops it) is
    not a copy of the sweep's composition, which holds that value: Hydra composes it."""
    from omegaconf import OmegaConf

    monkeypatch.setattr(_compose, "repository", lambda loader, master: Groups())
    dirname = {"kv_sep": "=", "item_sep": ",", "exclude_keys": []}
    master = OmegaConf.create({"seed": 0, "model": {"width": 16}, "hydra": {
        "overrides": {"task": ["seed=0,1", "++model.width=16"]}, "runtime": {"choices": {"optimizer": "sgd"}},
        "job": {"override_dirname": "", "config": {"override_dirname": dirname}}}})
    calls = []
    load = _compose.composer(None, lambda m, overrides: calls.append(list(overrides)) or "hydra's")
    assert load(master, ["seed=0"]) == "hydra's"
    assert calls == [["seed=0"]]
    job = load(master, ["seed=1", "++model.width=16"])  # one that sets it again: a copy, no composition
    assert calls == [["seed=0"]] and job.seed == 1
    assert job.hydra.job.override_dirname == "++model.width=16,seed=1"


def test_the_basic_launchers_job_files_equal_hydras_own_composition(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's basic launcher composes as the vectorized launcher does (`_compose.ComposeByGroups`): a
    sweep of values alone composes no job, each job a copy of the sweep's own composition with its
    values (the sweeper's check's and the launcher's), and the files are Hydra's byte for byte."""
    values = [a for a in VALUES if a != "hydra/launcher=vectorized" and not a.startswith("seed=")]
    copies, real_job_config = [], _compose.job_config
    monkeypatch.setattr(_compose, "job_config", lambda *a: copies.append(1) or real_job_config(*a))
    fast, _each, compositions = fast_and_each(tmp_path, monkeypatch, values)
    assert compositions == [] and sorted(fast) == [0, 1]
    assert len(copies) >= 2  # each job a copy of the sweep's own composition (the check's and the launcher's)


def test_hydra_overrides_and_errors_go_to_hydra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that sets a `hydra.` key, or whose overrides fail on the fast path, is Hydra's to compose
    (its config, or its error for the user, is Hydra's own)."""
    calls = []

    def compose(master, overrides):
        calls.append(list(overrides))
        return "hydra's"

    load = _compose.composer(object(), compose)
    assert load(None, ["hydra.job.name=x", "seed=1"]) == "hydra's"  # a hydra override: never split
    assert load(None, ["seed=1"]) == "hydra's"  # no master config to split against: Hydra's call
    assert calls == [["hydra.job.name=x", "seed=1"], ["seed=1"]]

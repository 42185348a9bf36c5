"""The vectorized launcher, and Hydra's basic launcher, compose once per choice of config groups
(hydra_plugins/.../_compose.py); the vectorized launcher writes YAML with libyaml's emitter
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


def launched(tmp_path: Path, name: str, sweep_args: Sequence[str] = SWEEP) -> dict[int, Path]:
    """The sweep run in-process into tmp_path/sweep, then moved to tmp_path/NAME (hydra.yaml holds
    the sweep folder: both ways write into the same one)."""
    sweep = tmp_path / "sweep"
    done = cli_in_process(*sweep_args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sweep.rename(tmp_path / name)
    return job_dirs(tmp_path / name)


def test_job_files_equal_hydras_own_composition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_composer, compositions = _compose.composer, []

    def counting(loader, compose):  # the launcher's composer, with Hydra's real compositions counted
        def counted(master, overrides):
            compositions.append(list(overrides))
            return compose(master, overrides)
        return real_composer(loader, counted)

    monkeypatch.setattr(_compose, "composer", counting)
    fast = launched(tmp_path, "fast")
    # one real composition per choice of groups (optimizer and data), with those choices alone; 8 jobs
    assert compositions == [["optimizer=sgd", "data=gaussians"], ["optimizer=adam", "data=gaussians"]]
    monkeypatch.setattr(_compose, "composer", lambda loader, compose: compose)  # Hydra composes each job
    monkeypatch.setattr(_launch, "save_yaml", _save_config)  # and writes its files (OmegaConf.to_yaml)
    each = launched(tmp_path, "each")
    assert sorted(fast) == sorted(each) == list(range(8))
    for num in fast:
        assert fast[num].name == each[num].name
        for name in FILES:
            assert (fast[num] / ".hydra" / name).read_bytes() == (each[num] / ".hydra" / name).read_bytes(), \
                f"job {num}: {name}"
    overrides = (fast[7] / ".hydra" / "overrides.yaml").read_text()
    assert overrides == ("- optimizer=adam\n- optimizer.lr=0.01\n- seed=1\n- data=gaussians\n- epochs=1\n"
                         "- progress=False\n")


def test_the_basic_launchers_job_files_equal_hydras_own_composition(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's basic launcher composes by groups too (`_compose.ComposeByGroups`): the sweeper's check
    and the launcher each take a copy of one composition per choice of groups."""
    real_composer, compositions = _compose.composer, []

    def counting(loader, compose):
        def counted(master, overrides):
            compositions.append(list(overrides))
            return compose(master, overrides)
        return real_composer(loader, counted)

    monkeypatch.setattr(_compose, "composer", counting)
    basic = [a if a != "optimizer=sgd,adam" else "optimizer=sgd" for a in SWEEP
             if a != "hydra/launcher=vectorized" and not a.startswith("seed=")]
    fast = launched(tmp_path, "fast", basic)
    assert compositions == [["optimizer=sgd", "data=gaussians"]]  # the check's and the launcher's
    monkeypatch.setattr(_compose, "composer", lambda loader, compose: compose)  # Hydra composes each job
    each = launched(tmp_path, "each", basic)
    assert sorted(fast) == sorted(each) == list(range(2))
    for num in fast:
        assert fast[num].name == each[num].name
        for name in FILES:
            assert (fast[num] / ".hydra" / name).read_bytes() == (each[num] / ".hydra" / name).read_bytes(), \
                f"job {num}: {name}"
    assert (fast[1] / ".hydra" / "overrides.yaml").read_text() == (
        "- optimizer=sgd\n- optimizer.lr=0.01\n- data=gaussians\n- epochs=1\n- progress=False\n")


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

"""tests/conftest.py composed() composes the choices of config groups once and applies the values to
a copy: the configs the tests start from must be those of Hydra's own composition."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import composed, split_overrides
from trainer.config.validate import config_dir

CASES = [("epochs=2", "seed=3"),
         ("data=spirals", "data.n_samples=300", "model.width=[32,16]", "~averaging"),
         ("optimizer=sgd", "optimizer.lr=0.3", "+optimizer.fused=false", "scheduler=step"),
         ("+experiment=digits_schedules", "optimizer=sgd", "schedule.per_arm.tau=3"),
         ("hydra/launcher=parallel", "hydra.launcher.n_jobs=8", "+experiment=digits_lr",
          "hydra.sweep.dir=multirun/lr", "hydra.job.config.override_dirname.kv_sep=:", "epochs=3")]


def hydras(overrides: tuple[str, ...], hydra: bool) -> str:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return OmegaConf.to_yaml(compose(config_name="config", overrides=list(overrides),
                                         return_hydra_config=hydra))


PAIRS = [(o, hydra) for o in CASES for hydra in (False, True) if hydra or not o[0].startswith("hydra")]


@pytest.mark.parametrize("overrides,hydra", PAIRS, ids=[f"{i}-{h}" for i, (_, h) in enumerate(PAIRS)])
def test_values_on_a_copy_of_the_groups_composition_equal_hydras_composition(overrides, hydra):
    parsed, groups = split_overrides(overrides)
    assert len(groups) < len(parsed)  # values to apply: the shortcut is taken
    assert OmegaConf.to_yaml(composed(overrides, hydra)) == hydras(overrides, hydra)


def test_what_fails_on_the_values_is_hydras_error():
    with pytest.raises(ConfigCompositionException, match="Could not override 'nokey'"):
        composed(("data=spirals", "nokey=1"))
    with pytest.raises(ValueError, match="composed by Hydra"):
        split_overrides(("seed=0,1",))

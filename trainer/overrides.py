"""Command-line overrides checked before Hydra sees them: Hydra's own messages suggest the wrong fix
(`+key`) for a mistyped key, and a SLURM launcher without SLURM ends in a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

from omegaconf import OmegaConf

from trainer.config import config_dir, did_you_mean, known_keys
from trainer.errors import ConfigError

GROUPS = ("data", "model", "optimizer", "scheduler", "averaging")


def check_override_keys(args: list[str]) -> None:
    """Command-line overrides `key=value` of keys that no config has, with the key probably meant.

    Hydra rejects them too, but suggests `+key=value`, which adds the misspelt key; here the message
    names the known key closest to it. Keys under a group (`model.widht`) are checked against every
    file of the group; `+key`, `++key`, `~key`, `group/choice` and `hydra.*` are left to Hydra.
    """
    root = Path(config_dir())
    top = known_keys(root / "config.yaml") | {"experiment", "hparams_search", "hydra"}
    defaults = OmegaConf.load(root / "config.yaml")
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep or arg.startswith(("-", "+", "~")) or "/" in key or key.startswith("hydra"):
            continue
        head, _, rest = key.partition(".")
        if head not in top:
            known = sorted(top - {"hydra"})
            raise ConfigError(f"{key} is not a config key{did_you_mean(head, known, '', key[len(head):])}; "
                              "the keys are "
                              f"{known}, and `python -m trainer --cfg job` shows the whole config")
        if rest and (head in GROUPS or OmegaConf.is_dict(defaults.get(head))):
            sub = rest.split(".")[0]
            group = (set().union(*(known_keys(f) for f in (root / head).glob("*.yaml")))
                     if head in GROUPS else set(defaults[head]))  # a node of config.yaml: early_stopping
            if sub not in group:
                extra = (f"; add an argument that the {head} takes but no config file lists with "
                         f"+{key}=..." if head in ("optimizer", "scheduler") else "")
                where = f"any {head} config" if head in GROUPS else head
                raise ConfigError(f"{key} is not a key of {where}"
                                  f"{did_you_mean(sub, sorted(group), head + '.')}; its keys are "
                                  f"{sorted(group)}{extra}")


def check_launcher(args: list[str]) -> None:
    """`hydra/launcher=slurm` needs SLURM's `sbatch`; without it submitit fails with a traceback."""
    if "hydra/launcher=slurm" in args and shutil.which("sbatch") is None:
        raise ConfigError("hydra/launcher=slurm submits every job of the sweep with SLURM's sbatch, "
                          "which is not on this machine's PATH: start the sweep on the cluster's login "
                          "node, or leave hydra/launcher=slurm out (or use hydra/launcher=parallel) to "
                          "run the jobs on this machine")

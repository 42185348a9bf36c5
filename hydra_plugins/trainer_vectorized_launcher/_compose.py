"""Each job's config of a sweep from one composition per choice of config groups, not one per job.

Hydra composes a job from scratch (`ConfigLoaderImpl.load_sweep_config`: the defaults list, every
config file merged, then the command line's values), about 0.1 s a job on a 2-core CPU, most of it
the same for every job. A job's value overrides (`seed=3`, `optimizer.lr=0.01`) are applied after
the composition, in Hydra as here (`_apply_overrides_to_config`); only its group overrides
(`optimizer=sgd`, `+experiment=digits_lr`) change the composition itself. So the composition of
the group overrides alone is made once per distinct set of them (the real Hydra call, cached), and
each job is a copy of it with its value overrides applied and the fields that name the job's
overrides (`hydra.overrides.task`, `hydra.job.override_dirname`) set as Hydra sets them: its
`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` are those of a full composition, byte for
byte (tests/cli/test_vectorized_compose.py). Where the sweep chooses no config group (`seed=0,1,2`,
`optimizer.lr=...`), that composition is the sweep's own (`master_base`): Hydra composed it already
from the same group overrides, so no job of such a sweep is composed again. Of the `hydra` node a
job may set the sweeper's values (`hydra.sweeper.study_name=`: the Optuna sweeper names its study
to each trial), which no step of a composition reads; a job whose overrides touch the node
otherwise, or anything this path does not cover (or that fails here, a typo's error included), is
composed by Hydra.
Hydra's basic launcher composes the same way (`ComposeByGroups`, a callback in configs/config.yaml).
No torch here: Hydra imports this package at every start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

Compose = Callable[[DictConfig, list[str]], DictConfig]


def group_overrides(loader: Any, master: DictConfig, parsed: list[Any]) -> list[Any] | None:
    """The overrides among `parsed` that choose configs of a group (Hydra's own split,
    `defaults_list.Overrides`), or None where the job must be composed by Hydra."""
    from hydra._internal.defaults_list import Overrides

    if any(o.is_sweep_override() or (o.is_hydra_override() and not sweeper_value(o)) for o in parsed):
        return None
    values = Overrides(repository(loader, master), parsed).config_overrides
    return [o for o in parsed if all(o is not v for v in values)]


def sweeper_value(override: Any) -> bool:
    """`hydra.sweeper.KEY=VALUE`: a value that the job only carries (in its `hydra.yaml`)."""
    return (override.key_or_group.startswith("hydra.sweeper.") and not override.is_sweep_override()
            and not (override.is_add() or override.is_force_add() or override.is_delete()))


def repository(loader: Any, master: DictConfig) -> Any:
    """The config repository of the sweep's composition (its search path included), made once."""
    cached = getattr(loader, "trainer_repo", None)
    if cached is None or cached[0] is not master:
        hydra_overrides = list(OmegaConf.to_container(master.hydra.overrides.hydra))
        _parsed, repo = loader._parse_overrides_and_create_caching_repo(master.hydra.job.config_name,
                                                                        hydra_overrides)
        loader.trainer_repo = cached = (master, repo)
    return cached[1]


def master_base(loader: Any, master: DictConfig, parser: Any, groups: list[Any]) -> frozenset[str] | None:
    """The sweep's own config `master` as the base of the jobs whose group overrides are `groups`,
    or None where it cannot be one. Hydra composed `master` from the command line's overrides less
    its sweeps (`defaults_list.Overrides` skips them): where no sweep chooses a config group and the
    jobs' group overrides are the command line's, that is the composition of `groups` with the
    command line's plain values applied, which each job's own overrides then set again (the same
    values in the same order: `key=value` and `++key=value` only, as `+key=` and `~key` cannot be
    applied twice), and nothing of a group is left out (`???`: a sweep's composition skips it, a
    job's refuses it). Returns the keys of those values (a job that does not set each of them again
    is Hydra's to compose), or None."""
    parsed = parser.parse_overrides(overrides=[str(line) for line in master.hydra.overrides.task])
    repo = repository(loader, master)
    if any(o.is_sweep_override() and repo.group_exists(o.key_or_group) for o in parsed):
        return None
    own = group_overrides(loader, master, [o for o in parsed if not o.is_sweep_override()])
    if own is None or [o.input_line for o in own] != [g.input_line for g in groups]:
        return None
    if any((o.is_add() or o.is_delete()) and all(o is not g for g in own) for o in parsed):
        return None
    if "???" in OmegaConf.to_container(master.hydra.runtime.choices).values():
        return None
    values = [o for o in parsed if not o.is_sweep_override() and all(o is not g for g in own)]
    return frozenset(o.key_or_group for o in values)


def job_config(base: DictConfig, master: DictConfig, parsed: list[Any], groups: list[Any]) -> DictConfig:
    """`base` (the composition of the group overrides `groups`) with the job's other overrides, as
    the tail of Hydra's `_load_configuration_impl` makes a job of them."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

    cfg = copy.deepcopy(base)
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if all(o is not g for g in groups)], cfg)
    own = [o for o in parsed if not o.is_hydra_override()]  # Hydra's split: the task's, the node's
    task = cfg.hydra.overrides.task
    task.clear()
    for override in own:
        task.append(override.input_line)
    for override in parsed:
        if override.is_hydra_override():  # after the sweep's own, as Hydra lists a job's
            cfg.hydra.overrides.hydra.append(override.input_line)
    settings = cfg.hydra.job.config.override_dirname
    cfg.hydra.job.override_dirname = get_overrides_dirname(overrides=own, kv_sep=settings.kv_sep,
                                                           item_sep=settings.item_sep,
                                                           exclude_keys=settings.exclude_keys)
    OmegaConf.copy_cache(from_config=master, to_config=cfg)
    return cfg


def composer(loader: Any, compose: Compose) -> Compose:
    """`load_sweep_config(master, overrides)` that composes once per set of group overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    bases: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, frozenset[str]]] = {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        # Hydra's names: its sweepers pass them by keyword (`Sweeper.validate_batch_is_legal`)
        master, overrides = master_config, sweep_overrides
        try:
            parsed = parser.parse_overrides(overrides=list(overrides))
            groups = group_overrides(loader, master, parsed)
            if groups is None:
                return compose(master, list(overrides))
            key = (id(master), tuple(o.input_line for o in groups))
            if key not in bases:
                needed = master_base(loader, master, parser, groups)
                bases[key] = (master, needed) if needed is not None else (compose(master, list(key[1])),
                                                                          frozenset())
            base, needed = bases[key]
            if not needed <= {o.key_or_group for o in parsed}:  # a value of the sweep's left unset
                return compose(master, list(overrides))
            return job_config(base, master, parsed, groups)
        except Exception:  # Hydra's own composition: its result, or its error for the user
            return compose(master, list(overrides))

    return load_sweep_config


BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def compose_by_groups(loader: Any) -> None:
    """The loader's `load_sweep_config` made a `composer` (once)."""
    if not getattr(loader, "composes_by_groups", False):
        loader.load_sweep_config = composer(loader, loader.load_sweep_config)
        loader.composes_by_groups = True


class ComposeByGroups(Callback):
    """A sweep on Hydra's basic launcher composes its jobs as the vectorized launcher does: once per
    choice of config groups, not twice per job from scratch (the sweeper's check of every job, then
    the launcher's). About 0.2 CPU s a job of a small run: half of a 1-epoch job's time on 2 cores.
    Only there: a launcher that ships the loader to other processes (joblib, submitit) keeps
    Hydra's own composition, as its composer is not sent along."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        if config.hydra.launcher.get("_target_") == BASIC and GlobalHydra.instance().is_initialized():
            compose_by_groups(GlobalHydra.instance().config_loader())

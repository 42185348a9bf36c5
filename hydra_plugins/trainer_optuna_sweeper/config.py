"""The sweeper's config schema, `hydra/sweeper=optuna`, and its samplers, `hydra/sweeper/sampler=NAME`.

Hydra imports this module at every start (plugin discovery): it must not import Optuna. No
`from __future__ import annotations`: Hydra runs it before it is in sys.modules, where dataclasses
would look the string annotations up.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10  # random trials before TPE models the results
    multivariate: bool = True  # models the parameters together (they interact: lr and batch size)
    constant_liar: bool = True  # running trials count as bad guesses: parallel asks spread out


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConf:
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True  # the grid (search_space) comes from hydra.sweeper.params at run time
    seed: int | None = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    n_startup_trials: int = 1


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None
    qmc_type: str = "sobol"  # sobol | halton | lhs
    scramble: bool = False  # unscrambled: processes sharing a study walk one sequence


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.trainer_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING  # filled by the defaults list (MISSING: merging it keeps the sampler)
    direction: str | None = None  # minimize | maximize; null: follows monitor (maximize an accuracy)
    # Any SQLAlchemy URL; null: sqlite:///SWEEP_DIR/optuna.db. An existing study of that name continues.
    storage: str | None = None
    study_name: str | None = None  # null: the sweep folder's name
    n_trials: int = 20  # finished trials of the study, counted over every process that shares it
    n_jobs: int = 1  # trials asked at once and handed to the launcher together
    max_failure_rate: float = 0.0  # of a batch; above it the search stops
    params: dict[str, str] | None = None  # key: interval(...) | choice(...) | range(...) | tag(log, ...)
    pruner: str = "none"  # none | median | hyperband | successive_halving
    pruner_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the Optuna pruner
    heartbeat_interval: int = 10  # seconds; a trial without a heartbeat for 2x this is failed and retried


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="trainer")
for _name, _node in (("tpe", TPESamplerConf), ("random", RandomSamplerConf), ("grid", GridSamplerConf),
                     ("cmaes", CmaEsSamplerConf), ("qmc", QMCSamplerConf)):
    ConfigStore.instance().store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="trainer")

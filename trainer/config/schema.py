"""The schema of every config key: one dataclass per config node, registered in Hydra's
ConfigStore as the base of its YAML file (`defaults: [/schema/...@_here_]`).

The YAML files give the values and the comments; these classes give the keys and what each value
may be (`key(check)`, see trainer.runtime.checks). Hydra composes every config on top of its
schema in struct mode, so a key that no schema declares (`epoch: 5` in an experiment file, or
`model.widht=3` on the command line) is refused at once. The data sets' schemas are their own
`_target_` classes (trainer.data.sets); the optimizers' and schedulers' are made from their
classes' signatures (`signature_schema`: importing this module imports torch.optim, and builds
nothing), and their values are checked against torch's own rules (trainer.config.arguments)
before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass, replace
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from trainer.data.sets import SCHEMAS as DATA_SCHEMAS
from trainer.runtime.checks import (
    POSITIVE,
    POSITIVE_NUMBER,
    WHOLE,
    Anything,
    Flag,
    Number,
    OneOf,
    Text,
    Widths,
    key,
)
from trainer.training.losses import LOSSES

# What `monitor` may name: the validation metrics fit() produces (val/acc for classification only).
MONITORS = ("auto", "val/loss", "val/acc")
DEVICES = ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(16)))


def _models(name: str) -> Callable[[], Sequence[str]]:
    """The names that models.mlp declares beside what they build (read when checked: torch)."""
    def names() -> Sequence[str]:
        from models import mlp

        table = getattr(mlp, name)
        return sorted(table) if isinstance(table, dict) else list(table)
    return names


def _precisions() -> Sequence[str]:
    from trainer.training.accel import PRECISIONS

    return list(PRECISIONS)


OPTIONAL_POSITIVE = replace(POSITIVE, optional=True)


@dataclass
class MLP:
    """configs/model/mlp.yaml: the arguments of models.MLP besides the data's in/out dimensions."""

    _target_: str = "models.MLP"
    depth: Any = key(Number(whole=True, low=0, hint=" (0: a linear model)"))
    width: Any = key(Widths())  # one width, or a list with one per hidden layer
    activation: Any = key(OneOf(_models("ACTIVATIONS")))
    init: Any = key(OneOf(_models("INITS")))
    init_std: Any = key(POSITIVE_NUMBER)
    bias_init: Any = key(OneOf(_models("BIAS_INITS")))
    dropout: Any = key(Number(low=0, high=1))
    norm: Any = key(OneOf(_models("NORMS")), "none")  # after each hidden linear layer
    norm_position: Any = key(OneOf(_models("NORM_POSITIONS")), "pre")  # before or after the activation


@dataclass
class NoAveraging:
    """configs/averaging/none.yaml: the trained weights are the evaluated ones."""


@dataclass
class Averaging:
    start_epoch: Any = key(POSITIVE)  # average the updates from this epoch on
    _partial_: bool = True


@dataclass
class PolyAveraging(Averaging):
    _target_: str = "trainer.training.averaging.poly"
    gamma: Any = key(Number(low=0))


@dataclass
class EMAAveraging(Averaging):
    _target_: str = "trainer.training.averaging.ema"
    decay: Any = key(Number(low=0, high=1))


@dataclass
class SWAAveraging(Averaging):
    _target_: str = "trainer.training.averaging.swa"
    swa_lr: Any = key(replace(POSITIVE_NUMBER, optional=True), None)
    anneal_epochs: Any = key(POSITIVE, 1)
    anneal_strategy: Any = key(OneOf(("cos", "linear")), "cos")


@dataclass
class Schedule:
    """How the scheduler is driven, beside the scheduler node (whose keys are its arguments)."""

    interval: Any = key(OneOf(("epoch", "step")))  # what the scheduler's k counts
    # Options of some arms of a sweep over schedulers ({tau: 100, step_size: 10}): each job passes
    # its scheduler those it takes.
    per_arm: Any = key(Anything(), None)


# The optimizers and schedulers the configs offer. Their schema is their own signature: every
# argument but the parameters/optimizer and implementation switches, with torch's defaults, so
# the YAML files list what the course sets and `optimizer.dampening=0.5` works for any other.
OPTIMIZERS = ("SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Rprop", "Adagrad",
              "Adadelta", "LBFGS")
SCHEDULERS = ("torch.optim.lr_scheduler.StepLR", "torch.optim.lr_scheduler.MultiStepLR",
              "torch.optim.lr_scheduler.ExponentialLR", "torch.optim.lr_scheduler.CosineAnnealingLR",
              "torch.optim.lr_scheduler.ReduceLROnPlateau", "trainer.training.schedules.inverse_time",
              "trainer.training.schedules.inverse_sqrt")
NOT_OPTIONS = ("self", "params", "optimizer", "foreach", "fused", "capturable", "differentiable",
               "maximize", "last_epoch", "verbose")
CHECKS = {"lr": POSITIVE_NUMBER}  # the rest: torch's rules, trainer.config.arguments


def signature_schema(target: str) -> type:
    """A dataclass schema with the arguments of `target` (a dotted path) and their defaults."""
    import inspect

    from hydra.utils import get_object

    params = inspect.signature(get_object(target)).parameters.values()
    options = [(p.name, Any, key(CHECKS.get(p.name, Anything()),
                                 MISSING if p.default is inspect.Parameter.empty else p.default,
                                 number=p.annotation in (int, float, "int", "float")))
               for p in params if p.name not in NOT_OPTIONS and p.kind is p.POSITIONAL_OR_KEYWORD]
    name = target.rsplit(".", 1)[-1]
    return make_dataclass(f"{name}Options", [("_target_", str, target), ("_partial_", bool, True),
                                             *options])


@dataclass
class EarlyStopping:
    patience: Any = key(OPTIONAL_POSITIVE, None)
    min_delta: Any = key(Number(low=0), 0.0)


@dataclass
class Regularization:
    """alpha * sum|w| (l1) and alpha * sum w^2 (l2) added to the training loss
    (trainer.training.regularization)."""

    l1: Any = key(Number(low=0), 0.0)
    l2: Any = key(Number(low=0), 0.0)
    biases: Any = key(Flag(), False)  # false: the weight matrices only; true: every parameter


@dataclass
class NoEnsemble:
    """configs/ensemble/none.yaml: one model (the default)."""

    kind: Any = key(OneOf(("none",)), "none")


@dataclass
class Bagging:
    """configs/ensemble/bagging.yaml: `members` models, each on its own resample of the train split,
    trained as one stacked model; their predicted probabilities averaged (trainer.ensemble.model)."""

    kind: Any = key(OneOf(("bagging",)), "bagging")
    members: Any = key(POSITIVE)
    split: Any = key(OneOf(("bootstrap", "parts")), "bootstrap")  # resamples, or disjoint parts


@dataclass
class Boosting:
    """configs/ensemble/boosting.yaml: `rounds` models in turn, SAMME's sample weights in the loss."""

    kind: Any = key(OneOf(("boosting",)), "boosting")
    rounds: Any = key(POSITIVE)


@dataclass
class Config:
    """configs/config.yaml: every top-level key; the groups have their own schemas."""

    data: Any = None
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    averaging: Any = None
    ensemble: Any = None
    schedule: Schedule = field(default_factory=Schedule)
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    regularization: Regularization = field(default_factory=Regularization)
    seed: Any = key(WHOLE)
    device: Any = key(OneOf(DEVICES))
    threads: Any = key(Number(whole=True, low=0, low_open=True, words=("auto",)))
    epochs: Any = key(POSITIVE)
    batch_size: Any = key(Number(whole=True, low=0, low_open=True, words=("full",),
                                 hint=" (full-batch gradient descent)"))
    drop_last: Any = key(Flag())
    loss: Any = key(OneOf(LOSSES))
    huber_delta: Any = key(Number(low=0, low_open=True))
    monitor: Any = key(OneOf(MONITORS))
    test_on: Any = key(OneOf(("best", "last")))
    log_every_n_steps: Any = key(POSITIVE)
    progress: Any = key(Flag())
    nan_check_every_n_steps: Any = key(POSITIVE)
    checkpoint_every_n_epochs: Any = key(POSITIVE)
    resume: Any = key(Flag())
    ckpt: Any = key(Text(), None)
    overwrite: Any = key(Flag())
    precision: Any = key(OneOf(_precisions))
    compile: Any = key(Flag())
    cuda_graphs: Any = key(Flag())
    backprop: Any = key(OneOf(("auto", "autograd")))
    tf32: Any = key(Flag())
    warmup_steps: Any = key(WHOLE)
    warmup_start_factor: Any = key(Number(low=0, high=1, low_open=True, high_open=False))
    grad_clip: Any = key(replace(POSITIVE_NUMBER, optional=True), None)
    max_steps: Any = key(OPTIONAL_POSITIVE, None)
    divergence_factor: Any = key(Number(low=1, optional=True), 1000)
    # An experiment's per-arm values (configs/experiment/): e.g. each optimizer's own grid of
    # learning rates, which its `optimizer.lr` interpolation picks from (`arms.rate=low|mid|high`).
    arms: Any = key(Anything(), None)
    log_layer_stats: Any = key(Flag(), False)  # gradient diagnostics (trainer.training.diagnostics)
    log_layer_stats_every_n_epochs: Any = key(POSITIVE, 1)


@dataclass
class NoScheduler:
    """configs/scheduler/none.yaml: a constant rate."""


GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"mlp": MLP},
    "averaging": {"none": NoAveraging, "poly": PolyAveraging, "ema": EMAAveraging, "swa": SWAAveraging},
    "data": DATA_SCHEMAS,
    "ensemble": {"none": NoEnsemble, "bagging": Bagging, "boosting": Boosting},
    "optimizer": {name: signature_schema(f"torch.optim.{name}") for name in OPTIMIZERS},
    "scheduler": {"none": NoScheduler,
                  **{target.rsplit(".", 1)[-1]: signature_schema(target) for target in SCHEDULERS}},
}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore: `trainer_schema` for config.yaml, and
    `schema/GROUP/NAME` for each group's file."""
    store = ConfigStore.instance()
    store.store(name="trainer_schema", node=Config)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=schema)


def schema_of(node: Any) -> type | None:
    """The dataclass a composed config node was built on (None: an open node or a plain value).

    A composed config remembers it; a config rebuilt from a dict finds it by its `_target_`."""
    if not isinstance(node, DictConfig):
        return None
    typed = OmegaConf.get_type(node)
    if typed is not None and is_dataclass(typed):
        return typed
    target = node.get("_target_")
    for schemas in GROUP_SCHEMAS.values():
        for schema in schemas.values():
            if any(f.name == "_target_" and f.default == target for f in fields(schema)):
                return schema
    return None


def declared(schema: type) -> list[str]:
    """The keys a schema declares (not Hydra's `_target_`/`_partial_`)."""
    return [f.name for f in fields(schema) if not f.name.startswith("_")]


__all__ = ["MONITORS", "Config", "declared", "register", "schema_of"]

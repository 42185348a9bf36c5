"""How an ensemble's members train: as one stacked model (trainer.training.stacked), each member
drawing its batches from its own samples, with a weight per sample in its loss.

Bagging trains all K members at once for `epochs` epochs, member m on its bootstrap resample (or its
part); boosting trains one member per round (epochs / rounds epochs each) on the whole train split
weighted by SAMME, and at the round's end sets the member's alpha and the samples' next weights.
`build_ensemble` returns the run's `Training`, whose epoch's training part (`train_batches`, and
`end_training`: a boosting round's end, each member's validation) replaces a plain model's; the rest
(validating the ensemble, divergence, the best epoch, checkpoints, resume, early stopping, the log)
is fit()'s and trainer.training.epoch's, as for any run.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig

from models import count_parameters
from trainer.config.build import RunLength, build_optimizer, build_schedule, instantiate_checked
from trainer.config.ensemble_checks import kind_of, size_of
from trainer.data import Splits
from trainer.data.targets import original_units
from trainer.ensemble.model import (
    Ensemble,
    bootstrap_samples,
    build_predictor,
    disjoint_parts,
    padded,
    samme_update,
)
from trainer.logs.writer import RunLogger
from trainer.runtime import distributed
from trainer.runtime.device import set_threads
from trainer.runtime.errors import ConfigError
from trainer.training import accel
from trainer.training.epoch import validation_metrics
from trainer.training.loop import EpochCursor, num_batches
from trainer.training.losses import Loss
from trainer.training.stacked import MemberwiseOptimizer, StackedParams
from trainer.training.state import FitOptions, Training
from trainer.training.stopping import EarlyStopping, mode_for


class Sampling:
    """Each member's training samples, (M, L) indices into the train split, and their weights in
    the member's loss: 1 (bagging), 0 for a part's padding, n w_i (boosting: SAMME's w, summing to 1)."""

    def __init__(self, index: torch.Tensor, weight: torch.Tensor, per_round: int = 0) -> None:
        self.index, self.weight = index, weight
        self.per_round = per_round  # boosting's epochs per round: a resume must keep it

    def start(self, generator: torch.Generator) -> EpochCursor:
        """An epoch's cursor: `perm` (M, L) is each member's own random order of its samples."""
        order = torch.rand(self.index.shape, generator=generator, device=generator.device).argsort(1)
        zero = torch.zeros((), device=order.device)
        return EpochCursor(order, zero, torch.zeros((), device=order.device, dtype=torch.int64))

    def counted(self, order: torch.Tensor, batch_size: int) -> list[int]:
        """Samples that count (weight > 0) in each batch of the epoch `order`: one host sync."""
        real = (self.weight.gather(1, order) > 0).sum(0)
        return torch.stack([c.sum() for c in real.split(batch_size)]).tolist()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"index": self.index.cpu(), "weight": self.weight.cpu(), "per_round": self.per_round}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("per_round", 0)
        if saved != self.per_round:
            raise ConfigError(f"this boosting run trained {saved} epochs per round (epochs / "
                              f"ensemble.rounds); continuing it with {self.per_round} would move the ends of "
                              "its rounds: resume with the epochs it was started with, or start a new run")
        device = self.index.device
        self.index, self.weight = state["index"].to(device), state["weight"].to(device)


class Stack:
    """The members in training (bagging: all; boosting: the round's) as one stacked model with a
    member-wise optimizer, whose state (Adam's moments...) the checkpoints keep."""

    def __init__(self, ensemble: Ensemble, cfg: DictConfig, device: torch.device) -> None:
        self.ensemble, self.members = ensemble, []
        fast = accel.optimizer_options(cfg.optimizer._target_, cfg.optimizer, device, False)
        # lr 1 and no decay: MemberwiseOptimizer scales the update and applies the decay itself
        self.build = partial(instantiate_checked, cfg.optimizer, "optimizer", **fast, lr=1.0,
                             weight_decay=0.0)
        self.params: StackedParams | None = None
        self.optimizer: MemberwiseOptimizer | None = None

    def train(self, members: list[int]) -> None:
        """Stack `members` (their current weights) with a fresh optimizer; the others get their own."""
        if members == self.members:
            return
        for m in self.members:
            StackedParams.release(self.ensemble.members[m])
        self.members = members
        self.params = StackedParams([self.ensemble.members[m] for m in members])
        self.optimizer = MemberwiseOptimizer(self.build, self.params)

    def step(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, loss: Loss, lr: float,
             weight_decay: float, grad_clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of every stacked member on its own batch (x (M, b, D), y, weight (M, b)): its
        loss is the weighted mean over its batch's counted samples. Returns the sums of the weighted
        losses and of the correct predictions (device tensors, not synced)."""
        self.optimizer.zero_grad()
        out = self.params(x)  # (M, b, K)
        losses = loss.samples(out, y)
        weighted = losses * weight  # (M, b)
        counted = (weight > 0).sum(1).clamp_min(1)
        (weighted.sum(1) / counted).sum().backward()  # member m's gradient is its own loss's
        k = len(self.members)
        self.optimizer.clip_([grad_clip] * k)
        self.optimizer.step([lr] * k, [weight_decay] * k)
        correct = (((out.argmax(-1) == y) & (weight > 0)).sum() if loss.task == "classification"
                   else y.new_zeros((), dtype=torch.long))
        return weighted.detach().sum(), correct

    def state_dict(self) -> dict[str, Any]:
        return {"members": self.members, "optimizer": self.optimizer.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train(list(state["members"]))
        self.optimizer.optimizer.load_state_dict(state["optimizer"])


class EnsembleTraining(Training):
    """A `Training` whose model is an `Ensemble`: its optimizer only carries the scheduled learning
    rate (the members' updates are the `stack`'s), and its checkpoints hold the samples too."""

    def __init__(self, *args: Any, sampling: Sampling, stack: Stack, kind: str, per_round: int,
                 grad_clip: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampling, self.stack, self.kind, self.per_round = sampling, stack, kind, per_round
        self.grad_clip = grad_clip

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "ensemble_samples": self.sampling, "ensemble_optimizer": self.stack}

    def round_of(self, epoch: int) -> int | None:
        """The boosting round that `epoch` belongs to (None: bagging)."""
        return (epoch - 1) // self.per_round if self.kind == "boosting" else None

    def new_cursor(self, splits: Splits) -> EpochCursor:
        return self.sampling.start(self.generator)

    def epoch_batches(self, splits: Splits, options: FitOptions) -> int:
        return num_batches(self.sampling.index.shape[1], options.batch_size, options.drop_last)

    def train_batches(self, splits: Splits, options: FitOptions, cursor: EpochCursor,
                      on_step: Callable[[], bool], epoch: int, max_updates: int | None) -> bool:
        """Train the stacked members (boosting: the round's) on their batches from where `cursor`
        stands; False when `on_step` stopped the epoch."""
        if self.kind == "boosting":
            self.stack.train([self.round_of(epoch)])
        size, sampling = options.batch_size, self.sampling
        batches = self.epoch_batches(splits, options)
        counted = sampling.counted(cursor.perm, size)
        left = batches if max_updates is None else max_updates
        weight_decay = float(self.optimizer.param_groups[0].get("weight_decay", 0.0))
        for i in range(cursor.next_batch, min(batches, cursor.next_batch + left)):
            order = cursor.perm[:, i * size:(i + 1) * size]  # (M, b) positions in each member's samples
            index, weight = sampling.index.gather(1, order), sampling.weight.gather(1, order)
            loss, correct = self.stack.step(splits.x_train[index], splits.y_train[index], weight, self.loss,
                                            float(self.optimizer.param_groups[0]["lr"]), weight_decay,
                                            self.grad_clip)
            cursor.loss_sum += loss
            cursor.correct += correct
            cursor.seen += counted[i]
            cursor.next_batch = i + 1
            if on_step():
                return False
        return True

    def end_training(self, epoch: int, splits: Splits, logger: RunLogger) -> None:
        """A boosting round's end (the member's alpha, the samples' next weights), and each member's
        own validation metrics, logged."""
        round_ = self.round_of(epoch)
        if round_ is not None and epoch % self.per_round == 0:
            logger.scalars(end_round(self.model, self.sampling, round_, splits), epoch)
        logger.scalars(member_validation(self.model, splits, round_, self.loss), epoch)


def build_ensemble(cfg: DictConfig, splits: Splits, batch_size: int, device: torch.device,
                   world: distributed.World, monitor: str, loss: Loss) -> EnsembleTraining:
    """The ensemble of `cfg.ensemble`, its members' samples, and what trains them."""
    kind = kind_of(cfg)
    if world.distributed:
        raise ConfigError(f"ensemble={kind} runs in one process: start it without torchrun")
    model = build_predictor(cfg.model, cfg.ensemble, splits.in_dim, splits.out_dim,
                            splits.task == "classification").to(device)
    set_threads(cfg.threads, count_parameters(model), batch_size, device)
    # The samples are drawn first from the run's generator, which then orders the batches.
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
    n, k = len(splits.x_train), size_of(cfg.ensemble)
    if kind == "boosting":
        sampling = Sampling(torch.arange(n, device=device).unsqueeze(0), torch.ones(1, n, device=device),
                            per_round=cfg.epochs // k)
    elif cfg.ensemble.split == "parts":
        if k > n:
            raise ConfigError(f"ensemble.members={k} disjoint parts of a train split of {n} samples "
                              f"would leave members without data; use at most {n} members, or "
                              "ensemble.split=bootstrap")
        sampling = Sampling(*padded(disjoint_parts(n, k, generator)))
    else:
        index = bootstrap_samples(n, k, generator)
        sampling = Sampling(index, torch.ones(index.shape, device=device))
    length = sampling.index.shape[1]
    if batch_size > length and cfg.batch_size != "full":
        raise ConfigError(f"batch_size={batch_size} is larger than each member's part of the train split "
                          f"({length} samples with ensemble.split=parts and {k} members); use at most "
                          f"{length}, batch_size=full, or fewer members")
    carrier = build_optimizer(cfg.optimizer, model.parameters(), device)  # never updates: carries the lr
    stack = Stack(model, cfg, device)
    stack.train(list(range(k)) if kind == "bagging" else [0])
    per_epoch = num_batches(length, batch_size, cfg.drop_last)
    stopping = EarlyStopping(cfg.early_stopping.patience, cfg.early_stopping.min_delta, mode_for(monitor))
    run_length = RunLength.of(cfg, per_epoch)
    schedule = build_schedule(cfg.scheduler, cfg.schedule, carrier, run_length, None).carried()
    return EnsembleTraining(model, carrier, schedule, None, generator, loss, stopping=stopping,
                            sampling=sampling, stack=stack, kind=kind, per_round=cfg.epochs // k,
                            grad_clip=cfg.grad_clip)


@torch.no_grad()
def end_round(model: Ensemble, sampling: Sampling, round_: int, splits: Splits) -> dict[str, float]:
    """SAMME after boosting round `round_`: the member's weighted error on the train split, its alpha
    (it joins the ensemble), the samples' weights for the next round; returns what is logged."""
    member = model.members[round_]
    member.eval()
    predicted = torch.cat([member(x).argmax(1) for x in splits.x_train.split(8192)])
    member.train()
    n = len(splits.x_train)
    result = samme_update(predicted != splits.y_train, sampling.weight[0] / n, splits.out_dim)
    model.alphas[round_] = result.alpha
    sampling.weight = (result.weights * n).unsqueeze(0)
    return {f"member_{round_}/alpha": result.alpha, f"member_{round_}/train_err": result.err}


def member_validation(model: Ensemble, splits: Splits, round_: int | None, loss: Loss) -> dict[str, float]:
    """`member_m/val/*` of every member (boosting: those trained so far and the round's)."""
    members = model.members if round_ is None else model.members[:round_ + 1]
    metrics = {}
    for m, member in enumerate(members):
        own = original_units(validation_metrics(member, None, splits, loss), loss.factor)
        metrics.update({f"member_{m}/{k}": v for k, v in own.items()})
    return metrics

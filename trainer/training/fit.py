"""The epoch loop: train, validate, keep the best, checkpoint, log; stop cleanly when asked.

What ends an epoch is trainer.training.epoch's (shared with the vectorized launcher's members); an
epoch's training part is the `Training`'s (an ensemble's replaces it)."""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from trainer.data import Splits
from trainer.runtime.distributed import all_mean
from trainer.training.epoch import Updates, after_save, close_epoch, initial_loss, record_epoch
from trainer.training.state import FitHooks, FitOptions, FitState, Training

__all__ = ["FitHooks", "FitOptions", "FitState", "Training", "fit"]


class StepHook(Updates):
    """fit()'s `on_step`: the update's bookkeeping (`Updates`), the progress bar, the NaN and stop
    checks; True stops the epoch after this update."""

    def __init__(self, training: Training, state: FitState, options: FitOptions, hooks: FitHooks,
                 bar: tqdm) -> None:
        super().__init__(training, state, options.log_every_n_steps)
        self.options, self.hooks, self.bar = options, hooks, bar

    def __call__(self) -> bool:
        state, options = self.state, self.options
        if self.count():
            self.bar.update(options.log_every_n_steps)
        # One host sync every nan_check_every_n_steps: a NaN step leaves the running sum NaN.
        if state.step % options.nan_check_every_n_steps == 0 and not torch.isfinite(state.cursor.loss_sum):
            state.status, state.reason = "diverged", f"the training loss is not finite at step {state.step}"
        elif self.hooks.stop_requested():
            state.status, state.reason = "interrupted", f"stopped at step {state.step}"
        return state.status != "running"


def fit(training: Training, splits: Splits, options: FitOptions, hooks: FitHooks,
        state: FitState | None = None) -> FitState:
    """Train up to `options.epochs` (and `max_steps` updates) from `state` (None: a fresh start),
    validating each epoch.

    `hooks.save(state)` runs after every epoch and when a stop is requested mid-epoch. The returned
    state's `status` says how it ended: completed, interrupted (a stop request), diverged or pruned.
    Early stopping may end training early; with averaging, the averaged weights are the ones
    validated and kept as best.
    """
    state = state if state is not None else FitState()
    if state.status == "completed" and state.stopped_by == "early_stopping":
        return state  # a finished run's checkpoint: early stopping already ended it
    state.status, state.stopped_by, state.reason = "running", "epochs", ""
    initial_loss(training, splits, options, state)
    bar = tqdm(total=training.epoch_batches(splits, options), leave=False,
               disable=None if options.progress else True, unit="step")
    on_step = StepHook(training, state, options, hooks, bar)
    for epoch in range(state.epoch + 1, options.epochs + 1):
        if options.max_steps is not None and state.step >= options.max_steps and state.cursor is None:
            state.stopped_by = "max_steps"  # a resumed run that max_steps had already ended
            break
        on_step.epoch = epoch
        metrics = _train_and_validate(training, splits, options, state, on_step, epoch)
        on_step.write_lrs(hooks.logger)
        if metrics is None or state.status != "running":
            break
        pruned = record_epoch(training, options, hooks, state, metrics, epoch)
        hooks.save(state)
        after_save(state, options, pruned, hooks.stop_requested, epoch)
        if state.status != "running":
            break
    on_step.write_lrs(hooks.logger)  # those of an epoch that stopped early
    bar.close()
    if state.status == "interrupted" and state.cursor is not None:
        hooks.save(state)  # mid-epoch: the cursor records where to go on
    elif state.status == "running":
        state.status = "completed"
    return state


def _train_and_validate(training: Training, splits: Splits, options: FitOptions, state: FitState,
                        on_step: StepHook, epoch: int) -> dict[str, float] | None:
    """One epoch's training from where the cursor stands, then its metrics; None when the epoch
    stopped before its end (a stop request or a NaN), or the fit diverged."""
    if state.cursor is None:
        state.cursor = training.new_cursor(splits)
    bar = on_step.bar
    bar.reset(total=training.epoch_batches(splits, options))
    bar.update(state.cursor.next_batch)
    bar.set_description(f"epoch {epoch}/{options.epochs}")
    t0, seen0 = time.perf_counter(), state.cursor.seen
    max_updates = None if options.max_steps is None else options.max_steps - state.step
    if not training.train_batches(splits, options, state.cursor, on_step, epoch, max_updates):
        return None
    bar.update(bar.total - bar.n)  # on_step moves the bar only every log_every_n_steps
    stats = all_mean(state.cursor.stats(splits.task == "classification"), state.cursor.seen)
    seconds = time.perf_counter() - t0
    training.end_training(epoch, splits, on_step.hooks.logger)
    samples = options.shard[1] * (state.cursor.seen - seen0)
    return close_epoch(training, splits, options, state, epoch, stats, seconds, samples)

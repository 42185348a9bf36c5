"""The group's training loop: fit() for M members at once, each with its own batches and ending.

Every member draws its batch order from its own generator (`EpochCursor.start`, as fit() does), so
a step trains member k on the k-th row of an (M, B) index batch. Members end on their own (their
`epochs`, `max_steps`, early stopping, divergence): a finished member is written out at once and the
group is compacted (its rows dropped from the stacked tensors and optimizer state), so the others
go on at the speed of a smaller group.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from tqdm import tqdm

from trainer.config.build import instantiate_checked
from trainer.storage.group_file import GroupSaver
from trainer.training import accel
from trainer.training.loop import EpochCursor, num_batches
from trainer.training.stacked import MemberwiseOptimizer, StackedParams, stacked_validation
from trainer.training.stacked_backprop import StackedBackprop
from trainer.training.stopping import mode_for
from trainer.vectorized.member import Member

log = logging.getLogger(__name__)

PENDING_MAX = 1024  # batches of outputs kept before their correct predictions are counted


def starting(member: Member) -> bool:
    """fit()'s start for one member: False when it has nothing left to train (it is completed)."""
    state, cfg = member.state, member.cfg
    if state.status == "completed" and state.stopped_by == "early_stopping":
        return False
    state.status, state.stopped_by, state.reason = "running", "epochs", ""
    if state.cursor is None and state.epoch >= cfg.epochs:
        state.status = "completed"
        return False
    if cfg.max_steps is not None and state.step >= cfg.max_steps and state.cursor is None:
        state.status, state.stopped_by = "completed", "max_steps"
        return False
    return True


def train_group(members: Sequence[Member], stop: Callable[[], bool], *, label: str = "group",
                progress: bool = False, signal: Callable[[], Any] = lambda: None) -> None:
    """Train `members` (one group: same data, architecture, batch size, optimizer class) to their
    ends; each member's folder is finished (metrics.json) as soon as it ends."""
    go = []
    for m in members:
        if starting(m):
            go.append(m)
        else:  # a resumed run that was already at its end
            m.finish()
    positions: dict[tuple, list[Member]] = {}  # resumed members train together from equal positions
    # Members of one activation side by side: it runs once on their slice (StackedParams.layers).
    for m in sorted(go, key=lambda m: str(m.cfg.model.activation)):
        at = (m.state.epoch, m.state.step, m.state.cursor.next_batch if m.state.cursor else 0)
        positions.setdefault(at, []).append(m)
    for part in positions.values():
        Group(part, stop, label, progress, signal).train()


class Group:
    """Members at one position (epoch, step) trained in lockstep: see `train_group`."""

    def __init__(self, members: list[Member], stop: Callable[[], bool], label: str, progress: bool,
                 signal: Callable[[], Any] = lambda: None) -> None:
        self.active, self.stop, self.label, self.signal = members, stop, label, signal
        first = members[0]
        self.splits, self.device, self.task = first.splits, first.device, first.splits.task
        self.loss = first.training.loss  # one for all (loss=auto: trainer.vectorized.grouping)
        self.stacked = StackedParams([m.model for m in members])
        by_hand = StackedBackprop.supported(self.stacked, self.task, str(first.cfg.get("backprop", "auto")),
                                            self.device.type)
        self.backprop = StackedBackprop(self.stacked, self.loss) if by_hand else None
        # The untrained members' validation losses (divergence's yardstick) in one batched pass.
        untrained: list[Any] = [None] * len(members)
        if self.stacked.layers is not None and any(m.needs_initial_loss for m in members):
            untrained = stacked_validation(self.stacked, self.splits.x_val, self.splits.y_val, self.loss)
        for m, val in zip(members, untrained, strict=True):
            m.initial_loss(val)
        fast = accel.optimizer_options(first.cfg.optimizer._target_, first.cfg.optimizer, self.device, False)
        build = partial(instantiate_checked, first.cfg.optimizer, "optimizer", **fast, lr=1.0,
                        weight_decay=0.0)
        self.optimizer = MemberwiseOptimizer(lambda params: build(params), self.stacked)
        self.optimizer.load_members([m.optimizer for m in members])
        self._bind()
        self.batch_size, self.drop_last = first.batch_size, first.cfg.drop_last
        self.per_epoch = num_batches(len(self.splits.x_train), self.batch_size, self.drop_last)
        self.bar = tqdm(total=self.per_epoch, leave=False, disable=None if progress else True, unit="step")
        for k, m in enumerate(members):
            m.key = str(k)
        self.saver = GroupSaver(members)
        # One batched validation pass for all members, where each member's evaluated weights are its
        # rows of the stack (no averaged copy) and the forward is the MLP's own layers.
        self.stacked_val = self.stacked.layers is not None and all(m.averaging is None for m in members)

    def _bind(self) -> None:
        """Each member's checkpoint reads its own row of the group's optimizer state."""
        for k, m in enumerate(self.active):
            m.optimizer_state = partial(self.optimizer.member_state, k, m.optimizer)

    def _drop(self, gone: Sequence[Member]) -> None:
        """Finish the members `gone` and compact the group to the others."""
        if not gone:  # an epoch where none ended: no restacking, and the group file's write goes on
            return
        keep = [k for k, m in enumerate(self.active) if m not in gone]
        received = self.signal()  # recorded as run() does, whatever the member's end
        for m in gone:
            StackedParams.release(m.model)
            m.signal = received.name if received is not None else None
        self.saver.each(self._leave, gone)
        self.active = [self.active[k] for k in keep]
        if not self.active:
            return
        self.stacked.adopt([m.model for m in self.active])
        self.optimizer.keep(keep)
        self._bind()
        index = torch.tensor(keep, device=self.device)
        self.fold()
        self.perms, self.loss_sums, self.correct = (t.index_select(0, index) for t in
                                                     (self.perms, self.loss_sums, self.correct))
        self._share()  # members that drew other orders may have left

    def _leave(self, m: Member) -> None:
        if m.state.status == "diverged":
            self.saver.stored_files(m)
        self.saver.left(m.key)
        m.finish()

    def fold(self) -> None:
        if self.pending:
            outs, ys = zip(*self.pending, strict=True)
            self.correct += (torch.cat(outs, 1).argmax(-1) == torch.cat(ys, 1)).sum(1)
            self.pending.clear()

    def _cursors(self, next_batch: int) -> None:
        """Write the group's running sums into each member's EpochCursor (what fit() keeps)."""
        self.fold()
        for k, m in enumerate(self.active):
            m.state.cursor = EpochCursor(self.perms[k], self.loss_sums[k].clone(), self.correct[k].clone(),
                                         next_batch, self.seen)

    def _start_epoch(self) -> None:
        n = len(self.splits.x_train)
        cursors = [m.state.cursor or EpochCursor.start(n, self.device, m.generator) for m in self.active]
        self.perms = torch.stack([c.perm for c in cursors])
        self.loss_sums = torch.stack([c.loss_sum for c in cursors]).float()
        self.correct = torch.stack([c.correct for c in cursors])
        self.next_batch, self.seen = cursors[0].next_batch, cursors[0].seen
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._share()

    def _share(self) -> None:
        """Whether every member's epoch order is the same (jobs that differ only in optimizer
        settings: same seed, data and batch size), so that each step's batch is one (b, D) gather
        broadcast to every member's first layer (`trainer.training.stacked_linear`).
        Decided from the orders themselves, exact by construction, each epoch and when members leave."""
        self.shared = self.stacked.shares_input and bool((self.perms == self.perms[:1]).all())

    def step(self, idx: torch.Tensor) -> None:
        """One update of every active member on its own rows `idx` (M, b) of the training split."""
        x, y = self.splits.x_train, self.splits.y_train
        rows = idx.reshape(-1)  # index_select: a row gather, faster than x[idx] on the CPU
        yb = y.index_select(0, rows).view(*idx.shape, *y.shape[1:])
        self.optimizer.zero_grad()
        if self.shared:  # the same rows for every member: gathered once, (b, D)
            xb = x.index_select(0, idx[0])
        else:
            xb = x.index_select(0, rows).view(*idx.shape, *x.shape[1:])
        if self.backprop is not None:  # the gradient by hand (trainer.training.stacked_backprop)
            losses, out = self.backprop(xb, yb)
        else:
            out = self.stacked(xb)
            losses = self.loss.member_means(out, yb)
            losses.sum().backward()  # member k's gradient is that of its own loss alone
        self.optimizer.clip_([m.grad_clip for m in self.active])
        self.optimizer.step([m.lr for m in self.active], [m.weight_decay for m in self.active])
        self.loss_sums += losses.detach() * idx.shape[1]
        if self.task == "classification":
            self.pending.append((out.detach(), yb))
            if len(self.pending) == PENDING_MAX:
                self.fold()
        self.seen += idx.shape[1]

    def train(self) -> None:
        epoch = self.active[0].state.epoch + 1
        try:
            while self.active:
                self.active_epoch(epoch)
                epoch += 1
        except BaseException:  # a crash or a second Ctrl-C: each member's last epoch end in its files
            self.saver.each(self.saver.stored_files, self.active)
            raise
        finally:
            self.bar.close()
        self.saver.close()

    def active_epoch(self, epoch: int) -> None:
        """One epoch of the group; members that end are finished and dropped."""
        self._start_epoch()
        t0, seen0 = time.perf_counter(), self.seen
        size, last = self.batch_size, self.per_epoch
        self.bar.reset(total=self.per_epoch)
        self.bar.update(self.next_batch)
        self.bar.set_description(f"{self.label} epoch {epoch} ({len(self.active)} running)")
        for i in range(self.next_batch, last):
            self.step(self.perms[:, i * size:(i + 1) * size])  # rows of members that left are gone
            for m in self.active:
                m.after_update(epoch)
            self.bar.update(1)
            step = self.active[0].state.step
            due = [k for k, m in enumerate(self.active) if step % m.nan_every == 0]
            if due:
                finite = torch.isfinite(self.loss_sums).tolist()  # one host sync for the group
                bad = [self.active[k] for k in due if not finite[k]]
                for m in bad:
                    m.state.status = "diverged"
                    m.state.reason = f"the training loss is not finite at step {step}"
                if bad:
                    self._drop(bad)
            if self.stop():
                self._cursors(i + 1)
                for m in self.active:
                    m.state.status, m.state.reason = "interrupted", f"stopped at step {step}"
                self.saver.each(self.saver.own_files, self.active)
                self._drop(list(self.active))
                return
            capped = [m for m in self.active if m.max_steps is not None and m.state.step >= m.max_steps]
            if capped and i + 1 < last:  # their epoch ends here (fit's max_updates)
                self._cursors(i + 1)
                seconds = time.perf_counter() - t0
                for m in capped:
                    m.end_epoch(epoch, seconds, self.seen - seen0)
                self.saver.epoch_end(capped, epoch)  # they all end here (max_steps)
                self._drop(capped)
            if not self.active:
                return
        self._cursors(last)
        self.end_epoch(epoch, time.perf_counter() - t0, self.seen - seen0)

    def end_epoch(self, epoch: int, seconds: float, seen: int) -> None:
        vals: list[Any] = [None] * len(self.active)
        if self.stacked_val:
            vals = stacked_validation(self.stacked, self.splits.x_val, self.splits.y_val, self.loss)
        for m, val in zip(self.active, vals, strict=True):
            m.end_epoch(epoch, seconds, seen, val=val)
        self.saver.epoch_end(self.active, epoch)
        values = [m.state.last_metrics.get(m.monitor, float("nan")) for m in self.active
                  if m.state.status != "diverged"]
        done = [m for m in self.active if m.state.status != "running"]
        self._drop(done)
        if self.stop():
            for m in self.active:  # their own last.pt, as the stop path mid-epoch writes it
                m.state.status, m.state.reason = "interrupted", f"stopped after epoch {epoch}"
            self.saver.each(self.saver.own_files, self.active)
            self._drop(list(self.active))
        if values:
            monitor = done[0].monitor if done else self.active[0].monitor if self.active else "val/loss"
            ordered = sorted(values, reverse=mode_for(monitor) == "max")
            log.info("%s epoch %d: %s best %.4g  median %.4g  worst %.4g; %d running", self.label, epoch,
                     monitor, ordered[0], statistics.median(ordered), ordered[-1], len(self.active))

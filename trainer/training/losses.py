"""The loss, the notes' divergence between the network's output and the target (`loss=...`).

Classification: `cross_entropy` (softmax and cross-entropy on the logits, the default), `nll` (the
same divergence in the notes' other name and torch's two steps: `log_softmax`, then the negative
log-likelihood of the target class; equal numbers), or `mse` on one-hot targets (the network's
outputs regressed onto the one-hot code of the class: mean over the K outputs of
`(f_k(x) - 1[k = y])^2`; the predicted class is still the largest output).
Regression: `mse` (the default, the notes' quadratic loss), `l1` (mean absolute error), or `huber`
(quadratic within `huber_delta` of the target, linear beyond: 0.5 r^2 for |r| <= delta, else
delta (|r| - 0.5 delta)).

Regression targets are trained standardized (trainer.data.targets: y / s after centring), and every
reported loss is in the targets' own units: `factor` is s^2 for mse, s for l1, and s^2 for huber,
whose delta is given in the targets' units and applied as delta / s to the standardized residual
(Huber_delta(s r) = s^2 Huber_{delta/s}(r), exactly), so training minimizes the reported loss up to
that constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from trainer.runtime.errors import ConfigError

aten = torch.ops.aten
LOSSES = ("auto", "cross_entropy", "nll", "mse", "l1", "huber")
FOR_TASK = {"classification": ("cross_entropy", "nll", "mse"), "regression": ("mse", "l1", "huber")}
DEFAULT = {"classification": "cross_entropy", "regression": "mse"}
SOFTMAX_LOSSES = ("cross_entropy", "nll")  # a log_softmax, then the target's negative log-likelihood


def check_loss(loss: str, task: str | None, data_name: str) -> None:
    """`loss` against the data's task (None: a file's task, known once it is loaded)."""
    if task is None or loss == "auto" or loss in FOR_TASK[task]:
        return
    raise ConfigError(f"loss={loss} is not a {task} loss, and data {data_name!r} is a {task} task; "
                      f"choose loss=auto (the task's default, {DEFAULT[task]}) or one of "
                      f"{list(FOR_TASK[task])}")


@dataclass(frozen=True)
class Loss:
    """The mean loss of a batch, `loss(out, y)`, on the trained (standardized) targets."""

    name: str  # as configured; `auto`: the task's default
    task: str
    scale: float = 1.0  # regression: the targets' standardizing scale s
    huber_delta: float = 1.0  # in the targets' own units

    @property
    def kind(self) -> str:
        return DEFAULT[self.task] if self.name == "auto" else self.name

    @property
    def factor(self) -> float:
        """A loss on the trained targets times this is in the targets' own units."""
        if self.task != "regression":
            return 1.0
        return self.scale if self.kind == "l1" else self.scale ** 2

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kind = self.kind
        if kind == "cross_entropy":
            return F.cross_entropy(out, y)
        if kind == "nll":
            return F.nll_loss(F.log_softmax(out, dim=1), y)
        if self.task == "classification":  # mse on the one-hot code
            return F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))
        target = y.view_as(out)
        if kind == "l1":
            return F.l1_loss(out, target)
        if kind == "huber":
            return F.huber_loss(out, target, delta=self.huber_delta / self.scale)
        return F.mse_loss(out, target)

    def value_and_grad(self, out: torch.Tensor, y: torch.Tensor,
                       one: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean loss and its gradient dL/d(out), as autograd's backward computes them
        (the by-hand pass, trainer.training.backprop). `one`: dL/dL, autograd's seed (a kept tensor
        saves an allocation per step)."""
        if self.kind not in SOFTMAX_LOSSES:
            return autograd_value_and_grad(self, out, y)
        one = one if one is not None else torch.ones((), device=out.device)
        logp = torch.log_softmax(out, 1)  # F.cross_entropy's two steps, and their derivatives
        loss, total = aten.nll_loss_forward(logp, y, None, 1, -100)
        g = aten.nll_loss_backward(one, logp, y, None, 1, -100, total)
        return loss, aten._log_softmax_backward_data(g, logp, 1, logp.dtype)

    def samples(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(M, b) loss of each sample of stacked outputs `out` (M, b, K): member m's b samples."""
        kind = self.kind
        if kind in SOFTMAX_LOSSES:
            logits = out.flatten(0, 1)
            if kind == "cross_entropy":
                return F.cross_entropy(logits, y.flatten(), reduction="none").view(y.shape)
            return F.nll_loss(F.log_softmax(logits, dim=1), y.flatten(), reduction="none").view(y.shape)
        return self._elementwise(out, y).flatten(2).mean(2)

    def member_means(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(M,) mean loss of each member's batch of stacked outputs `out` (M, b, K)."""
        if self.kind in SOFTMAX_LOSSES:
            return self.samples(out, y).mean(1)
        return self._elementwise(out, y).flatten(1).mean(1)  # one mean over b x K, as a lone batch's

    def member_means_and_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`member_means` (M,) and its sum's gradient d/d(out) (M, b, K), as autograd's backward gives
        them: the stacked by-hand pass (trainer.training.stacked_backprop). A softmax loss's is
        written out (softmax minus the one-hot target, over b); the others' come from autograd."""
        if self.kind in SOFTMAX_LOSSES:
            logp = torch.log_softmax(out, -1)  # (M, b, K)
            losses = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
            g = logp.exp()
            g.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(g[..., :1], -1.0))
            return losses, g.div_(out.shape[1])
        with torch.enable_grad():
            leaf = out.detach().requires_grad_()
            losses = self.member_means(leaf, y)
            (g,) = torch.autograd.grad(losses.sum(), leaf)
        return losses.detach(), g

    def _elementwise(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of each output against its target (mse, l1, huber; mse on one-hot classes)."""
        if self.task == "classification":
            return (out - F.one_hot(y, out.shape[-1]).to(out.dtype)).pow(2)
        target = y.view_as(out)
        if self.kind == "l1":
            return (out - target).abs()
        if self.kind == "huber":
            return F.huber_loss(out, target, reduction="none", delta=self.huber_delta / self.scale)
        return (out - target).pow(2)


def autograd_value_and_grad(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any loss's batch mean and dL/d(out), differentiated by autograd on the outputs alone."""
    leaf = out.detach().requires_grad_()
    with torch.enable_grad():
        loss = loss_fn(leaf, y)
    (g,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), g

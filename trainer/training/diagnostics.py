"""Gradient diagnostics (the notes' vanishing gradients, and initialization keeping the variance of
activations): per-layer gradient norm, weight norm and activation mean/std, with histograms.

Measured every N epochs on a fixed probe batch, outside the training steps: nothing runs per step,
and the whole measurement costs one forward and backward pass and one host sync.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models.mlp import ACTIVATIONS
from trainer.data import Splits
from trainer.training.curves import CurveLogger

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def layer_stats(model: nn.Module, loss_fn: LossFn, x: torch.Tensor,
                y: torch.Tensor) -> dict[str, dict[int, torch.Tensor]]:
    """Per layer l = 1, 2, ... (the linear layers in order; the last is the output layer):

    - `grad`: dL/dW_l of the data loss L on (x, y), the model in training mode (as a step sees it);
    - `weight`: W_l;
    - `activation`: y_l = f(z_l), the output of hidden layer l's activation function (B, width).

    Device tensors, detached. The model's parameters, gradients (`.grad`), buffers (BatchNorm's
    running statistics) and the random state (dropout) are left as they were.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    activations = [m for m in model.modules() if isinstance(m, tuple(ACTIVATIONS.values()))]
    outputs: dict[int, torch.Tensor] = {}
    hooks = [act.register_forward_hook(lambda _m, _in, out, i=i: outputs.__setitem__(i, out.detach()))
             for i, act in enumerate(activations, start=1)]
    buffers = [b.clone() for b in model.buffers()]
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        model.train()
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, [m.weight for m in linears])  # leaves .grad alone
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers, strict=True):
                b.copy_(saved)
    return {"grad": dict(enumerate(grads, start=1)),
            "weight": {i: m.weight.detach() for i, m in enumerate(linears, start=1)},
            "activation": outputs}


def scalars(stats: dict[str, dict[int, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """TensorBoard tags -> device scalars: Frobenius norms of gradients and weights, and the mean
    and (population) standard deviation of each hidden layer's activations over batch and units."""
    out: dict[str, torch.Tensor] = {}
    for i, g in stats["grad"].items():
        out[f"grad_norm/layer{i}"] = torch.linalg.vector_norm(g)
    for i, w in stats["weight"].items():
        out[f"weight_norm/layer{i}"] = torch.linalg.vector_norm(w)
    for i, a in stats["activation"].items():
        out[f"activation_mean/layer{i}"] = a.float().mean()
        out[f"activation_std/layer{i}"] = a.float().std(correction=0)
    return out


HISTOGRAMS = {"grad": "gradients", "weight": "weights", "activation": "activations"}


class LayerStats:
    """Logs `layer_stats` of a fixed probe batch at the end of every `every`-th epoch."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, every: int,
                 logger: CurveLogger) -> None:
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.every, self.logger = every, logger

    def __call__(self, epoch: int) -> None:
        if epoch % self.every:
            return
        stats = layer_stats(self.model, self.loss_fn, self.x, self.y)
        values = scalars(stats)
        host = torch.stack(list(values.values())).tolist()  # the one host sync
        self.logger.scalars(dict(zip(values, host, strict=True)), epoch)
        for kind, name in HISTOGRAMS.items():
            for i, t in stats[kind].items():
                self.logger.histogram(f"{name}/layer{i}", t, epoch)


def probe(model: nn.Module, splits: Splits, loss: LossFn, batch_size: int, every: int,
          logger: CurveLogger) -> LayerStats:
    """Layer statistics on a fixed probe batch: the first `batch_size` samples of the train split."""
    x, y = splits.x_train[:batch_size], splits.y_train[:batch_size]
    return LayerStats(model, loss, x, y, every, logger)

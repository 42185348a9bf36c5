"""The backward pass of a plain MLP by hand (`backprop=auto`): the notes' backpropagation, layer by
layer, with the same kernels autograd calls, so the gradients are autograd's to the last bit.

A 784-256-10 step at batch size 1 is bound by per-op overhead, not arithmetic, and autograd's graph
(recording each op, the engine's walk back through it, the gradient accumulation) is much of that
overhead; torch.optim's `step()` is another part. For `models.MLP` without normalization or
dropout, in fp32, eager, `ManualBackprop` computes the loss, the outputs and every parameter's
gradient directly: forward z_l = h_{l-1} W_l^T + b_l (`addmm`, as `F.linear` does), h_l = f(z_l);
backward from dL/dz_L: dL/dW_l = g_l^T h_{l-1}, dL/db_l = sum of g_l over the batch, and
g_{l-1} = f'(z_{l-1}) * (g_l W_l) through aten's own derivative of each activation. Plain SGD
(no momentum) then updates as torch.optim.SGD's single-tensor step does, p <- p - lr (g + wd p),
without its per-call overhead (`sgd_update`). Tests hold both to autograd and torch.optim.SGD with
`torch.equal`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from models.mlp import MLP
from trainer.training.losses import Loss, autograd_value_and_grad

aten = torch.ops.aten
Grad = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Each activation's derivative as autograd applies it: (module, g = dL/dh, z, h) -> dL/dz.
ACTIVATION_GRADS: dict[type[nn.Module], Grad] = {
    nn.ReLU: lambda m, g, z, h: aten.threshold_backward(g, h, 0),
    nn.Tanh: lambda m, g, z, h: aten.tanh_backward(g, h),
    nn.Sigmoid: lambda m, g, z, h: aten.sigmoid_backward(g, h),
    nn.LeakyReLU: lambda m, g, z, h: aten.leaky_relu_backward(g, z, m.negative_slope, False),
    nn.ELU: lambda m, g, z, h: aten.elu_backward(g, m.alpha, 1, 1, False, z),
    nn.GELU: lambda m, g, z, h: aten.gelu_backward(g, z, approximate=m.approximate),
    nn.SiLU: lambda m, g, z, h: aten.silu_backward(g, z),
    nn.Identity: lambda m, g, z, h: g,
}


def manual_reason(model: nn.Module, precision: str, compiled: bool, cuda_graphs: bool,
                  penalty: object | None, device: torch.device | str = "cpu") -> str | None:
    """Why this run's gradient needs autograd, or None when `ManualBackprop` computes it."""
    if torch.device(device).type != "cpu":  # measured and tested on the CPU only (BENCHMARKS.md)
        return (f"the gradient by hand was measured on the CPU only; on {torch.device(device).type} "
                "autograd's is kept until a measurement there says otherwise")
    if type(model) is not MLP:
        return f"the model is a {type(model).__name__}, not a plain models.MLP"
    kinds = [type(m) for m in model.net]
    unsupported = sorted({k.__name__ for k in kinds if k is not nn.Linear and k not in ACTIVATION_GRADS})
    if unsupported:
        return f"its layers include {', '.join(unsupported)}"
    if precision != "fp32":
        return f"precision={precision} runs under autocast"
    if compiled:
        return "compile=true compiles the model's own forward and backward"
    if cuda_graphs:
        return "cuda_graphs=true captures the autograd step"
    if penalty is not None:
        return "the regularization penalty is differentiated by autograd"
    if not all(p.requires_grad for p in model.parameters()):
        return "some parameters are frozen"
    return None


class ManualBackprop:
    """`(xb, yb) -> (loss, outputs)` of an MLP, with each parameter's `.grad` set to dL/dp of the
    batch's mean loss: the values autograd's backward would leave there."""

    def __init__(self, model: MLP, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        layers = list(model.net)
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        # Each hidden layer: its weight, bias, activation, and the activation's derivative; then
        # the output layer's weight and bias (MLP: Linear, f, Linear, f, ..., Linear).
        self.hidden = []
        for lin in linears[:-1]:
            act = layers[layers.index(lin) + 1]
            grad = ACTIVATION_GRADS[type(act)]
            self.hidden.append((lin.weight, lin.bias, act.forward, partial(grad, act)))
        self.out = (linears[-1].weight, linears[-1].bias)
        # dL/d(outputs): the run's Loss derives its own (trainer.training.losses); any other loss
        # function is differentiated by autograd on the outputs alone.
        self.loss_grad = (loss_fn.value_and_grad if isinstance(loss_fn, Loss)
                          else lambda out, y, one: autograd_value_and_grad(loss_fn, out, y))
        self.one = torch.ones((), device=linears[-1].weight.device)  # dL/dL, autograd's seed

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.backprop(xb, yb)

    def backprop(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, saved = xb, []  # each hidden layer's (input, pre-activation); h its output, then the next's
        for weight, bias, f, _ in self.hidden:
            z = torch.addmm(bias, h, weight.t())
            saved.append((h, z))
            h = f(z)
        weight, bias = self.out
        out = torch.addmm(bias, h, weight.t())
        loss, g = self.loss_grad(out, yb, self.one)  # dL/dz of the output layer
        for (w, b, _, df), (h_in, z) in zip(reversed(self.hidden), reversed(saved), strict=True):
            g_in = df(g.mm(weight), z, h)  # dL/dz of the layer below, through f'
            weight.grad, bias.grad = g.t().mm(h), g.sum(0)
            g, h, weight, bias = g_in, h_in, w, b
        weight.grad, bias.grad = g.t().mm(h), g.sum(0)  # the first layer (h is the input batch)
        return loss, out


def sgd_update(optimizer: torch.optim.Optimizer) -> Callable[[], None] | None:
    """torch.optim.SGD's update without momentum, for each group p <- p - lr (g + wd p), as its
    single-tensor step computes it; None for any other optimizer or setting (its own `step()`).
    The first update is the optimizer's own `step()`: torch's LR schedulers check that it ran, and
    warn that a schedule stepped before the optimizer otherwise."""
    if type(optimizer) is not torch.optim.SGD:
        return None
    plain = all(not g["momentum"] and not g["maximize"] and not g.get("differentiable")
                and not g.get("fused") and not g.get("foreach") and not isinstance(g["lr"], torch.Tensor)
                for g in optimizer.param_groups)
    hooks = (getattr(optimizer, f"_optimizer_step_{when}_hooks", None) for when in ("pre", "post"))
    if not plain or any(hooks):  # hooks of the optimizer's step() run only through step()
        return None
    stepped = False

    @torch.no_grad()
    def update() -> None:
        nonlocal stepped
        if not stepped:
            optimizer.step()
            stepped = True
            return
        for group in optimizer.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if not wd else p.grad.add(p, alpha=wd)
                p.add_(grad, alpha=-lr)

    return update

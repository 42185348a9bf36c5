"""A stacked group's loss and gradient by hand: `trainer.training.backprop`'s rule, batched over members.

For a group whose members are plain MLPs (`StackedParams.layers`: batched Linear layers and the
activations of `backprop.ACTIVATION_GRADS` between them, no dropout) on the task's default loss,
`StackedBackprop(stacked, loss)(x, y)` computes each member's mean batch loss (M,), the outputs
(M, b, K) and every stacked parameter's `.grad` directly: forward z_l = baddbmm(b_l, h_{l-1}, W_l^T),
h_l = f(z_l); backward from dL/dz_L: dL/dW_l = g_l^T h_{l-1} (bmm), dL/db_l = sum of g_l over the
batch, g_{l-1} = f'(z_{l-1}) * (g_l W_l), through aten's own derivative of each activation. As
autograd's backward of the run's `Loss.member_means(...).sum()` (the loss and dL/d(outputs) are
that Loss's: `member_means_and_grad`), member k's gradient is that of its own loss
alone; the sums run in another order than autograd's, so the numbers agree to rounding, not bit
for bit (the members already differ from their lone jobs by the batched products' order).
Measured at M = 64 digits nets on this project's 2-core CPU, one thread (issue 31): 0.177 ms per
member and update by hand against 0.245 ms through autograd (the recorded graph and the engine's
walk back through it are much of a small step's cost).
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.training.backprop import ACTIVATION_GRADS
from trainer.training.losses import Loss
from trainer.training.stacked_layers import MemberActivations
from trainer.training.stacked_linear import stacked_linear, stacked_weight_grad


class StackedBackprop:
    """`(x, y) -> (losses (M,), outputs (M, b, K))`, with `.grad` set on the stacked tensors; x is
    (M, b, D), or (b, D) when every member's batch is the same rows (`StackedParams.shares_input`)."""

    def __init__(self, stacked: Any, loss: Loss) -> None:
        self.stacked, self.loss = stacked, loss

    @staticmethod
    def supported(stacked: Any, task: str, backprop: str = "auto", device: str = "cpu") -> bool:
        """Whether the group's gradient is computed here (else autograd's): `backprop=auto` chooses
        it where it was measured, on the CPU, as for a single run (trainer.training.accel)."""
        layers = stacked.layers
        return (backprop == "auto" and device == "cpu" and layers is not None
                and task in ("classification", "regression")
                and isinstance(layers[-1], tuple)
                and all(isinstance(m, tuple) or isinstance(m, MemberActivations)
                        and all(type(a) in ACTIVATION_GRADS for a in m.modules) for m in layers))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.stacked.params
        h, saved = x, []  # per Linear: (weight, bias, its input); per activation: (module, z, h)
        for layer in self.stacked.layers:
            if isinstance(layer, tuple):
                weight, bias = (params[n] for n in layer)  # (M, out, in), (M, out)
                saved.append((weight, bias, h))
                h = stacked_linear(h, weight, bias)  # x may be (b, D), shared by all members
            else:
                z, h = h, layer(h)
                saved.append((layer, z, h))
        losses, g = self.loss.member_means_and_grad(h, y)
        for entry in reversed(saved):
            if isinstance(entry[0], MemberActivations):
                layer, z, out = entry
                g = activation_grad(layer, g, z, out)
                continue
            weight, bias, h_in = entry
            weight.grad, bias.grad = stacked_weight_grad(g, h_in), g.sum(1)
            if h_in is not x:
                g = torch.bmm(g, weight)
        return losses, h


def activation_grad(layer: MemberActivations, g: torch.Tensor, z: torch.Tensor,
                    h: torch.Tensor) -> torch.Tensor:
    """dL/dz of one hidden layer from dL/dh `g`, each run of members through its own activation's
    derivative. `h` is the masked output: at a padded unit g is already 0 (the next layer's padded
    columns are 0), so the derivative there is 0 whatever h holds; at a member's own units h is f(z)."""
    if len(layer.segments) == 1:
        module = layer.segments[0][2]
        return ACTIVATION_GRADS[type(module)](module, g, z, h)
    return torch.cat([ACTIVATION_GRADS[type(module)](module, g[start:stop], z[start:stop], h[start:stop])
                      for start, stop, module in layer.segments])

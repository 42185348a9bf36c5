"""The multilayer perceptron of the lectures: z = W x + b, y = f(z), layer after layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

# Weight initializations. "default" keeps PyTorch's own (Var(w) = 1/(3M), uniform);
# "kaiming" is the lectures' He rule Var(w) = 2/M (M = fan-in), "xavier" Glorot's
# Var(w) = 2/(M_in + M_out), "normal" a fixed std.
INITS = ("default", "xavier", "kaiming", "normal")
BIAS_INITS = ("default", "zero")
# Normalization layers after each hidden linear layer: BatchNorm1d normalizes each unit over the
# batch (running statistics in eval mode), LayerNorm each sample over its units.
NORMS: dict[str, type[nn.Module] | None] = {"none": None, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}
NORM_POSITIONS = ("pre", "post")  # before the activation (on z) or after it (on y)


def resolve_widths(depth: int, width: int | Sequence[int]) -> list[int]:
    """Hidden-layer widths from `depth` and either one width or a list of per-layer widths."""
    if isinstance(width, int):
        return [width] * depth
    widths = [int(w) for w in width]
    if len(widths) != depth:
        raise ValueError(
            f"model.width lists {len(widths)} widths but model.depth={depth}; "
            f"give model.depth={len(widths)} or a list of {depth} widths"
        )
    return widths


class MLP(nn.Module):
    """Fully connected network: `len(widths)` hidden layers, then a linear output layer."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        widths: Sequence[int],
        activation: str = "relu",
        init: str = "default",
        init_std: float = 0.01,
        bias_init: str = "default",
        dropout: float = 0.0,
        norm: str = "none",
        norm_position: str = "pre",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {list(INITS)}")
        if bias_init not in BIAS_INITS:
            raise ValueError(f"unknown bias_init {bias_init!r}; choose one of {list(BIAS_INITS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"unknown norm_position {norm_position!r}; choose one of {list(NORM_POSITIONS)}")
        layers: list[nn.Module] = []
        dims = [in_dim, *widths]
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            block = [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
            if NORMS[norm] is not None:  # pre: Linear, Norm, f (the usual); post: Linear, f, Norm
                block.insert(1 if norm_position == "pre" else 2, NORMS[norm](d_out))
            layers += block
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.reset_parameters(init, init_std, bias_init)

    @torch.no_grad()
    def reset_parameters(self, init: str, init_std: float, bias_init: str) -> None:
        for layer in self.net:
            if not isinstance(layer, nn.Linear):
                continue
            if init == "kaiming":
                # Var(w) = 2/M with M the fan-in: w ~ N(0, sqrt(2/M)).
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))
            elif init == "xavier":
                nn.init.xavier_normal_(layer.weight)
            elif init == "normal":
                layer.weight.normal_(0.0, init_std)
            if bias_init == "zero":
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, out_dim)
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

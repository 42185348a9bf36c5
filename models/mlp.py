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


def resolve_widths(depth: int | None, width: int | Sequence[int]) -> list[int]:
    """Hidden-layer widths from `depth` and either one width or a list of per-layer widths
    (`depth` None: the list's length, or one layer)."""
    if isinstance(width, int):
        return [width] * (1 if depth is None else depth)
    widths = [int(w) for w in width]
    if depth is not None and len(widths) != depth:
        raise ValueError(f"{len(widths)} widths but depth {depth}")
    return widths


class MLP(nn.Module):
    """Fully connected network: `depth` hidden layers of `width` units (or the widths of a list),
    then a linear output layer. The keys of configs/model/mlp.yaml are these arguments."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int | Sequence[int],
        depth: int | None = None,
        activation: str = "relu",
        init: str = "default",
        init_std: float = 0.01,
        bias_init: str = "default",
        dropout: float = 0.0,
        norm: str = "none",
        norm_position: str = "pre",
    ) -> None:
        super().__init__()
        # A config's values were checked against these tables before any work (trainer.config);
        # this is for code that builds an MLP itself.
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if norm not in NORMS or norm_position not in NORM_POSITIONS:
            raise ValueError(f"unknown norm {norm!r} or norm_position {norm_position!r}; choose from "
                             f"{list(NORMS)} and {list(NORM_POSITIONS)}")
        self.widths = resolve_widths(depth, width)
        layers: list[nn.Module] = []
        dims = [in_dim, *self.widths]
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
            elif init != "default":
                raise ValueError(f"unknown init {init!r}; choose one of {list(INITS)}")
            if bias_init == "zero":
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, out_dim)
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""Members of different widths and activations in one stack (issue 31 item 2): padding and masks.

A group's members may differ in their hidden layers' widths (same number of layers) and in their
activation. Their parameters are stacked padded to the widest member at every layer: member k's
(out_k, in_k) weight is the top-left corner of the stack's (M, out, in), the rest zeros, and its
own `MLP` parameters are views of that corner (`own`). Padded units then stay exactly zero:
their rows of W and b are zero, so z = 0 there; where f(0) = 0 (ReLU, tanh, ELU, GELU, SiLU,
identity) the unit's output is 0, and where it is not (sigmoid: 0.5) a 0/1 mask after the
activation makes it 0 (`MemberActivations.mask`). Its outputs being 0, the next layer's padded
columns get a zero gradient; the next layer's padded columns being 0, the unit's own gradient is
0. A zero gradient keeps a zero parameter zero under every supported optimizer (its moments stay
0), weight decay (a multiple of 0), clipping (the norm counts zeros) and averaging (the member's
own views only), so the padding never leaks into a member's weights, and each member computes
what it computes alone (the same products, padded with exact zeros).

Activations: the group orders its members by activation (trainer.vectorized.group), so each
activation runs once on a contiguous slice of members (a view), not once per member.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def padded_shape(shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The smallest shape that holds each of `shapes` (the elementwise maximum)."""
    return tuple(max(sizes) for sizes in zip(*shapes, strict=True))


def own(shape: Sequence[int]) -> tuple[slice, ...]:
    """The index of a member's own corner of its padded (unstacked) slice."""
    return tuple(slice(0, s) for s in shape)


def pad_stack(tensors: Sequence[torch.Tensor], shape: Sequence[int] | None = None) -> torch.Tensor:
    """(M, *shape): `tensors` stacked, each zero-padded at the end of every dimension (`shape`:
    their padded shape). Tensors of one shape stack as `torch.stack` does."""
    shape = tuple(shape or padded_shape([t.shape for t in tensors]))
    if all(tuple(t.shape) == shape for t in tensors):
        return torch.stack(list(tensors))
    out = tensors[0].new_zeros((len(tensors), *shape))
    for k, t in enumerate(tensors):
        out[(k, *own(t.shape))] = t
    return out


def _same(a: nn.Module, b: nn.Module) -> bool:
    return type(a) is type(b) and a.extra_repr() == b.extra_repr()


def _zero_at_zero(module: nn.Module) -> bool:
    return bool(module(torch.zeros(1)).eq(0).all())


class MemberActivations:
    """One hidden layer's activation of the stack (M, B, H): each run of members with the same
    activation (`segments`: start, stop, module) on its slice, then `mask` (M, 1, H), or None,
    zeroing the padded units of members whose activation is not 0 at 0."""

    def __init__(self, modules: Sequence[nn.Module], widths: Sequence[int], device: torch.device) -> None:
        self.segments: list[tuple[int, int, nn.Module]] = []
        for k, module in enumerate(modules):
            if self.segments and _same(self.segments[-1][2], module):
                start, _, first = self.segments[-1]
                self.segments[-1] = (start, k + 1, first)
            else:
                self.segments.append((k, k + 1, module))
        width = max(widths)
        padded = [w < width and not _zero_at_zero(m) for m, w in zip(modules, widths, strict=True)]
        self.mask: torch.Tensor | None = None
        if any(padded):
            self.mask = torch.ones(len(modules), 1, width, device=device)
            for k, w in enumerate(widths):
                self.mask[k, :, w:] = 0

    @property
    def modules(self) -> list[nn.Module]:
        return [module for _, _, module in self.segments]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:  # (M, B, H) -> (M, B, H)
        if len(self.segments) == 1:
            h = self.segments[0][2](z)
        else:  # one call per run of members (a view), joined
            h = torch.cat([module(z[start:stop]) for start, stop, module in self.segments])
        return h if self.mask is None else h * self.mask

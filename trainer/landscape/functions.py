"""The 2-D test functions and one optimizer's path on one (`descend`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Box = tuple[float, float]  # a point (x, y), or the limits (low, high) of an axis
# name -> (L(x, y), the formula as the figure's title shows it)
FUNCTIONS: dict[str, tuple[Fn, str]] = {
    "beale": (lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
              + (2.625 - x + x * y**3) ** 2,
              r"Beale: $(1.5-x+xy)^2+(2.25-x+xy^2)^2+(2.625-x+xy^3)^2$"),
    "rosenbrock": (lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
                   r"Rosenbrock (long valley): $(1-x)^2+100(y-x^2)^2$"),
    "saddle": (lambda x, y: x**2 - y**2 - 2 * x + 5 * y, r"saddle: $x^2-y^2-2x+5y$"),
    "ill_conditioned": (lambda x, y: x**2 / 2 + 10 * y**2,
                        r"ill-conditioned quadratic: $x^2/2+10y^2$"),
    "near_flat": (lambda x, y: 1 - torch.exp(-(x**2 + y**2) / 2), r"near-flat: $1-e^{-(x^2+y^2)/2}$"),
}


@dataclass
class Trajectory:
    """One optimizer's path: the start point, then one point (and its loss) per step."""

    name: str
    xs: list[float]
    ys: list[float]
    losses: list[float]
    left_at: int | None  # the step whose point left the plot or was not finite; None: stayed in

    @property
    def diverged(self) -> bool:
        """Left the plot with the loss higher than at the start (or not finite). Leaving it downhill,
        as on the saddle, is an escape where the function has no minimum, not a divergence."""
        end = self.losses[-1]
        return self.left_at is not None and not (math.isfinite(end) and end < self.losses[0])


def descend(fn: Fn, optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
            start: Box, steps: int, xlim: Box, ylim: Box, name: str = "") -> Trajectory:
    """Run `steps` updates of `optimizer` (a `_partial_` from the config) from `start` on `fn`."""
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)  # float64: exact examples
    opt = optimizer([point])

    def closure() -> torch.Tensor:  # every torch optimizer takes one; L-BFGS needs it
        opt.zero_grad()
        loss = fn(point[0], point[1])
        loss.backward()
        return loss

    path = Trajectory(name, [start[0]], [start[1]], [fn(*torch.tensor(start)).item()], None)
    for step in range(1, steps + 1):
        opt.step(closure)
        x, y = point.detach().tolist()
        with torch.no_grad():
            loss = fn(point[0], point[1]).item()
        path.xs.append(x), path.ys.append(y), path.losses.append(loss)
        inside = xlim[0] <= x <= xlim[1] and ylim[0] <= y <= ylim[1]
        if not (inside and math.isfinite(loss)):
            path.left_at = step  # the plot draws the path up to here; no point going further
            break
    return path

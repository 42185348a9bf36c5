"""The landscape figure: contours with each optimizer's path, and the loss against the step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trainer.landscape.functions import Fn, Trajectory


def _figure(paths: list[Trajectory], fn: Fn, title: str, xlim: tuple[float, float],
            ylim: tuple[float, float], steps: int, labels: dict[str, str],
            mark: tuple[tuple[float, float], str]) -> tuple[object, Callable[[int], None]]:
    """The figure, and `draw(k)`, which shows every path up to step k."""
    from matplotlib.colors import BoundaryNorm
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, Agg when saving

    fig = Figure(figsize=(12, 5), layout="constrained")
    ax, ax_loss = fig.subplots(1, 2, width_ratios=[1.1, 1])
    gx, gy = torch.meshgrid(torch.linspace(*xlim, 300, dtype=torch.float64),
                            torch.linspace(*ylim, 300, dtype=torch.float64), indexing="xy")
    z = fn(gx, gy).numpy()
    # Levels at quantiles of the values: even spacing would put every line in the steep corners
    # of Beale's or Rosenbrock's function and none in the valley the paths follow.
    levels = np.unique(np.quantile(z, np.linspace(0, 1, 40)))
    # Filled bands, one pale colour step per level (not per value); no lines: a small PNG.
    ax.contourf(gx.numpy(), gy.numpy(), z, levels=levels, cmap="Greys", alpha=0.5,
                norm=BoundaryNorm(levels, 256))
    ax.plot(*paths[0].xs[:1], *paths[0].ys[:1], "ko", label="start")
    ax.plot(*mark[0], "k*", markersize=14, label=mark[1])
    ax.set(xlim=xlim, ylim=ylim, xlabel="x", ylabel="y", title=title)

    finite = [v for p in paths for v in p.losses if np.isfinite(v)]
    lines = []
    for i, p in enumerate(paths):
        color = f"C{i}"
        lines.append((p, ax.plot([], [], "-", color=color, lw=1.5, label=labels[p.name])[0],
                      ax.plot([], [], "o", color=color, markersize=5)[0],
                      ax_loss.plot([], [], "-", color=color, lw=1.5, label=p.name)[0]))
    low, high = min(finite), max(finite)
    if low > 0:  # log scale shows the approach to a zero minimum
        ax_loss.set_yscale("log")
        ax_loss.set_ylim(low / 2, high * 2)
    else:  # the saddle's loss goes below zero
        ax_loss.set_yscale("symlog", linthresh=1e-2)
        ax_loss.set_ylim(low - abs(low) * 0.5 - 1, high + abs(high) * 0.5 + 1)
    ax_loss.set(xlim=(0, steps), xlabel="step", ylabel="loss", title="loss against the step")
    ax_loss.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax_loss.legend(fontsize=8)

    def draw(k: int) -> None:
        for p, path_line, head, loss_line in lines:
            n = min(k, len(p.xs) - 1) + 1  # a path that left the plot stops at its last point
            path_line.set_data(p.xs[:n], p.ys[:n])
            head.set_data(p.xs[n - 1:n], p.ys[n - 1:n])
            loss_line.set_data(range(n), p.losses[:n])

    return fig, draw


def save_png(paths: list[Trajectory], file: Path, **figure: object) -> Path:
    """The whole paths in one image."""
    fig, draw = _figure(paths, **figure)
    draw(max(len(p.xs) for p in paths))
    fig.savefig(file, dpi=110)
    return file


def save_gif(paths: list[Trajectory], file: Path, frames: int, fps: int, **figure: object) -> Path:
    """The paths growing step by step: `frames` evenly spaced steps, the last included."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, draw = _figure(paths, **figure)
    last = max(len(p.xs) for p in paths) - 1
    ks = np.unique(np.linspace(0, last, min(frames, last + 1)).round().astype(int))
    FuncAnimation(fig, draw, frames=ks).save(file, writer=PillowWriter(fps=fps), dpi=70)
    return file

"""`python -m trainer.landscape function=NAME optimizers=[...]`: torch.optim paths on a 2-D function.

The optimizers are the project's own configs/optimizer/*.yaml, built with Hydra's `instantiate` as
the trainer builds them; configs/landscape.yaml holds the functions' start points, limits and rates.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from trainer.config.validate import config_dir
from trainer.landscape.functions import FUNCTIONS, Box, Trajectory, descend
from trainer.runtime.cli import user_errors
from trainer.runtime.errors import ConfigError
from trainer.runtime.files import write_json

log = logging.getLogger("trainer.landscape")


def _pair(key: str, value: Any, ordered: bool = False) -> Box:
    ok = (isinstance(value, ListConfig | list) and len(value) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
    if not ok or (ordered and not value[0] < value[1]):
        what = "[low, high] with low < high" if ordered else "[x, y]"
        raise ConfigError(f"{key}={OmegaConf.to_container(value) if ok else value!r} must be two "
                          f"numbers {what}, e.g. {key}=[-2,2]")
    return float(value[0]), float(value[1])


def _count(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive whole number")
    return value


def check(cfg: DictConfig) -> tuple[list[str], Box, Box, Box]:
    """Every value `landscape` uses, before any work: unknown names and bad numbers name the key.
    Returns the optimizers' names, the start point and the x and y limits."""
    if cfg.function not in FUNCTIONS or cfg.function not in cfg.functions:
        raise ConfigError(f"function={cfg.function!r} is not a known function; choose one of "
                          f"{sorted(FUNCTIONS)}")
    names = list(cfg.optimizers) if isinstance(cfg.optimizers, ListConfig) else [cfg.optimizers]
    if not names:
        raise ConfigError(f"optimizers=[] names no optimizer; choose some of {list(cfg.optim)}, "
                          "e.g. optimizers=[sgd,adam]")
    if len(set(names)) < len(names):
        raise ConfigError(f"optimizers={names} names an optimizer twice; list each once (compare two "
                          "rates of one optimizer with two runs, or a multirun over optim.NAME.lr)")
    for name in names:
        if name not in cfg.optim:
            raise ConfigError(f"optimizers lists {name!r}, which is not an optimizer of "
                              f"configs/optimizer/; choose from {list(cfg.optim)}")
    for key in ("steps", "frames", "fps"):
        _count(key, cfg[key])
    if not isinstance(cfg.animate, bool):
        raise ConfigError(f"animate={cfg.animate!r} must be true or false")
    start = _pair("start", cfg.start)
    xlim, ylim = _pair("xlim", cfg.xlim, ordered=True), _pair("ylim", cfg.ylim, ordered=True)
    if not (xlim[0] <= start[0] <= xlim[1] and ylim[0] <= start[1] <= ylim[1]):
        raise ConfigError(f"start=[{start[0]},{start[1]}] lies outside the plot xlim={list(xlim)} "
                          f"ylim={list(ylim)}; move the start or widen the limits")
    return names, start, xlim, ylim


def landscape(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run each optimizer of `cfg.optimizers` on `cfg.function`; write the PNG (and GIF) and the
    JSON summary into `out_dir`; return that summary."""
    from trainer.config.build import instantiate_checked  # reports a bad optimizer option as its key

    names, start, xlim, ylim = check(cfg)
    fn, title = FUNCTIONS[cfg.function]
    # Resolved (the rates interpolate the function's), so an error shows the values used.
    options = {n: OmegaConf.create(OmegaConf.to_container(cfg.optim[n], resolve=True)) for n in names}
    # Build every optimizer on a throw-away tensor first: a bad option fails before any output.
    for name in names:
        instantiate_checked(options[name], f"optim.{name}", [torch.zeros(2, requires_grad=True)])
    paths = [descend(fn, lambda params, n=name: instantiate_checked(options[n], f"optim.{n}", params),
                     start, cfg.steps, xlim, ylim, name) for name in names]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"landscape_{cfg.function}"
    from trainer.landscape.plot import save_gif, save_png  # matplotlib only when drawing

    labels = {p.name: _label(p, options[p.name]) for p in paths}
    mark = cfg.functions[cfg.function].mark
    figure = dict(fn=fn, title=title, xlim=xlim, ylim=ylim, steps=cfg.steps, labels=labels,
                  mark=(tuple(mark.at), mark.label))
    files = {"png": str(save_png(paths, Path(f"{stem}.png"), **figure))}
    if cfg.animate:
        files["gif"] = str(save_gif(paths, Path(f"{stem}.gif"), frames=cfg.frames, fps=cfg.fps, **figure))
    summary = {"function": cfg.function, "start": list(start), "steps": cfg.steps, "xlim": list(xlim),
               "ylim": list(ylim), "files": files,
               "optimizers": {p.name: _result(p, options[p.name]) for p in paths}}
    files["json"] = str(stem) + ".json"
    write_json(summary, files["json"])
    for p in paths:
        log.info(_report(p, cfg.steps))
    log.info("figure: %s%s; summary: %s", files["png"],
             f", animation: {files['gif']}" if "gif" in files else "", files["json"])
    return summary


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf/nan: null


def _result(p: Trajectory, options: DictConfig) -> dict[str, Any]:
    return {"options": OmegaConf.to_container(options, resolve=True),
            "final_point": [_finite(p.xs[-1]), _finite(p.ys[-1])], "final_loss": _finite(p.losses[-1]),
            "start_loss": p.losses[0], "steps_run": len(p.losses) - 1, "left_plot_at_step": p.left_at,
            "diverged": p.diverged}


def _label(p: Trajectory, options: DictConfig) -> str:
    label = f"{p.name} (lr {options.get('lr')})"
    if p.left_at is not None:
        label += f", {'diverged' if p.diverged else 'left the plot'} at step {p.left_at}"
    return label


def _report(p: Trajectory, steps: int) -> str:
    """The log line of one path."""
    where = f"({p.xs[-1]:.6g}, {p.ys[-1]:.6g}) loss {p.losses[-1]:.6g}"
    if p.left_at is None:
        return f"{p.name}: after {steps} step{'s' * (steps != 1)} at {where}"
    if p.diverged:
        return (f"{p.name}: DIVERGED, left the plot at step {p.left_at} at {where} (start loss "
                f"{p.losses[0]:.6g}); lower optim.{p.name}.lr")
    return (f"{p.name}: left the plot downhill at step {p.left_at} at {where} (start loss "
            f"{p.losses[0]:.6g}): the function has no minimum that way")


@hydra.main(config_path=config_dir(), config_name="landscape", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from trainer.runtime.job import JobContext

    with user_errors():
        landscape(cfg, JobContext.from_hydra().output_dir)


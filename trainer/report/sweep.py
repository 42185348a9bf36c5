"""`python -m trainer.report SWEEP_DIR`: one row per job of a sweep, the best marked, a CSV and figures.

Reads a finished or running sweep (`multirun/DATE/TIME`): each job folder's `.hydra/` (overrides
and config), `metrics.json` once the job has finished, and its TensorBoard events while it runs.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from trainer.logs.dashboard import REPORT_IMAGES, add_images
from trainer.report.axes import AXES, BANDS
from trainer.report.plots import plot_params, plot_select
from trainer.report.stats import METRICS, Group, best_group, check_keys, group_jobs, retried, select
from trainer.report.tables import draw_curves, print_groups, print_jobs, print_select, rows, write_csv
from trainer.runtime.cli import fail, parse_options, probe_folder
from trainer.runtime.errors import ConfigError, DataError, StorageError, UserError
from trainer.storage.rundir import MOVED
from trainer.sweeps.jobs import (
    NEVER_IN_NAMES,
    job_number,
    order_key,
    planned_jobs,
)
from trainer.sweeps.objective import direction_of
from trainer.sweeps.status import superseded, unfinished_status
from trainer.sweeps.trial import study_summary

USAGE = ("python -m trainer.report SWEEP_DIR [out=FOLDER] [stale=600] [over=seed,...] [select=KEY,...] "
         "[x=epoch|step|samples|time] [band=std|minmax] [format=png|pdf|svg] [dpi=110]")
NOT_BEST = ("failed", "diverged", "pruned")  # statuses never marked best
CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")  # the curves report_curves draws


@dataclass
class Job:
    """What the report knows about one job of a sweep."""

    name: str
    overrides: dict[str, str]
    monitor: str
    status: str
    epochs: int = 0
    epochs_total: int | None = None
    best_epoch: int | None = None
    wall_time_s: float | None = None
    values: dict[str, float] = field(default_factory=dict)  # METRICS at the best epoch
    curve: list[tuple[int, float]] = field(default_factory=list)  # `monitor` per epoch
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # CURVES per epoch
    path: Path | None = None  # the job's folder (None: not started)
    config: dict[str, Any] = field(default_factory=dict)  # its .hydra/config.yaml
    metrics: dict[str, Any] = field(default_factory=dict)  # its metrics.json, once finished

    def score(self, monitor: str) -> float:
        """The job's best validation `monitor`, NaN when it has none."""
        return self.values.get(monitor, math.nan)


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders: those holding `.hydra/overrides.yaml`, in job-number order; not the old runs that
    `overwrite=true` moved into a job's `.overwritten-TIME/`."""
    dirs = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")
            if not any(part.startswith(MOVED) for part in p.relative_to(sweep_dir).parts)]
    return sorted(dirs, key=lambda d: [order_key(part) for part in d.relative_to(sweep_dir).parts])


def job_name(job_dir: Path, sweep_dir: Path) -> str:
    """The job's number (`3` for the folder `3_optimizer=adam,...` or `3`), else its folder."""
    if job_dir == sweep_dir:
        return "."
    relative = job_dir.relative_to(sweep_dir)
    number = job_number(relative.name)
    return str(number) if number is not None and len(relative.parts) == 1 else str(relative)


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Hydra's `key=value` override strings as a dict (`+key`, `++key` and `~key` as `key`)."""
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_yaml(path: Path) -> Any:
    """A file Hydra wrote into a job's .hydra/, as plain Python values."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # YAML syntax errors come in several types
        raise DataError(f"{path} cannot be read ({type(exc).__name__}: {exc}); Hydra writes it when the "
                        "job starts: restore or delete that job folder") from exc


def read_job(job_dir: Path, sweep_dir: Path, now: float, stale_s: float, superseded: bool = False) -> Job:
    """One job's row, from metrics.json when it finished, else from its TensorBoard events."""
    from trainer.logs.events import scalar_events

    hydra_dir = job_dir / ".hydra"
    config = load_yaml(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").is_file() else {}
    monitor = str(config.get("monitor", "val/loss"))
    job = Job(name=job_name(job_dir, sweep_dir),
              overrides=parse_overrides(load_yaml(hydra_dir / "overrides.yaml")),
              monitor=monitor, status="running", epochs_total=config.get("epochs"), path=job_dir,
              config=config)
    events = scalar_events(job_dir) if any(job_dir.glob("events.out.tfevents.*")) else {}
    if monitor == "auto":  # the run's rule: val/acc when the task has classes (events show it)
        monitor = job.monitor = "val/acc" if "val/acc" in events else "val/loss"
    job.curve = [(e.step, e.value) for e in events.get(monitor, [])]
    job.curves = {tag: [(e.step, e.value) for e in events[tag]] for tag in CURVES if tag in events}
    metrics_path = job_dir / "metrics.json"
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{metrics_path} cannot be read as JSON ({exc}); it is written atomically "
                            "by the trainer, so it was changed by hand: delete it to report the job "
                            "from its TensorBoard events") from exc
        job.metrics, job.status = metrics, str(metrics.get("status", "completed"))
        if metrics.get("monitor") in ("val/loss", "val/acc") and metrics["monitor"] != monitor:
            job.monitor = metrics["monitor"]  # the run resolved `auto` for its task
            job.curve = [(e.step, e.value) for e in events.get(job.monitor, [])]
        job.values = {k: float(metrics[k]) for k in METRICS if metrics.get(k) is not None}
        job.epochs, job.best_epoch = metrics.get("epochs", 0), metrics.get("best_epoch")
        job.wall_time_s = metrics.get("wall_time_s")
        return job
    job.status = unfinished_status(job_dir, now, stale_s, superseded)
    if job.curve:  # so far: the best epoch by `monitor`, the other validation metrics at it
        pick = max if direction_of(monitor) == "maximize" else min
        finite = [(s, v) for s, v in job.curve if math.isfinite(v)] or job.curve
        job.best_epoch = pick(finite, key=lambda sv: sv[1])[0]
        job.values = {e_tag: e.value for e_tag in ("val/loss", "val/acc")
                      for e in events.get(e_tag, []) if e.step == job.best_epoch}
        job.epochs = max(s for s, _ in job.curve)
        walls = [e.wall_time for series in events.values() for e in series]
        job.wall_time_s = round(max(walls) - min(walls), 3)
    return job


def read_sweep(sweep_dir: str | Path, stale_s: float = 600.0) -> list[Job]:
    """Every job of a sweep, those of its multirun.yaml not started yet included; DataError when
    the folder is not a sweep."""
    path = Path(sweep_dir)
    if not path.is_dir():
        raise DataError(f"{sweep_dir} is not a folder; pass the sweep folder that `python -m trainer -m ...` "
                        "wrote, e.g. multirun/2026-01-31/12-00-00")
    dirs = find_jobs(path)
    planned = planned_jobs(path)
    if not dirs and not planned:
        raise DataError(
            f"{sweep_dir} is not a sweep: none of its folders holds a job's .hydra/overrides.yaml. Pass the "
            "folder of a multirun (`python -m trainer -m ...` writes multirun/DATE/TIME/N_.../ for job N) "
            "or of a single run (outputs/DATE/TIME)")
    now = time.time()
    jobs = [read_job(d, path, now, stale_s, superseded(d, dirs)) for d in dirs]
    seen = {j.name for j in jobs}
    monitor = sweep_monitor(jobs) if jobs else str(OmegaConf.load(path / "multirun.yaml").get("monitor"))
    jobs += [Job(name=str(num), overrides=parse_overrides(overrides), monitor=monitor, status="not started")
             for num, overrides in enumerate(planned or []) if str(num) not in seen]
    return sorted(jobs, key=lambda j: order_key(j.name))


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (all keys for a single job)."""
    # How a job ran, not what it is: a sweep resumed with resume=true has it only in the jobs it ran.
    keys = [k for k in dict.fromkeys(k for job in jobs for k in job.overrides) if k not in NEVER_IN_NAMES]
    if len(jobs) == 1:
        return keys
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def sweep_monitor(jobs: list[Job]) -> str:
    """The metric that ranks the jobs: their `monitor` (the most common one, if they differ)."""
    return Counter(j.monitor for j in jobs).most_common(1)[0][0]


def best_job(jobs: list[Job], monitor: str) -> Job | None:
    """The job with the best finite validation `monitor`, of those that did not fail or diverge.

    A diverged job may have a good epoch before it blew up, but a sweeper counted it as the worst.
    """
    scored = [j for j in jobs if math.isfinite(j.score(monitor)) and j.status not in NOT_BEST]
    if not scored:
        return None
    pick = max if direction_of(monitor) == "maximize" else min
    return pick(scored, key=lambda j: j.score(monitor))


def report(sweep_dir: str | Path, out: str | Path | None = None, stale_s: float = 600.0,
           over: list[str] | None = None, select_keys: list[str] | None = None, x: str = "epoch",
           band: str = "std", fmt: str = "png") -> dict[str, Path]:
    """Print the table; write report.csv, report_curves.FMT and report_params.FMT (and with
    `select_keys`, report_select.csv and .FMT); return their paths.

    Jobs that differ only in the `over` keys (default: `seed`, when swept) are one setting: the table
    then has a row per setting with n and mean ± std over its jobs. `x` is the curves' axis and
    `band` their spread over a setting's jobs (± std or min..max).
    """
    check_choice("x", x, AXES)
    check_choice("band", band, BANDS)
    check_choice("format", fmt, FORMATS)
    jobs = read_sweep(sweep_dir, stale_s)
    retries = retried(jobs, NEVER_IN_NAMES)  # a killed attempt: its retry counts, it does not
    attempts = {j.name: j.status for j in jobs if j.name in retries}
    jobs = [j for j in jobs if j.name not in retries]
    keys, monitor = swept_keys(jobs), sweep_monitor(jobs)
    if over is not None:
        check_keys("over", over, keys)
    averaged = [k for k in (over if over is not None else ["seed"]) if k in keys]
    groups = group_jobs(jobs, keys, averaged)
    grouped = any(len(g.jobs) > 1 for g in groups)
    setting_keys = [k for k in keys if k not in averaged]
    if select_keys:
        check_keys("select", select_keys, setting_keys, averaged)
    out_dir = Path(out) if out is not None else Path(sweep_dir)
    check_out(out_dir, "out" if out is not None else "the sweep folder")
    common = {k: v for k, v in jobs[0].overrides.items() if k not in keys}
    counts = Counter(j.status for j in jobs)
    print(f"sweep {sweep_dir}: {len(jobs)} jobs (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")")
    for name, retry in retries.items():
        print(f"job {name} ({attempts[name]}) was run again as job {retry}, which stands for it below")
    if common:
        print("same in every job: " + " ".join(f"{k}={v}" for k, v in common.items()))
    print("val/* at each job's best epoch on its monitor; test/* with those weights")
    paths = {"csv": out_dir / "report.csv", "curves": out_dir / f"report_curves.{fmt}"}
    if grouped:
        best = best_group(groups, monitor)
        print_groups(groups, averaged, best, monitor, paths["csv"])
        paths["jobs_csv"] = out_dir / "report_jobs.csv"
        write_csv(rows(jobs, keys, None), paths["jobs_csv"])
        best_job_ = None
    else:
        best_job_ = best_job(jobs, monitor)
        print_jobs(jobs, keys, best_job_, monitor, paths["csv"])
        groups = [Group({k: job.overrides.get(k, "") for k in keys}, [job]) for job in jobs]
        best = next((g for g in groups if g.jobs == [best_job_]), None)
    if select_keys:
        choices = select(groups, select_keys, monitor)
        print_select(choices, select_keys, monitor, out_dir / "report_select.csv")
        paths["select_csv"], paths["select"] = out_dir / "report_select.csv", out_dir / f"report_select.{fmt}"
        plot_select(choices, select_keys, monitor, paths["select"])
    study = study_summary(Path(sweep_dir))  # an Optuna search: its study, from the database
    if study:
        print("\n" + "\n".join(study))
    draw_curves(groups, best, monitor, x, band, grouped, paths["curves"])
    if setting_keys:
        paths["params"] = out_dir / f"report_params.{fmt}"
        plot_params(jobs, setting_keys, best_job_, monitor, paths["params"])
    pngs = {f"{REPORT_IMAGES}{key}": path for key, path in paths.items() if path.suffix == ".png"}
    if pngs:  # TensorBoard's Images tab (run `sweep_report`) shows PNG files only
        paths["images"] = add_images(Path(sweep_dir), pngs)
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return paths


def check_out(out_dir: Path, what: str) -> None:
    """The report's folder exists, or is made, and takes files: else one paragraph, before any output."""
    try:
        probe_folder(out_dir)
    except OSError as exc:
        named = f"out={out_dir}" if what == "out" else f"{what} {out_dir}"
        raise StorageError(f"{named} cannot hold the report's files: {exc.strerror or exc}. Choose a "
                           "folder you can write to, e.g. out=reports/my_sweep") from None


FORMATS = ("png", "pdf", "svg")


def check_choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{option}={value!r} is not one of {'|'.join(allowed)}")


def main(argv: list[str] | None = None) -> None:
    try:
        opts = parse_options(sys.argv[1:] if argv is None else argv,
                             {"dir": None, "out": "", "stale": "600", "over": "", "select": "",
                              "x": "epoch", "band": "std", "format": "png", "dpi": "110"}, USAGE,
                             positional="dir")
        try:
            stale = float(opts["stale"])
        except ValueError:
            stale = math.nan
        if not stale > 0:  # a job whose files are older than this, with no live process, has failed
            raise ConfigError(f"stale={opts['stale']!r} must be a positive number of seconds (default 600)")
        over = key_list(opts["over"]) if opts["over"] else None
        dpi = int(opts["dpi"]) if opts["dpi"].isdigit() else 0
        if not 20 <= dpi <= 1200:
            raise ConfigError(f"dpi={opts['dpi']!r} must be a whole number of dots per inch from 20 to 1200 "
                              "(default 110; 300 for print)")
        from matplotlib import rc_context

        with rc_context({"savefig.dpi": dpi}):
            report(opts["dir"], opts["out"] or None, stale, over, key_list(opts["select"] or ""),
                   opts["x"] or "epoch", opts["band"] or "std", opts["format"])
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(exc))


def key_list(text: str) -> list[str]:
    """`optimizer,+model.width` as keys the way the jobs' overrides are read (`+` dropped)."""
    return [k.strip().lstrip("+~") for k in text.split(",") if k.strip()]


"""`python -m trainer.report SWEEP_DIR`: one row per job of a sweep, the best marked, a CSV and figures.

Reads a finished or running sweep (`multirun/DATE/TIME`): each job folder's `.hydra/` (overrides
and config), `metrics.json` once the job has finished, and its TensorBoard events while it runs.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

from trainer.logs.dashboard import REPORT_IMAGES, add_images
from trainer.report.axes import AXES, BANDS
from trainer.report.plots import plot_params, plot_select
from trainer.report.read import Job, read_sweep, sweep_monitor, swept_keys
from trainer.report.stats import Group, best_group, check_keys, group_jobs, retried, select
from trainer.report.tables import draw_curves, print_groups, print_jobs, print_select, rows, write_csv
from trainer.runtime.cli import parse_options, probe_folder, user_errors
from trainer.runtime.errors import ConfigError, StorageError
from trainer.sweeps.jobs import NEVER_IN_NAMES
from trainer.sweeps.objective import direction_of
from trainer.sweeps.trial import study_summary

USAGE = ("python -m trainer.report SWEEP_DIR [out=FOLDER] [stale=600] [over=seed,...] [select=KEY,...] "
         "[x=epoch|step|samples|time] [band=std|minmax] [format=png|pdf|svg] [dpi=110]")
NOT_BEST = ("failed", "diverged", "pruned")  # statuses never marked best


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
    jobs, retries = without_retried(read_sweep(sweep_dir, stale_s))
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
    print_header(sweep_dir, jobs, keys, retries)
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


def without_retried(jobs: list[Job]) -> tuple[list[Job], list[str]]:
    """The jobs without the killed attempts whose retry stands for them (that retry counts, they do
    not), and a line for each such attempt."""
    retries = retried(jobs, NEVER_IN_NAMES)
    said = [f"job {j.name} ({j.status}) was run again as job {retries[j.name]}, which stands for it below"
            for j in jobs if j.name in retries]
    return [j for j in jobs if j.name not in retries], said


def print_header(sweep_dir: str | Path, jobs: list[Job], keys: list[str], retries: list[str]) -> None:
    """The lines above the table: the jobs by status, the retried ones, what every job shares."""
    counts = Counter(j.status for j in jobs)
    print(f"sweep {sweep_dir}: {len(jobs)} jobs (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")")
    for line in retries:
        print(line)
    common = {k: v for k, v in jobs[0].overrides.items() if k not in keys}
    if common:
        print("same in every job: " + " ".join(f"{k}={v}" for k, v in common.items()))
    print("val/* at each job's best epoch on its monitor; test/* with those weights")


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
    with user_errors():
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


def key_list(text: str) -> list[str]:
    """`optimizer,+model.width` as keys the way the jobs' overrides are read (`+` dropped)."""
    return [k.strip().lstrip("+~") for k in text.split(",") if k.strip()]


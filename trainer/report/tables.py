"""The report's printed tables and CSV files, and its curves figure: per job, per setting (mean ±
std over seeds), and the notes' protocol."""

from __future__ import annotations

import csv
from pathlib import Path

from trainer.report.axes import group_series
from trainer.report.cells import cell
from trainer.report.plots import Panel, label, plot_curves
from trainer.report.read import METRICS, Job
from trainer.report.stats import Choice, Group, grid_edge, group_rows, select_rows, test_metric


def rows(jobs: list[Job], keys: list[str], best: Job | None) -> list[dict[str, object]]:
    """The table as dicts: the CSV's rows and the printed table's."""
    out = []
    for job in jobs:
        row: dict[str, object] = {"best": "*" if job is best else "", "job": job.name}
        row.update({k: job.overrides.get(k, "") for k in keys})
        row.update({k: job.values.get(k, "") for k in METRICS})
        total = f"/{job.epochs_total}" if job.epochs_total is not None else ""
        row.update({"best_epoch": job.best_epoch if job.best_epoch is not None else "",
                    "epochs": f"{job.epochs}{total}",
                    "wall_s": f"{job.wall_time_s:.1f}" if job.wall_time_s is not None else "",
                    "status": job.status})
        out.append(row)
    return out


def format_table(table: list[dict[str, object]], width: int | None = None) -> str:
    """Aligned columns, one line per job; within `width` characters when given, by leaving out
    columns (fit_columns) and saying which."""
    header = list(table[0])
    cells = [header] + [[cell(row[k]) for k in header] for row in table]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    kept = fit_columns(header, cells, widths, width) if width else header
    index = [header.index(k) for k in kept]
    text = "\n".join("  ".join(r[i].ljust(widths[i]) for i in index).rstrip() for r in cells)
    left_out = [k for k in header if k not in kept]
    if left_out:
        text += (f"\n(left out to fit the terminal's {width} columns: {', '.join(left_out)}; "
                 "all are in the CSV)")
    return text


# Left out first when a table is wider than the terminal: ranges, then the jobs' numbers, then the
# training metrics (the report chooses and compares on validation and test).
DROP_ORDER = ("min..max", "jobs", "train/", "wall_s", "epochs")


def fit_columns(header: list[str], cells: list[list[str]], widths: list[int], width: int) -> list[str]:
    """The columns to print within `width`: first without those that hold one value in every row,
    then without the DROP_ORDER kinds in turn, until the table fits (or nothing more can go)."""
    kept = list(header)

    def total() -> int:
        return sum(widths[header.index(k)] + 2 for k in kept) - 2

    constant = [k for i, k in enumerate(header) if k not in ("best", "job", "status")
                and len({r[i] for r in cells[1:]}) == 1]
    for group in [constant, *([k for k in header if kind in k] for kind in DROP_ORDER)]:
        for key in group:
            if total() <= width:
                return kept
            if key in kept:
                kept.remove(key)
    return kept


def terminal_width() -> int | None:
    """The terminal's width when the report prints to one; None (no limit) in a file or a pipe."""
    import shutil
    import sys

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def write_csv(table: list[dict[str, object]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def print_jobs(jobs: list[Job], keys: list[str], best: Job | None, monitor: str, csv_path: Path) -> None:
    """One row per job (a sweep without repeated seeds), the best marked."""
    table = rows(jobs, keys, best)
    print("\n" + format_table(table, terminal_width()))
    if best is not None:
        print(f"\nbest on {monitor}: job {best.name} ({label(best, keys).split(': ', 1)[1]}) "
              f"{monitor} {best.score(monitor):.4f}")
    write_csv(table, csv_path)


def print_groups(groups: list[Group], averaged: list[str], best: Group | None, monitor: str,
                 csv_path: Path) -> None:
    """One row per setting: n and mean ± std over its completed jobs (report.csv: the numbers)."""
    print(f"one row per setting: n completed jobs over {','.join(averaged)}; mean ± std (sample std, "
          "n - 1) and min..max over them; per job: report_jobs.csv\n")
    print(format_table(group_rows(groups, METRICS, best, printed=True), terminal_width()))
    if best is not None:
        print(f"\nbest on mean {monitor}: {best.title()} {monitor} {best.stats(monitor).text()} "
              f"(n={len(best.completed)})")
    write_csv(group_rows(groups, METRICS, best, printed=False), csv_path)


def print_select(choices: list[Choice], keys: list[str], monitor: str, csv_path: Path) -> None:
    """The notes' protocol: per value of `keys`, the setting best on mean validation; its test."""
    test = test_metric(monitor)
    print(f"\nselect={','.join(keys)}: for each value, the setting with the best mean {monitor} "
          f"(settings whose jobs all completed); {test} of that setting, never used to choose\n")
    print(format_table(select_rows(choices, keys, monitor, printed=True), terminal_width()))
    for choice in choices:
        for note in grid_edge(choice, keys):
            print(f"{' '.join(cell(v) for v in choice.value.values())}: {note}")
    write_csv(select_rows(choices, keys, monitor, printed=False), csv_path)


def draw_curves(groups: list[Group], best: Group | None, monitor: str, x: str, band: str, grouped: bool,
                path: Path) -> None:
    """report_curves: the monitor of every job (or setting), the other validation metric, and the
    best one's training against validation loss (over- and under-fitting); jobs that cannot be
    placed on the `x` axis are named, and why."""
    skipped: dict[str, str] = {}
    series = [s for g in groups if (s := group_series(g, x, band, g is best, skipped)) is not None]
    if skipped:
        why = "; ".join(f"job {name}: {reason}" for name, reason in skipped.items())
        print(f"\nx={x}: left out of {path.name}: {why}")
    spread = "± std" if band == "std" else "min..max"
    title = (f"mean {monitor} over seeds (band: {spread})" if grouped else f"{monitor} of every job")
    if best is not None:
        title += f" (best: {best.title() if grouped else 'job ' + best.jobs[0].name})"
    panels = [Panel(title, monitor, series)]
    other = "val/loss" if monitor == "val/acc" else "val/acc"
    others = [s for g in groups if (s := group_series(g, x, band, g is best, {}, other)) is not None]
    if others:
        panels.append(Panel(f"{other}, the other validation metric", other, others))
    if best is not None:
        fit = [s for tag in ("train/loss", "val/loss")
               if (s := group_series(best, x, band, tag == "val/loss", {}, tag)) is not None]
        for line, tag in zip(fit, ("train", "validation"), strict=False):
            line.label = tag
        if len(fit) == 2:
            panels.append(Panel("the best: training against validation loss", "loss", fit))
    plot_curves(panels, x, path)

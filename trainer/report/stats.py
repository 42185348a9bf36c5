"""The report over seeds: jobs grouped by their setting, mean ± std per group, and the notes' protocol
(each value of a key takes the setting that is best on validation; its test metric is reported)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from trainer.report.cells import cell
from trainer.report.read import Job
from trainer.runtime.errors import ConfigError
from trainer.sweeps.objective import direction_of


@dataclass(frozen=True)
class Stats:
    """Summary of one metric over a group's jobs; `std` is the sample std (n - 1), NaN for n = 1."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float

    @classmethod
    def of(cls, values: list[float]) -> Stats | None:
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return cls(len(values), statistics.fmean(values), std, min(values), max(values))

    def text(self) -> str:
        """`0.9611 ± 0.0052` (the mean alone for one job)."""
        return cell(self.mean) + (f" ± {cell(self.std)}" if self.n > 1 else "")


@dataclass
class Group:
    """The jobs of one setting: equal values of every swept key but those averaged over (the seed)."""

    setting: dict[str, str]
    jobs: list[Job]

    @property
    def completed(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "completed"]

    def eligible(self) -> bool:
        """Every job completed: a setting that failed or diverged on a seed is not chosen (a mean
        over the seeds that survived would flatter it), nor one with seeds still to run."""
        return bool(self.jobs) and len(self.completed) == len(self.jobs)

    def stats(self, metric: str) -> Stats | None:
        """`metric` over the group's completed jobs."""
        return Stats.of([j.values[metric] for j in self.completed if metric in j.values])

    def mean(self, metric: str) -> float:
        found = self.stats(metric)
        return found.mean if found is not None else math.nan

    def others(self, keys: list[str]) -> dict[str, str]:
        """The setting without `keys` (what select= chose for a value of them)."""
        return {k: v for k, v in self.setting.items() if k not in keys}

    def title(self) -> str:
        return " ".join(f"{k}={cell(v)}" for k, v in self.setting.items()) or "all jobs"

    def shown(self, keys: list[str]) -> dict[str, str]:
        """`others(keys)` as a reader wants it: an experiment's `arms.rate=high` as the rate it
        stands for, `optimizer.lr=0.1 (arms.rate=high)`."""
        shown = self.others(keys)
        rate = shown.get(ARM_KEY)
        lr = resolved_lr(self.jobs[0]) if rate is not None and self.jobs else None
        if lr is not None:
            del shown[ARM_KEY]
            shown["optimizer.lr"] = f"{lr:g} ({ARM_KEY}={rate})"
        return shown


def check_keys(option: str, given: list[str], swept: list[str], averaged: list[str] | None = None) -> None:
    """Keys named by `over=` or `select=` must be swept keys of the sweep (for select=, not averaged)."""
    unknown = [k for k in given if k not in swept]
    if unknown:
        but = f" (other than {','.join(averaged)}, which over= averages)" if averaged else ""
        raise ConfigError(f"{option}={','.join(given)}: {', '.join(unknown)} is not a swept key of this "
                          f"sweep{but}; the swept keys are {', '.join(swept) or '(none)'}")


FINISHED = ("completed", "diverged", "pruned", "not started")  # outcomes a later job does not replace


def retried(jobs: list[Job], ignored: tuple[str, ...]) -> dict[str, str]:
    """Attempts that a later job ran again with the same values (an Optuna trial killed while it ran,
    then retried): each unfinished attempt's name -> its retry's name. The retry stands for the
    setting in every count and choice; the attempt is only mentioned."""
    def values(job: Job) -> dict[str, str]:
        return {k: v for k, v in job.overrides.items() if k not in ignored}

    out = {}
    for i, job in enumerate(jobs):
        if job.status in FINISHED:
            continue
        later = next((j for j in jobs[i + 1:] if j.path is not None and values(j) == values(job)), None)
        if later is not None:
            out[job.name] = later.name
    for name in out:  # a retry killed too: its own retry stands for both
        while out[name] in out:
            out[name] = out[out[name]]
    return out


def group_jobs(jobs: list[Job], keys: list[str], over: list[str]) -> list[Group]:
    """Jobs with equal values of the swept `keys` other than `over`, in order of first appearance."""
    setting_keys = [k for k in keys if k not in over]
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        values = tuple(job.overrides.get(k, "") for k in setting_keys)
        groups.setdefault(values, Group(dict(zip(setting_keys, values, strict=True)), [])).jobs.append(job)
    return list(groups.values())


def best_group(groups: list[Group], monitor: str) -> Group | None:
    """The eligible group with the best mean validation `monitor` (the first of equals)."""
    scored = [g for g in groups if g.eligible() and math.isfinite(g.mean(monitor))]
    if not scored:
        return None
    sign = 1 if direction_of(monitor) == "maximize" else -1
    return max(scored, key=lambda g: sign * g.mean(monitor))  # max keeps the first of equals


def stat_columns(metric: str, found: Stats | None) -> dict[str, object]:
    """The CSV's numeric columns of one metric."""
    names = ("mean", "std", "min", "max")
    if found is None:
        return {f"{metric} {name}": "" for name in names}
    values = (found.mean, found.std, found.lo, found.hi)
    return {f"{metric} {name}": "" if math.isnan(v) else v for name, v in zip(names, values, strict=True)}


def status_summary(group: Group) -> str:
    """`completed`, or the count of each status when they differ (`2 completed, 1 diverged`)."""
    counts: dict[str, int] = {}
    for job in group.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def group_rows(groups: list[Group], metrics: tuple[str, ...], best: Group | None,
               printed: bool) -> list[dict[str, object]]:
    """One row per group: for the screen `mean ± std` and `min..max` cells, for the CSV numbers."""
    out = []
    for group in groups:
        row: dict[str, object] = {"best": "*" if group is best else "", **group.setting,
                                  "n": len(group.completed)}
        for metric in metrics:
            found = group.stats(metric)
            if printed:
                row[metric] = found.text() if found is not None else ""
                row[f"{metric} min..max"] = f"{cell(found.lo)}..{cell(found.hi)}" if found else ""
            else:
                row.update(stat_columns(metric, found))
        row.update({"status": status_summary(group), "jobs": " ".join(j.name for j in group.jobs)})
        out.append(row)
    return out


@dataclass
class Choice:
    """One value of the `select` keys: its settings, and the one chosen on validation."""

    value: dict[str, str]
    candidates: list[Group]
    chosen: Group | None


def select(groups: list[Group], keys: list[str], monitor: str) -> list[Choice]:
    """For each value of `keys`, the setting of the other swept keys with the best mean validation
    `monitor`. Test metrics are never read here: the notes' rule (choose on validation, report test)."""
    by_value: dict[tuple[str, ...], list[Group]] = {}
    for group in groups:
        by_value.setdefault(tuple(group.setting[k] for k in keys), []).append(group)
    return [Choice(dict(zip(keys, value, strict=True)), found, best_group(found, monitor))
            for value, found in by_value.items()]


def test_metric(monitor: str) -> str:
    """The test counterpart of a validation metric: val/acc -> test/acc."""
    return "test/" + monitor.split("/", 1)[1]


def select_rows(choices: list[Choice], keys: list[str], monitor: str,
                printed: bool) -> list[dict[str, object]]:
    """One row per value of the `select` keys: the chosen setting, its validation and test metric."""
    test = test_metric(monitor)
    out = []
    for choice in choices:
        chosen = choice.chosen
        row: dict[str, object] = {**choice.value}
        if chosen is None:
            row["chosen"] = f"none of {len(choice.candidates)} settings has every job completed"
        else:
            row["chosen"] = " ".join(f"{k}={cell(v)}" for k, v in chosen.shown(keys).items()) or "-"
        row.update({"settings": len(choice.candidates), "n": len(chosen.completed) if chosen else ""})
        for metric in (monitor, test):
            found = chosen.stats(metric) if chosen is not None else None
            if printed:
                row[metric] = found.text() if found is not None else ""
            else:
                row.update(stat_columns(metric, found))
        if printed:
            found = chosen.stats(test) if chosen is not None else None
            row[f"{test} min..max"] = f"{cell(found.lo)}..{cell(found.hi)}" if found else ""
        out.append(row)
    return out


# An experiment's per-arm rate tables (configs/experiment/*.yaml): `arms.rate` picks a row of `arms.lr`.
ARM_KEY = "arms.rate"


def resolved_lr(job: Job) -> float | None:
    """The learning rate a job trained with, from its saved config, where the config computes it
    (an experiment's `optimizer.lr: ${arms.lr...${arms.rate}}`); None when it cannot tell."""
    import re

    from omegaconf import OmegaConf

    raw = (job.config.get("optimizer") or {}).get("lr")
    if not isinstance(raw, str) or "${" not in raw:
        return None
    # Hydra's `${hydra:runtime.choices.GROUP}` is known only in the job's process: the choice is in
    # the job's overrides, or in its .hydra/hydra.yaml.
    text = re.sub(r"\$\{hydra:runtime\.choices\.([\w/]+)\}", lambda m: group_choice(job, m.group(1)), raw)
    try:
        config = OmegaConf.create({**job.config, "optimizer": {**job.config["optimizer"], "lr": text}})
        return float(config.optimizer.lr)
    except Exception:  # a config this report does not understand: show the setting as it is
        return None


def group_choice(job: Job, group: str) -> str:
    if group in job.overrides:
        return str(job.overrides[group])
    from omegaconf import OmegaConf

    hydra_yaml = job.path / ".hydra" / "hydra.yaml" if job.path is not None else None
    if hydra_yaml is None or not hydra_yaml.is_file():
        return ""
    return str(OmegaConf.load(hydra_yaml).hydra.runtime.choices.get(group, ""))


def grid_edge(choice: Choice, keys: list[str]) -> list[str]:
    """For a chosen setting, each numeric swept value (or arm's rate) that is the lowest or highest
    of those tried for this value of `keys`: the best may lie beyond the grid."""
    chosen = choice.chosen
    if chosen is None or len(choice.candidates) < 2:
        return []
    notes = []
    for key in chosen.others(keys):
        def number(group: Group, key: str = key) -> float | None:
            if key == ARM_KEY and group.jobs:
                return resolved_lr(group.jobs[0])
            try:
                return float(group.setting[key])
            except ValueError:
                return None

        tried = {number(g) for g in choice.candidates if all(g.setting[k] == chosen.setting[k]
                                                              for k in chosen.others(keys) if k != key)}
        value = number(chosen)
        if value is None or None in tried or len(tried) < 2:
            continue
        name = "optimizer.lr" if key == ARM_KEY else key
        if value in (min(tried), max(tried)):
            side = "highest" if value == max(tried) else "lowest"
            notes.append(f"{name}={value:g} is the {side} of the {len(tried)} values tried: "
                         "at the edge of the grid, widen it")
    return notes

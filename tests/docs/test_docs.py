"""The documentation's commands, as a doc test: what README.md and the pages of the documentation
site (docs/**/*.md) say to type must work as written.

Every fenced `bash`/`console` block (also indented ones, inside lists) and every inline code span
that starts with `python -m trainer`, in README.md and in every page under docs/, is parsed into
commands (backslash continuations joined,
`# comments` dropped, `VAR=value` prefixes set aside, `$ ` prompts of console blocks).

Why two tiers (the suite must stay fast, and training every command would take many minutes):

- Fast, every command the suite can check (about 10 s): each `python -m trainer ...` command is
  composed in-process with Hydra, every arm of a sweep included (comma lists on the command line
  and an experiment's `hydra.sweeper.params`), then passes the trainer's own checks before any
  work: the command-line key check, `validate(cfg)` (which builds nothing), then its optimizer and
  scheduler built on a dummy parameter, as a run builds them (torch's own checks, beyond
  the rules trainer.config.arguments declares). A console block that
  shows `error: ...` after a command checks that the command fails with that message. Commands
  of `trainer.eval` and `trainer.report` use only options those tools have.
- Slow (marked `slow`, about 30 s): a representative subset is really run, in a temporary
  folder: the `python -c` lines that write example files, the trainer on those files, and the
  examples whose point is a behaviour (the plateau schedule lowers the rate), with epochs capped.
  The Python blocks of the Python API page (docs/guides/python-api.md) run too.

A command that several pages show is checked once. Commands are skipped by what they contain,
never by their page or place, so sections can move and grow: CUDA (`device=cuda` without a GPU),
SLURM (`hydra/launcher=slurm`, `hydra.launcher.backend=slurm`), several processes (`torchrun`,
`srun`) and tools that are not ours (`make`, `source`, `tensorboard`, `pip`, `mkdir`) are not
checked at all; a data set to download (`data=mnist`, `fashion_mnist`, `kmnist`,
`cifar10`) or a placeholder for a folder that an earlier run made (`DATE/TIME`, `SWEEP_DIR`) is
composed and checked but not run. To keep a new example out of the slow tier, leave it out of
`RUN`; to show an error, write it as a console block with the `error: ...` line after the command.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from tests.conftest import ROOT, composed, read_scalars
from trainer import eval as trainer_eval
from trainer.config.overrides import check_override_keys
from trainer.config.validate import config_dir, validate
from trainer.report import sweep as trainer_report
from trainer.run import run
from trainer.runtime.errors import UserError
from trainer.training.curves import LR_TAG

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md"))]  # the front door and the site's pages
PYTHON_API = ROOT / "docs" / "guides" / "python-api.md"
NETWORK = re.compile(r"data=(mnist|fashion_mnist|kmnist|cifar10)\b|bench_data\.py")
PLACEHOLDER = re.compile(r"DATE/TIME|SWEEP_DIR|ADDRESS")
NOT_OURS = ("make", "source", "tensorboard", "pip", "mkdir", "torchrun", "srun")


@dataclass
class Command:
    text: str  # as written, for messages
    argv: list[str]  # without VAR=value prefixes
    error: str | None = None  # the `error: ...` a console block shows after it
    page: str = ""  # the file it is written in, relative to the repository

    @property
    def tool(self) -> str:
        """`trainer`, `trainer.eval`, `trainer.report`, `python-c`, `script`, or the program."""
        if self.argv[:2] == ["python", "-m"]:
            return self.argv[2]
        if self.argv[:2] == ["python", "-c"]:
            return "python-c"
        if self.argv[0] == "python":
            return "script"
        return self.argv[0]

    @property
    def args(self) -> list[str]:
        return self.argv[3:] if self.argv[:2] == ["python", "-m"] else self.argv[1:]


def _split(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # TRAINER_DATA=... python ...
        words.pop(0)
    return words


def page_commands(text: str) -> list[Command]:
    """Commands of a page's shell blocks and `python -m trainer` inline spans."""
    commands: list[Command] = []
    for lang, body in re.findall(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", text, flags=re.M | re.S):
        if lang not in ("bash", "console", "sh"):
            continue
        lines = [ln.strip() for ln in body.replace("\\\n", " ").splitlines()]
        for i, line in enumerate(lines):
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            argv = _split(line)
            if not argv:
                continue
            shown = lines[i + 1] if lang == "console" and i + 1 < len(lines) else ""
            error = shown[len("error: "):] if shown.startswith("error: ") else None
            commands.append(Command(line, argv, error))
    for span in re.findall(r"`(python -m trainer[^`]*)`", text):
        if "ARGS" not in span and "..." not in span:
            commands.append(Command(span, _split(span)))
    return commands


def docs_commands(pages: list) -> list[Command]:
    """Every page's commands, each command (text and shown error) once, where it first appears."""
    seen: dict[tuple[str, str | None], Command] = {}
    for page in pages:
        for cmd in page_commands(page.read_text()):
            cmd.page = str(page.relative_to(ROOT))
            seen.setdefault((cmd.text, cmd.error), cmd)
    return list(seen.values())


COMMANDS = docs_commands(DOCS)


def skip_reason(cmd: Command) -> str | None:
    if cmd.argv[0] in NOT_OURS:
        return f"{cmd.argv[0]}: not ours, or several processes"
    if "device=cuda" in cmd.text and not torch.cuda.is_available():
        return "needs CUDA"
    if "hydra/launcher=slurm" in cmd.text or "hydra.launcher.backend=slurm" in cmd.text:
        return "needs SLURM"
    return None


def arms(args: list[str]) -> list[list[str]]:
    """The command's overrides, once per job of its sweep (comma lists expanded)."""
    parser = OverridesParser.create()
    choices = []
    for arg in args:
        if arg.startswith("-"):  # -m, --multirun, --cfg ...
            continue
        override = parser.parse_override(arg)
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # interval(...) and other searches: left to the sweeper
                continue
            choices.append([f"{override.get_key_element()}={v}" for v in values])
        else:
            choices.append([arg])
    # Every value of every swept key in some arm, not every combination: a value that fails does
    # so in any arm (12 jobs of a 2x3x2 grid are checked as 3 arms), which keeps this test fast.
    n = max((len(c) for c in choices), default=1)
    return [[c[j % len(c)] for c in choices] for j in range(n)]


def compose_jobs(args: list[str]) -> list:
    """Configs of every job the command would run, with the experiment's own sweep expanded.

    The command's first arm is composed as typed, Hydra's own keys included (`hydra.sweep.dir=`,
    `hydra/launcher=`: Hydra checks them as it composes); the jobs are composed without those keys,
    which do not change a job's config, so that commands differing only there share composes."""
    command_arms = arms(args)
    first = composed(tuple(command_arms[0]), hydra=True)
    swept: list[str] = []
    if any(a.startswith("+") for a in args):  # an experiment's own sweep: hydra.sweeper.params
        params = first.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params else {}
        given = {o.split("=")[0].lstrip("+") for o in args}
        swept = [f"{k}={v}" for k, v in params.items() if k not in given]
    job_keys = [[o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
                for overrides in command_arms]
    return [job_cfg([*extra, *overrides])
            for overrides in job_keys for extra in (arms(swept) if swept else [[]])]


def job_cfg(overrides: list[str]):
    """A job's config as Hydra hands it to the job: `${hydra:...}` interpolations (an experiment's
    per-arm rates) resolved with that job's Hydra config."""
    cfg = copy.deepcopy(composed(tuple(overrides), hydra=True))  # commands share arms: composed once
    kept = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        with open_dict(cfg):
            del cfg["hydra"]
        OmegaConf.resolve(cfg)
    finally:  # a later test in this process must not run as this job (a `resume=true` one's folders)
        HydraConfig.instance().cfg = kept
    return cfg


def check_job(cfg) -> None:
    """The trainer's checks before any work, then the optimizer and scheduler built as a run builds
    them, on a dummy parameter."""
    import torch

    from trainer.config.build import RunLength, build_averaging, build_optimizer, build_schedule

    validate(cfg)  # builds nothing
    dummy = torch.nn.Linear(1, 1)
    optimizer = build_optimizer(cfg.optimizer, dummy.parameters(), torch.device("cpu"))
    build_schedule(cfg.scheduler, cfg.schedule, optimizer, RunLength.of(cfg, 1),
                   build_averaging(cfg.averaging, dummy))


TRAINER = [c for c in COMMANDS if c.tool == "trainer" and skip_reason(c) is None]


def test_the_docs_have_commands():
    assert len(DOCS) >= 15 and len(TRAINER) >= 30 and any(c.error for c in COMMANDS)
    assert any("digits_schedules schedule.per_arm.tau=1000" in c.text for c in TRAINER)
    # the README's table: one example of each command, all of them checked here
    readme = {c.tool for c in page_commands(README.read_text())}
    assert {"trainer", "trainer.report", "trainer.eval", "trainer.landscape"} <= readme


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 250


LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and the site: mkdocs.yml's slugify) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readmes_links_lead_somewhere():
    """README.md is outside the site, so `make docs` does not check its links: each relative one
    names a file of the repository, and a heading of it when it has an anchor."""
    links = [m for m in LINK.findall(README.read_text()) if "://" not in m]
    assert len(links) >= 15
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README.md links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", target.read_text(), flags=re.M)
            assert anchor in {github_anchor(h) for h in headings}, f"README.md: {link}: no such heading"


@pytest.mark.parametrize("cmd", TRAINER, ids=[c.text[:70] for c in TRAINER])
def test_every_trainer_command_composes_and_passes_the_checks(cmd):
    try:
        check_override_keys(cmd.args)
        for cfg in compose_jobs([a for a in cmd.args if not a.startswith("-")]):
            check_job(cfg)
    except UserError as exc:
        if cmd.error is None:
            raise
        shown = cmd.error.split("...")[0].strip()
        assert " ".join(str(exc).split()).startswith(" ".join(shown.split())), (str(exc), shown)
    else:
        assert cmd.error is None, f"{cmd.text} should fail with: {cmd.error}"


@pytest.mark.parametrize("tool,module", [("trainer.eval", trainer_eval), ("trainer.report", trainer_report)])
def test_eval_and_report_commands_use_their_options(tool, module):
    cmds = [c for c in COMMANDS if c.tool == tool]
    assert cmds
    for cmd in cmds:
        for arg in cmd.args:
            key, sep, _ = arg.partition("=")
            assert not sep or f"{key}=" in module.USAGE or key.startswith("data."), (cmd.text, key)


def test_examples_write_under_outputs():
    for cmd in COMMANDS:
        written = re.findall(r"(?:savetxt|savez)\('([^']+)'", cmd.text) + [
            a.split("=", 1)[1] for a in cmd.args if a.startswith(("json=", "out="))]
        for path in written:
            assert path.startswith("outputs/"), f"{cmd.page}: {cmd.text} writes {path} into the checkout"


# The slow tier: commands that are run, each picked by what it shows, with epochs capped.
RUN = ("python -c", "data=csv", "data=npz", "scheduler=plateau", "data=regression")
EPOCHS_CAP = 8  # the plateau example lowers its rate after epoch 6


@pytest.mark.slow
def test_representative_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the examples write land here, not in the checkout
    picked = [c for c in COMMANDS if any(k in c.text for k in RUN) and skip_reason(c) is None
              and not PLACEHOLDER.search(c.text) and not NETWORK.search(c.text)
              and c.tool in ("trainer", "python-c")]
    assert sum(c.tool == "trainer" for c in picked) >= 4
    (tmp_path / "outputs").mkdir()
    for i, cmd in enumerate(picked):
        if cmd.tool == "python-c":
            proc = subprocess.run([sys.executable, *cmd.argv[1:]], capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 0, proc.stderr
            continue
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*cmd.args, "progress=false"])
        cfg.epochs = min(cfg.epochs, EPOCHS_CAP)
        metrics = run(cfg, out_dir=tmp_path / f"run{i}")
        assert metrics["status"] == "completed", cmd.text
        if "scheduler=plateau" in cmd.text:  # the behaviour the example is there to show
            lrs = [v for _, v in read_scalars(tmp_path / f"run{i}")[LR_TAG]]
            assert min(lrs) < cfg.optimizer.lr / 5, (cmd.text, lrs)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("run")) == ["outputs"]


@pytest.mark.slow
def test_the_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", PYTHON_API.read_text(), flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, str(PYTHON_API), "exec"), {})  # noqa: S102 - the page's own examples
    assert (tmp_path / "outputs" / "from-python" / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # Trainer's run: a temporary folder

"""Every bad config value in one table: rejected before any work, with one paragraph that names the
key and the fix (the allowed values, the range, or the override to use).

Rows go in-process through what `python -m trainer` does with its arguments (the command-line key
check, then `run(cfg)`) and through the paragraph it prints; a few rows also run the real command
line, which must print exactly that paragraph, exit 2 and write no results. A new check gets a row
here: its overrides as typed, and words its message must contain.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import cli, cli_in_process, make_cfg, write_values
from trainer.config.overrides import check_launcher, check_override_keys
from trainer.config.validate import config_dir
from trainer.landscape.paths import landscape
from trainer.run import run
from trainer.runtime.cli import paragraph
from trainer.runtime.errors import ConfigError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")

# (tool, overrides as typed, words the message contains). Words are matched with the paragraph's
# line breaks undone.
TABLE = [
    # the model
    ("trainer", "model.activation=relux", ("model.activation='relux' is not allowed", "did you mean relu?",
                                           "'tanh'")),
    ("trainer", "model.init=he", ("model.init='he' is not allowed",
                                  "choose one of ['default', 'xavier', 'kaiming', 'normal']")),
    ("trainer", "model.width=[8,8,8]", ("model.width lists 3 widths but model.depth=2",
                                        "set model.depth=3 or give 2 widths")),
    ("trainer", "model.norm=layer model.depth=0",
     ("model.norm=layer acts on hidden layers, but model.depth=0 is a linear model",
      "set model.norm=none or model.depth>=1")),
    ("trainer", "model.dropout=0.5 model.depth=0",
     ("model.dropout=0.5 acts on hidden layers, but model.depth=0", "set model.dropout=0 or model.depth>=1")),
    ("trainer", "model.norm=batch batch_size=1",
     ("model.norm=batch needs at least 2 samples in every batch",)),  # was a CLI test in test_norm.py
    # the optimizer, its batches and its steps
    ("trainer", "optimizer.lr=-1", ("optimizer.lr=-1 must be a positive",)),
    ("trainer", "optimizer.lr=0", ("optimizer.lr=0 must be a positive",)),
    ("trainer", "optimizer.lr=abc", ("optimizer.lr='abc' must be a positive",)),
    ("trainer", "optimizer=momentum optimizer.momentum=-0.5",
     ("optimizer=torch.optim.SGD cannot be built", "Invalid momentum value: -0.5",
      "Fix or remove the optimizer.* value it names")),
    ("trainer", "optimizer=momentum optimizer.momentum=2",
     ("optimizer.momentum=2 must be below 1 (e.g. 0.9)", "whatever the learning rate")),
    ("trainer", "optimizer=rmsprop optimizer.momentum=1.0", ("optimizer.momentum=1.0 must be below 1",)),
    ("trainer", "optimizer=adam optimizer.betas=[0.9,2.0]",
     ("optimizer=torch.optim.Adam cannot be built", "Invalid beta parameter at index 1: 2.0",
      "Fix or remove the optimizer.* value it names")),
    ("trainer", "+optimizer.lrr=0.1", ("unexpected keyword argument 'lrr'",
                                       "Fix or remove the optimizer.* value it names")),
    ("trainer", "optimizer=lbfgs batch_size=64",
     ("torch.optim.LBFGS is a full-batch method but batch_size=64", "set batch_size=full")),
    ("trainer", "batch_size=0", ("batch_size=0 must be a positive whole number or 'full'",)),
    ("trainer", "batch_size=ful", ("batch_size='ful' must be a positive whole number or 'full'",
                                   "(did you mean full?)")),
    ("trainer", "batch_size=5000", ("batch_size=5000 is larger than the training split (1258 samples)",
                                    "use at most 1258 or batch_size=full")),
    ("trainer", "epochs=0", ("epochs=0 must be a positive whole number",)),
    ("trainer", "epochs=many", ("epochs='many' must be a positive whole number",)),
    ("trainer", "max_steps=0", ("max_steps=0 must be a positive whole number",)),
    ("trainer", "grad_clip=0", ("grad_clip=0 must be a positive",)),
    # schedules and averaging
    ("trainer", "warmup_steps=-1", ("warmup_steps=-1 must be a whole number >= 0",)),
    ("trainer", "warmup_start_factor=0", ("warmup_start_factor=0 must be a number in (0, 1]",)),
    ("trainer", "schedule.interval=batch", ("schedule.interval='batch' is not allowed",
                                             "choose one of ['epoch', 'step']")),
    ("trainer", "scheduler=plateau schedule.interval=step",
     ("scheduler=plateau reads the validation loss once an epoch",
      "schedule.interval='step' must be 'epoch'")),
    ("trainer", "scheduler=step scheduler.step_size=zero", ("scheduler.step_size='zero' must be a number",)),
    ("trainer", "averaging=poly averaging.gamma=-1", ("averaging.gamma=-1 must be a number >= 0",)),
    ("trainer", "averaging=ema averaging.decay=1.5", ("averaging.decay=1.5 must be a number in [0, 1)",)),
    ("trainer", "averaging=swa averaging.start_epoch=40",
     ("averaging.start_epoch=40 is after the last epoch (epochs=30)", "lower it or raise epochs")),
    ("trainer", "averaging=swa averaging.anneal_strategy=step",
     ("averaging.anneal_strategy='step' is not allowed", "choose one of ['cos', 'linear']")),
    ("trainer", "averaging=poly averaging.start_epoch=0",
     ("averaging.start_epoch=0 must be a positive whole number",)),
    ("trainer", "averaging.kind=mean", ("averaging.kind is now averaging=NAME (none, poly, ema, swa)",)),
    ("trainer", "early_stopping.patience=0", ("early_stopping.patience=0 must be a positive whole number",)),
    ("trainer", "early_stopping.min_delta=-1", ("early_stopping.min_delta=-1 must be a number >= 0",)),
    # the data
    ("trainer", "data.preprocess=zca", ("data.preprocess='zca' is not allowed", "'whiten_zca'")),
    ("trainer", "data=regression data.preprocess=pca", ("data.preprocess='pca' is not allowed",
                                                        "'whiten_pca', 'whiten_zca'")),
    ("trainer", "data.val_fraction=0.5 data.test_fraction=0.6",
     ("data.val_fraction=0.5 and data.test_fraction=0.6", "sum to less than 1")),
    ("trainer", "data=csv data.task=labels", ("data.task='labels' is not allowed",
                                              "choose one of ['auto', 'classification', 'regression']")),
    ("trainer", "data=npz", ("data.path is required for data=npz", "data=npz data.path=my_data.npz")),
    ("trainer", "data=regression data.whiten_eps=0", ("data.whiten_eps=0 must be a positive",)),
    ("trainer", "data=regression data.n_samples=0", ("data.n_samples=0 must be a positive whole number",)),
    ("trainer", "data=regression data.noise=-1", ("data.noise=-1 must be a number >= 0",)),
    ("trainer", "data=regression data.dim=0", ("data.dim=0 must be a positive whole number",)),
    ("trainer", "data=regression data.seed=-3", ("data.seed=-3 must be a whole number >= 0",)),
    ("trainer", "data=spirals data.classes=1", ("data.classes=1 must be a whole number >= 2",)),
    # the loss
    ("trainer", "loss=hinge", ("loss='hinge' is not allowed",
                               "choose one of ['auto', 'cross_entropy', 'nll', 'mse', 'l1', 'huber']")),
    ("trainer", "loss=l1", ("loss=l1 is not a classification loss", "'digits' is a classification task",
                            "choose loss=auto (the task's default, cross_entropy)")),
    ("trainer", "data=regression loss=nll", ("loss=nll is not a regression loss",
                                             "one of ['mse', 'l1', 'huber']")),
    ("trainer", "data=regression loss=huber huber_delta=0", ("huber_delta=0 must be a positive number",)),
    ("trainer", "ensemble=bagging ensemble.members=2 loss=mse",
     ("ensemble=bagging cannot be combined with loss=mse", "use loss=auto")),
    # ensembles
    ("trainer", "ensemble=bagging ensemble.members=0",
     ("ensemble.members=0 must be a positive whole number",)),
    ("trainer", "ensemble=bagging ensemble.split=halves",
     ("ensemble.split='halves' is not allowed", "choose one of ['bootstrap', 'parts']")),
    ("trainer", "ensemble=boosting ensemble.rounds=0",
     ("ensemble.rounds=0 must be a positive whole number",)),
    ("trainer", "ensemble=boosting data=regression",
     ("ensemble=boosting is multi-class AdaBoost (SAMME)", "'regression' is a regression task",
      "use ensemble=bagging")),
    ("trainer", "ensemble=boosting ensemble.rounds=4 epochs=30",
     ("epochs=30 is not a multiple of ensemble.rounds=4", "set epochs=32 or change ensemble.rounds")),
    ("trainer", "ensemble=boosting ensemble.rounds=2 early_stopping.patience=3",
     ("ensemble=boosting cannot stop early", "leave early_stopping.patience=null")),
    ("trainer", "ensemble=bagging averaging=swa",
     ("ensemble=bagging cannot be combined with averaging=swa", "use averaging=none, or ensemble=none")),
    ("trainer", "ensemble=bagging model.norm=batch",
     ("ensemble=bagging cannot be combined with model.norm=batch", "use model.norm=layer or none")),
    ("trainer", "ensemble=bagging optimizer=rprop",
     ("ensemble=bagging trains its members with a member-wise optimizer, which Rprop is not",
      "use one of sgd, adam")),
    ("trainer", "data=xor data.n_samples=40 batch_size=full "
                "ensemble=bagging ensemble.members=30 ensemble.split=parts",
     ("ensemble.members=30 disjoint parts of a train split of 28 samples", "use at most 28 members")),
    ("trainer", "ensemble=bagging ensemble.members=8 ensemble.split=parts batch_size=200",
     ("batch_size=200 is larger than each member's part of the train split (158 samples",
      "use at most 158")),
    # what is monitored, tested, resumed
    ("trainer", "monitor=train/loss", ("monitor='train/loss' is not allowed", "did you mean val/loss?")),
    ("trainer", "monitor=val/accuracy", ("monitor='val/accuracy' is not allowed (did you mean val/acc?)",)),
    ("trainer", "data=regression monitor=val/acc",
     ("monitor=val/acc needs classes", "'regression' is a regression task",
      "use monitor=val/loss or monitor=auto")),
    ("trainer", "test_on=first", ("test_on='first' is not allowed", "choose one of ['best', 'last']")),
    ("trainer", "resume=maybe", ("resume='maybe' must be true or false",)),
    ("trainer", "overwrite=true resume=true", ("overwrite=true moves the run in the folder aside",
                                               "resume=true continues it: pass one of them")),
    ("trainer", "checkpoint_every_n_epochs=0",
     ("checkpoint_every_n_epochs=0 must be a positive whole number",)),
    ("trainer", "ckpt=/no/such/checkpoint.pt", ("ckpt=/no/such/checkpoint.pt does not exist",
                                                "RUN_DIR/checkpoints/last.pt")),
    # the machine
    ("trainer", "device=tpu", ("device='tpu' is not allowed", "did you mean cpu?", "'auto'")),
    pytest.param("trainer", "device=cuda", ("device=cuda was asked for but CUDA is not available",
                                            "use device=auto"), marks=NO_CUDA),
    ("trainer", "precision=fp8", ("precision='fp8' is not allowed", "'bf16'")),
    ("trainer", "precision=fp16 device=cpu", ("precision=fp16 needs CUDA", "use precision=bf16 on the CPU")),
    ("trainer", "compile=yes", ("compile='yes' must be true or false",)),
    ("trainer", "cuda_graphs=1", ("cuda_graphs=1 must be true or false",)),
    ("trainer", "backprop=manual", ("backprop='manual' is not allowed", "'autograd'")),
    # mistyped keys: the key probably meant
    ("trainer", "optimzer.lr=0.1", ("optimzer.lr is not a config key", "did you mean optimizer.lr?",
                                    "`python -m trainer --cfg job` shows the whole config")),
    ("trainer", "model.widht=3",
     ("model.widht is not a key of any model config", "did you mean model.width?")),
    ("trainer", "early_stopping.patiense=3", ("early_stopping.patiense is not a key of early_stopping",
                                              "did you mean early_stopping.patience?")),
    ("trainer", "-m epoch=1,2", ("epoch is not a config key", "did you mean epochs?")),
    # python -m trainer.landscape
    ("landscape", "function=himmelblau", ("function='himmelblau' is not a known function",)),
    ("landscape", "optimizers=[sgd,sgdd]", ("optimizers lists 'sgdd'",)),
    ("landscape", "optimizers=[adam,adam]", ("names an optimizer twice",)),
    ("landscape", "steps=0", ("steps=0 must be a positive whole number",)),
    ("landscape", "steps=-3", ("steps=-3 must be a positive whole number",)),
    ("landscape", "xlim=[2,1]", ("xlim=[2, 1] must be two numbers [low, high]",)),
    ("landscape", "start=[9,9]", ("start=[9.0,9.0] lies outside the plot",)),
    ("landscape", "optim.adam.lr=-1", ("optim.adam=torch.optim.Adam cannot be built",)),
    ("landscape", "optim.sgd.momentum=2", ("optim.sgd.momentum=2 must be below 1",)),
    # the vectorized launcher (checked before Hydra starts, as python -m trainer does)
    ("launcher", "hydra/launcher=vectorized hydra.launcher.max_members=abc",
     ("hydra.launcher.max_members='abc' must be a whole number >= 1", "or null")),
    ("launcher", "hydra.launcher.max_members=0", ("hydra.launcher.max_members=0 must be a whole number",)),
    ("launcher", "hydra.launcher.max_members=-2", ("hydra.launcher.max_members=-2 must be a whole number",)),
    ("launcher", "hydra.launcher.max_members=2.5", ("hydra.launcher.max_members='2.5' must be a whole",)),
    ("launcher", "hydra/sweeper=optuna hydra.sweeper.n_trials=abc",
     ("hydra.sweeper.n_trials='abc' must be a whole number >= 1",)),
    ("launcher", "hydra.sweeper.n_jobs=2.5", ("hydra.sweeper.n_jobs='2.5' must be a whole number >= 1",)),
    # an Optuna search space (hydra/sweeper=optuna), checked before the first trial
    ("optuna", "optimizer=choice(sgd,adamm)",
     ("the search space of optimizer cannot be searched: its choices include optimizer=adamm",
      "Could not find 'optimizer/adamm' (did you mean adam?)", "'nesterov'", "hydra.sweeper.params")),
    ("optuna", "optimizer.lr=tag(log,interval(0,1))",
     ("optimizer.lr=tag(log,interval(0,1)) cannot be searched: a log scale needs bounds above 0",
      "tag(log, interval(1e-05, 1))")),
    ("optuna", "optimizer.lr=tag(log,interval(-1,-0.1))", ("a log scale needs bounds above 0",)),
    ("optuna", "optimizer.lr=interval(1,0.1)",
     ("its low bound 1 is above its high bound 0.1: write interval(low, high)",)),
    ("optuna", "optimizer.lr=interval(0,1)",
     ("its values include optimizer.lr=0.0, which a run rejects", "optimizer.lr=0.0 must be a positive")),
    ("optuna", "model.width=tag(int,interval(8.5,64))",
     ("tag(int, ...) draws whole numbers, so its bounds must be whole numbers, not 8.5 and 64",)),
    ("optuna", "model.width=tag(int,interval(0,64))",
     ("its values include model.width=0", "model.width=0 must be a positive whole number")),
    ("optuna", "batch_size=range(0,64,16)",
     ("its values include batch_size=0", "batch_size=0 must be a positive whole number or 'full'")),
    ("optuna", "batch_size=range(1,10,0)", ("its step is 0",)),
    ("optuna", "batch_size=range(10,1)", ("batch_size=range(10,1) is empty",)),
    ("optuna", "model.width=choice()", ("hydra.sweeper.params cannot be read", "empty choice")),
    ("optuna", "optimizer.lr=interval(a,b)", ("hydra.sweeper.params cannot be read",)),
    ("optuna", "model.activation=choice(relu,relux)",
     ("its choices include model.activation=relux", "model.activation='relux' is not allowed")),
    ("optuna", "epochs=range(0,4)", ("its values include epochs=0", "epochs=0 must be a positive")),
    ("optuna", "model.widht=choice(8,16)", ("the search space of model.widht cannot be searched",
                                             "Could not override 'model.widht'")),
    ("optuna", "optimizer=momentum optimizer.momentum=interval(-1,0.9)",
     ("its values include optimizer.momentum=-1.0", "Invalid momentum value: -1.0")),
    ("optuna", "optimizer.lr=interval(0.01,0.1) batch_size=0",  # a fixed value: the run's own words
     ("batch_size=0 must be a positive whole number or 'full'",)),
    ("optuna", "hydra.sweeper.max_failure_rate=2 optimizer.lr=interval(0.01,0.1)",
     ("hydra.sweeper.max_failure_rate=2.0 must be a number in [0, 1]",)),
    ("optuna", "hydra.sweeper.max_failure_rate=-1 optimizer.lr=interval(0.01,0.1)",
     ("hydra.sweeper.max_failure_rate=-1.0 must be a number in [0, 1]",)),
    ("optuna", "optimizer.lr=choice(0.1,-1)", ("its choices include optimizer.lr=-1",)),
    ("optuna", "batch_size=choice(full,0)", ("its choices include batch_size=0",)),
    ("optuna", "hydra/sweeper/sampler=grid optimizer.lr=interval(0.01,0.1)",
     ("grid sampler cannot enumerate optimizer.lr",)),
]
# Checked once the run folder is locked (they need the data or the checkpoint): the lock file and the
# process record (written once the empty folder is the run's) may exist. Every other row fails
# before the run folder is made.
AFTER_LOCK = {"batch_size=5000", "ckpt=/no/such/checkpoint.pt", "model.norm=batch batch_size=1",
              "ensemble=bagging ensemble.members=8 ensemble.split=parts batch_size=200",
              "data=xor data.n_samples=40 batch_size=full "
              "ensemble=bagging ensemble.members=30 ensemble.split=parts"}
# Rows also run through the real command line: a check before Hydra starts, one of run()'s checks
# before any work, and one made once the data is loaded. That last, the longest way through Hydra
# and run(), in its own process (nothing else on its stderr, from start to exit); the others in this
# one (tests/conftest.py cli_in_process).
CLI_ROWS = ("optimzer.lr=0.1", "model.activation=relux", "batch_size=5000")


def rejected(tool: str, overrides: str, out_dir: Path) -> str:
    """The paragraph the command line prints for `python -m trainer[.landscape] OVERRIDES`."""
    args = overrides.split()
    with pytest.raises(ConfigError) as err:
        if tool == "optuna":
            search_space(args, out_dir)
        elif tool == "launcher":
            check_launcher(args)
        elif tool == "landscape":
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = compose(config_name="landscape", overrides=args)
            landscape(cfg, out_dir)
        else:
            check_override_keys(args)  # as trainer/__main__.py does before Hydra
            run(make_cfg(*(a for a in args if not a.startswith("-"))), out_dir=out_dir)
    return paragraph(str(err.value))


def search_space(args: list[str], sweep_dir: Path) -> tuple[dict, dict]:
    """What `python -m trainer -m hydra/sweeper=optuna ARGS` does with its search space before the
    first trial: its space and fixed values (hydra... and +hparams_search=... arguments compose the
    sweeper's own config)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from hydra_plugins.trainer_optuna_sweeper._search import Search
    from hydra_plugins.trainer_vectorized_launcher._compose import compose_by_groups

    hydra_args = [a for a in args if a.startswith(("hydra", "+hparams_search"))]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", ["hydra/sweeper=optuna", f"hydra.sweep.dir={sweep_dir}", *hydra_args],
                      return_hydra_config=True)
        options = {k: v for k, v in cfg.hydra.sweeper.items() if k != "_target_"}
        options["sampler"] = instantiate(cfg.hydra.sweeper.sampler)
        loader = GlobalHydra.instance().config_loader()
        compose_by_groups(loader)  # as the callback (configs/config.yaml) sets it up before the sweeper
        search = Search(cfg, None, **options, config_loader=loader)
        return search.prepare([a for a in args if a not in hydra_args])


def written(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def row_id(row) -> str:
    return f"{row[0]}:{row[1]}" if isinstance(row, tuple) else f"{row.values[0]}:{row.values[1]}"


@pytest.mark.parametrize("tool,overrides,words", TABLE, ids=[row_id(r) for r in TABLE])
def test_a_bad_value_is_one_paragraph_naming_the_key_and_the_fix(tmp_path, tool, overrides, words):
    message = rejected(tool, overrides, tmp_path / "run")
    flat = " ".join(message.split())
    for word in words:
        assert word in flat, (word, message)
    assert message.startswith("error: ") and "\n\n" not in message
    assert written(tmp_path / "run") <= ({".lock", "process.json"} if overrides in AFTER_LOCK else set())


def test_real_keys_additions_group_choices_and_hydra_keys_pass_the_key_check():
    check_override_keys(["optimizer.lr=0.1", "+optimizer.fused=false", "hydra.run.dir=x",
                         "hydra/launcher=parallel", "scheduler.tau=3", "data.path=a.csv", "epochs=2",
                         "early_stopping.patience=3"])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", CLI_ROWS)
def test_the_command_line_prints_that_paragraph_exits_2_and_writes_no_results(tmp_path, overrides):
    assert any(row[:2] == ("trainer", overrides) for row in TABLE)
    expected = rejected("trainer", overrides, tmp_path / "in-process")
    command_line = cli if overrides == CLI_ROWS[-1] else cli_in_process
    proc = command_line(*overrides.split(), f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == expected + "\n"  # nothing else: no traceback, no Hydra hint
    results = [p for p in written(tmp_path / "run") if p.startswith(("metrics", "checkpoints", "events"))]
    assert results == []


def test_max_members_from_a_config_file_is_checked_when_the_launcher_is_set_up():
    from hydra_plugins.trainer_vectorized_launcher.vectorized_launcher import VectorizedLauncher

    with pytest.raises(SystemExit) as exc:
        VectorizedLauncher(max_members=0).setup(hydra_context=None, task_function=None, config=None)
    assert exc.value.code == 2
    check_launcher(["hydra.launcher.max_members=4", "hydra.launcher.max_members=null"])  # allowed


@pytest.mark.parametrize(("overrides", "words"), [
    (["ensemble=bagging", "ensemble.members=1"],
     "ensemble=bagging with ensemble.members=1 trains a single member: one model on a bootstrap resample"),
    (["ensemble=boosting", "ensemble.rounds=1"],
     "ensemble=boosting with ensemble.rounds=1 trains a single member: one model on the whole train split"),
])
def test_an_ensemble_of_one_member_says_it_is_one_model(overrides, words, caplog):
    """Allowed (the K = 1 point of the ensembles experiment's curves), but never silently."""
    from trainer.config.validate import validate

    with caplog.at_level("WARNING"):
        validate(make_cfg(*overrides))
    assert words in caplog.text and "use ensemble=none for a plain run" in caplog.text
    caplog.clear()
    validate(make_cfg("ensemble=bagging", "ensemble.members=2"))
    assert "single member" not in caplog.text


def test_val_acc_on_a_regression_file_fails_before_training(cfg_factory, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    path = write_values(tmp_path / "t.csv", np.c_[x, x[:, 0] + 0.5])
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="monitor=val/acc needs classes"):
        run(cfg_factory("data=csv", f"data.path={path}", "monitor=val/acc"), out_dir=out)
    # No metrics, events or checkpoints: only the run folder's lock and the record of the process
    # that held it, so that trainer.report.sweep shows the run as failed (trainer.storage.rundir).
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) in ([], [".lock", "process.json"])


def test_slurm_without_sbatch_is_one_message(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("sbatch") is None
    with pytest.raises(ConfigError, match="sbatch, which is not on this machine's PATH"):
        check_launcher(["-m", "hydra/launcher=slurm"])

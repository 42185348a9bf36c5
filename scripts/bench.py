"""Training throughput of trainer against a bare PyTorch loop, a DataLoader loop and Lightning.

`make bench` (or `python scripts/bench.py [--quick] [--repeats N] [--device cpu|cuda|auto]`) writes
a new table under outputs/bench/; `--write` replaces the committed BENCHMARKS.md.
Every contender trains the same MLP (Adam, lr 1e-3, fp32) on the same random data on the same
device, one epoch per measurement, validating on the same validation split at the end of the
epoch; the clock covers the epoch's training and validation (and whatever else the contender does
per epoch: our trainer logs to TensorBoard and writes its checkpoints, as in a normal run).
Contenders run interleaved, in a rotating order, so that noise from other processes hits all
alike; the table gives medians over the repeats and their ratios to the bare loop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, whatever is installed

from models import MLP  # noqa: E402
from trainer.data import Splits  # noqa: E402
from trainer.logs.writer import RunLogger  # noqa: E402
from trainer.runtime.device import resolve_device  # noqa: E402
from trainer.storage.checkpoint import Checkpointer  # noqa: E402
from trainer.training import accel  # noqa: E402
from trainer.training.fit import fit  # noqa: E402
from trainer.training.losses import Loss  # noqa: E402
from trainer.training.schedules import Schedule  # noqa: E402
from trainer.training.state import FitHooks, FitOptions, Training  # noqa: E402

EVAL_BATCH = 8192


class Bench:
    """The data, the net and the per-measurement epoch that every contender shares."""

    def __init__(self, widths: list[int], n_train: int, n_val: int, device: torch.device) -> None:
        g = torch.Generator().manual_seed(0)
        self.widths, self.device = widths, device
        self.x = torch.randn(n_train, 784, generator=g).to(device)
        self.y = torch.randint(0, 10, (n_train,), generator=g).to(device)
        self.x_val = torch.randn(n_val, 784, generator=g).to(device)
        self.y_val = torch.randint(0, 10, (n_val,), generator=g).to(device)

    def model(self) -> nn.Module:
        torch.manual_seed(0)
        return MLP(784, 10, self.widths).to(self.device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def bare_loop(b: Bench, epoch: int, batch: int) -> Callable[[], None]:
    """The hand-written loop: index batches of a device randperm; a no-grad validation pass."""
    model = b.model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = b.x[:epoch], b.y[:epoch]

    def one_epoch() -> None:
        model.train()
        perm = torch.randperm(epoch, device=b.device)
        for i in range(0, epoch, batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_sum = torch.zeros((), device=b.device)
            for i in range(0, len(b.x_val), EVAL_BATCH):
                xv, yv = b.x_val[i : i + EVAL_BATCH], b.y_val[i : i + EVAL_BATCH]
                loss_sum += F.cross_entropy(model(xv), yv, reduction="sum")
            loss_sum.item()

    return one_epoch


def dataloader_loop(b: Bench, epoch: int, batch: int) -> Callable[[], None]:
    """The textbook loop: DataLoader(TensorDataset, shuffle=True), then a DataLoader validation."""
    model = b.model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = DataLoader(TensorDataset(b.x[:epoch], b.y[:epoch]), batch_size=batch, shuffle=True)
    val = DataLoader(TensorDataset(b.x_val, b.y_val), batch_size=EVAL_BATCH)

    def one_epoch() -> None:
        model.train()
        for xb, yb in train:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            loss_sum = sum(F.cross_entropy(model(xv), yv, reduction="sum") for xv, yv in val)
            float(loss_sum)

    return one_epoch


def trainer_loop(b: Bench, epoch: int, batch: int, out: Path) -> Callable[[], None]:
    """Our `fit` as `run` calls it: train_epoch with accel's step, validation, TensorBoard, checkpoints."""
    model = b.model()
    fast = accel.optimizer_options("torch.optim.Adam", {"lr": 1e-3}, b.device, cuda_graphs=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **fast)
    loss_fn = Loss("auto", "classification")
    step = accel.make_step(model, opt, loss_fn, b.device)
    splits = Splits(b.x[:epoch], b.y[:epoch], b.x_val, b.y_val, b.x_val, b.y_val,
                    task="classification", num_classes=10)
    logger = RunLogger(out)
    generator = torch.Generator(device=b.device).manual_seed(0)

    training = Training(model, opt, Schedule(opt, None, "epoch"), step, generator, loss_fn)
    # What run's checkpoint writes each epoch (best.pt too: a fresh fit's one epoch is its best).
    save = Checkpointer(out, training, {}, 1, before_write=logger.flush)
    options = FitOptions(epochs=1, batch_size=batch, monitor="val/loss")

    def one_epoch() -> None:
        fit(training, splits, options, FitHooks(logger, save))

    return one_epoch


def lightning_loop(b: Bench, epoch: int, batch: int, out: Path) -> Callable[[], float] | None:
    """A LightningModule fitted for one epoch; the clock covers the epoch, not Lightning's start-up."""
    try:
        import pytorch_lightning as pl
    except ImportError:
        return None
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = b.model()

        def training_step(self, batch_: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            loss = F.cross_entropy(self.net(batch_[0]), batch_[1])
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch_: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
            out = self.net(batch_[0])
            self.log("val/loss", F.cross_entropy(out, batch_[1]))
            self.log("val/acc", (out.argmax(1) == batch_[1]).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, _: pl.LightningModule) -> None:
            b.sync()
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, _: pl.LightningModule) -> None:
            b.sync()  # after validation and the checkpoint, which Lightning runs before this hook
            self.seconds = time.perf_counter() - self.start

    train = DataLoader(TensorDataset(b.x[:epoch], b.y[:epoch]), batch_size=batch, shuffle=True)
    val = DataLoader(TensorDataset(b.x_val, b.y_val), batch_size=EVAL_BATCH)

    def one_epoch() -> float:
        clock = Clock()
        trainer = pl.Trainer(max_epochs=1, accelerator="gpu" if b.device.type == "cuda" else "cpu",
                             devices=1, default_root_dir=str(out), enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0,
                             log_every_n_steps=10, callbacks=[clock])
        trainer.fit(Module(), train, val)
        return clock.seconds

    return one_epoch


def measure(run: Callable[[], float | None], b: Bench) -> float:
    """Seconds for one epoch; contenders that time themselves return their own figure."""
    b.sync()
    start = time.perf_counter()
    own = run()
    b.sync()
    return own if own is not None else time.perf_counter() - start


def bench_net(widths: list[int], args: argparse.Namespace, device: torch.device,
              tmp: Path) -> list[dict]:
    """One net: every batch size, every contender, `args.repeats` interleaved rounds."""
    b = Bench(widths, args.n_train, args.n_val, device)
    rows = []
    for batch_name in args.batches:
        batch = args.n_train if batch_name == "full" else int(batch_name)
        epoch = min(args.n_train, batch * args.max_steps)
        runs = {"bare loop": bare_loop(b, epoch, batch), "trainer": trainer_loop(b, epoch, batch, tmp / "t"),
                "DataLoader loop": dataloader_loop(b, epoch, batch)}
        if not args.no_lightning:
            lit = lightning_loop(b, epoch, batch, tmp / "pl")
            if lit is not None:
                runs["Lightning"] = lit
        names = list(runs)
        for name in names:  # warm-up: first-call costs (allocations, lazy optimizer state)
            measure(runs[name], b)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                seconds[name].append(measure(runs[name], b))
        rate = {name: epoch / statistics.median(s) for name, s in seconds.items()}
        rows.append({"net": "-".join(map(str, [784, *widths, 10])), "batch": batch_name,
                     "epoch": epoch, "rate": rate})
        print(format_row(rows[-1]), flush=True)
    return rows


CONTENDERS = ("bare loop", "trainer", "DataLoader loop", "Lightning")


def format_row(row: dict) -> str:
    rate, bare = row["rate"], row["rate"]["bare loop"]
    cells = [row["net"], str(row["batch"]), f"{row['epoch']:,}"]
    for name in CONTENDERS:
        if name not in rate:
            cells.append("n/a")
        elif name == "bare loop":
            cells.append(f"{bare:,.0f}")
        else:
            cells.append(f"{rate[name]:,.0f} ({rate[name] / bare:.2f})")
    return "| " + " | ".join(cells) + " |"


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import os

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu})"
    lightning = "not installed"
    with contextlib.suppress(ImportError):
        import pytorch_lightning

        lightning = pytorch_lightning.__version__
    return (f"{where}; {os.cpu_count()} CPU cores ({cpu}); torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; Lightning {lightning}; Python {platform.python_version()}")


def table(rows: list[dict], args: argparse.Namespace, device: torch.device, seconds: float) -> str:
    head = ("| net | batch | samples/epoch | bare loop (samples/s) | trainer (ratio) "
            "| DataLoader loop (ratio) | Lightning (ratio) |\n|---|---|---|---|---|---|---|")
    return "\n".join([
        "# Benchmarks",
        "",
        f"Training throughput in samples per second (median of {args.repeats} interleaved repeats; "
        "in brackets the ratio to the bare loop measured in the same run). Written by "
        f"`{' '.join(['python scripts/bench.py', *sys.argv[1:]])}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {seconds / 60:.0f} min.",
        "",
        f"Machine: {machine(device)}; device `{device}`.",
        "",
        f"Each measurement is one epoch (Adam, fp32, random data: {args.n_train:,} training samples "
        f"of 784 features, 10 classes) followed by validation on {args.n_val:,} samples; an epoch "
        f"is all {args.n_train:,} samples or, for small batches, the first "
        f"`--max-steps`={args.max_steps:,} batches' worth (column samples/epoch), so that batch "
        "size 1 takes seconds, not minutes. Our trainer runs `trainer.training.fit` as `run` calls it: "
        "`train_epoch` with `accel.make_step`, epoch statistics, validation, TensorBoard "
        "scalars (lr every 10 steps, epoch metrics), the divergence check every 50 steps, best "
        "weights, `last.pt` and `best.pt` written each epoch. The bare loop and the DataLoader "
        "loop validate but log and save nothing. "
        "Lightning runs its defaults (TensorBoard logger, a checkpoint per epoch, "
        "`log_every_n_steps=10`), timed from its epoch's start to its end (after its set-up).",
        "",
        head,
        *(format_row(r) for r in rows),
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny data, one repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians are reported")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batches", nargs="+", default=["1", "64", "1024", "full"])
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-val", type=int, default=10_000)
    p.add_argument("--max-steps", type=int, default=5_000, help="at most this many batches per epoch")
    p.add_argument("--nets", nargs="+", default=["256", "512,512"],
                   help="hidden widths per net, comma-separated: 256 is 784-256-10")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-lightning", action="store_true", help="leave Lightning out")
    p.add_argument("--output", type=Path, default=None,
                   help="where the table goes (default: a new file outputs/bench/bench-DATE-TIME.md)")
    p.add_argument("--write", action="store_true",
                   help="replace the committed table, BENCHMARKS.md (never with --quick)")
    args = p.parse_args(argv)
    if args.write and (args.quick or args.output):
        p.error("--write replaces BENCHMARKS.md with a full measurement: drop --quick and --output")
    if args.output is None:  # a smoke run or a trial never overwrites the committed table
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        args.output = ROOT / "BENCHMARKS.md" if args.write else Path("outputs", "bench", f"bench-{stamp}.md")
    if args.quick:
        args.repeats, args.n_train, args.n_val, args.max_steps = 1, 512, 128, 50
        args.nets = ["32"]
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Lightning's advice on DataLoader workers and the like
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    print("| net | batch | samples/epoch | bare loop | trainer | DataLoader loop | Lightning |", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
        for net in args.nets:
            widths = [int(w) for w in net.split(",")]
            with contextlib.redirect_stderr(io.StringIO()):  # Lightning's banners
                rows += bench_net(widths, args, device, Path(tmp))
    text = table(rows, args, device, time.perf_counter() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    if "--sweep" in sys.argv[1:]:  # the launchers' benchmark: scripts/bench_sweep.py
        from bench_sweep import main as sweep_main

        sweep_main()
    else:
        main()

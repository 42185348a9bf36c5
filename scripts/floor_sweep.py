"""The floor of a vectorized sweep: its whole work with the least around it (issue 31).

`python scripts/floor_sweep.py --jobs M --out DIR [--threads 1] [--epochs N] [KEY=VALUE ...]` does
what `python -m trainer -m hydra/launcher=vectorized seed=0,...,M-1` does for the default digits
experiment (or the config that the overrides give), with nothing around it: the config composed
once and each job's copy made from it, the data prepared once with the project's own code, the M
members' initial weights built exactly as each job builds them and stacked (`baddbmm`, the gradient
by hand, one fused Adam over the stacked tensors), each member with its own batch generator, all
members validated and tested in one batched pass, and every job folder written with the same files
as the launcher's (`.hydra/*.yaml`, metrics.json, process.json, trainer.log, `checkpoints/last.pt`
and `best.pt`, an events file with the epoch scalars, the learning rate, the HParams and the config
text), the files written at the end on 8 threads, atomically with fsync. `scripts/bench_sweep.py`
times it beside the two launchers. Supports what the default experiment uses: an MLP with ReLU,
classification, Adam or SGD with one learning rate for all jobs, `seed` differing between jobs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compose_jobs(jobs: int, out: Path, overrides: list[str]) -> list:
    """Each job's whole config (`hydra` node included): one composition, then per job a copy with
    its own seed, number, override line and folder."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import trainer.__main__  # noqa: F401  (the config schema and the project's resolvers)
    from trainer.config.validate import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        base = compose("config", overrides=overrides, return_hydra_config=True)
    configs = []
    for i in range(jobs):
        cfg = copy.deepcopy(base)
        with open_dict(cfg):
            cfg.seed = i
            cfg.hydra.job.num = cfg.hydra.job.id = i
            cfg.hydra.overrides.task = [*overrides, f"seed={i}"]
            cfg.hydra.job.override_dirname = f"seed={i}"
            cfg.hydra.runtime.output_dir = str(out / f"{i}_seed={i}")
        configs.append(cfg)
    return configs


def stacked_members(tasks: list, splits) -> list:
    """The members' initial weights as each job builds them (seeded, then the model), stacked:
    [W1 (M, out, in), b1 (M, out), W2, b2, ...]."""
    import torch

    from trainer.config.build import build_model
    from trainer.runtime.seed import seed_everything

    models = []
    for task in tasks:
        seed_everything(int(task.seed))
        models.append(build_model(task.model, splits.in_dim, splits.out_dim))
    names = [n for n, _ in models[0].named_parameters()]
    stacked = [torch.stack([dict(m.named_parameters())[n].detach() for m in models]).clone() for n in names]
    return stacked, names


def forward(params: list, x):
    """(M, B, D) -> the activations of every layer, the last being the logits (M, B, K)."""
    import torch

    hs = [x]
    for i in range(0, len(params), 2):
        h = torch.baddbmm(params[i + 1].unsqueeze(1), hs[-1], params[i].transpose(1, 2))
        hs.append(h.relu_() if i + 2 < len(params) else h)
    return hs


def step(params: list, x, y, optimizer) -> tuple:
    """One update of every member on its own batch: cross-entropy, the gradient by hand."""
    import torch

    hs = forward(params, x)
    logits = hs[-1]
    logp = logits.log_softmax(-1)
    losses = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)  # (M,)
    d = logp.exp()
    d.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(d[..., :1], -1.0))
    d /= x.shape[1]
    for i in range(len(params) - 2, -1, -2):
        params[i].grad = torch.bmm(d.transpose(1, 2), hs[i // 2])
        params[i + 1].grad = d.sum(1)
        if i:
            d = torch.bmm(d, params[i]).mul_(hs[i // 2] > 0)
    optimizer.step()
    return losses, (logits.argmax(-1) == y).sum(1)


def evaluate(params: list, x, y) -> tuple:
    import torch

    with torch.no_grad():
        logits = forward(params, x.expand(params[0].shape[0], *x.shape))[-1]
        ys = y.expand(logits.shape[0], *y.shape)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ys, reduction="none").mean(1)
        return loss, (logits.argmax(-1) == ys).float().mean(1)


def train(params: list, tasks: list, splits, batch: int) -> dict:
    """Every epoch of every member; returns the per-epoch history, the learning rates and the best
    weights (stacked) and epochs."""
    import torch

    cfg = tasks[0]
    lr = float(cfg.optimizer.lr)
    optimizer = (torch.optim.Adam(params, lr=lr, fused=True) if cfg.optimizer._target_.endswith("Adam")
                 else torch.optim.SGD(params, lr=lr))
    gens = [torch.Generator().manual_seed(int(t.seed)) for t in tasks]
    n, members = len(splits.x_train), len(tasks)
    best = [p.detach().clone() for p in params]
    best_acc = torch.full((members,), -1.0)
    best_epoch = torch.zeros(members, dtype=torch.int64)
    history, lrs, steps = [], [], 0
    for epoch in range(1, int(cfg.epochs) + 1):
        started = time.perf_counter()
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens])
        loss_sum, correct = torch.zeros(members), torch.zeros(members, dtype=torch.int64)
        for i in range(0, n, batch):
            idx = perms[:, i:i + batch]
            x = splits.x_train.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
            y = splits.y_train.index_select(0, idx.reshape(-1)).view(idx.shape)
            losses, right = step(params, x, y, optimizer)
            loss_sum += losses.detach() * idx.shape[1]
            correct += right
            steps += 1
            if steps % int(cfg.log_every_n_steps) == 0:
                lrs.append((steps, lr))
        val_loss, val_acc = evaluate(params, splits.x_val, splits.y_val)
        better = val_acc > best_acc
        best_acc = torch.where(better, val_acc, best_acc)
        best_epoch = torch.where(better, epoch, best_epoch)
        for b, p in zip(best, params, strict=True):
            b[better] = p.detach()[better]
        history.append({"train/loss": (loss_sum / n).tolist(), "train/acc": (correct / n).tolist(),
                        "val/loss": val_loss.tolist(), "val/acc": val_acc.tolist(),
                        "speed": n / (time.perf_counter() - started)})
    test_loss, test_acc = evaluate(best, splits.x_test, splits.y_test)
    return {"history": history, "lrs": lrs, "best": best, "best_epoch": best_epoch.tolist(),
            "test": (test_loss.tolist(), test_acc.tolist()), "steps": steps, "optimizer": optimizer}


def events(folder: Path, k: int, run: dict, resolved: dict, text: str) -> None:
    """The member's TensorBoard events file: HParams, the config text, epoch scalars, lr."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter
    from torch.utils.tensorboard.summary import hparams, scalar
    from torch.utils.tensorboard.summary import text as text_summary

    from trainer.config.flat import flatten_hparams
    from trainer.training.curves import LR_TAG, SPEED_TAG

    path = folder / f"events.out.tfevents.{time.time():.0f}.floor.{os.getpid()}.{k}"
    with open(path, "wb") as f:
        writer = RecordWriter(f)

        def put(summary, at: int) -> None:
            writer.write(Event(wall_time=time.time(), step=at, summary=summary).SerializeToString())

        writer.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        flat = {key: v for key, v in flatten_hparams(resolved).items() if v is not None}
        put(hparams(flat, {})[1], 0)
        put(text_summary("config", text), 0)
        for epoch, row in enumerate(run["history"], 1):
            for tag in ("train/loss", "train/acc", "val/loss", "val/acc"):
                put(scalar(tag, row[tag][k]), epoch)
            put(scalar(SPEED_TAG, row["speed"]), epoch)
        for at, lr in run["lrs"]:
            put(scalar(LR_TAG, lr), at)
        f.flush()
        os.fsync(f.fileno())


def write_job(k: int, cfg, run: dict, names: list, params: list, splits, prep, started: float) -> None:
    """Everything a job's folder holds, as the launcher writes it."""
    import torch
    from omegaconf import OmegaConf

    from trainer.runtime.files import atomic_write, write_json
    from trainer.runtime.runinfo import run_meta
    from trainer.sweeps.jobs import record_process

    out = Path(cfg.hydra.runtime.output_dir)
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    resolved = {key: v for key, v in OmegaConf.to_container(cfg, resolve=True).items() if key != "hydra"}
    text = OmegaConf.to_yaml(resolved)
    (out / ".hydra" / "config.yaml").write_text(text)
    (out / ".hydra" / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": cfg.hydra}))
    (out / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(cfg.hydra.overrides.task))
    record_process(out, started)
    events(out, k, run, resolved, text)
    state = run["optimizer"].state
    opt = {i: {key: (v[k].clone() if v.dim() else v) for key, v in state[p].items()}
           for i, p in enumerate(params)}
    extras = {"config": resolved, "preprocess": prep.state_dict(),
              "target": splits.target.state_dict() if splits.target else None, "data": splits.fingerprint,
              "meta": run_meta(torch.device("cpu"))}
    last = {"model": {n: p.detach()[k].clone() for n, p in zip(names, params, strict=True)},
            "optimizer": {"state": opt}, "fit": {"epoch": len(run["history"]), "step": run["steps"]},
            **extras}
    best = {**last, "model": {n: p[k].clone() for n, p in zip(names, run["best"], strict=True)}}
    (out / "checkpoints").mkdir(exist_ok=True)
    for name, ckpt in (("best.pt", best), ("last.pt", last)):
        atomic_write(out / "checkpoints" / name, lambda f, c=ckpt: torch.save(c, f))
    e = run["best_epoch"][k] - 1
    h = run["history"]
    metrics = {"val/loss": h[e]["val/loss"][k], "val/acc": h[e]["val/acc"][k],
               "test/loss": run["test"][0][k], "test/acc": run["test"][1][k],
               "train/loss": h[-1]["train/loss"][k], "train/acc": h[-1]["train/acc"][k],
               "monitor": "val/acc", "best_epoch": e + 1, "epochs": len(h), "steps": run["steps"],
               "status": "completed", "seed": int(cfg.seed), "wall_time_s": round(time.time() - started, 3)}
    write_json(metrics, out / "metrics.json")
    (out / "trainer.log").write_text(f"[floor] job {k}: completed, val/acc {metrics['val/acc']:.4f}\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every job (e.g. epochs=5)")
    args = p.parse_args(argv)
    started = time.time()
    import torch

    from trainer.config.build import batch_size_for, build_data
    from trainer.data import prepare_data
    from trainer.runtime.cli import quick_start

    if argv is None:  # the command line: the collector off the imports' objects, as `python -m trainer`
        quick_start()
    torch.set_num_threads(args.threads)
    configs = compose_jobs(args.jobs, args.out.absolute(), args.overrides)
    first = configs[0]
    splits, prep = prepare_data(build_data(first.data), torch.device("cpu"))
    params, names = stacked_members(configs, splits)
    for t in params:
        t.requires_grad_(False)
    run = train(params, configs, splits, batch_size_for(first.batch_size, len(splits.x_train)))
    with ThreadPoolExecutor(8) as pool:
        done = [pool.submit(write_job, k, cfg, run, names, params, splits, prep, started)
                for k, cfg in enumerate(configs)]
        for d in done:
            d.result()
    accs = sorted(json.loads((Path(c.hydra.runtime.output_dir) / "metrics.json").read_text())["val/acc"]
                  for c in configs)
    print(f"floor: {args.jobs} jobs in {time.time() - started:.1f} s, "
          f"val/acc median {accs[len(accs) // 2]:.4f}")


if __name__ == "__main__":
    main()

"""Fast paths: precision, compile, CUDA graphs, compact inputs, the epoch statistics, sharding."""

import logging

import pytest
import torch
from torch.nn import functional as F

from models import MLP
from tests.conftest import read_scalars
from trainer.run import run
from trainer.training import accel
from trainer.training.curves import LR_TAG
from trainer.training.loop import EpochCursor, shard_batches, train_epoch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def blobs(n: int = 512, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three separable Gaussian blobs: a problem any working training step learns."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.randn(3, d, generator=g) * 3
    return centres[y] + torch.randn(n, d, generator=g), y


def one_epoch(model, opt, x, y, batch_size, generator=None, **options) -> dict:
    """train_epoch over a fresh cursor; the epoch's mean loss and accuracy, and its sample count."""
    cursor = EpochCursor.start(len(x), x.device, generator)
    assert train_epoch(model, opt, F.cross_entropy, x, y, batch_size, cursor, **options)
    return {**cursor.stats(classification=True), "samples": cursor.seen}


def test_bf16_autocast_trains_on_cpu(cfg_factory, tmp_path):
    metrics = run(cfg_factory("precision=bf16", "epochs=4", "device=cpu"), out_dir=tmp_path)
    loss = [v for _, v in read_scalars(tmp_path)["train/loss"]]
    assert loss[-1] < 0.5 * loss[0]
    assert metrics["val/acc"] > 0.85


def test_bf16_step_runs_the_forward_in_bf16():
    x, y = blobs()
    model = MLP(16, 3, [32])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = accel.TrainStep(model, opt, F.cross_entropy, torch.device("cpu"), "bf16")
    loss, out = step(x[:64], y[:64])
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32  # cross-entropy autocasts up
    assert model.net[0].weight.dtype == torch.float32  # the master weights stay fp32


def test_cuda_graphs_fall_back_on_cpu_with_a_message(cfg_factory, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="trainer.training.accel"):
        metrics = run(cfg_factory("cuda_graphs=true", "device=cpu", "epochs=2"), out_dir=tmp_path)
    assert ("cuda_graphs=true ignored: CUDA graphs need a CUDA device and this run is on cpu; "
            "training with the eager step") in caplog.text
    assert metrics["status"] == "completed" and metrics["val/acc"] > 0.8


def test_graph_fallback_reasons():
    model = MLP(4, 2, [8])
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    assert "on cpu" in accel.graph_fallback_reason(cpu, sgd, "fp32", False, False)
    assert "SGD cannot run captured" in accel.graph_fallback_reason(gpu, sgd, "fp32", False, False)
    adam = torch.optim.Adam(model.parameters())
    assert "capturable=True" in accel.graph_fallback_reason(gpu, adam, "fp32", False, False)


def test_optimizer_options_fused_where_torch_has_the_kernel():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert accel.optimizer_options("torch.optim.Adam", {"lr": 0.01}, cpu, cuda_graphs=True) == {"fused": True}
    assert accel.optimizer_options("torch.optim.SGD", {"foreach": True}, cpu, cuda_graphs=False) == {}
    momentum = accel.optimizer_options("torch.optim.SGD", {"momentum": 0.9}, cpu, cuda_graphs=False)
    assert momentum == {"fused": True}  # with momentum the fused update is the faster one on the CPU
    assert accel.optimizer_options("torch.optim.SGD", {"momentum": 0.0}, cpu, cuda_graphs=False) == {}
    assert accel.optimizer_options("torch.optim.RMSprop", {}, cpu, cuda_graphs=False) == {}  # no CPU kernel
    assert accel.optimizer_options("torch.optim.SGD", {"lr": 0.1}, gpu, cuda_graphs=False) == {"fused": True}
    assert accel.optimizer_options("torch.optim.SGD", {"foreach": False}, gpu, cuda_graphs=False) == {}
    assert accel.optimizer_options("torch.optim.LBFGS", {}, gpu, cuda_graphs=False) == {}  # no fused


def test_compiled_model_trains():
    # The inductor backend needs ~30 s of C++ compilation on this 2-core CPU; the "eager" backend
    # runs the same torch.compile graph capture (dynamo) without code generation.
    x, y = blobs()
    model = MLP(16, 3, [32])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    compiled = torch.compile(model, backend="eager")  # what compile=true does, with inductor
    step = accel.TrainStep(compiled, opt, F.cross_entropy, torch.device("cpu"))
    first = one_epoch(model, opt, x, y, 64, step=step)
    for _ in range(3):
        last = one_epoch(model, opt, x, y, 64, step=step)
    assert last["loss"] < 0.5 * first["loss"] and last["acc"] > 0.9


def test_compile_true_compiles_the_model_a_run_trains(cfg_factory, tmp_path, monkeypatch):
    """compile=true reaches torch.compile with the run's model, and the step trains the compiled
    module (here torch.compile's eager backend: the same graph capture, no C++ compilation)."""
    compiled = []
    real = torch.compile

    def recording(model, **kwargs):
        compiled.append(model)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", recording)
    metrics = run(cfg_factory("data=gaussians", "epochs=2", "compile=true"), out_dir=tmp_path / "on")
    assert len(compiled) == 1 and isinstance(compiled[0], MLP) and metrics["status"] == "completed"
    run(cfg_factory("data=gaussians", "epochs=1"), out_dir=tmp_path / "off")
    assert len(compiled) == 1  # compile=false: never compiled
    assert isinstance(accel.compile_model(MLP(4, 2, [8]), True), torch._dynamo.eval_frame.OptimizedModule)


@pytest.mark.slow
@cuda
def test_compile_and_bf16_run_on_cuda(cfg_factory, tmp_path):
    metrics = run(cfg_factory("compile=true", "precision=bf16", "device=cuda", "epochs=3"), out_dir=tmp_path)
    assert metrics["val/acc"] > 0.85


def test_epoch_statistics_equal_the_weighted_batch_means():
    x, y = blobs(n=300)
    model = MLP(16, 3, [32])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    plain = accel.TrainStep(model, opt, F.cross_entropy, torch.device("cpu"))
    batches: list[tuple[float, int, int]] = []

    def step(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = plain(xb, yb)
        batches.append((loss.item() * len(yb), int((out.argmax(1) == yb).sum()), len(yb)))
        return loss, out

    stats = one_epoch(model, opt, x, y, 64, step=step)  # 4 batches of 64, one of 44
    n = sum(b[2] for b in batches)
    assert n == 300 and int(stats["samples"]) == 300 and len(batches) == 5
    assert stats["loss"].item() == pytest.approx(sum(b[0] for b in batches) / n, rel=1e-5)
    assert stats["acc"].item() == pytest.approx(sum(b[1] for b in batches) / n)


def test_epoch_statistics_count_every_batch_across_a_stop_and_go():
    """A stop after an update and a later call on the same cursor count each batch once (the
    predictions are counted when each call ends)."""
    x, y = blobs(n=300)
    model = MLP(16, 3, [32])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    plain = accel.TrainStep(model, opt, F.cross_entropy, torch.device("cpu"))
    correct: list[int] = []

    def step(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = plain(xb, yb)
        correct.append(int((out.argmax(1) == yb).sum()))
        return loss, out

    cursor = EpochCursor.start(len(x), x.device, None)
    stop_after_two = lambda: len(correct) == 2  # noqa: E731
    assert not train_epoch(model, opt, F.cross_entropy, x, y, 64, cursor, step=step, on_step=stop_after_two)
    assert cursor.next_batch == 2 and int(cursor.correct) == sum(correct)
    assert train_epoch(model, opt, F.cross_entropy, x, y, 64, cursor, step=step)
    assert len(correct) == 5 and cursor.stats(True)["acc"].item() == pytest.approx(sum(correct) / 300)


def test_shards_partition_each_global_batch_equally():
    batches = torch.arange(10).split(4)  # 4, 4, 2
    shards = [shard_batches(batches, rank, 2) for rank in range(2)]
    assert [s.tolist() for s in shards[0]] == [[0, 1], [4, 5], [8]]
    assert [s.tolist() for s in shards[1]] == [[2, 3], [6, 7], [9]]
    odd = torch.arange(7).split(7)
    assert [s.tolist() for s in shard_batches(odd, 1, 2)] == [[3, 4, 5]]  # the remainder 6 dropped
    tiny_last = shard_batches(torch.arange(5).split(4), 0, 2)  # a last batch of 1 cannot be shared
    assert [s.tolist() for s in tiny_last] == [[0, 1]]


@cuda
def test_cuda_graph_step_matches_the_eager_step():

    device = torch.device("cuda")
    x, y = blobs(n=200)
    x, y = x.to(device), y.to(device)
    weights, losses = [], []
    for graphs in (False, True):
        torch.manual_seed(0)
        model = MLP(16, 3, [32]).to(device)
        fast = accel.optimizer_options("torch.optim.Adam", {"lr": 0.01}, device, cuda_graphs=True)
        opt = torch.optim.Adam(model.parameters(), **fast)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        step = accel.make_step(model, opt, F.cross_entropy, device, cuda_graphs=graphs, batch_size=64)
        assert isinstance(step, accel.GraphedStep) == graphs
        gen = torch.Generator(device=device).manual_seed(0)
        for _ in range(3):  # 3 batches of 64 captured, the last of 8 eager; lr halves each epoch
            stats = one_epoch(model, opt, x, y, 64, gen, step=step)
            sched.step()
        losses.append(stats["loss"].item())
        weights.append([p.detach().clone() for p in model.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@cuda
def test_fused_optimizer_on_cuda():

    model = MLP(4, 2, [8]).cuda()
    fast = accel.optimizer_options("torch.optim.Adam", {}, torch.device("cuda"), cuda_graphs=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, **fast)
    assert opt.param_groups[0]["fused"]



@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(cfg_factory, tmp_path):
    import subprocess
    import sys

    from tests.conftest import read_metrics, subprocess_env
    from trainer.storage.checkpoint import load_checkpoint

    args = ["epochs=2", "data=spirals", "device=cpu", "drop_last=true", "batch_size=64"]
    env = subprocess_env({"OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "trainer", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1, runs  # one shared run directory: rank 0's
    assert proc.stdout.count("run completed") == 1  # only rank 0 reports
    assert proc.stdout.count("epoch 2/2") == 1  # and logs
    ddp = read_metrics(runs[0])

    single = run(cfg_factory(*args), out_dir=tmp_path / "single")
    assert ddp["steps"] == single["steps"] == 2 * (700 // 64)  # 700 training samples
    for key in ("val/loss", "val/acc", "test/loss", "train/loss", "train/acc"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-4, abs=1e-5), key
    w_ddp = load_checkpoint(runs[0] / "checkpoints" / "last.pt")["model"]
    w_one = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")["model"]
    for name, w in w_one.items():
        torch.testing.assert_close(w_ddp[name], w, rtol=1e-4, atol=1e-5)


@cuda
@pytest.mark.parametrize("overrides", [["cuda_graphs=true", "scheduler=inverse_time"],
                                       ["cuda_graphs=true", "precision=bf16", "optimizer=adam"],
                                       ["precision=fp16"]])
def test_cuda_fast_paths_train(cfg_factory, tmp_path, caplog, overrides):
    with caplog.at_level(logging.INFO, logger="trainer.training.accel"):
        metrics = run(cfg_factory("device=cuda", "epochs=4", *overrides), out_dir=tmp_path)
    assert "ignored" not in caplog.text
    if "cuda_graphs=true" in overrides:
        assert "the training step is captured for batch size 64" in caplog.text
    assert metrics["val/acc"] > 0.85
    lrs = [v for _, v in read_scalars(tmp_path)[LR_TAG]]
    if "scheduler=inverse_time" in overrides:  # the tensor lr the graph reads decays step by step
        assert lrs[-1] < lrs[0]


def test_srun_tasks_become_torchrun_ranks_but_a_batch_script_does_not():
    from trainer.runtime.distributed import first_node, srun_world

    step = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
            "SLURM_STEP_NODELIST": "gpu[03-04]", "SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0"}
    assert srun_world(step) == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu03",
                                "MASTER_PORT": str(20000 + 7 * 16)}
    assert srun_world({**step, "MASTER_PORT": "1234"})["MASTER_PORT"] == "1234"
    assert srun_world({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}) == {}  # the batch script: one process
    assert srun_world({**step, "WORLD_SIZE": "4"}) == {}  # torchrun inside srun: torchrun's own
    assert srun_world({**step, "SLURM_STEP_NUM_TASKS": "1"}) == {}  # a submitit job: one task
    assert first_node("vm") == "vm" and first_node("a,b") == "a" and first_node("n[7]") == "n7"

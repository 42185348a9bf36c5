"""The benchmark scripts: bench.py's smoke mode writes its table (not the committed BENCHMARKS.md,
which --write never replaces with smoke numbers); bench_process.py's arithmetic; bench_step.py's
variants make the same update; floor_sweep.py trains what the vectorized launcher trains;
bench_sweep.py rewrites only its own section."""

import json
import re
import statistics

import pytest
import torch

from tests.conftest import ROOT, make_cfg, process_kept, script


@pytest.mark.slow
def test_bench_quick_writes_a_table(tmp_path):
    out = tmp_path / "bench.md"
    before = (ROOT / "BENCHMARKS.md").read_text() if (ROOT / "BENCHMARKS.md").exists() else None
    with process_kept(tmp_path):  # in this process (its torch threads and warning filters put back)
        script("bench").main(["--quick", "--no-lightning", "--threads", "1", "--output", str(out)])
    text = out.read_text()
    assert "torch " in text and "device `" in text  # the machine it ran on
    rows = [line for line in text.splitlines() if line.startswith("| 784-32-10 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "64", "1024", "full"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3].replace(",", "")) > 0  # bare loop samples/s
        for cell in cells[4:6]:  # trainer and DataLoader: samples/s (ratio to the bare loop)
            assert re.fullmatch(r"[\d,]+ \(\d+\.\d\d\)", cell), cell
        assert cells[6] == "n/a"
    assert ((ROOT / "BENCHMARKS.md").read_text() if before is not None else None) == before


def test_bench_process_takes_epoch_time_from_outside():
    """(wall of E epochs - wall of 1 epoch) / (E - 1) per contender, from the best and from the
    median repeat; the ratio takes the faster of the bare loop's two thread counts."""
    bench = script("bench_process")
    times = {("bare", 1): [5.0, 4.0, 4.5], ("bare", 3): [8.0, 9.0, 8.4],  # best 2.0, median 1.95
             ("bare_1t", 1): [4.2, 4.1, 4.3], ("bare_1t", 3): [9.1, 8.5, 9.0],  # best 2.2, median 2.4
             ("trainer", 1): [6.0, 6.2, 6.1], ("trainer", 3): [10.0, 10.4, 9.8]}  # best 1.9, median 1.95
    best = bench.epoch_seconds(times, 3, min)
    median = bench.epoch_seconds(times, 3, statistics.median)
    assert best == pytest.approx({"bare": 2.0, "bare_1t": 2.2, "trainer": 1.9})
    assert median == pytest.approx({"bare": 1.95, "bare_1t": 2.4, "trainer": 1.95})
    assert bench.ratio(best) == pytest.approx(2.0 / 1.9)
    assert bench.ratio(median) == pytest.approx(1.0)
    command = bench.trainer_command(ROOT / "d.npz", 64, 5, ROOT / "out")
    assert command[1:3] == ["-m", "trainer"] and "batch_size=64" in command and "epochs=5" in command


def test_bench_step_variants_make_the_same_update():
    """Each speed variant of scripts/bench_step.py trains the same net to the same weights as the
    bare loop (so their timings compare the same work), and measure() times every one of them."""
    bench = script("bench_step")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)
    batches = torch.randperm(64, generator=g).split(16)
    trained = {}
    for name, build in bench.variants().items():
        step, net = build()
        for idx in batches:
            step(x, y, idx)
        trained[name] = torch.cat([p.detach().flatten() for p in net.parameters()])
    untrained = torch.cat([p.detach().flatten() for p in bench.model().parameters()])
    assert not torch.equal(trained["bare"], untrained)
    for name, weights in trained.items():
        assert torch.allclose(weights, trained["bare"], atol=1e-6), name
    # the gradient by hand (backprop=auto) and index_select gathers: exact; plain SGD fused too
    for name in ("trainer", "trainer, autograd", "trainer, autograd, fused SGD"):
        assert torch.equal(trained[name], trained["bare"]), name
    bench.STEPS[4] = 3
    times = bench.measure(4, repeats=1)
    assert set(times) == set(trained) and all(0 < t < 1e6 for t in times.values())


def test_bench_step_stacked_variants_time_the_same_lr_sweep():
    """`bench_step.py --stacked`: the lr sweep's shared and batched variants train the same members
    to the same weights bit for bit (only the copies of the batch differ), the seed sweep others."""
    bench = script("bench_step")
    builders = bench.stacked_variants("digits", 3)
    steps = {name: build() for name, build in builders.items()}
    for i in range(3):
        for step in steps.values():
            step(i)
    weights = {name: [p.detach() for p in step.stacked.tensors] for name, step in steps.items()}
    shared, batched = weights["lr sweep, shared"], weights["lr sweep, batched"]
    assert all(torch.equal(a, b) for a, b in zip(shared, batched, strict=True))
    assert not torch.equal(weights["seed sweep"][0], batched[0])
    times = bench.measure_stacked("digits", 2, repeats=1, steps=3)
    assert set(times) == set(builders) and all(0 < t < 1e6 for t in times.values())


def test_bench_never_overwrites_the_committed_table_with_smoke_numbers(capsys):
    bench = script("bench")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--write"])
    assert exc.value.code == 2 and "--write replaces BENCHMARKS.md" in capsys.readouterr().err


def test_floor_sweep_writes_job_folders_with_the_launchers_results(tmp_path):
    """scripts/floor_sweep.py (bench_sweep's floor) trains what each job trains: its metrics equal the
    vectorized group's (stacked members from the same initial weights and batches), and every job
    folder holds the launcher's files."""
    from trainer.vectorized.runner import run_members

    floor = script("floor_sweep")
    floor.main(["--jobs", "2", "--out", str(tmp_path / "floor"), "data=gaussians", "epochs=2"])
    cfgs = [make_cfg("data=gaussians", "epochs=2", f"seed={k}") for k in range(2)]
    results = run_members(cfgs, [tmp_path / "group" / str(k) for k in range(2)])
    for k in range(2):
        job = tmp_path / "floor" / f"{k}_seed={k}"
        for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "metrics.json",
                     "process.json", "trainer.log", "checkpoints/last.pt", "checkpoints/best.pt"):
            assert (job / name).is_file(), name
        assert len(list(job.glob("events.out.tfevents.*"))) == 1
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["best_epoch"] == results[k]["best_epoch"]
        for key in ("val/acc", "val/loss", "test/acc", "train/loss"):
            assert metrics[key] == pytest.approx(results[k][key], rel=1e-4, abs=1e-6), key


def test_bench_sweep_writes_its_section_and_keeps_the_others(tmp_path):
    bench = script("bench_sweep")
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Training\n\nkept\n\n## Vectorized sweeps\n\nold table\n\n"
                    "## Data\n\nkept too\n")
    bench.write_section("## Vectorized sweeps\n\nnew table\n", path)
    text = path.read_text()
    assert text.index("## Training") < text.index("new table") < text.index("### Earlier rounds") \
        < text.index("old table") < text.index("## Data")
    assert "kept\n" in text and "kept too\n" in text
    bench.write_section("## Vectorized sweeps\n\nnewer table\n", path)  # the earlier rounds stay once
    text = path.read_text()
    assert "new table" not in text and text.count("### Earlier rounds") == 1 and "old table" in text

"""`python -m trainer.landscape`: the notes' worked example, hand-computed paths, images, bad values."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from tests.conftest import cli_in_process
from trainer.config.validate import config_dir
from trainer.landscape.functions import FUNCTIONS, descend
from trainer.landscape.paths import landscape


def landscape_cfg(*overrides: str) -> DictConfig:
    """configs/landscape.yaml composed with command-line style overrides."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="landscape", overrides=list(overrides))


def path_of(cfg: DictConfig, name: str):
    """One optimizer's path, built from the composed config as `landscape` builds it."""
    fn = FUNCTIONS[cfg.function][0]
    return descend(fn, instantiate(cfg.optim[name]), tuple(cfg.start), cfg.steps, tuple(cfg.xlim),
                   tuple(cfg.ylim), name)


def test_every_optimizer_and_function_is_listed():
    cfg = landscape_cfg()
    files = sorted(p.stem for p in (Path(config_dir()) / "optimizer").glob("*.yaml"))
    assert sorted(cfg.optim) == files
    assert sorted(cfg.functions) == sorted(FUNCTIONS)
    # The project's configs are the ones used: only the rate follows the function.
    assert cfg.optim.momentum.momentum == 0.9 and cfg.optim.nesterov.nesterov is True
    assert cfg.optim.adam._target_ == "torch.optim.Adam"


def test_notes_worked_example(tmp_path):
    """004: theta0 = [2, 1], one step of gradient descent at rate 0.1 on the saddle."""
    cfg = landscape_cfg("function=saddle", "optimizers=[sgd]", "optim.sgd.lr=0.1", "start=[2,1]",
                        "steps=1")
    summary = landscape(cfg, tmp_path)
    sgd = summary["optimizers"]["sgd"]
    assert sgd["start_loss"] == 4.0
    assert sgd["final_point"] == pytest.approx([1.8, 0.7], abs=1e-12)
    assert sgd["final_loss"] == pytest.approx(2.65, abs=1e-12)
    assert sgd["options"]["lr"] == 0.1 and sgd["options"]["momentum"] == 0.0
    assert json.loads((tmp_path / "landscape_saddle.json").read_text()) == summary


def test_sgd_path_by_hand():
    # x <- x - 0.1 (2x - 2) = 0.8x + 0.2;  y <- y - 0.1 (-2y + 5) = 1.2y - 0.5
    p = path_of(landscape_cfg("function=saddle", "optim.sgd.lr=0.1", "steps=3"), "sgd")
    assert p.xs == pytest.approx([2, 1.8, 1.64, 1.512], abs=1e-12)
    assert p.ys == pytest.approx([1, 0.7, 0.34, -0.092], abs=1e-12)
    assert p.losses == pytest.approx([x * x - y * y - 2 * x + 5 * y for x, y in zip(p.xs, p.ys, strict=True)])


def test_momentum_path_by_hand_on_the_saddle():
    # torch's heavy ball: b1 = g1, b_t = 0.9 b_{t-1} + g_t, theta <- theta - lr b_t.
    # g0 = (2, 3): theta1 = (1.8, 0.7); g1 = (1.6, 3.6), b2 = (3.4, 6.3): theta2 = (1.46, 0.07);
    # g2 = (0.92, 4.86), b3 = (3.98, 10.53): theta3 = (1.062, -0.983).
    p = path_of(landscape_cfg("function=saddle", "optim.momentum.lr=0.1", "steps=3"), "momentum")
    assert p.xs == pytest.approx([2, 1.8, 1.46, 1.062], abs=1e-12)
    assert p.ys == pytest.approx([1, 0.7, 0.07, -0.983], abs=1e-12)


def test_momentum_path_by_hand_on_rosenbrock():
    cfg = landscape_cfg("function=rosenbrock", "steps=5")
    lr, mu = cfg.optim.momentum.lr, cfg.optim.momentum.momentum
    (x, y), buf, want = cfg.start, None, []
    for _ in range(5):  # the gradient of (1-x)^2 + 100(y-x^2)^2, written out
        g = (-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x))
        buf = g if buf is None else (mu * buf[0] + g[0], mu * buf[1] + g[1])
        x, y = x - lr * buf[0], y - lr * buf[1]
        want += [x, y]
    p = path_of(cfg, "momentum")
    assert [v for xy in zip(p.xs[1:], p.ys[1:], strict=True) for v in xy] == pytest.approx(want, rel=1e-12)


def test_divergence_is_reported(tmp_path, caplog):
    # x^2/2 + 10y^2 with lr 0.11: y_k = (1 - 0.11*20)^k = (-1.2)^k leaves ylim [-2, 2] at k = 4
    # (1.2^4 = 2.07); x_4 = -4 * 0.89^4; the loss there is far above the start's 18.
    cfg = landscape_cfg("function=ill_conditioned", "optimizers=[sgd,adam]", "optim.sgd.lr=0.11")
    with caplog.at_level(logging.INFO, logger="trainer.landscape"):
        summary = landscape(cfg, tmp_path)
    sgd = summary["optimizers"]["sgd"]
    x4, y4 = -4 * 0.89**4, 1.2**4
    assert sgd["diverged"] is True and sgd["left_plot_at_step"] == 4 and sgd["steps_run"] == 4
    assert sgd["final_point"] == pytest.approx([x4, y4], rel=1e-12)
    assert sgd["final_loss"] == pytest.approx(x4**2 / 2 + 10 * y4**2, rel=1e-12) and sgd["start_loss"] == 18
    assert summary["optimizers"]["adam"]["diverged"] is False
    assert summary["optimizers"]["adam"]["steps_run"] == cfg.steps
    assert "sgd: DIVERGED, left the plot at step 4" in caplog.text


def test_escape_downhill_is_not_a_divergence():
    # The saddle has no minimum: y <- 1.2y - 0.5 passes ylim's -3 at step 8 (y = -3.9497...).
    p = path_of(landscape_cfg("function=saddle", "optim.sgd.lr=0.1"), "sgd")
    assert p.left_at == 8 and p.ys[-1] == pytest.approx(-3.94972544, abs=1e-9)
    assert p.losses[-1] < p.losses[0] and not p.diverged


@pytest.mark.slow  # over a second on 2 cores
def test_png_and_gif_are_images(tmp_path):
    cfg = landscape_cfg("function=beale", "steps=10", "animate=true", "frames=5")
    files = landscape(cfg, tmp_path)["files"]
    assert Path(files["png"]).parent == tmp_path
    with Image.open(files["png"]) as png:
        assert png.format == "PNG" and png.size == (12 * 110, 5 * 110)
    with Image.open(files["gif"]) as gif:  # steps 0, 2, 5, 8, 10
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (12 * 70, 5 * 70)


@pytest.mark.slow
def test_cli(tmp_path):
    proc = cli_in_process("function=saddle", "optimizers=[sgd,adam]", "steps=20", "animate=true", "frames=4",
                          f"hydra.run.dir={tmp_path}", module="trainer.landscape")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "landscape_saddle.json").read_text())
    assert summary["optimizers"]["sgd"]["left_plot_at_step"] == 8
    assert (tmp_path / "landscape_saddle.png").is_file() and (tmp_path / "landscape_saddle.gif").is_file()
    assert "sgd: left the plot downhill at step 8" in (tmp_path / "landscape.log").read_text()

    bad = cli_in_process("function=nope", f"hydra.run.dir={tmp_path / 'bad'}", module="trainer.landscape")
    assert bad.returncode == 2 and bad.stderr.startswith("error: function='nope'")
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad" / "landscape_nope.png").exists()

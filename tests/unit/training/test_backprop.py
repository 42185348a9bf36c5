"""backprop=auto: a plain MLP's gradient by hand and plain SGD's update without optimizer.step()
(trainer.training.backprop) give autograd's and torch.optim's numbers to the last bit."""

import logging

import pytest
import torch
from torch import nn

from models import MLP
from tests.conftest import read_scalars
from trainer.run import run
from trainer.storage.checkpoint import load_checkpoint
from trainer.training import accel
from trainer.training.backprop import ACTIVATION_GRADS, manual_reason, sgd_update
from trainer.training.curves import SPEED_TAG
from trainer.training.losses import Loss

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd, weight decay": lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.01),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
}


def train_both(activation: str, loss: Loss, optimizer: str, batch: int, depth: int,
               y: torch.Tensor, grad_clip: float | None = None) -> list[tuple[MLP, list]]:
    """The same net trained from the same weights on the same batches (three epochs) with the
    gradient by hand and with autograd; each model and the (loss, outputs) of every step."""
    x = torch.randn(len(y), 12, generator=torch.Generator().manual_seed(1))
    out_dim = 5 if y.dim() == 1 else y.shape[1]
    trained = []
    for manual in (True, False):
        torch.manual_seed(0)
        model = MLP(12, out_dim, 16, depth, activation=activation)
        step = accel.TrainStep(model, OPTIMIZERS[optimizer](model.parameters()), loss, torch.device("cpu"),
                               grad_clip=grad_clip, manual=manual)
        assert (step.manual is not None) == manual
        starts = [i for _ in range(3) for i in range(0, len(y), batch)]
        trained.append((model, [step(x[i:i + batch], y[i:i + batch]) for i in starts]))
    return trained


def assert_identical(trained: list[tuple[MLP, list]]) -> None:
    (by_hand, steps_hand), (autograd, steps_auto) = trained
    for a, b in zip(by_hand.parameters(), autograd.parameters(), strict=True):
        assert torch.equal(a, b)
    for (loss_a, out_a), (loss_b, out_b) in zip(steps_hand, steps_auto, strict=True):
        assert torch.equal(loss_a, loss_b) and torch.equal(out_a, out_b)
    third = len(steps_hand) // 3  # an epoch
    assert sum(loss for loss, _ in steps_hand[-third:]) < sum(loss for loss, _ in steps_hand[:third])


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu",
                                        "identity"])
@pytest.mark.parametrize("loss", ["cross_entropy", "nll", "mse"])
def test_classification_gradients_are_autograds(activation, loss):
    y = torch.randint(0, 5, (90,), generator=torch.Generator().manual_seed(2))
    for optimizer, batch, depth in (("sgd", 1, 2), ("sgd, weight decay", 7, 1), ("momentum", 32, 3),
                                    ("adam", 16, 2)):
        assert_identical(train_both(activation, Loss(loss, "classification"), optimizer, batch, depth, y))


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_regression_gradients_are_autograds(loss):
    y = torch.randn(90, 2, generator=torch.Generator().manual_seed(2))
    for activation, optimizer, batch in (("tanh", "sgd", 1), ("relu", "momentum", 8), ("gelu", "adam", 30)):
        assert_identical(train_both(activation, Loss(loss, "regression", scale=2.0, huber_delta=0.5),
                                    optimizer, batch, 2, y))


def test_clipped_gradients_and_lbfgs_are_autograds():
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    assert_identical(train_both("relu", Loss("cross_entropy", "classification"), "sgd", 8, 2, y,
                                grad_clip=0.05))
    x = torch.randn(64, 12)
    weights = []
    for manual in (True, False):
        torch.manual_seed(0)
        model = MLP(12, 5, 16, 1)
        opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
        step = accel.TrainStep(model, opt, Loss("cross_entropy", "classification"), torch.device("cpu"),
                               manual=manual)
        losses = [step(x, y)[0] for _ in range(3)]
        assert losses[-1] < losses[0]
        weights.append(list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_sgd_update_is_torch_optim_sgds_step():
    """The update p <- p - lr (g + wd p) of every group, as SGD's own step, bit for bit; None for
    anything SGD's step does differently (momentum, maximize, a tensor lr, other optimizers)."""
    params = [torch.randn(20, 10), torch.randn(10)]
    grads = [torch.randn(20, 10), torch.randn(10)]
    results = []
    for ours in (True, False):
        ps = [nn.Parameter(p.clone()) for p in params]
        groups = [{"params": ps[:1], "lr": 0.3, "weight_decay": 0.1}, {"params": ps[1:]}]
        opt = torch.optim.SGD(groups, lr=0.05)
        update = sgd_update(opt) if ours else opt.step
        for _ in range(3):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
            update()
        results.append(ps)
        assert opt.state_dict()["state"] == {}  # a checkpoint saves the same optimizer state
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    p = [nn.Parameter(torch.ones(3))]
    for other in (torch.optim.SGD(p, lr=0.1, momentum=0.9), torch.optim.SGD(p, lr=0.1, maximize=True),
                  torch.optim.SGD(p, lr=torch.tensor(0.1)), torch.optim.Adam(p)):
        assert sgd_update(other) is None
    hooked = torch.optim.SGD(p, lr=0.1)
    hooked.register_step_post_hook(lambda *args: None)  # runs only through step()
    assert sgd_update(hooked) is None


def test_what_needs_autograd_says_why():
    """manual_reason: the runs whose step stays autograd's, each with its reason."""
    plain = MLP(4, 2, [8, 8], activation="gelu")
    assert manual_reason(plain, "fp32", False, False, None) is None
    assert set(ACTIVATION_GRADS) >= {type(m) for m in plain.net if not isinstance(m, nn.Linear)}
    frozen = MLP(4, 2, [8])
    frozen.net[0].weight.requires_grad_(False)
    reasons = {
        "dropout": manual_reason(MLP(4, 2, [8], dropout=0.1), "fp32", False, False, None),
        "norm": manual_reason(MLP(4, 2, [8], norm="batch"), "fp32", False, False, None),
        "sequential": manual_reason(nn.Sequential(nn.Linear(4, 2)), "fp32", False, False, None),
        "bf16": manual_reason(plain, "bf16", False, False, None),
        "compile": manual_reason(plain, "fp32", True, False, None),
        "graphs": manual_reason(plain, "fp32", False, True, None),
        "penalty": manual_reason(plain, "fp32", False, False, lambda: torch.zeros(())),
        "frozen": manual_reason(frozen, "fp32", False, False, None),
        "cuda": manual_reason(plain, "fp32", False, False, None, torch.device("cuda")),
    }
    assert reasons == {
        "dropout": "its layers include Dropout",
        "norm": "its layers include BatchNorm1d",
        "sequential": "the model is a Sequential, not a plain models.MLP",
        "bf16": "precision=bf16 runs under autocast",
        "compile": "compile=true compiles the model's own forward and backward",
        "graphs": "cuda_graphs=true captures the autograd step",
        "penalty": "the regularization penalty is differentiated by autograd",
        "frozen": "some parameters are frozen",
        "cuda": "the gradient by hand was measured on the CPU only; on cuda autograd's is kept until a "
                "measurement there says otherwise",
    }


@pytest.mark.parametrize("overrides", [
    ("data=gaussians", "data.n_samples=300", "batch_size=1", "optimizer=sgd", "scheduler=step",
     "scheduler.step_size=1", "averaging=ema"),
    ("data=regression", "data.n_samples=300", "batch_size=16", "optimizer=momentum",
     "model.activation=tanh", "grad_clip=1.0"),
])
def test_a_run_is_the_same_by_hand_and_with_autograd(cfg_factory, tmp_path, caplog, recwarn, overrides):
    """Whole runs, backprop=auto against backprop=autograd: the same logged curves, metrics and
    checkpointed weights (a per-update schedule and a weight average read the rate and weights);
    torch's schedulers see the optimizer stepped (no warning that they stepped first)."""
    runs = {}
    for backprop in ("auto", "autograd"):
        out = tmp_path / backprop
        with caplog.at_level(logging.DEBUG, logger="trainer.training.accel"):
            cfg = cfg_factory(f"backprop={backprop}", "epochs=3", "device=cpu", *overrides)
            metrics = run(cfg, out_dir=out)
        assert metrics["status"] == "completed"
        weights = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
        metrics = {k: v for k, v in metrics.items() if k != "wall_time_s"}
        runs[backprop] = (metrics, read_scalars(out), weights)
    assert "backprop: by hand (training.backprop)" in caplog.text
    assert not [w for w in recwarn if "optimizer.step()" in str(w.message)]
    (metrics, scalars, weights), (metrics_ag, scalars_ag, weights_ag) = runs["auto"], runs["autograd"]
    assert metrics == metrics_ag
    assert {k: [v for _, v in s] for k, s in scalars.items() if not k.startswith(SPEED_TAG)} == \
        {k: [v for _, v in s] for k, s in scalars_ag.items() if not k.startswith(SPEED_TAG)}
    assert all(torch.equal(weights[k], weights_ag[k]) for k in weights_ag)
    train_loss = [v for _, v in scalars["train/loss"]]
    assert train_loss[-1] < train_loss[0]

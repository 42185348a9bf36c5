import math

import pytest
import torch
from torch import nn

from models import ACTIVATIONS, MLP, count_parameters, resolve_widths


def test_lecture_parameter_count():
    # The lectures' 784-256-10 network: 784*256 + 256 + 256*10 + 10 = 203,530 parameters.
    assert count_parameters(MLP(784, 10, [256])) == 203_530


def test_depth_and_widths():
    model = MLP(5, 3, resolve_widths(3, 7))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 7), (7, 7), (7, 3)]
    assert resolve_widths(2, [32, 16]) == [32, 16]
    with pytest.raises(ValueError, match="depth"):
        resolve_widths(3, [32, 16])
    linear = MLP(4, 2, resolve_widths(0, 10))  # depth 0: logistic regression
    assert count_parameters(linear) == 4 * 2 + 2


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_runs(activation):
    out = MLP(6, 2, [8], activation=activation)(torch.randn(4, 6))
    assert out.shape == (4, 2) and torch.isfinite(out).all()


def test_kaiming_init_has_lecture_variance():
    torch.manual_seed(0)
    model = MLP(1000, 10, [1000], init="kaiming", bias_init="zero")
    w = model.net[0].weight
    assert w.var().item() == pytest.approx(2 / 1000, rel=0.02)  # Var(w) = 2/M
    assert model.net[0].bias.abs().sum().item() == 0


def test_xavier_and_normal_init():
    torch.manual_seed(0)
    w = MLP(800, 10, [400], init="xavier").net[0].weight
    assert w.var().item() == pytest.approx(2 / (800 + 400), rel=0.03)
    w = MLP(800, 10, [400], init="normal", init_std=0.05).net[0].weight
    assert w.std().item() == pytest.approx(0.05, rel=0.02)


def test_default_init_is_pytorch():
    torch.manual_seed(0)
    w = MLP(900, 10, [300]).net[0].weight
    # PyTorch's default is uniform(-1/sqrt(M), 1/sqrt(M)): variance 1/(3M).
    assert w.abs().max().item() <= 1 / math.sqrt(900)
    assert w.var().item() == pytest.approx(1 / (3 * 900), rel=0.03)


def test_dropout_layers_present():
    model = MLP(4, 2, [8, 8], dropout=0.3)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2


def test_bad_choices_rejected():
    with pytest.raises(ValueError, match="activation"):
        MLP(4, 2, [8], activation="relux")
    with pytest.raises(ValueError, match="init"):
        MLP(4, 2, [8], init="he")


def test_bias_init_default_and_zero():
    torch.manual_seed(0)
    bias = MLP(400, 10, [300], bias_init="default").net[0].bias
    # PyTorch's default bias is uniform(-1/sqrt(M), 1/sqrt(M)) with M the fan-in.
    assert bias.abs().max().item() <= 1 / math.sqrt(400)
    assert (bias < 0).any() and (bias > 0).any()  # symmetric around 0, not one value
    assert bias.var().item() == pytest.approx(1 / (3 * 400), rel=0.3)
    for init in ("default", "xavier", "kaiming", "normal"):
        model = MLP(6, 2, [8, 8], init=init, bias_init="zero")
        assert all(m.bias.abs().sum().item() == 0 for m in model.modules() if isinstance(m, nn.Linear))

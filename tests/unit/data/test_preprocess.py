"""Whitening (step 3 of the notes' recipe) and the checks that new data fits a checkpoint."""

import pytest
import torch

from trainer.data import check_compatible, fit_preprocessor, load_preprocessor
from trainer.run import run
from trainer.runtime.errors import DataError
from trainer.storage.checkpoint import load_checkpoint


def correlated(n=2000, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    return torch.randn(n, d, generator=g) @ mix * torch.arange(1.0, d + 1) + 10


def cov(z):
    z = z.double() - z.double().mean(0)
    return z.T @ z / len(z)


@pytest.mark.parametrize("kind", ["whiten_pca", "whiten_zca"])
def test_whitening_gives_identity_covariance_on_train(kind):
    x = correlated()
    assert cov(x).sub(torch.diag(cov(x).diagonal())).abs().max() > 1  # strongly correlated input
    prep = fit_preprocessor(kind, x, eps=1e-9)
    z = prep(x)
    assert torch.allclose(z.double().mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(cov(z), torch.eye(5, dtype=torch.float64), atol=1e-4)
    # Fitted on train only: other data is transformed with the train statistics, not its own.
    other = correlated(seed=1)
    assert not torch.allclose(cov(prep(other)), torch.eye(5, dtype=torch.float64), atol=1e-2)
    restored = load_preprocessor(prep.state_dict())
    assert torch.equal(restored(other), prep(other))


def test_zca_is_symmetric_and_the_inverse_root_of_the_covariance():
    x = correlated()
    prep = fit_preprocessor("whiten_zca", x, eps=1e-9)
    w = prep.matrix.double()
    assert torch.allclose(w, w.T, atol=1e-6)
    c = cov((x - prep.mean) / prep.std)  # the covariance of step 2's output
    assert torch.allclose(w @ c @ w, torch.eye(5, dtype=torch.float64), atol=1e-4)
    # ZCA stays closest to the input: each whitened feature correlates most with its own input.
    z = prep(x).double()
    corr = torch.corrcoef(torch.cat([z, x.double()], 1).T)[:5, 5:].abs()
    assert torch.equal(corr.argmax(1), torch.arange(5))


def test_pca_whitening_rotates_onto_principal_axes():
    x = correlated()
    prep = fit_preprocessor("whiten_pca", x, eps=1e-9)
    w = prep.matrix.double()
    # W = U diag(lambda)^(-1/2): its columns are orthogonal, with squared lengths 1/lambda.
    gram = w.T @ w
    assert torch.allclose(gram - torch.diag(gram.diagonal()), torch.zeros(5, 5, dtype=torch.float64),
                          atol=1e-5)
    lam = torch.linalg.eigvalsh(cov((x - prep.mean) / prep.std))
    assert torch.allclose(gram.diagonal(), 1 / lam, rtol=1e-3)


def test_whitening_eps_handles_singular_covariance():
    x = correlated(d=3)
    x = torch.cat([x, x[:, :1] * 2, torch.full((len(x), 1), 7.0)], 1)  # a copy and a constant
    for eps in (1e-5, 1e-2):
        prep = fit_preprocessor("whiten_zca", x, eps=eps)
        z = prep(x)
        assert torch.isfinite(z).all() and z.abs().max() < 100
        # Each principal direction ends with variance lambda / (lambda + eps): about 1 where there
        # is real variance, about 0 (not blown up) for the copy and the constant.
        lam = torch.linalg.eigvalsh(cov((x - prep.mean) / prep.std)).clamp(min=0)
        assert torch.allclose(torch.linalg.eigvalsh(cov(z)), lam / (lam + eps), atol=1e-3)
        assert (lam / (lam + eps))[2:].min() > 0.5 and (lam / (lam + eps))[:2].max() < 0.1


def test_check_compatible():
    x = correlated(d=4)
    for kind in ("standardize", "whiten_pca", "whiten_zca", "none"):
        state = fit_preprocessor(kind, x).state_dict()
        check_compatible(state, x[:10])
        with pytest.raises(DataError, match="has 3 features per sample, but the checkpoint was trained on 4"):
            check_compatible(state, x[:10, :3])
    with pytest.raises(DataError, match="shape"):
        check_compatible(state, x[0])
    bad = x[:10].clone()
    bad[2, 1] = float("nan")
    with pytest.raises(DataError, match="NaN or infinite"):
        check_compatible(state, bad, where="new.csv")
    with pytest.raises(DataError, match="not one of"):
        load_preprocessor({"kind": "pca"})


@pytest.mark.parametrize("kind", ["whiten_zca", "none"])
def test_checkpoint_holds_the_fitted_preprocessing(cfg_factory, tmp_path, kind):
    run(cfg_factory("epochs=1", f"data.preprocess={kind}", "data.whiten_eps=0.001"), out_dir=tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["preprocess"]
    assert state["kind"] == kind
    if kind == "whiten_zca":
        assert state["matrix"].shape == (64, 64) and state["eps"] == 0.001
    check_compatible(state, torch.zeros(3, 64))
    with pytest.raises(DataError, match="trained on 64 features"):
        check_compatible(state, torch.zeros(3, 30))

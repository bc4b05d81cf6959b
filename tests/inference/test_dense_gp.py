"""Dense GP numerics against direct formulas (explicit inverses, torch MVN) in float64."""

from __future__ import annotations

import pytest
import torch

from workbench.inference import dense_gp_log_marginal, dense_gp_predict, robust_cholesky


def _problem(n: int = 12, m: int = 5):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, generator=g, dtype=torch.float64) * 4
    xs = torch.linspace(-1, 5, m, dtype=torch.float64)

    def k(a, b):
        return 1.7 * torch.exp(-0.5 * (a[:, None] - b[None, :]).square() / 0.6**2)

    y = torch.sin(2 * x) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return k(x, x), k(xs, x), k(xs, xs).diagonal(), y, torch.tensor(0.05, dtype=torch.float64)


def test_log_marginal_equals_multivariate_normal():
    K, _, _, y, noise = _problem()
    cov = K + noise * torch.eye(12, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros_like(y), cov)
    assert torch.allclose(dense_gp_log_marginal(K, y, noise), mvn.log_prob(y), rtol=0, atol=1e-10)


def test_predict_equals_explicit_inverse_formula():
    K, Ks, kss, y, noise = _problem()
    inv = torch.linalg.inv(K + noise * torch.eye(12, dtype=torch.float64))
    pred = dense_gp_predict(K, Ks, kss, y, noise)
    assert torch.allclose(pred.mean, Ks @ inv @ y, rtol=0, atol=1e-10)
    assert torch.allclose(pred.variance, kss - (Ks @ inv * Ks).sum(-1), rtol=0, atol=1e-10)


def test_robust_cholesky_adds_jitter_only_when_needed():
    A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    assert torch.equal(robust_cholesky(A), torch.linalg.cholesky(A))
    singular = torch.ones(3, 3, dtype=torch.float64)  # rank 1: needs jitter
    L = robust_cholesky(singular)
    assert torch.allclose(L @ L.mT, singular, atol=1e-5)


def test_robust_cholesky_raises_on_indefinite_matrix():
    with pytest.raises(torch.linalg.LinAlgError, match="not positive definite"):
        robust_cholesky(torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64))

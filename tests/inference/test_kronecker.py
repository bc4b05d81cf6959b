"""Kronecker ICM regression against dense computations, and its analytic gradients."""

from __future__ import annotations

import torch

from workbench.inference import dense_gp_log_marginal, dense_gp_predict
from workbench.inference.kronecker import kronecker_log_marginal, kronecker_predict


def _problem(T=3, P=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(T, 2, generator=gen, dtype=torch.float64)
    B = W @ W.T + 0.1 * torch.eye(T, dtype=torch.float64)
    x = torch.linspace(0, 3, P, dtype=torch.float64)[:, None]
    K = torch.exp(-0.5 * (x - x.T).square() / 0.8**2)
    noise = 0.05 + torch.rand(T, generator=gen, dtype=torch.float64)
    R = torch.randn(T, P, generator=gen, dtype=torch.float64)
    return B, K, noise, R, x


def test_log_marginal_and_prediction_equal_the_dense_kronecker_product():
    B, K, noise, R, x = _problem()
    T, P = R.shape
    cov = torch.kron(B, K)
    dense = dense_gp_log_marginal(cov + torch.diag(noise.repeat_interleave(P)), R.reshape(-1),
                                  torch.zeros((), dtype=torch.float64))  # fmt: skip
    fast = kronecker_log_marginal(B, K, noise, R)
    assert abs(float(fast - dense)) < 1e-10 * abs(float(dense))
    xs = torch.tensor([[-0.5], [1.1], [4.0]], dtype=torch.float64)
    k_new = torch.exp(-0.5 * (x - xs.T).square() / 0.8**2)  # (P, S)
    mean, var = kronecker_predict(B, K, noise, R, k_new, torch.ones(3, dtype=torch.float64))
    stacked_noise = torch.diag(noise.repeat_interleave(P))
    for j in range(T):
        cross = torch.kron(B[j : j + 1].contiguous(), k_new.T.contiguous())  # (S, T P)
        ref = dense_gp_predict(cov + stacked_noise, cross, B[j, j].expand(3), R.reshape(-1),
                               torch.zeros((), dtype=torch.float64))  # fmt: skip
        torch.testing.assert_close(mean[j], ref.mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(var[j], ref.variance, rtol=0, atol=1e-10)


def test_analytic_gradients_match_finite_differences():
    B, K, noise, R, _ = _problem(T=2, P=5, seed=1)

    def f(B, K, noise, R):  # eigh reads one triangle: differentiate the symmetric part
        return kronecker_log_marginal(0.5 * (B + B.T), 0.5 * (K + K.T), noise, R)

    inputs = tuple(t.clone().requires_grad_(True) for t in (B, K, noise, R))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)

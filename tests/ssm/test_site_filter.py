"""Vector-site smoother on a stacked multi-latent state against a dense float64 oracle.

Oracle: the latent vector f = (f_1(t_1..t_T), ..., f_K(...)) has the block-diagonal prior
covariance Kf; with sites (j_t, J_t) the posterior is
Sigma = Kf - Kf (I + W Kf)^{-1} W Kf, m = Sigma j and log Z = -1/2 log|I + Kf W| + 1/2 j' Sigma j.
"""

from __future__ import annotations

import pytest
import torch

from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm.kalman import rts_smoother
from workbench.ssm.site_filter import (
    SMALL_STATE,
    _compiled,
    _compiled_filter,
    site_filter,
    site_smoother,
)

KERNELS = [
    MaternKernel(nu=2.5, lengthscale=0.7),
    MaternKernel(nu=0.5, lengthscale=1.5),
    HidaMaternKernel(order=1, lengthscale=1.0, frequency=2.0),
]


def _stacked(kernels, x):
    blocks = []
    for kernel in kernels:
        kernel = kernel.double()
        A, Q = kernel.discretize(x.diff())
        sde = kernel.sde()
        d = sde.Pinf.diagonal().rsqrt()
        blocks.append(
            (d[:, None] * A / d, d[:, None] * Q * d, sde.H[0] / d, d[:, None] * sde.Pinf * d)
        )
    A = torch.stack([torch.block_diag(*[b[0][i] for b in blocks]) for i in range(len(x) - 1)])
    Q = torch.stack([torch.block_diag(*[b[1][i] for b in blocks]) for i in range(len(x) - 1)])
    H = torch.block_diag(*[b[2][None] for b in blocks])
    return A.detach(), Q.detach(), H.detach(), torch.block_diag(*[b[3] for b in blocks]).detach()


def _sites(batch, T, K, seed, missing=0.25, rank_deficient=True):
    g = torch.Generator().manual_seed(seed)
    info = torch.randn(*batch, T, K, generator=g, dtype=torch.float64)
    L = torch.randn(*batch, T, K, K, generator=g, dtype=torch.float64)
    if rank_deficient:  # rank-1 precisions in some bins: singular J must work
        L[..., ::3, :, 1:] = 0.0
    precision = L @ L.mT
    drop = torch.rand(*batch, T, generator=g) < missing
    info = torch.where(drop[..., None], 0.0, info)
    precision = torch.where(drop[..., None, None], 0.0, precision)
    return info, precision


def _dense(kernels, x, info, precision):
    T, K = info.shape[-2:]
    Kf = torch.block_diag(
        *[k.double()(x[:, None], x[:, None]).to_dense().detach() for k in kernels]
    )
    W = torch.zeros(K * T, K * T, dtype=torch.float64)
    for t in range(T):
        idx = torch.arange(K) * T + t  # latent-major ordering
        W[idx[:, None], idx[None, :]] = precision[t]
    j = info.T.reshape(-1)
    M = torch.eye(K * T, dtype=torch.float64) + W @ Kf
    Sigma = Kf - Kf @ torch.linalg.solve(M, W @ Kf)
    mean = Sigma @ j
    log_z = -0.5 * torch.linalg.slogdet(M)[1] + 0.5 * j @ Sigma @ j
    var = Sigma.diagonal().reshape(K, T).T
    cross = Sigma[:T, T : 2 * T].diagonal()  # Cov(f_1(t), f_2(t))
    return mean.reshape(K, T).T, var, cross, log_z


@pytest.mark.parametrize("seed", [0, 1])
def test_site_smoother_matches_dense_posterior(seed):
    g = torch.Generator().manual_seed(seed)
    T = 40
    x = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 8).values
    A, Q, H, Pinf = _stacked(KERNELS, x)
    info, precision = _sites((2,), T, len(KERNELS), seed)
    out = site_smoother(A, Q, H, info, precision, Pinf)
    for b in range(2):
        mean, var, cross, log_z = _dense(KERNELS, x, info[b], precision[b])
        torch.testing.assert_close(out.mean[b], mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(out.cov[b].diagonal(0, -2, -1), var, rtol=0, atol=1e-10)
        torch.testing.assert_close(out.cov[b][:, 0, 1], cross, rtol=0, atol=1e-10)
        torch.testing.assert_close(out.log_z[b], log_z, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_big", [0, 6])  # S = 4 (scalar loops) and S = 22 (BLAS)
def test_torch_and_compiled_filters_and_smoothers_agree(n_big):
    if _compiled is None:
        pytest.skip("numba unavailable")
    T = 50
    x = torch.linspace(0, 5, T, dtype=torch.float64)
    kernels = KERNELS[:2] + [MaternKernel(nu=2.5, lengthscale=0.5 + i) for i in range(n_big)]
    A, Q, H, Pinf = _stacked(kernels, x)
    assert (A.shape[-1] > SMALL_STATE) == (n_big > 0)
    info, precision = _sites((3,), T, len(kernels), seed=3)
    ref = site_filter(A, Q, H, info, precision, Pinf)
    out = _compiled_filter(A, Q, H, info, precision, Pinf, torch.arange(T - 1))
    for name, a, b in zip(ref._fields, ref, out, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10, msg=name)
    smoothed = rts_smoother(A, ref)
    fast = site_smoother(A, Q, H, info, precision, Pinf)
    torch.testing.assert_close(fast.mean, smoothed.mean @ H.mT, rtol=0, atol=1e-10)
    torch.testing.assert_close(fast.cov, H @ smoothed.cov @ H.mT, rtol=0, atol=1e-10)


def test_site_filter_log_z_gradient_is_the_posterior_mean():
    """d log Z / d j_t = E_q[f_t] at informative bins (autograd through the torch filter)."""
    x = torch.linspace(0, 4, 25, dtype=torch.float64)
    A, Q, H, Pinf = _stacked(KERNELS[:2], x)
    info, precision = _sites((), 25, 2, seed=5)
    info = info.requires_grad_(True)
    (grad,) = torch.autograd.grad(site_filter(A, Q, H, info, precision, Pinf).log_marginal, info)
    out = site_smoother(A, Q, H, info.detach(), precision, Pinf)
    seen = (precision != 0).flatten(-2).any(-1)  # empty bins are skipped, not differentiated
    assert 0 < int(seen.sum()) < seen.numel()
    torch.testing.assert_close(grad[seen], out.mean[seen], rtol=0, atol=1e-10)

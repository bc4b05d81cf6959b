"""Square-root Kalman filter and RTS smoother against dense float64 GP computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from test_kalman import KERNELS, _problem, _ssm  # same folder: the same problems and kernels

import workbench as wb
from workbench.inference import dense_gp_log_marginal, dense_gp_predict
from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import kalman_filter, rts_smoother
from workbench.ssm.square_root import psd_factor, sqrt_kalman_filter, sqrt_rts_smoother, tria


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_square_root_filter_and_smoother_equal_dense_gp(name):
    kernel = KERNELS[name]().double().requires_grad_(False)
    x, y, mask = _problem()
    noise = torch.full(y.shape, 0.05, dtype=torch.float64)
    noise[1] = torch.linspace(0.01, 0.5, y.shape[-1], dtype=torch.float64)  # per-point noise
    A, Q, H, Pinf = _ssm(kernel, x)
    filtered = sqrt_kalman_filter(A, Q, H, y, noise, mask, Pinf)
    smoothed = sqrt_rts_smoother(A, filtered)
    h = H[0]
    K = kernel.covariance(x[:, None] - x[None, :])
    for b in range(y.shape[0]):
        seen = mask[b]
        Ko = K[seen][:, seen] + torch.diag(noise[b, seen])  # noise folded into the prior
        noise_b = torch.tensor(0.0, dtype=torch.float64)
        lml = dense_gp_log_marginal(Ko, y[b, seen], noise_b)
        pred = dense_gp_predict(Ko, K[:, seen], K.diagonal(), y[b, seen], noise_b)
        assert float(filtered.log_marginal[b]) == pytest.approx(float(lml), abs=1e-10)
        torch.testing.assert_close(smoothed.mean[b] @ h, pred.mean, rtol=0, atol=1e-10)
        torch.testing.assert_close((smoothed.cov[b] @ h) @ h, pred.variance, rtol=0, atol=1e-10)
    # the factors are what the covariances are made of, and lower triangular
    torch.testing.assert_close(filtered.chol @ filtered.chol.mT, filtered.cov)
    assert torch.equal(filtered.chol.triu(1), torch.zeros_like(filtered.chol))


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_square_root_matches_the_covariance_form_step_by_step(name):
    kernel = KERNELS[name]().double().requires_grad_(False)
    x, y, mask = _problem(batch=(2, 2), T=60, seed=1)
    A, Q, H, Pinf = _ssm(kernel, x)
    noise = torch.tensor(0.1, dtype=torch.float64)
    a = kalman_filter(A, Q, H, y, noise, mask, Pinf)
    b = sqrt_kalman_filter(A, Q, H, y, noise, mask, Pinf)
    for field in ("mean", "cov", "pred_mean", "pred_cov", "log_marginal"):
        torch.testing.assert_close(getattr(b, field), getattr(a, field), rtol=0, atol=1e-10)
    sa, sb = rts_smoother(A, a), sqrt_rts_smoother(A, b)
    torch.testing.assert_close(sb.mean, sa.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(sb.cov, sa.cov, rtol=0, atol=1e-10)


def test_square_root_gradient_equals_the_compiled_adjoint():
    x = np.sort(np.random.default_rng(2).uniform(0, 15, 80))
    y = np.sin(x) + 0.2 * np.random.default_rng(3).standard_normal(80)
    da = xr.DataArray(y, dims="time", coords={"time": x})
    grads = []
    for square_root in (False, True):
        model = wb.MarkovGP(
            HidaMaternKernel(order=2, lengthscale=1.1, frequency=0.8), square_root=square_root
        )
        obs = model._observe(da, "time")
        loss = model._log_marginals(obs)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        grads[-1]["loss"] = loss.detach()
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-8, atol=1e-10)


def test_noise_free_observations_interpolate_without_nan():
    # R = 0 makes filtered covariances singular: the square-root form stays finite and PSD
    kernel = MaternKernel(nu=1.5, lengthscale=2.0).double().requires_grad_(False)
    x, y, _ = _problem(batch=(), T=40, seed=4)
    mask = torch.ones_like(y, dtype=torch.bool)
    A, Q, H, Pinf = _ssm(kernel, x)
    filtered = sqrt_kalman_filter(A, Q, H, y, torch.tensor(0.0, dtype=torch.float64), mask, Pinf)
    smoothed = sqrt_rts_smoother(A, filtered)
    h = H[0]
    assert torch.isfinite(smoothed.mean).all() and torch.isfinite(smoothed.cov).all()
    torch.testing.assert_close(smoothed.mean @ h, y, rtol=0, atol=1e-6)
    assert float(((smoothed.cov @ h) @ h).abs().max()) < 1e-8
    assert float(torch.linalg.eigvalsh(smoothed.cov).min()) > -1e-12


def test_tria_and_psd_factor():
    g = torch.Generator().manual_seed(5)
    M = torch.randn(4, 3, 7, generator=g, dtype=torch.float64)
    L = tria(M)
    torch.testing.assert_close(L @ L.mT, M @ M.mT)
    assert torch.equal(L.triu(1), torch.zeros_like(L))
    v = torch.randn(3, 1, generator=g, dtype=torch.float64)
    singular = v @ v.mT  # rank one: plain Cholesky fails
    F = psd_factor(singular)
    torch.testing.assert_close(F @ F.mT, singular, rtol=0, atol=1e-12)
    with pytest.raises(torch.linalg.LinAlgError, match="positive semi-definite"):
        psd_factor(-torch.eye(2, dtype=torch.float64))


def test_markov_gp_square_root_option_equals_default_and_survives_save(tmp_path):
    rng = np.random.default_rng(6)
    x = np.linspace(0, 20, 150)
    values = np.stack([np.sin(x), np.cos(x)]) + 0.1 * rng.standard_normal((2, 150))
    values[0, 40:60] = np.nan
    da = xr.DataArray(values, dims=("unit", "time"), coords={"time": x, "unit": ["a", "b"]})
    kernel = HidaMaternKernel(order=1, lengthscale=2.0, frequency=1.0)
    default = wb.MarkovGP(kernel, noise=0.05)
    robust = wb.MarkovGP(HidaMaternKernel(order=1), noise=0.05, square_root=True)
    robust.load_state_dict(default.state_dict())
    at = np.linspace(-2, 24, 30)
    a, b = default.posterior(da, at=at), robust.posterior(da, at=at)
    for var in ("mean", "variance"):
        np.testing.assert_allclose(b[var], a[var], rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        robust.log_marginal_likelihood(da), default.log_marginal_likelihood(da), rtol=1e-12
    )
    robust.save(tmp_path / "robust.wbm")
    loaded = wb.load(tmp_path / "robust.wbm")
    assert loaded.square_root is True and "square_root=True" not in repr(default)
    np.testing.assert_array_equal(loaded.posterior(da, at=at)["mean"], b["mean"])


def test_square_root_cvi_equals_default():
    rng = np.random.default_rng(8)
    x = np.arange(120) * 0.1
    counts = rng.poisson(np.exp(np.sin(x)))
    da = xr.DataArray(counts.astype(float), dims="time", coords={"time": x})
    a = wb.MarkovGP(MaternKernel(nu=1.5), likelihood="poisson").posterior(da)
    b = wb.MarkovGP(MaternKernel(nu=1.5), likelihood="poisson", square_root=True).posterior(da)
    np.testing.assert_allclose(b["mean"], a["mean"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b["variance"], a["variance"], rtol=0, atol=1e-9)

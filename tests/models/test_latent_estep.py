"""Joint and mean-field CVI E-steps of LatentTrajectoryGP against dense float64 oracles.

Dense oracle: the stacked latent vector (K latents x T bins) has the block-diagonal prior Kf; a
CVI iteration computes the same natural-gradient targets, and q's moments are those of
Kf conditioned on the sites, Sigma = Kf - Kf (I + W Kf)^{-1} W Kf, m = Sigma j.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.kernels import MaternKernel
from workbench.likelihoods import Gaussian, Poisson
from workbench.models.latent_estep import elbo, estep

KERNELS = [MaternKernel(nu=2.5, lengthscale=0.15), MaternKernel(nu=1.5, lengthscale=0.3)]


def _model(likelihood, estep_mode="joint", n_units=5, seed=0):
    model = wb.LatentTrajectoryGP(
        2, kernel=[k for k in KERNELS], likelihood=likelihood, n_units=n_units, estep=estep_mode
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.C.copy_(0.7 * torch.randn(n_units, 2, generator=g, dtype=torch.float64))
        model.d.copy_(torch.randn(n_units, generator=g, dtype=torch.float64) * 0.3 + 1.0)
    return model


def _spikes(T=40, n_units=5, seed=0, trials=1):
    g = np.random.default_rng(seed)
    counts = g.poisson(3.0, size=(trials, T, n_units)).astype(float)
    return xr.DataArray(
        counts,
        dims=("trial", "time", "unit"),
        coords={"time": np.arange(T) * 0.02, "trial": np.arange(trials)},
    )


def _dense_prior(model, x):
    return torch.block_diag(
        *[m.kernel(x[:, None], x[:, None]).to_dense().detach() for m in model.latents]
    )


def _dense_cvi(model, x, y, steps, lr):
    """Dense-GP CVI with full K x K sites per bin (latent-major ordering)."""
    K, T = model.n_latents, x.shape[0]
    Kf = _dense_prior(model, x)
    C, d = model.C.detach(), model.d.detach()
    j, W = torch.zeros(K * T, dtype=torch.float64), torch.zeros(K * T, K * T, dtype=torch.float64)
    blocks = [torch.arange(K) * T + t for t in range(T)]

    def moments(j, W):
        Sigma = Kf - Kf @ torch.linalg.solve(torch.eye(K * T, dtype=torch.float64) + W @ Kf, W @ Kf)
        return Sigma @ j, Sigma

    mean, Sigma = moments(j, W)
    for _ in range(steps):
        m = mean.reshape(K, T)
        V = torch.stack([Sigma[b[:, None], b[None, :]] for b in blocks])  # (T, K, K)
        mu = C @ m + d[:, None]
        s2 = torch.einsum("nk,tkl,nl->nt", C, V, C)
        e = model.observation.expected_log_prob(y, mu, s2)
        w = (-2 * e.d_var).clamp_min(0)
        new_W, new_j = torch.zeros_like(W), torch.zeros_like(j)
        for t, b in enumerate(blocks):
            Jt = C.T @ (w[:, t, None] * C)
            new_W[b[:, None], b[None, :]] = Jt
            new_j[b] = C.T @ e.d_mean[:, t] + Jt @ m[:, t]
        j, W = (1 - lr) * j + lr * new_j, (1 - lr) * W + lr * new_W
        mean, Sigma = moments(j, W)
    return mean.reshape(K, T), Sigma.diagonal().reshape(K, T), Sigma


def _run_estep(model, spikes, steps, lr, mode="joint"):
    data = model._prepare(spikes)
    p = data.packed
    state = estep(
        model.latents, p.x, p.starts, data.y, data.mask, model.C, model.d,
        model.observation, None, steps, lr, mode == "joint",
    )  # fmt: skip
    return data, state


def test_joint_poisson_cvi_matches_dense_cvi():
    model = _model(Poisson(bin_width=1.0))  # rates ~ e^1, like the simulated counts
    spikes = _spikes()
    data, state = _run_estep(model, spikes, steps=6, lr=0.7)
    x = torch.as_tensor(spikes.time.values, dtype=torch.float64)
    mean, var, _ = _dense_cvi(model, x, data.y_grid[0], steps=6, lr=0.7)
    torch.testing.assert_close(state.mean[0], mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(state.var[0], var, rtol=0, atol=1e-8)


def test_gaussian_joint_one_step_is_exact_posterior_and_marginal_likelihood():
    model = _model(Gaussian(noise=0.3))
    g = np.random.default_rng(4)
    spikes = _spikes().copy(data=g.normal(size=(1, 40, 5)))
    data, state = _run_estep(model, spikes, steps=1, lr=1.0)
    x = torch.as_tensor(spikes.time.values, dtype=torch.float64)
    Kf = _dense_prior(model, x)
    C, d = model.C.detach(), model.d.detach()
    T, N = 40, 5
    L = torch.kron(C, torch.eye(T, dtype=torch.float64))  # vec_n(y) = L vec_k(x) + d
    Y = data.y_grid[0].reshape(-1) - d.repeat_interleave(T)
    noise = float(model.observation.noise)
    S = L @ Kf @ L.T + noise * torch.eye(N * T, dtype=torch.float64)
    mean = Kf @ L.T @ torch.linalg.solve(S, Y)
    Sigma = Kf - Kf @ L.T @ torch.linalg.solve(S, L @ Kf)
    torch.testing.assert_close(state.mean[0].reshape(-1), mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(state.var[0].reshape(-1), Sigma.diagonal(), rtol=0, atol=1e-10)
    log_ml = torch.distributions.MultivariateNormal(torch.zeros_like(Y), S).log_prob(Y)
    value = elbo(model.observation, data.y, data.mask, state, model.C, model.d)
    assert abs(value - float(log_ml)) < 1e-10 * abs(float(log_ml)) + 1e-9


def test_joint_equals_mean_field_for_one_latent_and_differs_for_two():
    spikes = _spikes(seed=1)
    one = [wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.02), n_units=5, estep=e)
           for e in ("joint", "mean_field")]  # fmt: skip
    for m in one:
        with torch.no_grad():
            m.C.fill_(0.5)
            m.d.fill_(1.0)
    a, b = (_run_estep(m, spikes, 5, 0.6, m.estep)[1] for m in one)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(a.var, b.var, rtol=0, atol=1e-10)
    joint = _run_estep(_model(Poisson(bin_width=0.02)), spikes, 5, 0.6)[1]
    mf = _run_estep(_model(Poisson(bin_width=0.02), "mean_field"), spikes, 5, 0.6, "mf")[1]
    assert (joint.mean - mf.mean).abs().max() > 1e-3  # the joint q keeps cross-latent terms
    assert torch.all(joint.cov[0, :, 0, 1].abs() > 0)


@pytest.mark.parametrize("mode", ["joint", "mean_field"])
def test_ragged_trials_equal_separate_fits_and_nan_outside(mode):
    spikes = _spikes(T=50, trials=2, seed=2)
    ragged = spikes.copy(data=spikes.values.copy())
    ragged[1, 35:] = np.nan  # trial 1 ends after 35 bins
    ragged[1, 10, :] = np.nan  # a missing bin inside the trial
    model = _model(Poisson(bin_width=0.02), mode)
    both = model.posterior(ragged)
    assert np.isnan(both.latent_mean[1, 35:]).all() and np.isfinite(both.latent_mean[1, :35]).all()
    for r, stop in ((0, 50), (1, 35)):
        alone = model.posterior(ragged.isel(trial=[r], time=slice(0, stop)))
        np.testing.assert_allclose(
            both.latent_mean[r, :stop], alone.latent_mean[0], rtol=0, atol=1e-10
        )
    data = model._prepare(ragged)
    assert data.packed.x.shape[0] == 85  # no padding bins are processed


def test_whittle_m_step_learns_the_lengthscale():
    ds = wb.simulate.latent_spikes(
        n_units=40, n_latents=1, n_trials=8, n_bins=400, latent="gp",
        kernel=MaternKernel(nu=2.5, lengthscale=0.25), baseline_rate=20.0, seed=3,
    )  # fmt: skip
    for mode in ("joint", "mean_field"):
        model = wb.LatentTrajectoryGP(
            1, kernel=MaternKernel(nu=2.5, lengthscale=0.05), likelihood=Poisson(bin_width=0.01),
            estep=mode,
        )  # fmt: skip
        model.fit(ds.spikes, steps=15, progress=False)
        assert model._kernel_method(model._prepare(ds.spikes)) == "whittle"
        lengthscale = float(model.latents[0].kernel.lengthscale)
        assert 0.15 < lengthscale < 0.45, (mode, lengthscale)  # true 0.25, start 0.05


def test_marginal_m_step_on_irregular_bins_and_whittle_fallback_warning():
    spikes = _spikes(T=30, seed=3)
    times = np.sort(np.random.default_rng(0).uniform(0, 1.2, 30))
    irregular = spikes.assign_coords(time=times)
    for mode in ("joint", "mean_field"):
        model = wb.LatentTrajectoryGP(2, likelihood=Poisson(bin_width=0.02), estep=mode)
        model.fit(irregular, steps=3, m_steps=2, progress=False)
        assert np.isfinite(model.fit_elbo).all()
        assert float(model.latents[0].kernel.lengthscale) != pytest.approx(0.1)
    model = wb.LatentTrajectoryGP(1, likelihood=Poisson(bin_width=0.02), m_step="whittle")
    with pytest.warns(wb.errors.WorkbenchWarning, match="regular time grid"):
        model.fit(irregular, steps=1, m_steps=1, progress=False)
    with pytest.raises(ValueError, match="estep"):
        wb.LatentTrajectoryGP(1, estep="full")
    with pytest.raises(ValueError, match="m_step"):
        wb.LatentTrajectoryGP(1, m_step="exact")


@pytest.mark.parametrize("mode", ["joint", "mean_field"])
def test_elbo_is_non_decreasing_with_full_cvi_steps(mode):
    model = _model(Poisson(bin_width=1.0), mode)
    spikes = _spikes(seed=6)
    data = model._prepare(spikes)
    p, state, values = data.packed, None, []
    for _ in range(8):
        state = estep(
            model.latents, p.x, p.starts, data.y, data.mask, model.C, model.d,
            model.observation, state, 1, 1.0, mode == "joint",
        )  # fmt: skip
        values.append(elbo(model.observation, data.y, data.mask, state, model.C, model.d))
    assert np.all(np.diff(values) >= -1e-8 * abs(values[-1])), np.diff(values)
    assert values[-1] - values[0] > 1.0

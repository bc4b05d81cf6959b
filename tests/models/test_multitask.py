"""MultitaskGP: dense oracles (ICM, independent tasks, sparse = exact), HLI kernel, transfer."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import DimensionError, EmptyDataError
from workbench.kernels.multitask import InteractionKernel, LMCKernel
from workbench.testing import arviz_checks


def _data(T=3, P=25, seed=0, missing=0.3):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, P))
    f = np.sin(x)
    values = np.stack([(i + 1) * f * (-1) ** i + i + 0.1 * rng.normal(size=P) for i in range(T)])
    values[rng.uniform(size=values.shape) < missing] = np.nan
    values[:, 0] = 0.0  # every task observed somewhere
    tasks = [f"t{i}" for i in range(T)]
    return xr.DataArray(values, dims=("task", "time"), coords={"task": tasks, "time": x})


def _randomize(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def _dense_icm(model, da):
    """Stacked observations, B (T, T), k and the dense Hadamard covariance, by hand."""
    index = model.kernel.coregionalization[0]
    W, v = index.covar_factor.detach(), index.var.detach()
    B = W @ W.T + torch.diag(v)
    ell = float(model.kernel.latents[0].lengthscale.detach())
    task, point = np.nonzero(np.isfinite(da.values))
    x = da.time.values[point]
    kx = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2)
    K = B.numpy()[task[:, None], task[None, :]] * kx
    return task, x, K, B.numpy(), ell


@pytest.mark.parametrize("missing", [0.3, 0.0])  # stacked exact path; Kronecker path
def test_icm_equals_dense_hadamard_computation(missing):
    da = _data(missing=missing)
    model = wb.MultitaskGP(rank=2).fit(da, steps=1, progress=False)
    _randomize(model)
    task, x, K, B, ell = _dense_icm(model, da)
    y = da.values[np.isfinite(da.values)]
    noise = model.noise.detach().numpy()[task]
    mean = model.task_mean.detach().numpy()
    C = K + np.diag(noise)
    r = y - mean[task]
    _, logdet = np.linalg.slogdet(C)
    lml = -0.5 * (r @ np.linalg.solve(C, r) + logdet + len(r) * np.log(2 * np.pi))
    assert abs(model.log_marginal_likelihood(da) - lml) < 1e-8 * abs(lml)
    xs = np.linspace(0, 10, 7)
    post = model.posterior(da, at=xs)
    assert post.attrs["inference"] == ("kronecker" if missing == 0 else "exact")
    for j in range(3):
        ks = B[j, task] * np.exp(-0.5 * (xs[:, None] - x[None, :]) ** 2 / ell**2)
        m = mean[j] + ks @ np.linalg.solve(C, r)
        v = B[j, j] - np.einsum("ij,ji->i", ks, np.linalg.solve(C, ks.T))
        np.testing.assert_allclose(post["mean"].values[j], m, rtol=0, atol=1e-8)
        np.testing.assert_allclose(post["variance"].values[j], v, rtol=0, atol=1e-8)


def test_complete_grid_icm_is_the_kronecker_product():
    da = _data(missing=0.0)
    model = wb.MultitaskGP().fit(da, steps=1, progress=False)
    _randomize(model, seed=2)
    _, _, K, B, ell = _dense_icm(model, da)
    x = da.time.values
    kron = np.kron(B, np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ell**2))
    np.testing.assert_allclose(K, kron, rtol=0, atol=1e-12)


def test_independent_tasks_equal_separate_single_task_gps():
    da = _data(seed=3)
    model = wb.MultitaskGP().fit(da, steps=1, progress=False)
    index = model.kernel.coregionalization[0]
    with torch.no_grad():
        index.covar_factor.zero_()
        index.var = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    xs = np.linspace(0, 10, 9)
    post = model.posterior(da, at=xs)
    ell = float(model.kernel.latents[0].lengthscale.detach())
    for j, name in enumerate(da.task.values):
        kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
        noise, mean = float(model.noise[j].detach()), float(model.task_mean[j].detach())
        single = wb.ExactGP(kernel, noise=noise, mean=mean)
        single.set_hyperparameter("kernel.outputscale", float(index.var[j].detach()))
        single.set_hyperparameter("kernel.base_kernel.lengthscale", ell)
        ref = single.posterior(da.sel(task=name).dropna("time"), at=xs)
        np.testing.assert_allclose(post["mean"].values[j], ref["mean"].values, atol=1e-8)
        np.testing.assert_allclose(post["variance"].values[j], ref["variance"].values, atol=1e-8)


def test_sparse_bound_with_every_observed_time_is_exact():
    da = _data(P=20, seed=4).assign_coords(time=np.linspace(0, 10, 20))
    exact = wb.MultitaskGP(n_latents=2).fit(da, steps=2, progress=False)
    for q in (0, 1):  # a well-conditioned K_uu, so that no jitter is needed
        exact.set_hyperparameter(f"kernel.latents.{q}.lengthscale", 0.5 + 0.2 * q)
    sparse = wb.MultitaskGP(n_latents=2, inference="sparse", n_inducing=40)
    sparse.fit(da, steps=0, progress=False)
    sparse.load_state_dict(exact.state_dict())
    a, b = exact.log_marginal_likelihood(da), sparse.log_marginal_likelihood(da)
    assert abs(a - b) < 1e-8 * abs(a)
    xs = np.linspace(-1, 11, 8)
    pe, ps = exact.posterior(da, at=xs), sparse.posterior(da, at=xs)
    assert ps.attrs["inference"] == "sparse" and pe.attrs["inference"] == "exact"
    np.testing.assert_allclose(ps["mean"], pe["mean"], atol=1e-7)
    np.testing.assert_allclose(ps["variance"], pe["variance"], atol=1e-7)
    coarse = wb.MultitaskGP(n_latents=2, inference="sparse", n_inducing=5)
    coarse.fit(da, steps=0, progress=False)
    coarse.load_state_dict(exact.state_dict())
    assert coarse.log_marginal_likelihood(da) < a  # a lower bound


def test_interaction_kernel_is_psd_and_reduces_to_lmc():
    gen = torch.Generator().manual_seed(0)
    X = torch.cat(
        [
            torch.rand(80, 1, generator=gen, dtype=torch.float64) * 10,
            torch.randint(0, 4, (80, 1), generator=gen).double(),
        ],
        1,
    )
    k = InteractionKernel(n_tasks=4, n_latents=3, rank=2)
    with torch.no_grad():
        k.coefficients.copy_(torch.randn(2, 4, 3, generator=gen, dtype=torch.float64))
        k.lengthscale = torch.tensor([0.3, 1.0, 4.0])
        K = k(X, X).to_dense()
        eig = torch.linalg.eigvalsh(K)
        assert float(eig.min()) > -1e-10 * float(eig.max())
        torch.testing.assert_close(k(X, X, diag=True), K.diagonal())
    one = InteractionKernel(n_tasks=4, n_latents=1, rank=2)
    lmc = LMCKernel([gpytorch.kernels.RBFKernel()], n_tasks=4, rank=2)
    with torch.no_grad():
        one.lengthscale = torch.tensor([0.7])
        lmc.latents[0].lengthscale = 0.7
        lmc.coregionalization[0].covar_factor.copy_(one.coefficients[:, :, 0].T)
        lmc.coregionalization[0].var = one.task_variance[0]
        torch.testing.assert_close(one(X, X).to_dense(), lmc(X, X).to_dense(), rtol=0, atol=1e-12)


def test_cross_task_transfer_beats_independent_gps():
    # LMC data: two latent GP draws (SE kernels, lengthscales 0.8 and 2), random mixing
    rng = np.random.default_rng(5)
    x = np.linspace(0, 10, 80)
    lag2 = (x[:, None] - x[None, :]) ** 2
    latents = np.stack(
        [np.linalg.cholesky(np.exp(-0.5 * lag2 / ell**2) + 1e-8 * np.eye(80)) @ rng.normal(size=80)
         for ell in (0.8, 2.0)]
    )  # fmt: skip
    mixing = rng.normal(size=(4, 2))
    truth = mixing @ latents
    values = truth + 0.05 * rng.normal(size=truth.shape)
    values[3, 25:60] = np.nan  # the sparsely observed task
    tasks = ["a", "b", "c", "d"]
    da = xr.DataArray(values, dims=("task", "time"), coords={"task": tasks, "time": x})
    model = wb.MultitaskGP(n_latents=2).fit(da, progress=False)
    post = model.posterior(da)
    mse = np.mean((post["mean"].values[3, 25:60] - truth[3, 25:60]) ** 2)
    single = wb.ExactGP(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()))
    alone = da.sel(task="d").dropna("time")
    ref = single.fit(alone, progress=False).posterior(alone, at=x[25:60])
    mse_alone = np.mean((ref["mean"].values - truth[3, 25:60]) ** 2)
    assert mse < 0.1 * mse_alone, (mse, mse_alone)
    corr = model.task_correlation()
    assert corr.dims == ("task", "task_")
    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert np.linalg.eigvalsh(corr.values).min() > -1e-10
    # the strongest empirical correlations of the true curves (-0.93, 0.91) are recovered
    assert corr.sel(task="a", task_="d") < -0.8 and corr.sel(task="c", task_="d") > 0.7


@pytest.mark.parametrize("interaction", [True, False])
def test_models_fit_and_save(tmp_path, interaction):
    da = _data(seed=6)
    model = wb.MultitaskGP(n_latents=2, interaction=interaction, rank=2)
    model.fit(da, steps=5, progress=False)
    post = model.posterior(da)
    assert np.isfinite(post["mean"]).all()
    model.save(tmp_path / "m.wbm")
    again = wb.load(tmp_path / "m.wbm")
    xr.testing.assert_allclose(again.posterior(da).drop_attrs(), post.drop_attrs())


def test_bad_input():
    da = _data()
    empty = da.copy(data=da.values.copy())
    empty[1] = np.nan
    with pytest.raises(EmptyDataError):
        wb.MultitaskGP().fit(empty, progress=False)
    with pytest.raises(DimensionError, match="'task'"):
        wb.MultitaskGP().fit(da.rename(task="output"), progress=False)
    with pytest.raises(ValueError, match="n_latents"):
        wb.MultitaskGP(n_latents=0)
    with pytest.raises(ValueError, match="kernels"):
        wb.MultitaskGP([gpytorch.kernels.RBFKernel()], n_latents=2)
    model = wb.MultitaskGP().fit(da, steps=1, progress=False)
    with pytest.raises(DimensionError, match="fitted tasks"):
        model.posterior(da.isel(task=[1, 0, 2]))
    with pytest.raises(RuntimeError, match="fit"):
        wb.MultitaskGP().task_correlation()
    with pytest.raises(ValueError, match="rank <= the 3 tasks"):
        wb.MultitaskGP(rank=4).fit(da, progress=False)


@pytest.mark.arviz
@pytest.mark.parametrize("inference", ["exact", "sparse"])
def test_inference_data_draws_match_the_posterior(inference):
    da = _data(seed=7).assign_attrs(units="m")
    model = wb.MultitaskGP(inference=inference, n_inducing=10).fit(da, steps=3, progress=False)
    idata = model.to_inference_data(da, num_samples=2000, log_likelihood=True, seed=3)
    n = int(np.isfinite(da.values).sum())
    f = idata.posterior["f"]
    assert f.shape == (1, 2000, n) and idata.observed_data["y"].attrs["units"] == "m"
    obs = idata.observed_data["y"]
    assert list(obs.task.values[:3]) == ["t0"] * 3
    np.testing.assert_array_equal(obs.values, da.values[np.isfinite(da.values)])
    post = model.posterior(da)  # latent marginals at the same points
    stacked = post.stack(obs=("task", "time"))
    keep = np.isfinite(da.values).reshape(-1)
    mean, var = stacked["mean"].values[keep], stacked["variance"].values[keep]
    se = 5 * np.sqrt(var / 2000) + 1e-9
    assert np.all(np.abs(f.mean(("chain", "draw")).values - mean) < se)
    np.testing.assert_allclose(f.var(("chain", "draw")).values, var, rtol=0.15, atol=1e-8)
    assert np.isfinite(arviz_checks.loo(idata).elpd)

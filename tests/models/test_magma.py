"""Magma / MagmaClust variational EM against dense float64 oracles, and input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from workbench.errors import DimensionError, EmptyDataError
from workbench.models import magma_vem as vem
from workbench.models.magma import Magma, MagmaClust


def _tasks(M=6, P=25, seed=0, clusters=(0.0,)):
    """Irregular tasks on a union grid: task i sees a random subset of the P inputs."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, P))
    values = np.full((M, P), np.nan)
    for i in range(M):
        idx = np.sort(rng.choice(P, rng.integers(4, 12), replace=False))
        offset = clusters[i % len(clusters)]
        values[i, idx] = offset + np.sin(x[idx]) + 0.3 * rng.normal(size=idx.size)
    return xr.DataArray(values, dims=("task", "time"), coords={"time": x, "task": np.arange(M)})


def test_mean_process_posterior_equals_dense_conditioning():
    da = _tasks()
    model = Magma(prior_mean=0.7, n_tasks=6, hypothesis="H0i")
    grid, _ = model._grid(da)
    with torch.no_grad():  # distinct task hyper-parameters
        model.task_kernel.base_kernel.raw_lengthscale.copy_(torch.linspace(-1, 1, 6)[:, None, None])
        model.raw_noise.copy_(torch.linspace(-3, -1, 6))
    prior_cov, prior_mean = model._prior(grid.x)
    psi = model._psi(grid).detach()
    post = vem.mean_posterior(
        prior_cov.detach(), prior_mean, vem.task_precision(psi, grid), torch.ones(6, 1), grid
    )
    # dense: y = S mu + noise, Cov(y) = S C S^T + blockdiag(Psi_i)
    points = torch.cat([grid.index[i][grid.valid[i]] for i in range(6)])
    S = torch.zeros(points.shape[0], grid.x.shape[0], dtype=torch.float64)
    S[torch.arange(points.shape[0]), points] = 1.0
    blocks = [psi[i][grid.valid[i]][:, grid.valid[i]] for i in range(6)]
    y = torch.cat([grid.y[i][grid.valid[i]] for i in range(6)])
    C, m = prior_cov.detach().expand(1, *prior_cov.shape[-2:])[0], prior_mean[0]
    cov_y = S @ C @ S.T + torch.block_diag(*blocks)
    gain = C @ S.T @ torch.linalg.inv(cov_y)
    torch.testing.assert_close(post.mean[0], m + gain @ (y - S @ m), rtol=0, atol=1e-8)
    torch.testing.assert_close(post.cov[0], C - gain @ S @ C, rtol=0, atol=1e-8)
    _, logdet = torch.linalg.slogdet(C - gain @ S @ C)
    assert abs(float(post.logdet[0] - logdet)) < 1e-6


def test_memberships_and_elbo_against_direct_formulas():
    da = _tasks(M=8, clusters=(0.0, 4.0))
    model = MagmaClust(2, n_tasks=8)
    grid, _ = model._grid(da)
    tau = torch.tensor([[0.7, 0.3]] * 4 + [[0.2, 0.8]] * 4, dtype=torch.float64)
    with torch.no_grad():
        prior_cov, prior_mean = model._prior(grid.x)
        psi = model._psi(grid)
        precision = vem.task_precision(psi, grid)
        post = vem.mean_posterior(prior_cov, prior_mean, precision, tau, grid)
        terms = vem.task_terms(precision, post, grid)
    for i in (0, 5):
        v = grid.valid[i]
        Psi = psi[i][v][:, v]
        for k in range(2):
            mk = post.mean[k][grid.index[i][v]]
            Ck = post.cov[k][grid.index[i][v]][:, grid.index[i][v]]
            dist = torch.distributions.MultivariateNormal(mk, Psi)
            direct = dist.log_prob(grid.y[i][v]) - 0.5 * torch.trace(torch.linalg.solve(Psi, Ck))
            assert abs(float(terms[i, k] - direct)) < 1e-10
    tau_new = vem.memberships(model.log_pi, terms)
    torch.testing.assert_close(tau_new.sum(1), torch.ones(8, dtype=torch.float64))


@pytest.mark.parametrize("hypothesis", ["H00", "Hk0", "H0i", "Hki"])
def test_elbo_never_decreases_and_clusters_are_found(hypothesis):
    da = _tasks(M=12, P=30, clusters=(0.0, 6.0), seed=1)
    model = MagmaClust(2, hypothesis=hypothesis, max_iter=12, tol=0)
    model.fit(da, progress=False)
    steps = np.diff(model.fit_elbo)
    assert np.all(steps > -1e-6 * np.abs(model.fit_elbo[1:])), steps
    labels = model.memberships().values.argmax(1)
    assert len(set(labels[::2])) == 1 and len(set(labels[1::2])) == 1
    assert labels[0] != labels[1]


def test_one_cluster_magmaclust_equals_magma():
    da = _tasks(seed=3)
    a = MagmaClust(1, max_iter=4, prior_mean="constant").fit(da, progress=False)
    b = Magma(max_iter=4, prior_mean="constant").fit(da, progress=False)
    np.testing.assert_array_equal(a.fit_elbo, b.fit_elbo)
    xr.testing.assert_equal(a.mean_processes(), b.mean_processes())


def test_bad_input():
    da = _tasks()
    empty = da.copy(data=da.values.copy())
    empty[2] = np.nan
    with pytest.raises(EmptyDataError, match="'task': 2"):
        Magma().fit(empty, progress=False)
    with pytest.raises(ValueError, match="n_clusters <= the 6 tasks"):
        MagmaClust(7).fit(da, progress=False)
    with pytest.raises(DimensionError, match="'task'"):
        Magma().fit(da.rename(task="subject"), progress=False)
    with pytest.raises(ValueError, match="hypothesis"):
        MagmaClust(2, hypothesis="Hxx")
    with pytest.raises(ValueError, match="n_clusters"):
        MagmaClust(0)


def test_magma_new_task_prediction_equals_dense_joint_conditioning():
    """K = 1: the predictive equals conditioning the joint Gaussian of all tasks (dense)."""
    da = _tasks(M=5, P=20, seed=4)
    model = Magma(prior_mean=0.3, max_iter=3).fit(da, progress=False)
    rng = np.random.default_rng(9)
    t_obs = np.sort(rng.uniform(0, 10, 6))
    new = xr.DataArray(np.sin(t_obs) + 0.1, dims="time", coords={"time": t_obs})
    at = np.array([1.5, 4.0, 9.5])
    pred = model.predict(new, at=at)
    # dense: joint over all training points, the new task's points and the targets
    grid, _ = model._grid(da)
    x_tr = [grid.x[grid.index[i][grid.valid[i]]] for i in range(5)]
    y_tr = torch.cat([grid.y[i][grid.valid[i]] for i in range(5)])
    xs = torch.cat([*x_tr, torch.as_tensor(t_obs), torch.as_tensor(at)])
    with torch.no_grad():
        mu_cov = model.mean_kernel(xs[:, None], xs[:, None]).to_dense()  # no jitter: 1e-6 tol
        owner = torch.cat([torch.full((len(x),), i) for i, x in enumerate(x_tr)] +
                          [torch.full((len(t_obs) + len(at),), 5)])  # fmt: skip
        same = owner[:, None] == owner[None, :]
        task = model.task_kernel(xs[:, None], xs[:, None]).to_dense()
        n_tr, n_obs = y_tr.shape[0], len(t_obs)
        noise = torch.zeros(len(xs), dtype=torch.float64)
        noise[: n_tr + n_obs] = model.noise
        cov = mu_cov + torch.where(same, task, 0.0) + torch.diag(noise)
    o = torch.arange(n_tr + n_obs)
    p = torch.arange(n_tr + n_obs, len(xs))
    y = torch.cat([y_tr, torch.as_tensor(t_obs).sin() + 0.1]) - 0.3
    gain = cov[p][:, o] @ torch.linalg.inv(cov[o][:, o])
    mean = 0.3 + gain @ y
    var = (cov[p][:, p] - gain @ cov[o][:, p]).diagonal() + model.noise.detach()
    np.testing.assert_allclose(pred["mean"].values, mean.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pred["variance"].values, var.numpy(), rtol=1e-6)
    assert pred.membership.values.tolist() == [1.0]
    assert np.all(pred.lower < pred["mean"]) and np.all(pred["mean"] < pred.upper)


def test_mixture_prediction_memberships_and_saved_model(tmp_path):
    import workbench as wb

    da = _tasks(M=10, P=30, clusters=(0.0, 6.0), seed=5)
    model = MagmaClust(2, max_iter=6).fit(da, progress=False)
    t_obs = np.linspace(0, 5, 8)
    new = xr.DataArray(6.0 + np.sin(t_obs), dims="time", coords={"time": t_obs})
    pred = model.predict(new, at=np.linspace(5, 9, 5))
    labels = model.memberships().values.argmax(1)
    assert pred.membership.values.argmax() == labels[1]  # the "offset 6" cluster
    assert pred.cluster_mean.dims == ("cluster", "time")
    np.testing.assert_allclose(pred.membership.sum(), 1.0)
    model.save(tmp_path / "m.wbm")
    again = wb.load(tmp_path / "m.wbm")
    assert again.hyperparameters() == model.hyperparameters()


@pytest.mark.parametrize("hypothesis", ["H00", "Hk0"])
def test_mean_process_objective_equals_the_per_cluster_expectation(hypothesis):
    da = _tasks(M=8, clusters=(0.0, 4.0))
    model = MagmaClust(2, hypothesis=hypothesis, prior_mean=0.5, n_tasks=8)
    grid, _ = model._grid(da)
    tau = torch.tensor([[0.7, 0.3]] * 4 + [[0.2, 0.8]] * 4, dtype=torch.float64)
    with torch.no_grad():
        prior_cov, prior_mean = model._prior(grid.x)
        precision = vem.task_precision(model._psi(grid), grid)
        post = vem.mean_posterior(prior_cov, prior_mean, precision, tau, grid)
        factor = vem.mean_moments(post, prior_mean, hypothesis == "H00")
        fast = vem.mean_process_objective(prior_cov, factor, 2)
        direct = -vem._prior_fit(prior_cov, prior_mean, post).sum()
    assert abs(float(fast - direct)) < 1e-8 * abs(float(direct))


def test_vbic_counts_trained_parameters_and_picks_the_simulated_k():
    import workbench as wb
    from workbench.models.magma_select import n_parameters

    shared = MagmaClust(3, hypothesis="H00", n_tasks=20)
    specific = MagmaClust(3, hypothesis="Hki", n_tasks=20, prior_mean="constant")
    # SE kernels: (outputscale, lengthscale) per kernel; noise; K - 1 weights; K constants
    assert n_parameters(shared) == 2 + 2 + 1 + 2
    assert n_parameters(specific) == 3 * 2 + 20 * (2 + 1) + 2 + 3
    ds = wb.simulate.magma_clusters(n_tasks=30, n_clusters=2, weights=[0.5, 0.5], seed=0)
    best, table = wb.select_n_clusters(ds.y, [1, 2, 3], max_iter=8, prior_mean="constant")
    assert table.vbic.dims == ("n_clusters",)
    np.testing.assert_allclose(
        table.vbic, table.elbo - 0.5 * table.n_parameters * np.log(30), rtol=0, atol=1e-9
    )
    assert table.attrs["best_n_clusters"] == best.n_clusters == 2


def test_long_form_input_equals_the_wide_form_and_duplicates_are_refused():
    from workbench.errors import CoordinateError

    da = _tasks(seed=6)
    long = da.to_dataframe(name="y").dropna().reset_index()
    ds = xr.Dataset.from_dataframe(long)
    wide = Magma(max_iter=3).fit(da, progress=False)
    tidy = Magma(max_iter=3).fit(ds, progress=False)
    np.testing.assert_allclose(tidy.fit_elbo, wide.fit_elbo, rtol=0, atol=1e-9)
    assert list(tidy.memberships().task.values) == list(da.task.values)
    doubled = xr.Dataset.from_dataframe(pd.concat([long, long.iloc[:1]], ignore_index=True))
    with pytest.raises(CoordinateError, match="duplicate"):
        Magma().fit(doubled, progress=False)


def test_cached_hyperposterior_follows_parameter_changes():
    da = _tasks(M=6, seed=8)
    model = Magma(max_iter=3).fit(da, progress=False)
    t_obs = np.linspace(0, 6, 5)
    new = xr.DataArray(np.sin(t_obs), dims="time", coords={"time": t_obs})
    before = model.predict(new, at=[7.0, 8.0])
    model.set_hyperparameter("mean_kernel.base_kernel.lengthscale", 3.0)
    after = model.predict(new, at=[7.0, 8.0])
    assert not np.allclose(before["mean"], after["mean"])
    del model._hyper_key  # a recomputation from scratch gives the same numbers
    np.testing.assert_array_equal(model.predict(new, at=[7.0, 8.0])["mean"], after["mean"])


def test_task_objective_on_shared_input_patterns_equals_the_per_task_sum():
    from workbench.models.task_grid import grid_patterns

    values = np.random.default_rng(3).normal(size=(6, 9))
    values[[0, 2, 4], 7:] = np.nan  # two input patterns shared by three tasks each
    da = xr.DataArray(values, dims=("task", "time"), coords={"time": np.linspace(0, 4, 9)})
    model = MagmaClust(2, n_tasks=6)
    grid, _ = model._grid(da)
    moments = torch.randn(6, 9, 9, dtype=torch.float64)
    moments = torch.where(grid.pair_valid, moments @ moments.mT, 0.0)
    patterns, inverse, counts = grid_patterns(grid)
    assert counts.tolist() == [3, 3] and inverse.tolist() in ([0, 1] * 3, [1, 0] * 3)
    summed = torch.zeros(2, 9, 9, dtype=torch.float64).index_add_(0, inverse, moments)
    with torch.no_grad():
        direct = vem.task_objective(model._psi(grid), moments, grid)
        grouped = vem.task_objective(model._psi(patterns), summed, patterns, counts)
    assert abs(float(grouped - direct)) < 1e-10 * abs(float(direct))


def test_other_gpytorch_kernels_fit_and_predict():
    import gpytorch

    mean_kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))
    task_kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.PeriodicKernel())
    da = _tasks(M=10, P=30, clusters=(0.0, 6.0), seed=2)
    model = MagmaClust(2, "Hk0", mean_kernel, task_kernel, max_iter=6, tol=0)
    model.fit(da, progress=False)
    assert np.all(np.diff(model.fit_elbo) > -1e-6 * np.abs(model.fit_elbo[1:]))
    assert model.mean_kernel.base_kernel.lengthscale.shape[0] == 2  # per cluster (Hk0)
    pred = model.predict(da.isel(task=1).dropna("time"), at=np.linspace(0, 10, 7))
    assert np.isfinite(pred["mean"]).all() and np.all(pred.lower < pred.upper)
    again = MagmaClust.from_config(model.get_config())
    assert type(again.mean_kernel.base_kernel).__name__ == "MaternKernel"

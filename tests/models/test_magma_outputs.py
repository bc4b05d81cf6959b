"""MagmaClust outputs: draws, ArviZ groups, labels, and predictions of a loaded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.models.magma_sampling import draw_mixture, task_predictive
from workbench.models.magma_vem import MeanPosterior
from workbench.models.task_grid import task_grid
from workbench.testing import arviz_checks


@pytest.fixture(scope="module")
def fitted():
    ds = wb.simulate.magma_clusters(n_tasks=16, n_points=12, n_clusters=2, seed=3)
    y = ds.y.assign_attrs(long_name="height", units="cm")
    y["time"].attrs = {"long_name": "age", "units": "year"}
    model = wb.MagmaClust(2, prior_mean="constant", max_iter=8).fit(y, progress=False)
    new = y.isel(task=0).dropna("time").isel(time=slice(0, 8))
    return model, y, new


def _grid(M=3, N=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 4, N + 2, dtype=torch.float64)
    y = torch.randn(M, N + 2, generator=gen, dtype=torch.float64)
    mask = torch.rand(M, N + 2, generator=gen) < 0.7
    mask[:, 0] = True
    return task_grid(x, torch.where(mask, y, 0.0), mask, list(range(M)))


def _posterior(P, K=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    R = torch.randn(K, P, P, generator=gen, dtype=torch.float64)
    return MeanPosterior(
        torch.randn(K, P, generator=gen, dtype=torch.float64), R @ R.mT / P, torch.zeros(K)
    )


def test_training_task_predictive_limits():
    grid = _grid()
    post = _posterior(grid.x.shape[0])
    t = grid.t[..., None]
    sigma = torch.exp(-0.5 * (t - t.mT).square())
    sigma = torch.where(grid.pair_valid, sigma, torch.eye(sigma.shape[-1], dtype=sigma.dtype))
    # no noise: the latent is the data
    exact = task_predictive(post, sigma, torch.tensor(1e-12, dtype=torch.float64), grid)
    data = torch.where(grid.valid, grid.y, 0.0).expand_as(exact.mean)
    torch.testing.assert_close(torch.where(grid.valid, exact.mean, 0.0), data, atol=1e-8, rtol=0)
    assert float(torch.where(grid.pair_valid, exact.cov, 0.0).abs().max()) < 1e-8
    # no task deviation: the latent is the mean process, q(mu) unchanged
    flat = task_predictive(post, 1e-14 * sigma, torch.tensor(0.5, dtype=torch.float64), grid)
    blocks = torch.where(grid.pair_valid, grid.gather_blocks(post.cov), flat.cov)
    torch.testing.assert_close(flat.cov, blocks, atol=1e-10, rtol=0)
    torch.testing.assert_close(flat.mean, grid.gather(post.mean), atol=1e-10, rtol=0)


def test_mixture_draws_have_the_mixture_moments():
    gen = torch.Generator().manual_seed(0)
    weights = torch.tensor([[0.25, 0.75], [0.9, 0.1]], dtype=torch.float64)
    means = torch.tensor([[[0.0, 1.0], [5.0, 5.0]], [[3.0, -1.0], [0.0, 2.0]]], dtype=torch.float64)
    A = torch.tensor([[1.0, 0.0], [0.8, 0.6]], dtype=torch.float64)
    covs = (A @ A.T).expand(2, 2, 2, 2)
    draws, comp = draw_mixture(weights, means, covs, 40_000, gen)
    assert draws.shape == (40_000, 2, 2) and comp.shape == (40_000, 2)
    expected = (weights.T[..., None] * means).sum(0)
    se = 5 * draws.std(0) / np.sqrt(40_000)
    assert bool(((draws.mean(0) - expected).abs() < se).all())
    assert abs(float((comp[:, 0] == 1).double().mean()) - 0.75) < 0.01
    ofc1 = draws[comp[:, 1] == 0, 1]  # within a component, the component's covariance
    torch.testing.assert_close(torch.cov(ofc1.T), A @ A.T, atol=0.03, rtol=0)


def test_sample_is_seeded_and_centred_on_the_prediction(fitted):
    model, _, new = fitted
    at = np.linspace(0, 10, 7)
    draws = model.sample(new, at=at, num_samples=4000, seed=2)
    assert draws.dims == ("draw", "time") and draws.cluster.dims == ("draw",)
    xr.testing.assert_identical(draws, model.sample(new, at=at, num_samples=4000, seed=2))
    pred = model.predict(new, at=at)
    se = 5 * np.sqrt(pred.variance.values / 4000)
    assert np.all(np.abs(draws.mean("draw").values - pred["mean"].values) < se)
    np.testing.assert_allclose(draws.var("draw").values, pred.variance.values, rtol=0.1)
    assert draws.attrs["units"] == "cm"


def test_outputs_carry_the_datas_labels(fitted):
    model, _, new = fitted
    pred = model.predict(new, at=[1.0, 2.0])
    assert pred["mean"].attrs["units"] == "cm" and "height" in pred["mean"].attrs["long_name"]
    assert pred["variance"].attrs["units"] == "(cm)^2"
    assert pred["time"].attrs["units"] == "year"
    assert model.mean_processes()["mean"].attrs["units"] == "cm"


@pytest.mark.arviz
def test_inference_data_groups_over_observed_points(fitted):
    model, y, _ = fitted
    idata = model.to_inference_data(num_samples=50, log_likelihood=True, seed=1)
    n_obs = int(np.isfinite(y).sum())
    assert idata.posterior_predictive["y"].shape == (1, 50, n_obs)
    assert idata.posterior["mean_process"].shape == (1, 50, 2, y.sizes["time"])
    obs = idata.observed_data["y"]
    t0 = obs.where(obs.task == y.task[0], drop=True)
    np.testing.assert_array_equal(t0.values, y.isel(task=0).dropna("time").values)
    np.testing.assert_array_equal(t0.time.values, y.isel(task=0).dropna("time").time.values)
    assert np.isfinite(idata.log_likelihood["y"]).all()
    loo = arviz_checks.loo(idata)  # few draws: ArviZ's Pareto-k warnings are silenced
    assert np.isfinite(loo.elpd)
    replicated = idata.posterior_predictive["y"].mean(("chain", "draw")).values
    assert np.corrcoef(replicated, obs.values)[0, 1] > 0.95


def test_loaded_model_predicts_like_the_fitted_one(fitted, tmp_path):
    model, _, new = fitted
    model.save(tmp_path / "m.wbm")
    again = wb.load(tmp_path / "m.wbm")
    at = np.linspace(0, 10, 9)
    xr.testing.assert_allclose(again.predict(new, at=at), model.predict(new, at=at), rtol=1e-12)
    xr.testing.assert_allclose(
        again.mean_processes().drop_attrs(), model.mean_processes().drop_attrs()
    )
    # the training data and memberships are saved too
    xr.testing.assert_identical(again.memberships(), model.memberships())
    with pytest.raises(RuntimeError, match="training data"):
        type(model).from_config(model.get_config()).memberships()


def test_bad_arguments_of_outputs(fitted):
    model, _, new = fitted
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(new, num_samples=0)
    with pytest.raises(ValueError, match="num_samples"):
        model.to_inference_data(num_samples=-1)
    with pytest.raises(ValueError, match="ci_prob"):
        model.predict(new, ci_prob=1.5)
    with pytest.raises(wb.errors.EmptyDataError):
        model.predict(new * np.nan)

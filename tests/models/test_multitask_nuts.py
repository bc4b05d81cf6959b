"""NUTS over MultitaskGP hyper-parameters: a quadrature oracle, the chain-rule log likelihood,
ArviZ groups, an untouched model, reproducibility, averaged posteriors and bad input."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pyro.distributions as dist
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import ValueRangeError
from workbench.models.hyper_outputs import replicate_draws
from workbench.models.multitask_nuts import (
    _draw_outputs,
    default_sampled,
    pointwise_log_likelihood,
    pointwise_terms,
    sample_hyperparameters,
)
from workbench.testing import arviz_checks

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

F64 = torch.float64
ELL = "kernel.latents.0.lengthscale"
QUIET = {"progress": False}


def _data(missing: bool = False, seed: int = 0) -> xr.DataArray:
    """Two correlated tasks at 15 shared times (ICM on a complete grid: the Kronecker path;
    with gaps: the stacked Cholesky path)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 6.0, 15)
    f = np.sin(1.2 * t)
    y = np.stack([f, -0.7 * f + 0.5]) + 0.25 * rng.standard_normal((2, 15))
    if missing:
        y[0, 4:8] = np.nan
        y[1, 12] = np.nan
    coords = {"task": ["a", "b"], "time": t}
    return xr.DataArray(y, dims=("task", "time"), coords=coords, name="v", attrs={"units": "V"})


@pytest.fixture(scope="module")
def fitted() -> wb.MultitaskGP:
    return wb.MultitaskGP(n_latents=1).fit(_data(), steps=10, progress=False)


def _group(idata, name: str) -> xr.Dataset:
    group = idata[name]
    return group.to_dataset() if isinstance(group, xr.DataTree) else group


def _ess(draws: np.ndarray) -> float:
    return float(az.ess(xr.Dataset({"x": (("chain", "draw"), draws)}), method="mean")["x"])


def _mcse(draws: np.ndarray) -> tuple[float, float]:
    """Monte Carlo standard errors of the mean and the sd of (chain, draw) draws, from ArviZ's
    ESS of the draws and of their squared deviations (delta method for the sd)."""
    squares = (draws - draws.mean()) ** 2
    var_of_var = ((squares**2).mean() - squares.mean() ** 2) / _ess(squares)
    return draws.std() / math.sqrt(_ess(draws)), math.sqrt(var_of_var / squares.mean() / 4)


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_nuts_matches_quadrature_posterior_of_one_free_lengthscale(fitted):
    da, model = _data(), fitted
    prior = dist.Gamma(torch.tensor(4.0, dtype=F64), torch.tensor(4.0, dtype=F64))
    idata = model.sample_hyperparameters(
        da, priors={ELL: prior}, fixed=["noise", "task_mean"], num_samples=300,
        warmup_steps=150, num_chains=2, seed=0, predictive=False, **QUIET,
    )  # fmt: skip
    assert arviz_checks.group_names(idata) == {"posterior", "sample_stats", "observed_data"}
    assert list(_group(idata, "posterior").data_vars) == [ELL]
    # exact 1-D posterior by quadrature on a log grid: prior x exp(lml), normalised
    work, grid = copy.deepcopy(model), np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
    lml = []
    for value in grid:
        work.set_hyperparameter(ELL, value)
        lml.append(work.log_marginal_likelihood(da))
    log_post = np.array(lml) + prior.log_prob(torch.from_numpy(grid)).numpy() + np.log(grid)
    w = np.exp(log_post - log_post.max())
    w /= np.trapezoid(w, np.log(grid))
    mean = np.trapezoid(w * grid, np.log(grid))
    sd = math.sqrt(np.trapezoid(w * (grid - mean) ** 2, np.log(grid)))

    draws = _group(idata, "posterior")[ELL].values
    mcse_mean, mcse_sd = _mcse(draws)
    # quadrature 1.028 / 0.209; seeds 0-5 measured within 2.1 mcse (mcse ~ 0.013 / 0.009)
    assert abs(draws.mean() - mean) < 4 * mcse_mean
    assert abs(draws.std() - sd) < 4 * mcse_sd
    assert float(az.rhat(idata)[ELL]) < 1.05

    # lp is the log joint on the unconstrained (log) scale: prior + lml + log-Jacobian
    stats = _group(idata, "sample_stats")
    for chain, draw in [(0, 0), (1, 299)]:
        value = float(draws[chain, draw])
        work.set_hyperparameter(ELL, value)
        log_prior = float(prior.log_prob(torch.tensor(value, dtype=F64)))
        expected = log_prior + work.log_marginal_likelihood(da) + math.log(value)
        assert float(stats["lp"][chain, draw]) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("missing", [False, True])  # Kronecker; stacked Cholesky
def test_pointwise_terms_sum_to_the_log_marginal_likelihood(fitted, missing):
    da = _data(missing=missing)
    ll = pointwise_log_likelihood(fitted, da)
    assert ll.dims == da.dims and bool(ll.isnull().equals(da.isnull()))
    np.testing.assert_array_equal(ll["task"], da["task"])
    assert float(ll.sum()) == pytest.approx(fitted.log_marginal_likelihood(da), abs=1e-8)
    # the first value is predicted from the prior alone: N(c_a, B_aa k(0) + noise_a)
    hp = fitted.hyperparameters()
    W, v = (
        np.array(hp["kernel.coregionalization.0.covar_factor"]),
        hp["kernel.coregionalization.0.var"],
    )
    var0 = (W @ W.T)[0, 0] + v[0] + hp["noise"][0]
    resid = float(da[0, 0]) - hp["task_mean"][0]
    first = -0.5 * (math.log(2 * math.pi * var0) + resid**2 / var0)
    assert float(ll[0, 0]) == pytest.approx(first, abs=1e-12)


@pytest.fixture(scope="module")
def sampled(fitted):
    """Lengthscale and the tasks' noises (a vector) sampled; task means fixed."""
    da, before = _data(), _state(fitted)
    idata = fitted.sample_hyperparameters(
        da, fixed=["task_mean"], num_samples=30, warmup_steps=30, num_chains=2, seed=0, **QUIET
    )
    return da, fitted, idata, before


def test_sampling_leaves_the_model_bit_identical(sampled):
    _, model, _, before = sampled
    after = _state(model)
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


@pytest.mark.arviz
def test_inference_data_groups_and_labels(sampled):
    da, _, idata, _ = sampled
    assert arviz_checks.group_names(idata) == {
        "posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data",
    }  # fmt: skip
    posterior = _group(idata, "posterior")
    assert list(posterior.data_vars) == ["noise", ELL]
    assert posterior["noise"].dims == ("chain", "draw", "task")
    np.testing.assert_array_equal(posterior["task"], ["a", "b"])
    assert posterior[ELL].dims == ("chain", "draw") and posterior.sizes["draw"] == 30
    assert "LogNormal" in posterior["noise"].attrs["prior"]
    assert posterior.attrs["model"] == "MultitaskGP" and posterior.attrs["inference"] == "kronecker"
    assert "task_mean" in posterior.attrs["fixed_hyperparameters"]
    stats = _group(idata, "sample_stats")
    assert {"lp", "diverging", "step_size", "n_steps", "acceptance_rate"} <= set(stats.data_vars)
    assert stats["diverging"].dtype == bool and (stats["n_steps"] >= 1).all()
    for name in ("log_likelihood", "posterior_predictive"):
        var = _group(idata, name)["v"]
        assert var.dims == ("chain", "draw", "task", "time") and np.isfinite(var.values).all()
        np.testing.assert_array_equal(var["time"], da["time"])
    observed = _group(idata, "observed_data")["v"]
    xr.testing.assert_identical(observed.drop_attrs(), da.drop_attrs())
    assert observed.attrs["units"] == "V"


def test_log_likelihood_group_sums_to_lml_at_each_draw(sampled):
    da, model, idata, _ = sampled
    posterior, ll = _group(idata, "posterior"), _group(idata, "log_likelihood")["v"]
    work = copy.deepcopy(model)
    for chain, draw in [(0, 3), (1, 29)]:
        for name in posterior.data_vars:
            work.set_hyperparameter(name, torch.as_tensor(posterior[name][chain, draw].values))
        lml = work.log_marginal_likelihood(da)
        assert float(ll[chain, draw].sum()) == pytest.approx(lml, abs=1e-8)


@pytest.mark.arviz
def test_summary_and_loo_run(sampled):
    _, _, idata, _ = sampled
    summary = arviz_checks.summary(idata)
    assert {"r_hat", "ess_bulk"} <= set(summary.columns) and len(summary) == 3
    assert np.isfinite(summary[["r_hat", "ess_bulk"]].to_numpy()).all()
    loo = arviz_checks.loo(idata, pointwise=True)
    assert np.isfinite(loo.elpd) and loo.pointwise.sizes == {"task": 2, "time": 15}


def test_averaged_posterior_mixes_the_draws(sampled):
    da, model, idata, _ = sampled
    at = np.linspace(0.0, 7.0, 8)
    mixed = model.averaged_posterior(da, idata, at=at, max_draws=4, ci_prob=0.9)
    posterior = _group(idata, "posterior").stack(sample=("chain", "draw"))
    means, variances, work = [], [], copy.deepcopy(model)
    for i in np.unique(np.linspace(0, 59, 4).round().astype(int)):
        for name in posterior.data_vars:
            work.set_hyperparameter(name, torch.as_tensor(posterior[name][..., i].values))
        ds = work.posterior(da, at=at)
        means.append(ds["mean"].values)
        variances.append(ds["variance"].values)
    means, variances = np.array(means), np.array(variances)
    np.testing.assert_allclose(mixed["mean"], means.mean(0), atol=1e-12)
    np.testing.assert_allclose(mixed["variance"], variances.mean(0) + means.var(0), atol=1e-12)
    assert mixed["mean"].dims == ("task", "time") and mixed.attrs["hyperparameter_draws"] == 4
    assert (mixed["lower"] < mixed["mean"]).all() and (mixed["mean"] < mixed["upper"]).all()


@pytest.mark.parametrize("observation_noise", [False, True])
def test_averaged_posterior_of_one_repeated_draw_is_the_posterior(fitted, observation_noise):
    da, at = _data(missing=True), np.linspace(-1.0, 7.0, 9)
    values = fitted.hyperparameters()
    draws = xr.Dataset(
        {
            "noise": (("chain", "draw", "task"), np.broadcast_to(values["noise"], (2, 3, 2))),
            ELL: (("chain", "draw"), np.full((2, 3), values[ELL])),
        }
    )
    plain = fitted.posterior(da, at=at, observation_noise=observation_noise)
    mixed = fitted.averaged_posterior(da, draws, at=at, observation_noise=observation_noise)
    for role in ("mean", "variance", "lower", "upper"):
        np.testing.assert_allclose(mixed[role], plain[role], rtol=1e-10, atol=1e-10)
    assert mixed["time"].equals(plain["time"]) and mixed["task"].equals(plain["task"])


@pytest.mark.arviz
def test_missing_values_use_one_obs_dim_and_seeds_reproduce(fitted):
    da = _data(missing=True)
    kwargs = dict(num_samples=30, warmup_steps=6, num_chains=1, **QUIET)  # ArviZ 1 PSIS: >= 25
    torch.manual_seed(123)
    first = fitted.sample_hyperparameters(da, seed=3, **kwargs)
    after = torch.rand(3)
    torch.manual_seed(123)
    second = fitted.sample_hyperparameters(da, seed=3, **kwargs)
    np.testing.assert_array_equal(torch.rand(3), after)  # the global RNG stream is untouched
    other = fitted.sample_hyperparameters(da, seed=4, **kwargs)
    for name in ("posterior", "posterior_predictive", "log_likelihood", "sample_stats"):
        xr.testing.assert_identical(
            _group(first, name).drop_attrs(), _group(second, name).drop_attrs()
        )
    posterior = _group(first, "posterior")
    assert list(posterior.data_vars) == ["noise", "task_mean", ELL]  # the defaults
    assert posterior.attrs["inference"] == "exact"
    assert not np.array_equal(posterior[ELL].values, _group(other, "posterior")[ELL].values)
    observed = _group(first, "observed_data")["v"]
    mask = da.notnull().values
    assert observed.dims == ("obs",) and observed.sizes["obs"] == mask.sum()
    np.testing.assert_array_equal(observed.values, da.values[mask])
    np.testing.assert_array_equal(observed["task"], np.repeat(["a", "b"], mask.sum(1)))
    np.testing.assert_array_equal(observed["time"], np.broadcast_to(da["time"], mask.shape)[mask])
    for name in ("log_likelihood", "posterior_predictive"):
        var = _group(first, name)["v"]
        assert var.dims == ("chain", "draw", "obs") and np.isfinite(var.values).all()
    assert np.isfinite(arviz_checks.loo(first).elpd)


def test_replicates_are_draws_from_the_marginal_likelihood(fitted):
    da = _data(missing=True)
    data = fitted._observe(da)
    draws = {ELL: torch.full((1, 1000), fitted.hyperparameters()[ELL], dtype=F64)}
    _, y_rep = replicate_draws(fitted, data, draws, seed=0, draw_outputs=_draw_outputs)
    mask = data[0].mask.numpy()
    rep = y_rep[0][:, mask]  # (1000, N)
    with torch.no_grad():
        _, mean, L = pointwise_terms(fitted, data[1], data[2])
    cov = (L @ L.T).numpy()
    sd = np.sqrt(np.diag(cov))
    # seeds 0-3: |z| <= 1.7 and covariance errors <= 0.085 of the largest variance
    assert np.abs((rep.mean(0) - mean.numpy()) / (sd / math.sqrt(1000))).max() < 4.5
    np.testing.assert_allclose(np.cov(rep.T), cov, atol=0.15 * sd.max() ** 2)
    assert np.isnan(y_rep[0][:, ~mask]).all()


def test_default_sampled_and_explicit_priors_on_task_mixing(fitted):
    assert default_sampled(fitted) == ["noise", "task_mean", ELL]
    factor = "kernel.coregionalization.0.covar_factor"
    idata = fitted.sample_hyperparameters(
        _data(), priors={factor: dist.Normal(torch.tensor(0.0, dtype=F64), 2.0)},
        fixed=["noise", "task_mean", ELL], num_samples=3, warmup_steps=3, num_chains=1,
        predictive=False, **QUIET,
    )  # fmt: skip
    posterior = _group(idata, "posterior")
    assert posterior[factor].dims == ("chain", "draw", "task", "rank")
    assert posterior[factor].attrs["prior"] == "Normal(loc=0, scale=2)"


def test_interaction_lengthscales_get_a_latent_dim():
    da = _data()
    model = wb.MultitaskGP(n_latents=2, interaction=True).fit(da, steps=2, progress=False)
    idata = model.sample_hyperparameters(
        da, fixed=["noise", "task_mean"], num_samples=2, warmup_steps=2, num_chains=1,
        predictive=False, **QUIET,
    )  # fmt: skip
    assert _group(idata, "posterior")["kernel.lengthscale"].dims == ("chain", "draw", "latent")


def _bad(**kwargs):
    return {"num_samples": 2, "warmup_steps": 1, "num_chains": 1, **QUIET, **kwargs}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (_bad(num_samples=0), ValueRangeError, "num_samples >= 1"),
        (_bad(num_chains=0), ValueRangeError, "num_chains"),
        (_bad(priors={"kernel.lenghtscale": dist.LogNormal(0.0, 1.0)}), ValueError, "lenght"),
        (_bad(fixed=["nosie"]), ValueError, "nosie"),
        (_bad(priors={"noise": dist.LogNormal(0.0, 1.0)}, fixed=["noise"]), ValueError, "both"),
        (_bad(priors={"noise": dist.LogNormal(torch.zeros(3), 1.0)}), ValueError, r"\(2,\)"),
        (_bad(priors={ELL: dist.Normal(1.0, 1.0)}), ValueRangeError, "support"),
        (_bad(priors={ELL: 0.5}), TypeError, "Distribution"),
        (_bad(fixed=["noise", "task_mean", ELL]), ValueError, "at least"),
    ],
)
def test_bad_input_raises(fitted, kwargs, error, match):
    with pytest.raises(error, match=match):
        fitted.sample_hyperparameters(_data(), **kwargs)


def test_bad_models_raise(fitted):
    with pytest.raises(RuntimeError, match="fitted"):
        wb.MultitaskGP().sample_hyperparameters(_data(), **_bad())
    with pytest.raises(TypeError, match="MultitaskGP"):
        sample_hyperparameters(wb.ExactGP(wb.kernels.MaternKernel(nu=1.5)), _data(), **_bad())
    small = copy.deepcopy(fitted)
    small.max_exact = 20  # 25 observed values: the model would use its sparse bound
    with pytest.raises(ValueRangeError, match=r"max_exact=20 .*got 25 observed"):
        small.sample_hyperparameters(_data(missing=True), **_bad())
    small.inference = "sparse"
    with pytest.raises(ValueRangeError, match="inference='sparse'"):
        small.sample_hyperparameters(_data(), **_bad())
    with pytest.raises(ValueError, match="hyper-parameters"):
        fitted.averaged_posterior(_data(), xr.Dataset({"f": (("chain", "draw"), np.zeros((1, 2)))}))


def test_a_singular_proposal_is_a_divergence_not_a_crash():
    # near-zero coregionalisation diagonals and a 4e-5 noise after a 2-step fit: some warm-up
    # proposals make K + noise numerically singular; they used to raise LinAlgError from NUTS
    rng = np.random.default_rng(2)
    t = np.linspace(0.0, 6.0, 8)
    y = np.array([0.0, 3.0, 0.0])[:, None] + np.sin(t)[None] + 0.1 * rng.standard_normal((3, 8))
    y[1, 6:] = np.nan
    da = xr.DataArray(y, dims=("task", "time"), coords={"task": ["a", "b", "c"], "time": t})
    torch.manual_seed(0)
    model = wb.MultitaskGP(n_latents=2, inference="exact", seed=4).fit(da, steps=2, **QUIET)
    idata = model.sample_hyperparameters(da, num_samples=5, warmup_steps=5, num_chains=1, **QUIET)
    assert np.isfinite(_group(idata, "sample_stats")["lp"].values).all()


def test_potential_of_a_singular_proposal_is_nan_with_zero_gradient():
    from workbench.models.hyper_sampler import _potential

    class Singular:
        def evaluate(self, values):
            raise torch.linalg.LinAlgError("not positive definite")

    potential, _ = _potential(Singular(), {"noise": dist.LogNormal(0.0, 1.0)})
    z = {"noise": torch.tensor(0.3, dtype=torch.float64, requires_grad=True)}
    energy = potential(z)
    (grad,) = torch.autograd.grad(energy, [z["noise"]])
    assert math.isnan(float(energy)) and float(grad) == 0.0

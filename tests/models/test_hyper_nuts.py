"""NUTS over MarkovGP hyper-parameters: a quadrature oracle, the chain-rule log likelihood,
ArviZ groups (summary, loo, plot_ppc), reproducibility, averaged posteriors and bad input."""

from __future__ import annotations

import copy
import math
import warnings

import matplotlib
import numpy as np
import pyro.distributions as dist
import pytest
import torch
import xarray as xr
from scipy.special import ndtr

import workbench as wb
from workbench.errors import ValueRangeError
from workbench.models.hyper_outputs import (
    averaged_posterior,
    mixture_quantiles,
    pointwise_log_likelihood,
    replicate_draws,
)
from workbench.models.hyper_priors import default_priors
from workbench.testing import arviz_checks

matplotlib.use("Agg")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

F64 = torch.float64
FIXED = ["mean", "kernel.outputscale"]


def _model(lengthscale: float = 1.0, noise: float = 0.09) -> wb.MarkovGP:
    return wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5, lengthscale=lengthscale), noise=noise)


def _series(T: int = 30, seed: int = 1) -> xr.DataArray:
    """A regular grid (one discretisation per evaluation keeps NUTS cheap)."""
    rng = np.random.default_rng(seed)
    x = np.arange(T) * 0.3
    y = np.sin(1.3 * x) + 0.3 * rng.standard_normal(T)
    attrs = {"units": "V", "long_name": "voltage"}
    return xr.DataArray(y, dims="time", coords={"time": x}, name="v", attrs=attrs)


def _panel(missing: bool = False) -> xr.DataArray:
    """Two series (unit, time) with labelled coordinates, optionally with NaN gaps."""
    rng = np.random.default_rng(2)
    x = np.arange(25) * 0.3
    y = np.sin(np.array([[1.0], [1.5]]) * x) + 0.3 * rng.standard_normal((2, 25))
    if missing:
        y[0, 5:9] = np.nan
        y[1, 17] = np.nan
    coords = {"unit": ["a", "b"], "time": x}
    return xr.DataArray(y, dims=("unit", "time"), coords=coords, name="v", attrs={"units": "V"})


def _groups(idata) -> set[str]:
    return arviz_checks.group_names(idata)


def _group(idata, name: str) -> xr.Dataset:
    group = idata[name]
    return group.to_dataset() if isinstance(group, xr.DataTree) else group


def _mcse(draws: np.ndarray) -> tuple[float, float]:
    """Monte Carlo standard errors of the mean and the sd of (chain, draw) draws (the
    formulas of ``az.mcse``, whose ``method="sd"`` fails under numba in ArviZ 0.23)."""
    sd = draws.std()
    ess = float(az.ess(draws, method="mean"))
    squares = (draws - draws.mean()) ** 2
    var_of_var = ((squares**2).mean() - squares.mean() ** 2) / float(az.ess(squares, method="mean"))
    return sd / math.sqrt(ess), math.sqrt(var_of_var / squares.mean() / 4)


@pytest.fixture(scope="module")
def sampled():
    """lengthscale and noise sampled for two complete series; mean, outputscale fixed."""
    da, model = _panel(), _model()
    before = model.hyperparameters()
    idata = model.sample_hyperparameters(
        da, fixed=FIXED, num_samples=40, warmup_steps=40, num_chains=2, seed=0, progress=False
    )
    return da, model, idata, before


def test_nuts_matches_quadrature_posterior_of_one_free_lengthscale():
    da, model = _series(), _model()
    prior = dist.Gamma(torch.tensor(3.0, dtype=F64), torch.tensor(2.0, dtype=F64))
    idata = model.sample_hyperparameters(
        da,
        priors={"kernel.lengthscale": prior},
        fixed=["noise", *FIXED],
        num_samples=300,
        warmup_steps=150,
        num_chains=2,
        seed=0,
        predictive=False,
        progress=False,
    )
    assert _groups(idata) == {"posterior", "sample_stats", "observed_data"}
    # exact 1-D posterior by quadrature on a dense log grid: prior x exp(lml), normalised
    work, grid = copy.deepcopy(model), np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
    lml = []
    for value in grid:
        work.set_hyperparameter("kernel.lengthscale", value)
        lml.append(work.log_marginal_likelihood(da))
    log_post = np.array(lml) + prior.log_prob(torch.from_numpy(grid)).numpy() + np.log(grid)
    w = np.exp(log_post - log_post.max())
    w /= np.trapezoid(w, np.log(grid))
    mean = np.trapezoid(w * grid, np.log(grid))
    sd = math.sqrt(np.trapezoid(w * (grid - mean) ** 2, np.log(grid)))

    draws = _group(idata, "posterior")["kernel.lengthscale"]
    mcse_mean, mcse_sd = _mcse(draws.values)
    # seeds 0-5 measured within 1.3 mcse (mcse ~ 0.025); 2 x 2000 draws: 0.03 / 1.0 mcse
    assert abs(float(draws.mean()) - mean) < 4 * mcse_mean
    assert abs(float(draws.std()) - sd) < 4 * mcse_sd
    assert float(az.rhat(idata)["kernel.lengthscale"]) < 1.05

    # lp is the log joint on the unconstrained (log) scale: prior + lml + log-Jacobian
    stats = _group(idata, "sample_stats")
    for chain, draw in [(0, 0), (1, 150), (0, 299)]:
        value = float(draws[chain, draw])
        work.set_hyperparameter("kernel.lengthscale", value)
        expected = (
            float(prior.log_prob(torch.tensor(value, dtype=F64)))
            + work.log_marginal_likelihood(da)
            + math.log(value)
        )
        assert float(stats["lp"][chain, draw]) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("parallel", [False, True])
def test_pointwise_log_likelihood_sums_to_the_log_marginal_likelihood(parallel):
    rng = np.random.default_rng(5)
    x = np.sort(rng.uniform(0, 8, 40))  # irregular grid, two series, missing values
    y = np.sin(x)[None] + 0.2 * rng.standard_normal((2, 40))
    y[0, 3:7] = np.nan
    da = xr.DataArray(y, dims=("unit", "time"), coords={"time": x, "unit": [10, 20]})
    kernel = wb.kernels.HidaMaternKernel(order=1, lengthscale=1.7, frequency=0.8, outputscale=0.6)
    model = wb.MarkovGP(kernel, noise=0.05, mean=0.3, parallel=parallel)
    ll = pointwise_log_likelihood(model, da)
    assert ll.dims == da.dims and ll.sizes == da.sizes
    np.testing.assert_array_equal(ll["unit"], da["unit"])
    assert bool(ll.isnull().equals(da.isnull()))
    total = model.log_marginal_likelihood(da).sum()
    assert float(ll.sum()) == pytest.approx(float(total), abs=1e-8)
    # the first observed point of a series is predicted from the prior alone
    hp = model.hyperparameters()  # values after the constraints' round trip
    var0 = hp["kernel.outputscale"] + hp["noise"]
    first = -0.5 * (math.log(2 * math.pi * var0) + (y[1, 0] - hp["mean"]) ** 2 / var0)
    assert float(ll.sel(unit=20).isel(time=0)) == pytest.approx(first, abs=1e-12)


def test_replicates_follow_the_posterior_predictive():
    da, model = _series(T=12), _model(lengthscale=1.5, noise=0.05)
    draws = {"noise": torch.full((1, 400), model.hyperparameters()["noise"], dtype=F64)}
    terms, y_rep = replicate_draws(model, model._observe(da, "time"), draws, seed=0)
    assert terms.shape == y_rep.shape == (1, 400, 12)
    exact = model.posterior(da, observation_noise=True)
    sd = np.sqrt(exact["variance"].values)
    z = (y_rep[0].mean(0) - exact["mean"].values) / (sd / 20)  # 400 draws: sd / sqrt(400)
    assert np.abs(z).max() < 4.5
    np.testing.assert_allclose(y_rep[0].var(0), exact["variance"].values, rtol=0.3)


def test_inference_data_groups_carry_the_data_dims_and_coords(sampled):
    da, model, idata, before = sampled
    assert model.hyperparameters() == before  # the model is left as it was
    assert _groups(idata) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "posterior_predictive",
        "observed_data",
    }
    for name in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive"):
        group = _group(idata, name)
        assert group.sizes["chain"] == 2 and group.sizes["draw"] == 40
    posterior = _group(idata, "posterior")
    assert sorted(posterior.data_vars) == ["kernel.lengthscale", "noise"]
    assert "LogNormal" in posterior["noise"].attrs["prior"]
    for name in ("log_likelihood", "posterior_predictive"):
        var = _group(idata, name)["v"]
        assert var.dims == ("chain", "draw", "unit", "time")
        np.testing.assert_array_equal(var["time"], da["time"])
        np.testing.assert_array_equal(var["unit"], da["unit"])
        assert np.isfinite(var.values).all()
    observed = _group(idata, "observed_data")["v"]
    xr.testing.assert_identical(observed.drop_attrs(), da.drop_attrs())
    assert observed.attrs["units"] == "V"
    stats = _group(idata, "sample_stats")
    assert {"lp", "diverging", "step_size", "n_steps", "acceptance_rate"} <= set(stats.data_vars)
    assert stats["diverging"].dtype == bool and (stats["n_steps"] >= 1).all()
    attrs = posterior.attrs
    assert attrs["inference_library"] == "pyro" and attrs["model"] == "MarkovGP"
    assert "kernel.outputscale" in attrs["fixed_hyperparameters"]


def test_log_likelihood_group_sums_to_lml_at_each_draw(sampled):
    da, model, idata, _ = sampled
    posterior, ll = _group(idata, "posterior"), _group(idata, "log_likelihood")["v"]
    work = copy.deepcopy(model)
    for chain, draw in [(0, 3), (1, 39)]:
        for name in posterior.data_vars:
            work.set_hyperparameter(name, float(posterior[name][chain, draw]))
        lml = float(work.log_marginal_likelihood(da).sum())
        assert float(ll[chain, draw].sum()) == pytest.approx(lml, abs=1e-8)


@pytest.mark.arviz
def test_summary_loo_and_plot_ppc_run(sampled):
    _, _, idata, _ = sampled
    summary = arviz_checks.summary(idata)
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(summary.columns)
    assert np.isfinite(summary[["r_hat", "ess_bulk"]].to_numpy(float)).all()
    loo = arviz_checks.loo(idata, pointwise=True)  # Pareto-k warnings on 80 draws silenced
    assert np.isfinite(loo.elpd) and loo.pointwise.sizes == {"unit": 2, "time": 25}
    import matplotlib.pyplot as plt

    arviz_checks.plot_ppc(idata, num_samples=10)
    plt.close("all")


@pytest.mark.arviz
def test_missing_values_use_one_obs_dim_and_draws_reproduce():
    da, model = _panel(missing=True), _model()
    kwargs = dict(
        fixed=FIXED, num_samples=30, warmup_steps=8, num_chains=1, progress=False
    )  # ArviZ 1 PSIS: >= 25 draws
    torch.manual_seed(123)
    first = model.sample_hyperparameters(da, seed=3, **kwargs)
    after = torch.rand(3)
    torch.manual_seed(123)
    second = model.sample_hyperparameters(da, seed=3, **kwargs)
    np.testing.assert_array_equal(torch.rand(3), after)  # the global RNG stream is untouched
    other = model.sample_hyperparameters(da, seed=4, **kwargs)
    for name in ("posterior", "posterior_predictive", "log_likelihood"):
        xr.testing.assert_identical(
            _group(first, name).drop_attrs(), _group(second, name).drop_attrs()
        )
    assert not np.array_equal(
        _group(first, "posterior")["noise"].values, _group(other, "posterior")["noise"].values
    )
    n_obs = int(da.notnull().sum())
    observed = _group(first, "observed_data")["v"]
    assert observed.dims == ("obs",) and observed.sizes["obs"] == n_obs
    assert np.isfinite(observed.values).all()
    expected_time = da.transpose("unit", "time").broadcast_like(da)["time"]
    mask = da.notnull().values
    np.testing.assert_array_equal(
        observed["time"], np.broadcast_to(expected_time.values, mask.shape)[mask]
    )
    assert list(observed["unit"].values[:3]) == ["a", "a", "a"]
    for name in ("log_likelihood", "posterior_predictive"):
        var = _group(first, name)["v"]
        assert var.dims == ("chain", "draw", "obs") and np.isfinite(var.values).all()
    assert np.isfinite(arviz_checks.loo(first).elpd)


def _identical_draws(model, n_chain=2, n_draw=3) -> xr.Dataset:
    values = model.hyperparameters()
    names = ["noise", "kernel.lengthscale", "kernel.outputscale", "mean"]
    return xr.Dataset(
        {n: (("chain", "draw"), np.full((n_chain, n_draw), values[n])) for n in names}
    )


@pytest.mark.parametrize("observation_noise", [False, True])
def test_averaged_posterior_of_identical_draws_is_the_posterior(observation_noise):
    da, model = _series(), _model(lengthscale=1.3, noise=0.07)
    at = np.linspace(-1.0, 10.0, 23)
    plain = model.posterior(da, at=at, observation_noise=observation_noise)
    mixed = model.averaged_posterior(
        da, _identical_draws(model), at=at, observation_noise=observation_noise
    )
    for role in ("mean", "variance"):
        np.testing.assert_allclose(mixed[role], plain[role], rtol=0, atol=1e-12)
    for role in ("lower", "upper"):
        np.testing.assert_allclose(mixed[role], plain[role], rtol=1e-12, atol=1e-12)
    assert mixed["time"].equals(plain["time"]) and mixed.attrs["hyperparameter_draws"] == 6


def test_averaged_posterior_mixes_means_and_variances(sampled):
    da, model, idata, _ = sampled
    at = np.linspace(0.0, 9.0, 13)
    mixed = averaged_posterior(model, da, idata, at=at, max_draws=5, ci_prob=0.9)
    posterior = _group(idata, "posterior").stack(sample=("chain", "draw"))
    pick = np.unique(np.linspace(0, 79, 5).round().astype(int))
    means, variances, work = [], [], copy.deepcopy(model)
    for i in pick:
        for name in posterior.data_vars:
            work.set_hyperparameter(name, float(posterior[name][i]))
        ds = work.posterior(da, at=at)
        means.append(ds["mean"].values)
        variances.append(ds["variance"].values)
    means, variances = np.array(means), np.array(variances)
    np.testing.assert_allclose(mixed["mean"], means.mean(0), atol=1e-12)
    total = variances.mean(0) + means.var(0)
    np.testing.assert_allclose(mixed["variance"], total, atol=1e-12)
    assert (mixed["variance"].values >= variances.mean(0) - 1e-15).all()
    assert mixed["variance"].dims == ("unit", "time")
    # lower/upper are the mixture's 5 % and 95 % quantiles
    sd = np.sqrt(variances)
    lower = mixed["lower"].values
    assert np.allclose(ndtr((lower[None] - means) / sd).mean(0), 0.05, atol=1e-10)
    assert (mixed["lower"] < mixed["mean"]).all() and (mixed["mean"] < mixed["upper"]).all()


def test_mixture_quantiles_solve_the_mixture_cdf():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(7, 4, 5, generator=g, dtype=F64) * 3
    variances = torch.rand(7, 4, 5, generator=g, dtype=F64) + 0.01
    variances[0, 0, 0] = 0.0  # a point mass component
    for prob in (0.025, 0.5, 0.975):
        q = mixture_quantiles(means, variances, prob)
        assert q.shape == (4, 5)
        sd = variances.sqrt().numpy()
        z = np.where(sd > 0, (q - means.numpy()) / np.where(sd > 0, sd, 1), np.inf)
        cdf = ndtr(z).mean(0)
        assert np.allclose(cdf.ravel()[1:], prob, atol=1e-12)


def test_default_priors_are_centred_on_the_current_values():
    model = wb.MarkovGP(
        wb.kernels.HidaMaternKernel(order=1, lengthscale=2.0, frequency=-3.0), mean=0.5
    )
    priors = default_priors(model, fixed=["noise"])
    assert "noise" not in priors
    assert isinstance(priors["kernel.lengthscale"], dist.LogNormal)
    assert float(priors["kernel.lengthscale"].loc) == pytest.approx(math.log(2.0))
    assert float(priors["kernel.frequency"].loc) == pytest.approx(math.log(3.0))  # |omega|
    assert isinstance(priors["mean"], dist.Normal) and float(priors["mean"].loc) == 0.5


def _bad(**kwargs):
    base = dict(num_samples=2, warmup_steps=1, num_chains=1, progress=False)
    return {**base, **kwargs}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (_bad(priors={"kernel.lenghtscale": dist.LogNormal(0.0, 1.0)}), ValueError, "lenght"),
        (_bad(fixed=["nosie"]), ValueError, "nosie"),
        (_bad(priors={"noise": dist.LogNormal(0.0, 1.0)}, fixed=["noise"]), ValueError, "both"),
        (_bad(priors={"noise": 0.1}), TypeError, "Distribution"),
        (_bad(priors={"kernel.lengthscale": dist.Normal(1.0, 1.0)}), ValueRangeError, "support"),
        (_bad(priors={"noise": dist.LogNormal(torch.zeros(2), 1.0)}), ValueError, "scalar"),
        (_bad(priors=[("noise", dist.LogNormal(0.0, 1.0))]), TypeError, "mapping"),
        (_bad(num_samples=0), ValueError, "num_samples"),
        (_bad(num_chains=0), ValueError, "num_chains"),
        (_bad(warmup_steps=-1), ValueError, "warmup_steps"),
        (_bad(target_accept_prob=1.5), ValueError, "target_accept_prob"),
        (
            _bad(fixed=["noise", "mean", "kernel.lengthscale", "kernel.outputscale"]),
            ValueError,
            "at least one",
        ),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    with pytest.raises(error, match=match):
        _model().sample_hyperparameters(_series(), **kwargs)


def test_bad_models_and_posteriors_raise():
    da = _series()
    poisson = wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), likelihood="poisson")
    counts = xr.DataArray(np.ones(30), dims="time", coords={"time": da["time"].values})
    with pytest.raises(ValueError, match="gaussian"):
        poisson.sample_hyperparameters(counts, **_bad())
    with pytest.raises(TypeError, match="MarkovGP"):
        pointwise_log_likelihood(wb.ExactGP(wb.kernels.MaternKernel(nu=1.5)), da)
    model = _model()
    unrelated = xr.Dataset({"f": (("chain", "draw", "time"), np.zeros((1, 2, 30)))})
    with pytest.raises(ValueError, match="hyper-parameters"):
        model.averaged_posterior(da, unrelated)
    with pytest.raises(ValueError, match="max_draws"):
        model.averaged_posterior(da, _identical_draws(model), max_draws=0)


def test_noise_at_its_floor_samples_without_crashing():
    # the default LogNormal prior puts mass below the 1e-8 noise floor; the likelihood stays at
    # the floor there (it used to give infinite energies and a crash inside Pyro)
    x = np.arange(40.0)
    da = xr.DataArray(np.sin(x / 5), dims="time", coords={"time": x})
    model = wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5, lengthscale=5.0), noise=1e-8)
    idata = model.sample_hyperparameters(
        da, num_samples=20, warmup_steps=20, num_chains=1, seed=0, progress=False
    )
    noise = idata.posterior["noise"].values
    assert np.isfinite(noise).all() and (noise > 0).all()
    assert np.isfinite(idata.log_likelihood["y"].values).all()
    assert np.isfinite(idata.posterior_predictive["y"].values).all()

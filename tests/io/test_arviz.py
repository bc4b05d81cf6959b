"""``samples_to_inference_data``: sample-based outputs in ArviZ's container."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from workbench.io import make_attrs, samples_to_inference_data
from workbench.io.arviz import arviz_major
from workbench.testing import arviz_checks

pytestmark = pytest.mark.arviz

N_CHAIN, N_DRAW, N_OBS = 2, 50, 8
SITES = [f"s{i}" for i in range(N_OBS)]


def _groups() -> dict[str, dict[str, np.ndarray]]:
    """A conjugate normal model: y_i ~ N(mu, 1), well-behaved for PSIS-LOO."""
    rng = np.random.default_rng(20240601)
    y = rng.normal(loc=1.0, size=N_OBS)
    mu = y.mean() + rng.normal(size=(N_CHAIN, N_DRAW)) / np.sqrt(N_OBS)
    f = mu[..., None] + 0.1 * rng.normal(size=(N_CHAIN, N_DRAW, N_OBS))  # vector over sites
    log_lik = -0.5 * (y - mu[..., None]) ** 2 - 0.5 * np.log(2 * np.pi)
    return {
        "posterior": {"mu": mu, "f": f},
        "observed_data": {"y": y},
        "log_likelihood": {"y": log_lik},
    }


@pytest.fixture
def idata():
    return samples_to_inference_data(
        _groups(),
        dims={"f": ["site"], "y": ["site"]},
        coords={"site": SITES},
        attrs=make_attrs("ExactGP"),
    )


def test_groups_and_dims(idata):
    assert arviz_checks.group_names(idata) == {"posterior", "observed_data", "log_likelihood"}
    post = idata.posterior
    assert post["mu"].dims == ("chain", "draw")
    assert post["f"].dims == ("chain", "draw", "site")
    assert dict(post.sizes) == {"chain": N_CHAIN, "draw": N_DRAW, "site": N_OBS}
    assert post["chain"].values.tolist() == [0, 1]
    assert post["draw"].values.tolist() == list(range(N_DRAW))
    assert post["site"].values.tolist() == SITES
    assert idata.observed_data["y"].dims == ("site",)  # no sample dims on data groups
    assert "chain" not in idata.observed_data.dims
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "site")
    assert idata.posterior.attrs["model"] == "ExactGP"
    assert idata.observed_data.attrs["creation_library"] == "workbench"
    groups = _groups()
    np.testing.assert_array_equal(post["f"].values, groups["posterior"]["f"])
    np.testing.assert_array_equal(idata.observed_data["y"].values, groups["observed_data"]["y"])


def test_arviz_summary(idata):
    summary = arviz_checks.summary(idata, var_names=["mu", "f"])
    assert list(summary.index) == ["mu", *[f"f[{s}]" for s in SITES]]
    assert np.isfinite(summary[["mean", "sd", "ess_bulk", "r_hat"]].to_numpy(float)).all()
    np.testing.assert_allclose(
        summary.loc["mu", "mean"], idata.posterior["mu"].mean().item(), atol=1e-3
    )


def test_arviz_loo(idata):
    loo = arviz_checks.loo(idata, pointwise=True)
    assert np.isfinite(loo.elpd)
    assert loo.pointwise.dims == ("site",)
    np.testing.assert_allclose(float(loo.pointwise.sum()), loo.elpd, rtol=1e-12)
    assert loo.raw.n_data_points == N_OBS
    assert loo.raw.n_samples == N_CHAIN * N_DRAW
    assert loo.pareto_k.dims == ("site",)
    assert (loo.pareto_k.values < 0.7).all()


def test_defaults_name_dims_and_accept_tensors_and_dataarrays():
    import torch

    theta = torch.zeros(N_CHAIN, N_DRAW, 3, dtype=torch.float64)
    sigma = xr.DataArray(np.ones((N_CHAIN, N_DRAW)), dims=("chain", "draw"))
    idata = samples_to_inference_data({"posterior": {"theta": theta, "sigma": sigma}})
    assert idata.posterior["theta"].dims == ("chain", "draw", "theta_dim_0")
    assert idata.posterior["sigma"].dims == ("chain", "draw")
    assert idata.posterior["chain"].values.tolist() == [0, 1]
    # a DataArray without sample dims gets a single chain and draw added
    single = samples_to_inference_data({"posterior": {"tau": xr.DataArray(2.0)}})
    assert single.posterior["tau"].dims == ("chain", "draw")
    assert single.posterior["tau"].values.tolist() == [[2.0]]


def test_mismatched_sample_sizes_raise_instead_of_nan_padding():
    theta = np.zeros((N_CHAIN, N_DRAW))
    sigma = xr.DataArray(np.ones(N_DRAW), dims="draw")  # one chain only once chain is added
    with pytest.raises(ValueError, match=r"same \(chain, draw\) sizes .* group 'posterior'"):
        samples_to_inference_data({"posterior": {"theta": theta, "sigma": sigma}})
    with pytest.raises(ValueError, match=r"group 'log_likelihood'"):
        samples_to_inference_data(
            {"log_likelihood": {"a": np.zeros((2, 10, 3)), "b": np.zeros((2, 9, 3))}}
        )


def test_empty_groups_are_left_out():
    idata = samples_to_inference_data({"posterior": {"mu": np.zeros((1, 4))}, "sample_stats": {}})
    assert arviz_checks.group_names(idata) == {"posterior"}


def test_unknown_group_raises():
    with pytest.raises(ValueError, match=r"expected groups among .*got \['posteriors'\]"):
        samples_to_inference_data({"posteriors": {"mu": np.zeros((2, 10))}})


def test_wrong_dims_count_raises():
    groups = {"posterior": {"f": np.zeros((N_CHAIN, N_DRAW, 4))}}
    with pytest.raises(ValueError, match=r"expected 1 dim names for variable 'f'.*\['site', 'x'\]"):
        samples_to_inference_data(groups, dims={"f": ["site", "x"]})
    with pytest.raises(ValueError, match=r"expected 1 dim names for variable 'y'"):
        samples_to_inference_data({"observed_data": {"y": np.zeros(4)}}, dims={"y": []})


def test_missing_sample_axes_raise():
    with pytest.raises(ValueError, match=r"variable 'mu' to have leading \(chain, draw\) axes"):
        samples_to_inference_data({"posterior": {"mu": np.zeros(5)}})


def test_group_coords_and_variable_attrs_are_set_before_the_container_is_made():
    # a name that is a dim in one group may be a coordinate along obs in another
    groups = {
        "posterior": {"w": np.zeros((1, 3, 2))},
        "observed_data": {"y": np.arange(3.0)},
    }
    idata = samples_to_inference_data(
        groups,
        dims={"w": ["task"], "y": ["obs"]},
        coords={"task": ["a", "b"], "obs": [0, 1, 2]},
        group_coords={"observed_data": {"task": ("obs", ["a", "a", "b"])}},
        var_attrs={"observed_data": {"y": {"units": "mV"}}},
    )
    assert idata["posterior"]["task"].values.tolist() == ["a", "b"]
    assert idata["observed_data"]["task"].dims == ("obs",)
    assert idata["observed_data"]["task"].values.tolist() == ["a", "a", "b"]
    assert idata["observed_data"]["y"].attrs == {"units": "mV"}
    with pytest.raises(ValueError, match=r"got \['observed'\]"):
        samples_to_inference_data(groups, group_coords={"observed": {}})


def test_container_follows_the_installed_arviz():
    idata = samples_to_inference_data({"posterior": {"mu": np.zeros((1, 4))}})
    if arviz_major() >= 1:
        assert isinstance(idata, xr.DataTree)
    else:
        assert type(idata).__name__ == "InferenceData"

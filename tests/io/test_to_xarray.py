"""``predictive_to_dataset`` and ``make_attrs``: labelled, CF-annotated, netCDF-safe outputs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.data import from_dataarray
from workbench.errors import FitDivergedError
from workbench.io import cf_attrs, make_attrs, predictive_to_dataset

Z95 = 1.959963984540054  # Phi^{-1}(0.975)
TIMES = np.array(["2000-01-01", "2000-01-02", "2000-01-04", "2000-01-05"], dtype="datetime64[ns]")
UNITS = ["a", "b", "c"]


def labelled(dims: tuple[str, ...]) -> xr.DataArray:
    """A (time, unit) array in the given dim order with dim coords and auxiliary coords."""
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        rng.normal(size=(len(TIMES), len(UNITS))),
        dims=("time", "unit"),
        coords={
            "time": ("time", TIMES, {"long_name": "time of measurement"}),
            "unit": UNITS,
            "station": ("unit", ["north", "south", "east"]),  # auxiliary coord along unit
            "doy": ("time", [1, 2, 4, 5]),  # auxiliary coord along time
            "height": 2.0,  # scalar coord
        },
        name="temp",
        attrs={"long_name": "Air temperature", "units": "K", "source": "test"},
    )
    return da.transpose(*dims)


def moments(obs, n_time: int | None = None, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of shape (*batch, T_out) as the models produce them."""
    shape = (*obs.batch_shape, obs.x.shape[0] if n_time is None else n_time)
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g, dtype=torch.float64)
    variance = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1
    return mean, variance


@pytest.mark.parametrize("dims", [("time", "unit"), ("unit", "time")])
def test_output_keeps_dim_order_and_values(dims):
    obs = from_dataarray(labelled(dims))
    assert obs.batch_dims == ("unit",)
    mean, variance = moments(obs)
    ds = predictive_to_dataset(obs, mean, variance)
    assert set(ds.data_vars) == {"mean", "variance", "lower", "upper"}
    for name in ds.data_vars:
        assert ds[name].dims == dims
        assert ds[name].dtype == np.float64
    assert dict(ds.sizes) == {"time": 4, "unit": 3}
    np.testing.assert_array_equal(ds["mean"].transpose("unit", "time").values, mean.numpy())
    np.testing.assert_array_equal(ds["variance"].transpose("unit", "time").values, variance.numpy())
    # spot check one label: unit "b", third time
    assert ds["mean"].sel(unit="b", time=TIMES[2]).item() == mean[1, 2].item()


def test_output_with_two_batch_dims_in_the_middle():
    rng = np.random.default_rng(3)
    da = xr.DataArray(rng.normal(size=(2, 5, 3)), dims=("unit", "time", "site"))
    obs = from_dataarray(da)
    assert obs.batch_dims == ("unit", "site")
    mean, variance = moments(obs)
    ds = predictive_to_dataset(obs, mean, variance)
    assert ds["mean"].dims == ("unit", "time", "site")
    np.testing.assert_array_equal(ds["mean"].transpose("unit", "site", "time").values, mean.numpy())


@pytest.mark.parametrize("dims", [("time", "unit"), ("unit", "time")])
def test_output_keeps_coords(dims):
    da = labelled(dims)
    obs = from_dataarray(da)
    ds = predictive_to_dataset(obs, *moments(obs))
    assert set(ds.coords) == {"time", "unit", "station", "doy", "height"}
    for name in ("time", "unit", "station", "doy", "height"):
        xr.testing.assert_identical(ds[name], da[name])
    assert ds["time"].attrs == {"long_name": "time of measurement"}
    assert ds["station"].dims == ("unit",)
    assert ds["doy"].dims == ("time",)


def test_cf_attrs_in_each_variable():
    obs = from_dataarray(labelled(("time", "unit")))
    ds = predictive_to_dataset(obs, *moments(obs))
    assert ds["mean"].attrs == {"long_name": "posterior mean of Air temperature", "units": "K"}
    assert ds["variance"].attrs == {
        "long_name": "posterior variance of Air temperature",
        "units": "(K)^2",
    }
    assert ds["lower"].attrs == {
        "long_name": "posterior lower of Air temperature",
        "units": "K",
        "ci_prob": 0.95,
    }
    assert ds["upper"].attrs["long_name"] == "posterior upper of Air temperature"
    assert ds["upper"].attrs["units"] == "K"
    # the input's other attrs are not copied into the derived variables
    assert "source" not in ds["mean"].attrs


def test_cf_attrs_fallbacks():
    assert cf_attrs({}, "mean") == {"long_name": "posterior mean of value"}
    assert cf_attrs({"standard_name": "air_temperature"}, "sd") == {
        "long_name": "posterior sd of air_temperature"
    }
    assert cf_attrs({"units": "m s-1"}, "variance")["units"] == "(m s-1)^2"
    obs = from_dataarray(xr.DataArray([1.0, 2.0], dims="time"))
    ds = predictive_to_dataset(obs, *moments(obs))
    assert ds["mean"].attrs == {"long_name": "posterior mean of value"}
    assert ds.attrs["workbench_axis"] == "numeric"


def test_provenance_attrs_passed_through():
    obs = from_dataarray(labelled(("time", "unit")))
    attrs = make_attrs("ExactGP", {"kernel.lengthscale": 2.5}, kernel="Matern")
    ds = predictive_to_dataset(obs, *moments(obs), attrs=attrs)
    for key, value in attrs.items():
        assert ds.attrs[key] == value
    assert ds.attrs["ci_prob"] == 0.95
    assert ds.attrs["workbench_axis"] == "datetime"
    assert ds.attrs["workbench_unit"] == "D"
    assert ds.attrs["workbench_origin"] == "2000-01-01T00:00:00.000000000"
    assert "workbench_axis" not in attrs  # the caller's dict is not mutated
    assert "ci_prob" not in attrs


@pytest.mark.parametrize("dims", [("time", "unit"), ("unit", "time")])
def test_interval_is_mean_plus_minus_z_sd(dims):
    obs = from_dataarray(labelled(dims))
    mean, variance = moments(obs)
    ds = predictive_to_dataset(obs, mean, variance, ci_prob=0.95)
    sd = np.sqrt(ds["variance"].values)
    np.testing.assert_allclose(ds["lower"].values, ds["mean"].values - Z95 * sd, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds["upper"].values, ds["mean"].values + Z95 * sd, rtol=0, atol=1e-12)
    assert (ds["lower"] < ds["mean"]).all()
    assert (ds["upper"] > ds["mean"]).all()


def test_other_ci_prob_and_zero_variance():
    obs = from_dataarray(xr.DataArray([0.0, 1.0, 2.0], dims="time"))
    mean = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    variance = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    ds = predictive_to_dataset(obs, mean, variance, ci_prob=0.5)
    z50 = 0.6744897501960817  # Phi^{-1}(0.75)
    np.testing.assert_allclose(ds["upper"].values, [0.0, 1.0 + z50, 2.0 + 2 * z50], atol=1e-12)
    np.testing.assert_allclose(ds["lower"].values, [0.0, 1.0 - z50, 2.0 - 2 * z50], atol=1e-12)
    assert ds.attrs["ci_prob"] == 0.5
    assert ds["lower"].attrs["ci_prob"] == 0.5


@pytest.mark.parametrize("dims", [("time", "unit"), ("unit", "time")])
def test_new_coords_drop_time_aligned_coords(dims):
    da = labelled(dims)
    obs = from_dataarray(da)
    new = np.array(["1999-12-31", "2000-01-03", "2000-01-08"], dtype="datetime64[ns]")
    mean, variance = moments(obs, n_time=3)
    ds = predictive_to_dataset(obs, mean, variance, coords=new)
    assert ds["mean"].dims == dims
    assert dict(ds.sizes) == {"time": 3, "unit": 3}
    np.testing.assert_array_equal(ds["time"].values, new)
    assert ds["time"].attrs == {"long_name": "time of measurement"}
    assert "doy" not in ds.coords  # lived along time: no values at the new positions
    xr.testing.assert_identical(ds["station"], da["station"])
    xr.testing.assert_identical(ds["unit"], da["unit"])
    assert ds["height"].item() == 2.0
    np.testing.assert_array_equal(ds["mean"].transpose("unit", "time").values, mean.numpy())


def test_new_coords_for_dim_without_coordinate():
    obs = from_dataarray(xr.DataArray([1.0, 2.0, 3.0], dims="x", name="y"), dim="x")
    ds = predictive_to_dataset(obs, *moments(obs, n_time=2), coords=np.array([0.5, 7.0]))
    assert ds["x"].values.tolist() == [0.5, 7.0]
    assert ds["mean"].dims == ("x",)
    assert ds["mean"].name == "mean"


@pytest.mark.parametrize(
    ("bad_mean", "bad_variance"),
    [
        (None, float("nan")),
        (None, -1e-3),
        (None, float("inf")),
        (float("nan"), None),
        (float("-inf"), None),
    ],
)
def test_non_finite_or_negative_moments_raise_fit_diverged(bad_mean, bad_variance):
    obs = from_dataarray(labelled(("time", "unit")))
    mean, variance = moments(obs)
    if bad_mean is not None:
        mean[1, 2] = bad_mean
    if bad_variance is not None:
        variance[0, 3] = bad_variance
    with pytest.raises(FitDivergedError, match=r"expected finite predictive moments.*refit"):
        predictive_to_dataset(obs, mean, variance)


@pytest.mark.parametrize("ci_prob", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_ci_prob_outside_unit_interval_raises(ci_prob):
    obs = from_dataarray(xr.DataArray([1.0, 2.0], dims="time"))
    with pytest.raises(ValueError, match=r"expected 0 < ci_prob < 1"):
        predictive_to_dataset(obs, *moments(obs), ci_prob=ci_prob)


@pytest.mark.parametrize("new_coords", [False, True])
def test_netcdf_round_trip_keeps_attrs(tmp_path, new_coords):
    obs = from_dataarray(labelled(("time", "unit")))
    attrs = make_attrs(
        "ExactGP", {"noise": 0.1, "lengthscale": [1.0, 2.0]}, observation_noise=True, seed=None
    )
    if new_coords:
        coords = np.array(["2000-01-01T06:00", "2000-01-09"], dtype="datetime64[ns]")
        ds = predictive_to_dataset(obs, *moments(obs, n_time=2), coords=coords, attrs=attrs)
    else:
        ds = predictive_to_dataset(obs, *moments(obs), attrs=attrs)
    path = tmp_path / "predictive.nc"
    ds.to_netcdf(path, engine="netcdf4")
    with xr.open_dataset(path, engine="netcdf4") as back:
        back = back.load()
    xr.testing.assert_identical(back, ds)  # values, coords and all attrs
    assert back["time"].dtype == np.dtype("datetime64[ns]")
    assert back.attrs["hyperparameters"] == attrs["hyperparameters"]
    assert back.attrs["observation_noise"] == 1
    for name in ds.variables:
        assert back[name].attrs == ds[name].attrs


# -- make_attrs ----------------------------------------------------------------------------------


def test_make_attrs_values_are_netcdf_serialisable(tmp_path):
    attrs = make_attrs(
        "ExactGP",
        {"noise": 0.1, "kernel.lengthscale": [1.0, 2.0], "mean.constant": 0},
        observation_noise=True,
        fitted=False,
        note=None,
        n_iter=200,
        lr=0.05,
        kernel="RBF",
    )
    assert attrs["model"] == "ExactGP"
    assert attrs["observation_noise"] == 1
    assert attrs["fitted"] == 0
    assert type(attrs["observation_noise"]) is int
    assert "note" not in attrs
    assert attrs["n_iter"] == 200
    assert attrs["lr"] == 0.05
    assert attrs["kernel"] == "RBF"
    assert json.loads(attrs["hyperparameters"]) == {
        "noise": 0.1,
        "kernel.lengthscale": [1.0, 2.0],
        "mean.constant": 0,
    }
    assert attrs["hyperparameters"] == (
        '{"kernel.lengthscale": [1.0, 2.0], "mean.constant": 0, "noise": 0.1}'
    )  # sorted keys: stable across runs
    for key, value in attrs.items():
        assert value is not None, key
        assert not isinstance(value, bool | dict | list), key
        assert isinstance(value, str | int | float), key
    # and netCDF accepts every one of them
    path = tmp_path / "attrs.nc"
    xr.Dataset(attrs=attrs).to_netcdf(path, engine="netcdf4")
    with xr.open_dataset(path, engine="netcdf4") as back:
        assert back.attrs == attrs


def test_make_attrs_provenance_keys():
    from workbench import __version__

    attrs = make_attrs()
    assert attrs["creation_library"] == "workbench"
    assert attrs["creation_library_version"] == __version__
    assert attrs["workbench_version"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", attrs["created_at"])
    assert "model" not in attrs
    assert "hyperparameters" not in attrs
    assert json.loads(make_attrs(hyperparameters={})["hyperparameters"]) == {}


def test_make_attrs_converts_numpy_scalars_and_mappings():
    from workbench.io import make_attrs

    attrs = make_attrs("M", flag=np.bool_(True), n=np.int64(3), opts={"a": 1})
    assert attrs["flag"] == 1 and type(attrs["flag"]) is int
    assert attrs["n"] == 3 and type(attrs["n"]) is int
    assert attrs["opts"] == '{"a": 1}'

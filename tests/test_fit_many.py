"""fit_many: serial run vs a plain loop (oracle), a 2-worker LocalCluster vs the serial run,
failures reported by coordinate, seeds, torch threads and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import workbench as wb
from workbench.errors import DimensionError, DTypeError, EmptyDataError, WorkbenchError
from workbench.scale import FitManyError, fit_many

FIT = {"steps": 3}
UNITS = [f"u{i}" for i in range(6)]


def model_factory(random_noise: bool = False, poison: str | None = None):
    """A make_model closure (closures pickle by value, so workers need not import this file).

    With ``poison`` it takes the unit's coordinate and raises for that unit.
    """

    def make():
        # a random initial noise exercises the per-item seeds
        noise = 0.05 + 0.1 * torch.rand(()).item() if random_noise else 0.1
        return wb.MarkovGP(wb.kernels.MaternKernel(nu=1.5), noise=noise)

    def make_for(unit):
        if unit == poison:
            raise ValueError(f"no model for {unit}")
        return make()

    return make if poison is None else make_for


@pytest.fixture(scope="module")
def da() -> xr.DataArray:
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 10.0, 200)
    y = np.sin(x + np.arange(6)[:, None]) + 0.3 * rng.standard_normal((6, 200))
    y[:, ::7] = np.nan  # some gaps
    out = xr.DataArray(
        y,
        dims=("unit", "time"),
        coords={"unit": UNITS, "time": x, "region": ("unit", list("aabbcc"))},
        name="rate",
        attrs={"units": "Hz", "long_name": "firing rate"},
    )
    out["unit"].attrs["long_name"] = "unit id"
    return out


@pytest.fixture(scope="module")
def poisoned(da: xr.DataArray) -> xr.DataArray:
    out = da.copy()
    out.loc[{"unit": "u2"}] = np.nan  # an all-NaN series: its fit raises EmptyDataError
    return out


@pytest.fixture(scope="module")
def serial(da: xr.DataArray) -> xr.Dataset:
    return fit_many(model_factory(), da, "unit", fit_kwargs=FIT, progress=False)


def assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Bitwise-identical values, coords and attrs, apart from the creation time."""
    a, b = a.copy(), b.copy()
    a.attrs.pop("created_at")
    b.attrs.pop("created_at")
    xr.testing.assert_identical(a, b)


# -- serial ----------------------------------------------------------------------------------
def test_serial_result_is_labelled_and_finite(da: xr.DataArray, serial: xr.Dataset) -> None:
    assert set(serial.data_vars) == {
        "mean",
        "variance",
        "lower",
        "upper",
        "log_marginal_likelihood",
        "hyperparameters",
        "error",
    }
    assert serial["mean"].dims == ("unit", "time")
    assert serial["hyperparameters"].dims == ("unit", "hyperparameter")
    assert serial["log_marginal_likelihood"].dims == ("unit",)
    xr.testing.assert_identical(serial["unit"], da["unit"])  # values and attrs
    xr.testing.assert_identical(serial["region"], da["region"])
    np.testing.assert_array_equal(serial["time"], da["time"])
    assert serial["hyperparameter"].values.tolist() == [
        "noise",
        "mean",
        "kernel.lengthscale",
        "kernel.outputscale",
    ]
    assert serial["error"].values.tolist() == [""] * 6
    for name in (
        "mean",
        "variance",
        "lower",
        "upper",
        "log_marginal_likelihood",
        "hyperparameters",
    ):
        assert np.isfinite(serial[name]).all()
    assert serial["mean"].attrs["units"] == "Hz"
    assert serial.attrs["model"] == "MarkovGP"
    assert serial.attrs["fit_many_over"] == "unit"
    assert serial.attrs["n_failed"] == 0
    assert "hyperparameters" not in serial.attrs  # per item: in the variable instead


def test_serial_equals_a_plain_loop(da: xr.DataArray, serial: xr.Dataset) -> None:
    for unit in UNITS:
        item = da.sel(unit=unit)
        model = model_factory()().fit(item, dim="time", progress=False, **FIT)
        post = model.posterior(item, dim="time")
        got = serial.sel(unit=unit)
        for name in ("mean", "variance", "lower", "upper"):
            np.testing.assert_array_equal(got[name].values, post[name].values)
        assert got["log_marginal_likelihood"].item() == model.log_marginal_likelihood(item)
        for name, value in model.hyperparameters().items():
            assert got["hyperparameters"].sel(hyperparameter=name).item() == value


def test_extra_batch_dims_and_at(da: xr.DataArray) -> None:
    values = da.values.reshape(2, 3, -1)  # (trial, unit, time)
    trials = da.isel(unit=slice(0, 3)).expand_dims(trial=2).copy(data=values)
    at = np.linspace(0.0, 12.0, 7)
    ds = fit_many(
        model_factory(),
        trials,
        "unit",
        fit_kwargs=FIT,
        posterior_kwargs={"at": at},
        progress=False,
    )
    assert ds["mean"].dims == ("trial", "unit", "time")
    np.testing.assert_array_equal(ds["time"], at)
    assert ds["log_marginal_likelihood"].dims == ("trial", "unit")
    assert "region" in ds.coords
    assert np.isfinite(ds["mean"]).all()


def test_poisoned_series_is_reported_by_coordinate(
    poisoned: xr.DataArray, serial: xr.Dataset
) -> None:
    ds = fit_many(model_factory(), poisoned, "unit", fit_kwargs=FIT, progress=False)
    assert ds["error"].sel(unit="u2").item().startswith("EmptyDataError: expected at least one")
    assert ds.attrs["n_failed"] == 1
    bad = ds.sel(unit="u2")
    for name in ("mean", "variance", "log_marginal_likelihood", "hyperparameters"):
        assert np.isnan(bad[name]).all()
    others = [u for u in UNITS if u != "u2"]
    # the other items are untouched: the same numbers as the clean run
    xr.testing.assert_equal(ds.sel(unit=others), serial.sel(unit=others))


def test_make_model_gets_the_coordinate(da: xr.DataArray) -> None:
    # object-dtype labels and dask-backed values take the same path
    lazy = da.assign_coords(unit=da["unit"].astype(object)).chunk({"unit": 4})
    ds = fit_many(model_factory(poison="u4"), lazy, "unit", fit_kwargs=FIT, progress=False)
    assert ds["error"].values.tolist() == ["", "", "", "", "ValueError: no model for u4", ""]
    assert np.isnan(ds["mean"].sel(unit="u4")).all()
    assert np.isfinite(ds["mean"].sel(unit="u3")).all()


def test_all_failed_raises_and_raise_mode_propagates(da: xr.DataArray) -> None:
    with pytest.raises(FitManyError, match="unit='u0': EmptyDataError"):
        fit_many(model_factory(), da * np.nan, "unit", progress=False)
    with pytest.raises(EmptyDataError, match="all NaN"):
        poisoned = da.where(da["unit"] != "u1")
        fit_many(model_factory(), poisoned, "unit", fit_kwargs=FIT, on_error="raise")
    assert issubclass(FitManyError, WorkbenchError)


def test_seeds_are_per_item_and_leave_the_callers_rng(da: xr.DataArray) -> None:
    small = da.isel(unit=slice(0, 3))

    def run(seed: int) -> xr.Dataset:
        make = model_factory(random_noise=True)
        return fit_many(make, small, "unit", fit_kwargs={"steps": 0}, seed=seed, progress=False)

    state = torch.get_rng_state()
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert_same(a, b)
    noise = a["hyperparameters"].sel(hyperparameter="noise").values
    assert len(set(noise)) == 3  # a different draw per item
    assert not np.array_equal(noise, c["hyperparameters"].sel(hyperparameter="noise").values)


def test_torch_threads_are_one_during_items_and_restored(da: xr.DataArray) -> None:
    seen = []

    def make():
        seen.append(torch.get_num_threads())
        return model_factory()()

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit_many(make, da.isel(unit=slice(0, 2)), "unit", fit_kwargs={"steps": 0})
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"da": np.zeros((2, 3))}, DTypeError, "expected an xarray.DataArray, got ndarray"),
        ({"over": "neuron"}, DimensionError, "expected over='neuron' among the dims"),
        ({"dim": "t"}, DimensionError, "expected dim='t' among the dims"),
        ({"over": "time"}, DimensionError, "expected `over` and `dim` to differ"),
        ({"make_model": "MarkovGP"}, TypeError, "expected make_model to be a callable"),
        ({"make_model": lambda a, b: None}, TypeError, r"no argument or one.*\(a, b\)"),
        ({"fit_kwargs": {"dim": "time"}}, ValueError, r"fit_kwargs without \['dim'\]"),
        ({"fit_kwargs": [("steps", 2)]}, TypeError, "fit_kwargs to be a mapping, got list"),
        ({"posterior_kwargs": {"dim": "x"}}, ValueError, "posterior_kwargs without"),
        ({"on_error": "ignore"}, ValueError, "on_error in"),
        ({"client": "tcp://127.0.0.1:8786"}, TypeError, "dask.distributed.Client or None"),
    ],
)
def test_bad_input_raises(da: xr.DataArray, kwargs: dict, error: type, match: str) -> None:
    args = {"make_model": model_factory(), "da": da, "over": "unit"} | kwargs
    with pytest.raises(error, match=match):
        fit_many(args.pop("make_model"), args.pop("da"), args.pop("over"), **args)


def test_empty_over_raises(da: xr.DataArray) -> None:
    with pytest.raises(EmptyDataError, match="along dim 'unit'"):
        fit_many(model_factory(), da.isel(unit=slice(0, 0)), "unit")


# -- a 2-worker local cluster (loopback) -----------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        scheduler_kwargs={"dashboard_address": ":0"},  # no clash with anyone's port 8787
    )
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def test_cluster_equals_serial(da: xr.DataArray, client) -> None:
    make = model_factory(random_noise=True)
    local = fit_many(make, da, "unit", fit_kwargs=FIT, seed=3, progress=False)
    chunked = da.chunk({"unit": 2})  # loaded item by item on the workers
    remote = fit_many(make, chunked, "unit", fit_kwargs=FIT, seed=3, client=client, progress=False)
    assert_same(local, remote)
    assert remote.attrs["n_failed"] == 0


def test_cluster_reports_failures_by_coordinate(poisoned: xr.DataArray, client) -> None:
    make = model_factory(poison="u4")
    local = fit_many(make, poisoned, "unit", fit_kwargs=FIT, progress=False)
    remote = fit_many(make, poisoned, "unit", fit_kwargs=FIT, client=client, progress=False)
    assert_same(local, remote)
    errors = remote["error"].values.tolist()
    assert errors[2].startswith("EmptyDataError:")
    assert errors[4] == "ValueError: no model for u4"
    assert [e for i, e in enumerate(errors) if i not in (2, 4)] == [""] * 4
    with pytest.raises(EmptyDataError, match="all NaN"):  # the first failure along `unit`
        fit_many(make, poisoned, "unit", fit_kwargs=FIT, client=client, on_error="raise")

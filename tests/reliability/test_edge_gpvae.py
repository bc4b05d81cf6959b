"""Property-based tests at the xarray edge of GPVAE and MultimodalGPVAE.

Each example is an ``xr.Dataset`` of modalities with dims (trial, time, *features) in a random
order per modality, with random benign variations (float, integer, datetime or absent time
coordinates on an even grid, zero to two feature dims, tiny and huge magnitudes, NaN patterns:
isolated values, missing frames, a whole trial of one modality, a modality seen once; float32,
integer and bool values) and at most one defect. The property: with no defect the model trains
and ``posterior`` carries the input's trial, time and feature coordinates with every value finite;
with a defect it raises the ``workbench.errors`` type listed in ``DEFECTS``, whose message names
the offending modality or dim. Any other exception fails the test.

The GP-VAEs compute in float32 by design, so float32 input is their native precision and does not
warn (unlike the float64 models).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr
from edge_checks import (
    DTYPE_DEFECTS,
    Defects,
    assert_same_coords,
    break_time,
    check_defect,
    time_kind,
    with_bad_dtype,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import (
    CoordinateError,
    DimensionError,
    DTypeError,
    EmptyDataError,
    ShapeMismatchError,
    ValueRangeError,
)

#: defect -> (error it must raise, what its message must name: "label" for the modality, or a dim)
DEFECTS: Defects = {
    "inf": (ValueRangeError, "label"),
    "beyond_float32": (ValueRangeError, "label"),
    "out_of_support": (ValueRangeError, "label"),
    "all_nan": (EmptyDataError, "label"),
    "unsorted": (CoordinateError, "'time'"),
    "duplicate": (CoordinateError, "'time'"),
    "uneven": (CoordinateError, "'time'"),
    "nan_coord": (CoordinateError, "'time'"),
    **DTYPE_DEFECTS,
    "no_trial_dim": (DimensionError, "'trial'"),
    "no_time_dim": (DimensionError, "'time'"),
    "empty_trial": (EmptyDataError, "'trial'"),
    "empty_time": (EmptyDataError, "'time'"),
    "empty_feature": (EmptyDataError, "'empty'"),
}
#: defects across modalities (MultimodalGPVAE only)
PAIR_DEFECTS: Defects = {
    "missing_modality": (DimensionError, "'frames'"),
    "other_trials": (ShapeMismatchError, "'trial'"),
    "other_times": (ShapeMismatchError, "'time'"),
    "shared_feature_dim": (ShapeMismatchError, "'shared'"),
}
#: feature dims of each modality (distinct names: a shared name needs equal coordinates)
FEATURE_DIMS = {"frames": ("feature", "row"), "spikes": ("unit", "column")}
KINDS = ("gaussian", "poisson", "bernoulli")
NAMES = ("spikes", "frames")


@dataclass
class Case:
    """Generated modalities and what the edge must do with them."""

    data: dict[str, xr.DataArray]
    kinds: dict[str, str]
    defect: str | None = None
    target: str | None = None  # the modality carrying the defect

    @property
    def label(self) -> str:
        """How error messages name the defective modality."""
        return repr(self.target)

    @property
    def dataset(self) -> xr.Dataset | dict:
        """A Dataset, or the plain mapping where a Dataset would align the modalities (other
        trials or times) or cannot hold them (one feature dim name with two sizes)."""
        if self.defect in PAIR_DEFECTS:
            return dict(self.data)
        try:
            return xr.Dataset(self.data)
        except ValueError:
            return dict(self.data)


def _time_coord(draw, kind: str, T: int) -> np.ndarray | None:
    if kind == "datetime":
        step = draw(st.sampled_from(["ms", "s", "D"]))
        return np.datetime64("2022-02-02", "ns") + np.arange(T).astype(f"timedelta64[{step}]")
    if kind == "float":
        width = draw(st.sampled_from([1e-3, 0.25, 1.0, 30.0]))
        offset = draw(st.sampled_from([0.0, -4.0, 1.6e9]))
        return offset + width * np.arange(T)
    if kind == "int":
        return np.arange(T) * draw(st.integers(1, 5))
    return None


def _values(draw, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "bernoulli":
        return (rng.uniform(size=shape) < draw(st.sampled_from([0.0, 0.3, 1.0]))).astype(float)
    if kind == "poisson":
        rate = draw(st.sampled_from([0.0, 0.5, 4.0, 1e6, 1e12]))
        return (
            np.round(rate * rng.uniform(0.5, 1.5, size=shape))
            if rate > 1e5
            else (rng.poisson(rate, size=shape).astype(float))
        )
    scale = draw(st.sampled_from([1.0, 1e-12, 1e12]))
    offset = draw(st.sampled_from([0.0, 0.0, -3.0])) * scale
    if draw(st.integers(0, 5)) == 0:
        return np.full(shape, offset + scale)  # constant
    return offset + scale * rng.normal(size=shape)


def _nan_pattern(draw, values: np.ndarray) -> np.ndarray:
    out = values.copy()
    R, T = out.shape[:2]
    pattern = draw(st.sampled_from(["none", "isolated", "frames", "trial", "seen_once"]))
    if pattern == "isolated":
        out.flat[draw(st.integers(0, out.size - 1))] = np.nan
    elif pattern == "frames":
        out[draw(st.integers(0, R - 1)), draw(st.integers(0, T - 1))] = np.nan
    elif pattern == "trial" and R > 1:
        out[draw(st.integers(0, R - 1))] = np.nan
    elif pattern == "seen_once":
        keep = out.flat[draw(st.integers(0, out.size - 1))]
        out[:] = np.nan
        out.flat[0] = keep
    if np.isnan(out).all():  # tiny arrays: keep one value (all NaN is a defect, tested apart)
        out.flat[0] = values.flat[0]
    return out


def _modality(draw, m: str, kind: str, R: int, time, T: int) -> xr.DataArray:
    n_features = draw(st.integers(0, 2))
    sizes = [draw(st.integers(1, 3)) for _ in range(n_features)]
    dims = ("trial", "time", *FEATURE_DIMS[m][:n_features])
    values = _nan_pattern(draw, _values(draw, kind, (R, T, *sizes)))
    coords: dict = {"trial": [f"r{i}" for i in range(R)]}
    if time is not None:
        coords["time"] = time
    if n_features and draw(st.booleans()):
        coords[dims[2]] = np.arange(sizes[0]) * 2 + 1
    da = xr.DataArray(values, dims=dims, coords=coords)
    dtype = draw(st.sampled_from(["float64", "float32", "int", "bool"]))
    if dtype == "float32":
        da = da.astype(np.float32)
    elif dtype == "int" and kind != "gaussian" and np.isfinite(values).all():
        da = da.astype(np.int64)
    elif dtype == "bool" and kind == "bernoulli" and np.isfinite(values).all():
        da = da.astype(bool)
    return da.transpose(*draw(st.permutations(da.dims)))


@st.composite
def modality_sets(draw, names: tuple[str, ...], defects: list[str | None]) -> Case:
    """One Dataset of modalities ``names`` (kinds drawn) with at most one defect."""
    kinds = {m: draw(st.sampled_from(KINDS)) for m in names}
    R, T = draw(st.integers(1, 4)), draw(st.integers(1, 7))
    defect = draw(st.sampled_from(defects))
    breaks_time = defect in ("unsorted", "duplicate", "uneven", "nan_coord", "other_times")
    if breaks_time:
        T = max(T, 3)
    if defect == "other_trials":
        R = max(R, 2)
    time = _time_coord(draw, time_kind(draw, breaks_time), T)
    data = {m: _modality(draw, m, kinds[m], R, time, T) for m in names}
    case = Case(data, kinds, defect, draw(st.sampled_from(names)))
    if defect is not None:
        _apply_defect(draw, case)
    return case


def _apply_defect(draw, case: Case) -> None:  # one branch per defect
    m, defect = case.target, case.defect
    da = case.data[m]
    if defect in ("inf", "beyond_float32", "out_of_support"):
        values = da.values.astype(np.float64)
        bad = {"inf": np.inf, "beyond_float32": 1e39}.get(defect, 0.5)
        if defect == "out_of_support" and case.kinds[m] == "gaussian":
            case.kinds[m] = draw(st.sampled_from(["poisson", "bernoulli"]))
        values.flat[draw(st.integers(0, values.size - 1))] = bad
        da = da.copy(data=values)
    elif defect == "all_nan":
        da = da.copy(data=np.full(da.shape, np.nan))
    elif defect in ("unsorted", "duplicate", "uneven", "nan_coord"):
        time = break_time(draw, da["time"].values, defect)
        case.data = {k: v.assign_coords(time=time) for k, v in case.data.items()}
        return
    elif defect in ("complex", "string", "object", "timedelta"):
        da = with_bad_dtype(da, defect)
    elif defect in ("no_trial_dim", "no_time_dim"):
        dim = defect.split("_")[1]
        da = da.isel({dim: 0}, drop=True)
    elif defect in ("empty_trial", "empty_time"):
        dim = defect.removeprefix("empty_")
        case.data = {k: v.isel({dim: slice(0, 0)}) for k, v in case.data.items()}
        return
    elif defect == "empty_feature":
        da = da.expand_dims(empty=1).isel(empty=[])
    else:
        _apply_pair_defect(case)
        return
    case.data[m] = da


def _apply_pair_defect(case: Case) -> None:
    if case.defect == "missing_modality":
        del case.data["frames"]
    elif case.defect == "other_trials":
        spikes = case.data["spikes"]
        case.data["spikes"] = spikes.assign_coords(trial=spikes["trial"].values[::-1])
    elif case.defect == "other_times":
        spikes = case.data["spikes"]
        case.data["spikes"] = spikes.isel(time=slice(1, None))
    elif case.defect == "shared_feature_dim":  # one name, two sizes
        for i, m in enumerate(NAMES):
            case.data[m] = case.data[m].expand_dims(shared=i + 1, axis=-1)


def _check_posterior(ds: xr.Dataset, case: Case, model) -> None:
    for name in ("latent_mean", "latent_variance"):
        assert ds[name].dims == ("trial", "time", "latent"), ds[name].dims
    for m, da in case.data.items():
        out = ds[f"{m}_mean"]
        assert set(out.dims) == set(da.dims), (out.dims, da.dims)
        assert_same_coords(out, da, da.dims)
        if case.kinds[m] == "bernoulli":
            assert ((out >= 0) & (out <= 1)).all()
    for name, var in ds.data_vars.items():
        assert np.isfinite(var.values).all(), f"{name} has non-finite values"
    assert (ds["latent_variance"] > 0).all()
    assert len(model.elbo_trace) == 1 and np.isfinite(model.elbo_trace).all()


def _gpvae(case: Case):
    (m,) = case.kinds
    return wb.GPVAE(m, case.kinds[m], n_latents=1, seed=1)


def _fit(model, case: Case):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 is native here: no warning expected
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return model.fit(case.dataset, epochs=1, batch_size=2, progress=False)


# -- GPVAE ---------------------------------------------------------------------------------------
@settings(max_examples=200)
@given(case=modality_sets(("frames",), [None]))
@example(  # regression: ms bins on epoch seconds (1.6e9) were rejected as uneven (rounding)
    case=Case(
        {
            "frames": xr.DataArray(
                np.zeros((1, 3)),
                dims=("trial", "time"),
                coords={"time": 1.6e9 + 1e-3 * np.arange(3)},
            )
        },
        {"frames": "poisson"},
    )
)
@example(  # huge constant values: networks see them divided by their scale
    case=Case(
        {"frames": xr.DataArray(np.full((2, 4, 2), -3e12), dims=("trial", "time", "feature"))},
        {"frames": "gaussian"},
    )
)
@example(  # regression: a modality seen once -> NaN variance -> NaN noise start, pyro ValueError
    case=Case(
        {"frames": xr.DataArray([[[np.nan], [2.0]]], dims=("trial", "time", "feature"))},
        {"frames": "gaussian"},
    )
)
def test_gpvae_valid_data(case):
    model = _fit(_gpvae(case), case)
    _check_posterior(model.posterior(case.dataset), case, model)


@settings(max_examples=150)
@given(case=modality_sets(("frames",), list(DEFECTS)))
@example(  # regression: complex values were cast to real (imaginary part dropped)
    case=Case(
        {"frames": xr.DataArray(np.ones((2, 3, 1)) + 1j, dims=("trial", "time", "feature"))},
        {"frames": "gaussian"},
        "complex",
        "frames",
    )
)
@example(  # regression: an empty time dim raised numpy's "cannot reshape array of size 0"
    case=Case(
        {"frames": xr.DataArray(np.ones((2, 0, 1)), dims=("trial", "time", "feature"))},
        {"frames": "gaussian"},
        "empty_time",
        "frames",
    )
)
@example(  # regression: 1e39 turned infinite in float32 -> pyro ValueError on the Normal's loc
    case=Case(
        {"frames": xr.DataArray(np.full((2, 3, 1), 1e39), dims=("trial", "time", "feature"))},
        {"frames": "gaussian"},
        "beyond_float32",
        "frames",
    )
)
def test_gpvae_bad_data(case):
    check_defect(case, lambda: _fit(_gpvae(case), case), DEFECTS)


# -- MultimodalGPVAE -----------------------------------------------------------------------------


def _multimodal(case: Case):
    return wb.MultimodalGPVAE(dict(case.kinds), n_shared=1, n_specific=1, seed=2)


@settings(max_examples=150)
@given(case=modality_sets(NAMES, [None]))
@example(  # regression: huge constant values fed raw to the encoder -> shared latent ~1e10 ->
    # exp overflow in the Poisson readout (non-finite posterior); the noise also started at 1e-6
    case=Case(
        {
            "spikes": xr.DataArray([[1e12]], dims=("trial", "time")),
            "frames": xr.DataArray([[0.0]], dims=("trial", "time")),
        },
        {"spikes": "gaussian", "frames": "poisson"},
    )
)
def test_multimodal_valid_data(case):
    model = _fit(_multimodal(case), case)
    _check_posterior(model.posterior(case.dataset), case, model)
    for m in NAMES:  # one modality alone predicts the other through the shared latent
        alone = model.posterior({m: case.data[m]})
        other = alone[f"{NAMES[1 - NAMES.index(m)]}_mean"]
        assert np.isfinite(other.values).all()


@settings(max_examples=150)
@given(case=modality_sets(NAMES, [*DEFECTS, *PAIR_DEFECTS]))
@example(  # regression: one feature dim name with two sizes -> xarray ValueError in posterior
    case=Case(
        {
            m: xr.DataArray(np.ones((2, 3, i + 1)), dims=("trial", "time", "shared"))
            for i, m in enumerate(NAMES)
        },
        {"spikes": "poisson", "frames": "gaussian"},
        "shared_feature_dim",
        "frames",
    )
)
@example(  # regression: a NaN time coordinate was reported as a mismatch with itself
    case=Case(
        {
            m: xr.DataArray(
                np.ones((2, 3, 1)),
                dims=("trial", "time", "feature"),
                coords={"time": [0.0, np.nan, 2.0]},
            )
            for m in NAMES
        },
        {"spikes": "poisson", "frames": "gaussian"},
        "nan_coord",
        "spikes",
    )
)
def test_multimodal_bad_data(case):
    check_defect(case, lambda: _fit(_multimodal(case), case), DEFECTS | PAIR_DEFECTS)


@pytest.fixture(scope="module")
def fitted_multimodal():
    rng = np.random.default_rng(4)
    data = xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), rng.poisson(2.0, (3, 6, 4)).astype(float)),
            "frames": (("trial", "time", "pixel"), rng.normal(size=(3, 6, 5))),
        },
        coords={"time": np.arange(6) * 0.1},
    )
    model = wb.MultimodalGPVAE({"spikes": "poisson", "frames": "gaussian"}, seed=0)
    return data, model.fit(data, epochs=1, progress=False)


@settings(max_examples=30)
@given(data=st.data())
def test_multimodal_posterior_on_new_data(fitted_multimodal, data):
    """New data: other trials and lengths work; other feature sizes raise ShapeMismatchError."""
    train, model = fitted_multimodal
    change = data.draw(st.sampled_from([None, "trials", "length", "features", "one_modality"]))
    new = train
    if change == "trials":
        new = train.isel(trial=data.draw(st.lists(st.integers(0, 2), min_size=1, max_size=4)))
    elif change == "length":
        new = train.isel(time=slice(0, data.draw(st.integers(1, 6))))
    elif change == "features":
        new = train.isel(unit=slice(0, data.draw(st.integers(1, 3))))
        with pytest.raises(ShapeMismatchError, match="'spikes'"):
            model.posterior(new)
        return
    elif change == "one_modality":
        new = train[[data.draw(st.sampled_from(NAMES))]]
    ds = model.posterior(new)
    assert ds.sizes["trial"] == new.sizes["trial"] and ds.sizes["time"] == new.sizes["time"]
    for name, var in ds.data_vars.items():
        assert np.isfinite(var.values).all(), name


def test_not_a_dataset_is_a_dtype_error():
    with pytest.raises(DTypeError, match="expected an xr"):
        wb.GPVAE("frames").fit(xr.DataArray(np.ones((2, 3, 1))), epochs=1)

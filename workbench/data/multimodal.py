"""The input edge of the GP-VAEs: trials of several modalities on one regular time grid.

Each modality is a ``DataArray`` with dims (trial, time, *features); any further dims are
flattened into features (their coordinates are kept for the outputs). NaN marks a missing value:
a bin whose features are all NaN is a missing frame, isolated NaN are left out of the
likelihood. Every modality present must share the trial and time coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
import xarray as xr

from workbench.errors import (
    CoordinateError,
    DimensionError,
    DTypeError,
    EmptyDataError,
    ShapeMismatchError,
    ValueRangeError,
)

__all__ = ["ModalityArrays", "TrialData", "describe", "trial_data", "value_scale"]


class ModalityArrays(NamedTuple):
    values: torch.Tensor  # shape: (trial, time, features), missing set to 0
    observed: torch.Tensor  # shape: (trial, time, features) float 0/1
    feature_dims: tuple[str, ...]
    feature_coords: dict[str, np.ndarray]


class TrialData(NamedTuple):
    modalities: dict[str, ModalityArrays]  # only the modalities present
    trials: np.ndarray  # shape: (trial,)
    time: xr.DataArray  # the time coordinate (with its attrs)
    bin_width: float


def _modality(da: xr.DataArray, name: str, kind: str, dims: tuple[str, str], dtype, device):
    for dim in dims:
        if dim not in da.dims:
            raise DimensionError(f"expected dim {dim!r} in modality {name!r}, got {da.dims}")
    if da.dtype.kind not in "biuf":  # bool, integers, floats: not complex or timedelta64
        raise DTypeError(f"expected numeric values in modality {name!r}, got dtype {da.dtype}")
    features = tuple(d for d in da.dims if d not in dims)
    empty = [str(d) for d in da.dims if da.sizes[d] == 0]
    if empty:
        raise EmptyDataError(
            f"expected at least one entry along dim {empty[0]!r} of {name!r}, got 0"
        )
    values = np.asarray(da.transpose(*dims, *features).values, dtype=np.float64)
    values = values.reshape(*values.shape[:2], -1)
    observed = ~np.isnan(values)
    if np.isinf(values).any():
        raise ValueRangeError(f"expected finite or NaN values in modality {name!r}, got inf")
    if not observed.any():
        raise EmptyDataError(f"expected observed values in modality {name!r}, got all NaN")
    seen = values[observed]
    limit = torch.finfo(dtype).max  # larger values would turn infinite in the tensors
    if np.abs(seen).max() > limit:
        raise ValueRangeError(
            f"expected |values| <= {limit:.3g} ({dtype}) in modality {name!r}, got "
            f"{np.abs(seen).max():.3g}"
        )
    bad = (seen < 0) | (seen != np.round(seen)) if kind == "poisson" else None
    if kind == "bernoulli":
        bad = ~np.isin(seen, (0.0, 1.0))
    if bad is not None and bad.any():
        wanted = "non-negative integer counts" if kind == "poisson" else "0/1 values"
        raise ValueRangeError(
            f"expected {wanted} in modality {name!r}, got {int(bad.sum())} value(s) outside, "
            f"e.g. {seen[bad][0]:g}"
        )
    coords = {
        d: np.asarray(da[d].values) if d in da.coords else np.arange(da.sizes[d]) for d in features
    }
    return ModalityArrays(
        torch.as_tensor(np.where(observed, values, 0.0), dtype=dtype, device=device),
        torch.as_tensor(observed, dtype=dtype, device=device),
        features,
        coords,
    )


def trial_data(
    data: xr.Dataset | Mapping[str, xr.DataArray],
    kinds: Mapping[str, str],
    *,
    trial_dim: str = "trial",
    time_dim: str = "time",
    dtype: torch.dtype = torch.float32,
    required: bool = True,
    device: torch.device | str | None = None,
) -> TrialData:
    """Validated tensors of the modalities in ``kinds`` found in ``data`` (at least one;
    every one when ``required``), on ``device`` (default: the CPU), the model's."""
    if not isinstance(data, xr.Dataset | Mapping):
        raise DTypeError(f"expected an xr.Dataset or a mapping of DataArrays, got {type(data)}")
    present = [name for name in kinds if name in data]
    missing = [name for name in kinds if name not in data]
    if not present or (required and missing):
        raise DimensionError(f"expected modalities {list(kinds)}, got {list(data)}")
    first = data[present[0]]
    out = {}
    for name in present:
        da = data[name]
        for dim in (trial_dim, time_dim):
            if (
                name != present[0]
                and dim in da.dims
                and dim in first.dims
                and (
                    da.sizes[dim] != first.sizes[dim]
                    or (dim in da.coords and not _same(da[dim].values, first[dim].values))
                )
            ):
                raise ShapeMismatchError(
                    f"expected modality {name!r} to share {dim!r} with "
                    f"{present[0]!r}, got different coordinates"
                )
        out[name] = _modality(da, name, kinds[name], (trial_dim, time_dim), dtype, device)
    _check_shared_features(out)
    time = (
        first[time_dim]
        if time_dim in first.coords
        else xr.DataArray(np.arange(first.sizes[time_dim], dtype=float), dims=time_dim)
    )
    t = np.asarray(time.values)
    if np.issubdtype(t.dtype, np.datetime64):  # steps in seconds
        t = (t - t[0]) / np.timedelta64(1, "s")
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
        bad = int((~np.isfinite(t)).sum())
        raise CoordinateError(f"expected finite {time_dim!r} coordinates, got {bad} NaN/NaT")
    steps = np.diff(t)
    # uneven beyond rounding: offsets such as epoch seconds (1.6e9) leave ulps of 2.4e-7 in steps
    slack = 1e-6 * steps.mean() + 4 * np.spacing(np.abs(t).max()) if len(t) > 2 else 0.0
    if (len(t) > 1 and (steps <= 0).any()) or (len(t) > 2 and np.ptp(steps) > slack):
        raise CoordinateError(
            f"expected an increasing, evenly spaced {time_dim!r} grid, got steps from "
            f"{steps.min():g} to {steps.max():g}"
        )
    trials = (
        first[trial_dim].values if trial_dim in first.coords else np.arange(first.sizes[trial_dim])
    )
    return TrialData(out, np.asarray(trials), time, float(steps[0]) if len(t) > 1 else 1.0)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal coordinates, NaN and NaT equal to themselves (the time checks report those)."""
    a, b = (x.astype("datetime64[ns]").view("i8") if x.dtype.kind == "M" else x for x in (a, b))
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f" and b.dtype.kind == "f")


def _check_shared_features(modalities: Mapping[str, ModalityArrays]) -> None:
    """Modalities may share a feature dim (by name) only with equal coordinates: the outputs
    label both with one coordinate."""
    owner: dict[str, str] = {}
    for name, arrays in modalities.items():
        for dim, coord in arrays.feature_coords.items():
            other = owner.setdefault(dim, name)
            theirs = modalities[other].feature_coords[dim]
            if not np.array_equal(coord, theirs):
                raise ShapeMismatchError(
                    f"expected modality {name!r} to share feature dim {dim!r} with {other!r} "
                    f"({len(theirs)} entries), got {len(coord)} different ones; rename one"
                )


def describe(arrays: ModalityArrays) -> dict[str, Any]:
    """Feature dims and sizes of a modality, and the scale the networks of a Gaussian modality
    see its values on (:func:`value_scale`): what rebuilds its networks."""
    return {
        "dims": list(arrays.feature_dims),
        "sizes": [len(arrays.feature_coords[d]) for d in arrays.feature_dims],
        "scale": value_scale(arrays),
    }


def value_scale(arrays: ModalityArrays) -> float:
    """1, or the root mean square of the observed values where it lies outside [1e-3, 1e3]:
    networks see values divided by it, so extreme magnitudes (1e-12, 1e12) stay trainable."""
    seen = arrays.values[arrays.observed > 0].double()
    rms = float(seen.square().mean().sqrt()) if seen.numel() else 1.0
    return rms if rms > 0 and not 1e-3 <= rms <= 1e3 else 1.0

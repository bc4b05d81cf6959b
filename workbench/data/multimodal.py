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

__all__ = ["ModalityArrays", "TrialData", "describe", "trial_data"]


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


def _modality(da: xr.DataArray, name: str, kind: str, dims: tuple[str, str], dtype):
    for dim in dims:
        if dim not in da.dims:
            raise DimensionError(f"expected dim {dim!r} in modality {name!r}, got {da.dims}")
    if not (np.issubdtype(da.dtype, np.number) or da.dtype == bool):
        raise DTypeError(f"expected numeric values in modality {name!r}, got dtype {da.dtype}")
    features = tuple(d for d in da.dims if d not in dims)
    values = np.asarray(da.transpose(*dims, *features).values, dtype=np.float64)
    values = values.reshape(*values.shape[:2], -1)
    observed = ~np.isnan(values)
    if np.isinf(values).any():
        raise ValueRangeError(f"expected finite or NaN values in modality {name!r}, got inf")
    if not observed.any():
        raise EmptyDataError(f"expected observed values in modality {name!r}, got all NaN")
    seen = values[observed]
    if kind == "poisson" and ((seen < 0).any() or (seen != np.round(seen)).any()):
        raise ValueRangeError(
            f"expected non-negative integer counts in {name!r}, got min {seen.min():g}"
        )
    if kind == "bernoulli" and not np.isin(seen, (0.0, 1.0)).all():
        raise ValueRangeError(f"expected 0/1 values in modality {name!r}")
    coords = {
        d: np.asarray(da[d].values) if d in da.coords else np.arange(da.sizes[d]) for d in features
    }
    return ModalityArrays(
        torch.as_tensor(np.where(observed, values, 0.0), dtype=dtype),
        torch.as_tensor(observed, dtype=dtype),
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
) -> TrialData:
    """Validated tensors of the modalities in ``kinds`` found in ``data`` (at least one;
    every one when ``required``)."""
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
                dim in da.dims
                and dim in first.dims
                and (
                    da.sizes[dim] != first.sizes[dim]
                    or (dim in da.coords and not np.array_equal(da[dim].values, first[dim].values))
                )
            ):
                raise ShapeMismatchError(
                    f"expected modality {name!r} to share {dim!r} with "
                    f"{present[0]!r}, got different coordinates"
                )
        out[name] = _modality(da, name, kinds[name], (trial_dim, time_dim), dtype)
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
        raise CoordinateError(f"expected finite {time_dim!r} coordinates")
    steps = np.diff(t)
    if (len(t) > 1 and (steps <= 0).any()) or (len(t) > 2 and np.ptp(steps) > 1e-6 * steps.mean()):
        raise CoordinateError(f"expected an increasing, evenly spaced {time_dim!r} grid")
    trials = (
        first[trial_dim].values if trial_dim in first.coords else np.arange(first.sizes[trial_dim])
    )
    return TrialData(out, np.asarray(trials), time, float(steps[0]) if len(t) > 1 else 1.0)


def describe(arrays: ModalityArrays) -> dict[str, Any]:
    """Feature dims and sizes of a modality (to rebuild its networks)."""
    return {
        "dims": list(arrays.feature_dims),
        "sizes": [len(arrays.feature_coords[d]) for d in arrays.feature_dims],
    }

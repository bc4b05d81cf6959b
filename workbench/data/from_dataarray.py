"""The input edge: validate a ``DataArray`` and turn it into :class:`Observations`."""

from __future__ import annotations

import warnings
from collections.abc import Hashable

import numpy as np
import torch
import xarray as xr

from workbench.data.observations import Observations
from workbench.data.time_axis import TIME_UNITS, TimeAxis
from workbench.errors import (
    CoordinateError,
    DimensionError,
    DTypeError,
    EmptyDataError,
    ValueRangeError,
    WorkbenchWarning,
)

__all__ = ["SUPPORTS", "from_dataarray"]

#: Value supports a likelihood can ask the edge to check.
SUPPORTS = ("real", "count", "binary", "positive")


def from_dataarray(
    da: xr.DataArray,
    dim: str = "time",
    *,
    support: str = "real",
    ordered: bool = True,
    time_unit: str = "D",
    axis: TimeAxis | None = None,
) -> Observations:
    """Validate ``da`` and convert it to float64 tensors with a missing-value mask.

    Parameters
    ----------
    da : xr.DataArray
        Values along ``dim``; any other dims become batch dims. NaN means "not observed".
    dim : str
        The dimension the model runs along.
    support : {"real", "count", "binary", "positive"}
        The likelihood's support; observed values outside it raise.
    ordered : bool
        Require strictly increasing coordinates along ``dim`` (state-space models do).
    time_unit : str
        Unit of the float axis when ``dim`` has ``datetime64`` coordinates (see ``TIME_UNITS``).
    axis : TimeAxis, optional
        Reuse an existing coordinate map (e.g. the one a model was fitted with).

    Returns
    -------
    Observations
        ``x`` of shape (T,), ``y`` and ``mask`` of shape (*batch, T).

    Raises
    ------
    DTypeError
        ``da`` is not a DataArray, or values/coordinates are not numeric.
    DimensionError
        ``dim`` is missing.
    CoordinateError
        Non-finite, unsorted or duplicate coordinates along ``dim``.
    EmptyDataError
        ``dim`` has length zero or a series has no observed value.
    ValueRangeError
        Infinite values, or observed values outside ``support``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray([1.0, np.nan, 3.0], dims="time", coords={"time": [0.0, 1.0, 2.0]})
    >>> obs = from_dataarray(da)
    >>> obs.mask.tolist(), obs.y.tolist()
    ([True, False, True], [1.0, 0.0, 3.0])
    """
    if not isinstance(da, xr.DataArray):
        raise DTypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if support not in SUPPORTS:
        raise ValueError(f"expected support in {SUPPORTS}, got {support!r}")
    label = _label(da)
    if dim not in da.dims:
        raise DimensionError(f"expected dim {dim!r} in {label}, got dims {tuple(da.dims)}")
    empty = [str(d) for d in da.dims if da.sizes[d] == 0]
    if empty:
        raise EmptyDataError(
            f"expected at least one entry along dim {empty[0]!r} of {label}, got 0"
        )
    if time_unit not in TIME_UNITS:
        raise CoordinateError(
            f"expected time_unit in {sorted(TIME_UNITS)}, got {time_unit!r} for dim {dim!r}"
        )
    values = _float_values(da, label)
    coord = da[dim].values if dim in da.coords else np.arange(da.sizes[dim], dtype=np.float64)
    axis = axis or TimeAxis.infer(coord, dim=dim, unit=time_unit)
    x = axis.to_float(coord, dim=dim)
    if ordered:
        _check_strictly_increasing(x, dim)
    batch_dims = tuple(str(d) for d in da.dims if d != dim)
    values = da.copy(data=values).transpose(*batch_dims, dim).values
    mask = ~np.isnan(values)
    _check_values(values, mask, support, label)
    _check_each_series_observed(mask, da, dim, batch_dims, label)
    return Observations(
        x=torch.from_numpy(x),
        y=torch.from_numpy(np.where(mask, values, 0.0)),
        mask=torch.from_numpy(mask),
        dim=dim,
        batch_dims=batch_dims,
        axis=axis,
        template=da.copy(data=np.zeros(da.shape, dtype=np.bool_)),
    )


def _label(da: xr.DataArray) -> str:
    return f"variable {da.name!r}" if da.name is not None else "the DataArray"


def _float_values(da: xr.DataArray, label: str) -> np.ndarray:
    dtype = da.dtype
    if dtype.kind in "biuf":  # bool, integers, floats: not complex, not timedelta64 (a unit)
        if dtype == np.float32 or dtype == np.float16:
            warnings.warn(
                f"{label} is {dtype}; converting to float64 for inference",
                WorkbenchWarning,
                stacklevel=3,
            )
        return np.asarray(da.values, dtype=np.float64)
    raise DTypeError(f"expected numeric values in {label}, got dtype {dtype}")


def _check_strictly_increasing(x: np.ndarray, dim: str) -> None:
    steps = np.diff(x)
    if (steps == 0).any():
        where = int(np.flatnonzero(steps == 0)[0]) + 1
        raise CoordinateError(
            f"expected unique coordinates along dim {dim!r}, got a duplicate at position {where}"
        )
    if (steps < 0).any():
        where = int(np.flatnonzero(steps < 0)[0]) + 1
        raise CoordinateError(
            f"expected increasing coordinates along dim {dim!r}, got a decrease at position "
            f"{where} (sort with da.sortby({dim!r}))"
        )


def _check_values(values: np.ndarray, mask: np.ndarray, support: str, label: str) -> None:
    observed = values[mask]
    if np.isinf(observed).any():
        raise ValueRangeError(
            f"expected finite values or NaN in {label}, got {int(np.isinf(observed).sum())} "
            "infinite value(s)"
        )
    bad = _outside_support(observed, support)
    if bad.any():
        raise ValueRangeError(
            f"expected {_SUPPORT_TEXT[support]} in {label} for this likelihood, got "
            f"{int(bad.sum())} value(s) outside, e.g. {observed[bad][0].item()!r}"
        )


_SUPPORT_TEXT = {
    "real": "real values",
    "count": "non-negative integer counts",
    "binary": "binary values (0 or 1)",
    "positive": "positive values",
}


def _outside_support(v: np.ndarray, support: str) -> np.ndarray:
    if support == "count":
        return (v < 0) | (v != np.round(v))
    if support == "binary":
        return (v != 0) & (v != 1)
    if support == "positive":
        return v <= 0
    return np.zeros(v.shape, dtype=bool)


def _check_each_series_observed(
    mask: np.ndarray, da: xr.DataArray, dim: str, batch_dims: tuple[str, ...], label: str
) -> None:
    empty = ~mask.any(axis=-1)
    if not empty.any():
        return
    index = np.unravel_index(int(np.flatnonzero(empty.ravel())[0]), empty.shape)
    where = {d: _coord_value(da, d, i) for d, i in zip(batch_dims, index, strict=True)}
    series = f" at {where}" if where else ""
    raise EmptyDataError(
        f"expected at least one observed (non-NaN) value along dim {dim!r} in {label}{series}, "
        f"got all NaN ({int(empty.sum())} such series)"
    )


def _coord_value(da: xr.DataArray, d: Hashable, i: int) -> object:
    if d not in da.coords:
        return int(i)
    value = da[d].values[i]
    # datetime64[ns].item() is an int of nanoseconds; show the date instead
    return str(value) if isinstance(value, np.datetime64) else value.item()

"""Inputs of any dimension from labelled data: scattered points or a grid with NaN cells."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import xarray as xr

from workbench.data.from_dataarray import SUPPORTS, _check_values, _label
from workbench.errors import (
    CoordinateError,
    DimensionError,
    DTypeError,
    EmptyDataError,
    ShapeMismatchError,
    WorkbenchWarning,
)

__all__ = ["SpatialData", "new_inputs", "spatial_data", "to_grid"]


class SpatialData(NamedTuple):
    X: np.ndarray  # shape: (n, d) inputs of the observed values
    y: np.ndarray  # shape: (n,) observed values
    inputs: tuple[str, ...]  # names of the d input coordinates
    cells: np.ndarray | None  # shape: (n,) flat grid index of each value (gridded data)


def spatial_data(
    da: xr.DataArray, inputs: Sequence[str] | None = None, *, support: str = "real"
) -> SpatialData:
    """Observed values and their inputs.

    - A 1-D ``DataArray`` over a points dim: the inputs are coordinate variables along it
      (``inputs`` names them; default: every numeric non-index coordinate on that dim).
    - A ≥ 2-D ``DataArray``: a grid whose dims (with numeric coordinates) are the inputs (if
      given, ``inputs`` must name them); every cell is a point, NaN cells are unobserved.

    Raises ``DTypeError``/``CoordinateError``/``DimensionError``/``EmptyDataError`` for
    non-numeric or non-finite inputs, unknown input names and data without observed values, and
    ``ValueRangeError`` for infinite values or values outside ``support`` (one of
    :data:`~workbench.data.SUPPORTS`, e.g. "count"); warns on float32 values.
    """
    if not isinstance(da, xr.DataArray):
        raise DTypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if support not in SUPPORTS:
        raise ValueError(f"expected support in {SUPPORTS}, got {support!r}")
    if not _is_real(da.dtype):
        raise DTypeError(f"expected numeric values in {_label(da)}, got dtype {da.dtype}")
    if da.dtype in (np.float16, np.float32):
        warnings.warn(f"{_label(da)} is {da.dtype}; converting to float64 for inference",
                      WorkbenchWarning, stacklevel=3)  # fmt: skip
    if da.ndim == 1:
        dim = da.dims[0]
        names = list(inputs) if inputs is not None else [
            str(c) for c in da.coords if da[c].dims == (dim,) and c != dim
            and np.issubdtype(da[c].dtype, np.number)
        ]  # fmt: skip
        missing = [c for c in names if c not in da.coords or da[c].dims != (dim,)]
        if not names or missing:
            raise DimensionError(
                f"expected input coordinates along {dim!r}, got {names or 'none'}"
                + (f" (not coordinates along {dim!r}: {missing})" if missing else "")
            )
        X = np.stack([_numeric(da[c]) for c in names], 1)
        values, cells = np.asarray(da.values, np.float64), None
    else:
        names = [str(d) for d in da.dims]
        if inputs is not None and sorted(map(str, inputs)) != sorted(names):
            raise DimensionError(
                f"expected a grid over the inputs {list(inputs)}, got dims {names}"
            )
        axes = [_numeric(da[d]) if d in da.coords else np.arange(da.sizes[d], dtype=float)
                for d in da.dims]  # fmt: skip
        grid = np.meshgrid(*axes, indexing="ij")
        X = np.stack([g.reshape(-1) for g in grid], 1)
        values = np.asarray(da.values, np.float64).reshape(-1)
        cells = np.arange(values.size)
    if not np.isfinite(X).all():
        raise CoordinateError(f"expected finite input coordinates {names}, got NaN or infinity")
    seen = ~np.isnan(values)
    _check_values(values, seen, support, _label(da))
    if not seen.any():
        raise EmptyDataError(f"expected at least one observed value in {_label(da)}, got none")
    return SpatialData(X[seen], values[seen], tuple(names), None if cells is None else cells[seen])


def to_grid(template: xr.DataArray, values: np.ndarray, name: str) -> xr.DataArray:
    """Values at every cell of ``template``'s grid (flat, C order) as a labelled DataArray."""
    return xr.DataArray(
        values.reshape(template.shape), dims=template.dims, coords=template.coords, name=name
    )


def new_inputs(at: object, inputs: Sequence[str]) -> tuple[np.ndarray, xr.DataArray | None]:
    """The inputs (s, d) that ``at`` asks predictions for, columns in the order of ``inputs``.

    ``at`` is a DataArray or Dataset (1-D over a points dim with coordinates ``inputs``, or a
    grid whose dims are ``inputs`` in any order; its values are not used), or an (s, d) array
    ((s,) for one input). Returns the inputs and the DataArray whose dims and coordinates label
    the predictions (``None`` for arrays).

    Raises ``DimensionError``/``ShapeMismatchError`` for other inputs or shapes,
    ``DTypeError``, ``CoordinateError`` for non-finite inputs and ``EmptyDataError``.
    """
    names = [str(n) for n in inputs]
    if isinstance(at, xr.Dataset):
        at = xr.DataArray(np.zeros(tuple(at.sizes.values())), dims=tuple(at.sizes),
                          coords=at.coords)  # fmt: skip
    if isinstance(at, xr.DataArray):
        if at.size == 0:
            raise EmptyDataError(f"expected at least one input in `at`, got sizes {dict(at.sizes)}")
        if at.ndim == 0:
            raise DimensionError(f"expected `at` with a points dim or the dims {names}, got none")
        template = xr.zeros_like(at, dtype=np.float64)
        found = spatial_data(template, names)
        return found.X[:, [found.inputs.index(n) for n in names]], template
    try:
        X = np.asarray(at)
    except ValueError as err:  # ragged nested lists
        raise ShapeMismatchError(f"expected `at` of shape (s, {len(names)}), got {err}") from None
    if not _is_real(X.dtype):
        raise DTypeError(f"expected numeric inputs in `at` for {names}, got dtype {X.dtype}")
    X = X.astype(np.float64).reshape(-1, 1) if X.ndim == 1 and len(names) == 1 else X
    if X.ndim == 1:
        X = X[None]
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ShapeMismatchError(
            f"expected `at` of shape (s, {len(names)}) for inputs {names}, got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise EmptyDataError(f"expected at least one input in `at` for {names}, got 0")
    if not np.isfinite(X).all():
        raise CoordinateError(f"expected finite inputs {names} in `at`, got NaN or infinity")
    return X.astype(np.float64), None


def _is_real(dtype: np.dtype) -> bool:
    # numpy counts bool apart and timedelta64 as an integer; neither is a measured value
    return (
        np.issubdtype(dtype, np.number)
        and not np.issubdtype(dtype, np.complexfloating)
        and not np.issubdtype(dtype, np.timedelta64)
    )


def _numeric(coord: xr.DataArray) -> np.ndarray:
    if not _is_real(coord.dtype):
        raise DTypeError(f"expected a numeric coordinate {coord.name!r}, got dtype {coord.dtype}")
    return np.asarray(coord.values, np.float64)

"""Inputs of any dimension from labelled data: scattered points or a grid with NaN cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import xarray as xr

from workbench.errors import CoordinateError, DimensionError, DTypeError, EmptyDataError

__all__ = ["SpatialData", "spatial_data", "to_grid"]


class SpatialData(NamedTuple):
    X: np.ndarray  # shape: (n, d) inputs of the observed values
    y: np.ndarray  # shape: (n,) observed values
    inputs: tuple[str, ...]  # names of the d input coordinates
    cells: np.ndarray | None  # shape: (n,) flat grid index of each value (gridded data)


def spatial_data(da: xr.DataArray, inputs: Sequence[str] | None = None) -> SpatialData:
    """Observed values and their inputs.

    - A 1-D ``DataArray`` over a points dim: the inputs are coordinate variables along it
      (``inputs`` names them; default: every numeric non-index coordinate on that dim).
    - A ≥ 2-D ``DataArray``: a grid whose dims (with numeric coordinates) are the inputs; every
      cell is a point, NaN cells are unobserved.

    Raises ``DTypeError``/``CoordinateError``/``DimensionError``/``EmptyDataError`` for
    non-numeric or non-finite inputs, unknown input names and data without observed values.
    """
    if not isinstance(da, xr.DataArray):
        raise DTypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if not np.issubdtype(da.dtype, np.number):
        raise DTypeError(f"expected numeric values, got dtype {da.dtype}")
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
        axes = [_numeric(da[d]) if d in da.coords else np.arange(da.sizes[d], dtype=float)
                for d in da.dims]  # fmt: skip
        grid = np.meshgrid(*axes, indexing="ij")
        X = np.stack([g.reshape(-1) for g in grid], 1)
        values = np.asarray(da.values, np.float64).reshape(-1)
        cells = np.arange(values.size)
    if not np.isfinite(X).all():
        raise CoordinateError(f"expected finite input coordinates {names}, got NaN or infinity")
    seen = np.isfinite(values)
    if not seen.any():
        raise EmptyDataError(f"expected at least one observed value in {da.name or 'the data'}")
    return SpatialData(X[seen], values[seen], tuple(names), None if cells is None else cells[seen])


def to_grid(template: xr.DataArray, values: np.ndarray, name: str) -> xr.DataArray:
    """Values at every cell of ``template``'s grid (flat, C order) as a labelled DataArray."""
    return xr.DataArray(
        values.reshape(template.shape), dims=template.dims, coords=template.coords, name=name
    )


def _numeric(coord: xr.DataArray) -> np.ndarray:
    if not np.issubdtype(coord.dtype, np.number):
        raise DTypeError(f"expected a numeric coordinate {coord.name!r}, got dtype {coord.dtype}")
    return np.asarray(coord.values, np.float64)

"""Resolve the ``at=`` argument of ``posterior``/``predict`` into new float positions."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from workbench.data.observations import Observations
from workbench.errors import DTypeError, EmptyDataError, ShapeMismatchError

__all__ = ["resolve_at"]


def resolve_at(obs: Observations, at: object) -> tuple[torch.Tensor, np.ndarray | None]:
    """Positions to predict at, and their coordinate values (``None``: the data's own).

    Parameters
    ----------
    obs : Observations
        The data the model conditions on.
    at : None, array-like, xr.DataArray or xr.Dataset
        ``None`` predicts at the observed coordinates. Otherwise new coordinate values of
        ``obs.dim``: a 1-D array, or an xarray object with a ``obs.dim`` coordinate.

    Returns
    -------
    x : Tensor, shape (T_new,)
    coords : ndarray of shape (T_new,) or None

    Raises
    ------
    ShapeMismatchError
        ``at`` is not one-dimensional or lacks ``obs.dim``.
    DTypeError
        ``at`` holds datetimes where the data has numbers, or the reverse.
    """
    if at is None:
        return obs.x, None
    dim = obs.dim
    if isinstance(at, xr.Dataset | xr.DataArray):
        if dim not in at.coords and dim not in at.dims:
            raise ShapeMismatchError(
                f"expected `at` to have coordinate {dim!r} like the data, got dims {tuple(at.dims)}"
            )
        values = at[dim].values
    else:
        values = np.asarray(at)
    if values.ndim != 1:
        raise ShapeMismatchError(
            f"expected `at` to be 1-D coordinates of dim {dim!r}, got shape {values.shape}"
        )
    if values.size == 0:
        raise EmptyDataError(f"expected at least one coordinate in `at` for dim {dim!r}, got 0")
    try:
        x = obs.axis.to_float(values, dim=dim)
    except DTypeError as err:
        raise DTypeError(f"`at`: {err}") from None
    return torch.from_numpy(x), values

"""Magma / MagmaClust fits in standardised units when the data are far from unit scale."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import xarray as xr

from workbench.models import data_scale as regression_scale
from workbench.models.data_scale import decimal_scale
from workbench.models.task_grid import TaskGrid

__all__ = ["NOISE_FLOOR", "data_scale", "rescale", "standardized_tasks"]

#: Lower bound of the task noise variances in standardised units (in data units it is
#: ``NOISE_FLOOR`` times the data's variance, a saved buffer, when that is far from 1).
NOISE_FLOOR = 1e-8

#: Hyper-parameters (last part of their name) in units of the data squared.
POWERS = {"noise": 2, "outputscale": 2}


def data_scale(model: Any, grid: TaskGrid) -> float:
    r"""The power of ten :math:`s` nearest the standard deviation of the observed values, or
    1.0 when their variance :math:`v` lies in
    :data:`~workbench.models.data_scale.UNIT_VARIANCE_RANGE`.

    :math:`v` is the mean square of the values about the prior mean (about their mean with
    ``prior_mean="constant"``). Constant data (:math:`v` below 1e-20 of the values' mean
    square, i.e. round-off) and :math:`v^2` beyond float64 also give 1.0. A power of ten
    leaves the standardised variance in [0.1, 10) and makes a change of decimal units (data
    times 1e6) reproduce the fit in the original units up to round-off.

    Parameters
    ----------
    model : MagmaClust
        The model about to be fitted.
    grid : TaskGrid
        Its training data.

    Returns
    -------
    float
        The factor :math:`s` by which the fit divides the data.
    """
    values = grid.y[grid.valid]
    if values.numel() == 0:
        return 1.0
    with torch.no_grad():
        constant = model.prior_mean_mode == "constant"
        centre = values.mean() if constant else model.mean_constant[0]
        v = float((values - centre).square().mean())
        level = float(values.square().mean())
    return decimal_scale(v, level, torch.float64)


def rescale(model: Any, factor: float) -> None:
    """Multiply the noises, kernel outputscales and noise floors by ``factor``² and the prior
    means by ``factor`` (a value whose raw parameter would not be finite stays put).

    Parameters
    ----------
    model : MagmaClust
        A model with task parameters.
    factor : float
        The change of units.
    """
    regression_scale.rescale(model, factor, POWERS)
    with torch.no_grad():
        model.mean_constant.mul_(factor)  # a buffer (set by EM), not a hyper-parameter


@contextmanager
def standardized_tasks(
    model: Any, da: xr.DataArray, grid: TaskGrid
) -> Iterator[tuple[TaskGrid, float]]:
    r"""Fit ``model`` to ``da`` in units where the data have unit variance.

    With :math:`s` from :func:`data_scale`, inside the block the data are :math:`y / s`, the
    model's hyper-parameters are in those units (see :func:`rescale`) and the noise floor is
    :data:`NOISE_FLOOR`; on exit they return to data units (the floor to
    :math:`s^2` ``NOISE_FLOOR``, saved with the model). EM then sees the same problem at any
    scale of the data (at 1e-12 the floor would swamp the data; at 1e12 the variances sit
    where softplus is linear).

    Parameters
    ----------
    model : MagmaClust
        The model being fitted (task parameters made).
    da : xarray.DataArray
        The training data, ``(task, time)``.
    grid : TaskGrid
        ``da`` on the model's grid.

    Yields
    ------
    grid : TaskGrid
        The standardised data (``grid`` itself when :math:`s = 1`).
    offset : float
        :math:`N \log s` over the :math:`N` observed values: the ELBO of the standardised data
        minus ``offset`` is that of the data (the log-Jacobian of :math:`y \mapsto y / s`).
    """
    scale = data_scale(model, grid)
    with torch.no_grad():  # the floor follows the data of the latest fit
        model.raw_noise_constraint.lower_bound.fill_(NOISE_FLOOR * scale**2)
    if scale == 1.0:
        yield grid, 0.0
        return
    rescale(model, 1.0 / scale)
    try:
        scaled, _ = model._grid(da / scale)
        yield scaled, float(grid.valid.sum()) * math.log(scale)
    finally:
        rescale(model, scale)

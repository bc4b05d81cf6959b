"""GP regression on the scale of the data: starting values, and fits in standardised units."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from workbench.data import Observations
from workbench.errors import WorkbenchWarning

__all__ = [
    "REGRESSION_POWERS",
    "UNIT_VARIANCE_RANGE",
    "decimal_scale",
    "match_data_scale",
    "regression_scale",
    "rescale",
    "standardized",
]

#: Hyper-parameters (last part of the name) that carry the data's scale, and their power.
REGRESSION_POWERS = {"noise": 2, "outputscale": 2, "mean": 1, "slope": 1}

#: Residual variances for which the starting values (e.g. noise 0.1 and outputscale 1) are kept
#: and fits run in data units, as they always did; from those values the optimiser reaches data
#: with standard deviations from about 0.01 to 100.
UNIT_VARIANCE_RANGE = (1e-4, 1e4)


def match_data_scale(model: Any, obs: Observations) -> float:
    r"""Multiply the starting noise and kernel outputscales by the data's variance if far from 1.

    The variance is :math:`v = \operatorname{mean}_t (y_t - c(x_t))^2` over the observed values
    about the model's initial prior mean :math:`c`. Unless the data are constant (:math:`v`
    below 1e-20 of their mean square, i.e. round-off) or :math:`v^2` overflows the model's
    dtype, outside :data:`UNIT_VARIANCE_RANGE` the
    noise :math:`\sigma^2` and every outputscale of the kernel are multiplied by :math:`v` and
    the noise floor (``model.raw_noise_constraint``, 1e-8) by :math:`\min(1, v)`, so that data
    at 1e12 or 1e-12 start where unit-scale data do (the floor is a saved buffer).

    Parameters
    ----------
    model : GPRegression
        A model with a Gaussian likelihood, before its first fit (prior mean initialised).
    obs : Observations
        The data it is about to fit.

    Returns
    -------
    float
        The factor applied (1.0 when the starting values are kept).

    Warns
    -----
    WorkbenchWarning
        The kernel has no outputscale, so its prior variance cannot follow the data.
    """
    v = regression_scale(model, obs) ** 2
    if v == 1.0:
        return 1.0
    values = model.hyperparameters()
    scales = [n for n in values if n.startswith("kernel.") and n.endswith("outputscale")]
    if not scales:
        warnings.warn(
            f"expected a kernel with an outputscale for data of variance {v:.3g} along dim "
            f"{obs.dim!r}, got {type(model.kernel).__name__}; wrap it in a ScaleKernel",
            WorkbenchWarning,
            stacklevel=3,
        )
        return 1.0
    floor = model.raw_noise_constraint.lower_bound
    with torch.no_grad():  # no lower than the dtype can hold (float32 models)
        floor.fill_(max(float(floor) * min(1.0, v), torch.finfo(floor.dtype).tiny))
    for name in ("noise", *scales):
        model.set_hyperparameter(name, torch.as_tensor(values[name], dtype=torch.float64) * v)
    return v


def regression_scale(model: Any, obs: Observations) -> float:
    """:func:`decimal_scale` of the observed values' mean square about ``model``'s prior mean
    (1.0 near unit scale)."""
    with torch.no_grad():
        x = obs.x.to(model.mean).expand(obs.y.shape)[obs.mask]
        y = obs.y.to(model.mean)[obs.mask]
        v = float((y - model.prior_mean(x)).square().mean())
        level = float(y.square().mean())
    return decimal_scale(v, level, model.mean.dtype)


def decimal_scale(v: float, level: float, dtype: torch.dtype) -> float:
    r"""The power of ten nearest :math:`\sqrt v`, or 1.0 when ``v`` lies in
    :data:`UNIT_VARIANCE_RANGE`, is round-off (below 1e-20 of the values' mean square
    ``level``) or its square does not fit ``dtype``. A power of ten makes data in other
    decimal units fit exactly as in the original units.

    Parameters
    ----------
    v : float
        A residual variance of the data.
    level : float
        The mean square of the data.
    dtype : torch.dtype
        The model's floating-point type.

    Returns
    -------
    float
        The scale :math:`s` to divide the data by (1.0: keep data units).
    """
    low, high = UNIT_VARIANCE_RANGE
    finfo = torch.finfo(dtype)
    if not (finfo.tiny**0.5 < v < finfo.max**0.5 and v > 1e-20 * level) or low <= v <= high:
        return 1.0
    return 10.0 ** round(math.log10(v) / 2)


@contextmanager
def standardized(
    model: Any,
    obs: Observations,
    *,
    scale: float | None = None,
    powers: dict[str, int] | None = None,
) -> Iterator[tuple[Observations, float]]:
    r"""Fit ``model`` to ``obs`` in units where the data have unit variance.

    Inside the block the data are :math:`y / s` with :math:`s` from :func:`regression_scale`,
    and the hyper-parameters are in those units (noises, outputscales and noise floors divided
    by :math:`s^2`, prior means and slopes by :math:`s`); they return to data units on exit.
    An optimiser then sees the same problem at any scale of the data (in data units at 1e12,
    the variances sit where softplus is linear and the prior mean takes steps of 1e12).

    Parameters
    ----------
    model : Model
        The model whose hyper-parameters are rescaled.
    obs : Observations
        Its data.
    scale : float, optional
        :math:`s` (default: :func:`regression_scale`).
    powers : dict of str to int, optional
        The power of :math:`s` carried by each hyper-parameter, by the last part of its name
        (default: noises and outputscales 2, prior means and slopes 1).

    Yields
    ------
    obs : Observations
        The standardised data (``obs`` itself when :math:`s = 1`).
    offset : float
        :math:`\log s`, to add to a per-value negative log marginal likelihood of the
        standardised data to get that of the data.
    """
    if scale is None:
        scale = regression_scale(model, obs)
    if scale == 1.0:
        yield obs, 0.0
        return
    rescale(model, 1.0 / scale, powers)
    try:
        yield replace(obs, y=obs.y / scale), math.log(scale)
    finally:
        rescale(model, scale, powers)


def rescale(model: Any, factor: float, powers: dict[str, int] | None = None) -> None:
    """Multiply the scale-carrying hyper-parameters by a power of ``factor``.

    Parameters
    ----------
    model : Model
        The model, changed in place; every noise floor (``raw_noise_constraint.lower_bound``
        of its modules) is multiplied by ``factor**2``.
    factor : float
        The factor.
    powers : dict of str to int, optional
        The power of ``factor`` for each hyper-parameter, by the last part of its name
        (default: noises and outputscales by ``factor**2``, means and slopes by ``factor``).
    """
    powers = REGRESSION_POWERS if powers is None else powers
    with torch.no_grad():
        values = {}
        for name, param, constraint in model._constrained():
            power = powers.get(name.rpartition(".")[2])
            if power is not None:
                value = constraint.transform(param) if constraint is not None else param
                values[name] = (param, constraint, value * factor**power)
        for module in model.modules():
            if hasattr(module, "raw_noise_constraint"):
                module.raw_noise_constraint.lower_bound.mul_(factor**2)
        for param, constraint, target in values.values():
            raw = constraint.inverse_transform(target) if constraint is not None else target
            # a value at its floor (softplus underflowed) stays there
            param.copy_(torch.where(torch.isfinite(raw), raw, param))

"""Starting values of :class:`~workbench.models.multitask.MultitaskGP`, and its data scale."""

from __future__ import annotations

import math
from typing import Any

import torch

from workbench.models.data_scale import decimal_scale, rescale

__all__ = ["MULTITASK_POWERS", "initialize", "multitask_scale"]

#: Hyper-parameters of a multi-task GP that carry the data's scale :math:`s`, and their power:
#: noises, index-kernel and task variances :math:`\propto s^2`, task means, coregionalisation
#: factors and interaction coefficients :math:`\propto s`.
MULTITASK_POWERS = {
    "noise": 2,
    "var": 2,
    "task_variance": 2,
    "task_mean": 1,
    "covar_factor": 1,
    "coefficients": 1,
}


def multitask_scale(X: torch.Tensor, y: torch.Tensor) -> float:
    r"""The power of ten :math:`s` nearest the data's standard deviation about the tasks'
    means, or 1.0 when their variance lies in
    :data:`~workbench.models.data_scale.UNIT_VARIANCE_RANGE` (or is round-off).

    A power of ten keeps the digits of the data: data in other decimal units (mV and V) give
    the same standardised values :math:`y / s`, hence the same fit.

    Parameters
    ----------
    X : torch.Tensor
        Stacked inputs (N, 2): time and task index.
    y : torch.Tensor
        Observed values (N,).

    Returns
    -------
    float
        :math:`s`.
    """
    if y.numel() == 0:
        return 1.0
    means, _, task = _task_means(X, y, int(X[:, 1].max()) + 1)
    with torch.no_grad():
        v = float((y - means[task]).square().mean())
        level = float(y.square().mean())
    return decimal_scale(v, level, y.dtype)


def initialize(model: Any, X: torch.Tensor, y: torch.Tensor) -> None:
    """Start ``model``'s new parameters from the data: task means at the tasks'
    averages, noises at 5 % of their variances, lengthscales at 10 % of the time span.

    Far from unit scale (:func:`multitask_scale` :math:`s \\ne 1`) the values are those of the
    data :math:`y / s`, scaled back by :math:`s` (noise floor included).

    Parameters
    ----------
    model : MultitaskGP
        The model, its parameters just made (before its first fit).
    X, y : torch.Tensor
        The stacked inputs (N, 2) and values (N,).
    """
    scale = multitask_scale(X, y)
    if scale != 1.0:
        y = y / scale
    T = len(model.tasks)
    means, count, task = _task_means(X, y, T)
    resid = y - means[task]
    var = torch.zeros(T, dtype=torch.float64, device=y.device)
    var = var.index_add_(0, task, resid.square()) / count
    var = torch.where(count > 1, var, resid.square().mean()).clamp_min(1e-12)
    span = float(X[:, 0].max() - X[:, 0].min()) or 1.0
    with torch.no_grad():
        model.task_mean.copy_(means)
        model.raw_noise.copy_(model.raw_noise_constraint.inverse_transform(0.05 * var + 2e-8))
        _scale_kernel(model, var.sqrt(), 0.1 * span)
    if scale != 1.0:
        rescale(model, scale, MULTITASK_POWERS)


def _task_means(X: torch.Tensor, y: torch.Tensor, T: int) -> tuple[torch.Tensor, ...]:
    """Every task's mean of ``y`` (NaN where unobserved), count and the values' task index."""
    task = X[:, 1].long()
    count = torch.bincount(task, minlength=T).double()
    means = torch.zeros(T, dtype=torch.float64, device=y.device).index_add_(0, task, y) / count
    return means, count, task


def _scale_kernel(model: Any, sd: torch.Tensor, lengthscale: float) -> None:
    Q = model.n_latents
    if model.interaction:
        model.kernel.lengthscale = torch.full((Q,), lengthscale, dtype=torch.float64)
        model.kernel.coefficients.mul_(sd[None, :, None] / math.sqrt(Q * model.rank))
        return
    for latent, index in zip(model.kernel.latents, model.kernel.coregionalization, strict=True):
        for module in latent.modules():
            if getattr(module, "has_lengthscale", False):
                module.lengthscale = lengthscale
        index.covar_factor.mul_(sd[:, None] / math.sqrt(Q * model.rank))
        index.var = 0.1 * sd.square() / Q

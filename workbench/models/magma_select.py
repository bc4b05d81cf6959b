"""Choosing the number of clusters of MagmaClust by the variational BIC."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import xarray as xr

from workbench.errors import WorkbenchWarning
from workbench.models.magma import Magma, MagmaClust

__all__ = ["n_parameters", "select_n_clusters"]


def n_parameters(model: MagmaClust) -> int:
    """Trained hyper-parameter count: kernels and noise as the hypothesis shares them, the
    cluster weights (K - 1) and, with ``prior_mean="constant"``, one mean per cluster."""
    count = sum(p.numel() for p in model.mean_kernel.parameters())
    count += sum(p.numel() for p in model.task_kernel.parameters()) + model.raw_noise.numel()
    count += model.n_clusters - 1
    if model.prior_mean_mode == "constant":
        count += model.n_clusters
    return count


def select_n_clusters(
    da: xr.DataArray, candidates: Sequence[int] = (1, 2, 3, 4, 5, 6), **kwargs: Any
) -> tuple[MagmaClust, xr.Dataset]:
    r"""Fit each K in ``candidates`` and pick the largest variational BIC,

    .. math::
        \mathrm{VBIC}(K) = \mathrm{ELBO}(\hat q; \hat\Theta) - \tfrac12\,d_K\log M,

    with the exact ELBO (entropy constants included) and :math:`d_K` from
    :func:`n_parameters` (so the penalty follows the trained hypothesis). K = 1 fits
    :class:`Magma`. ``kwargs`` go to every model. Returns the best model and a Dataset with
    ``vbic``, ``elbo``, ``n_parameters`` and ``empty_clusters`` (clusters left without members,
    a sign that K is too large; their warnings are not repeated) over ``n_clusters``.
    """
    if not candidates:
        raise ValueError("expected at least one candidate number of clusters, got none")
    M = da.sizes[kwargs.get("task_dim", "task")]
    models, rows = [], []
    for K in candidates:
        model = Magma(**kwargs) if K == 1 else MagmaClust(K, **kwargs)
        with warnings.catch_warnings():  # empty clusters of a too-large K: counted instead
            warnings.simplefilter("ignore", WorkbenchWarning)
            model.fit(da, progress=False)
        d = n_parameters(model)
        elbo = model.fit_elbo[-1]
        empty = int((model._fitted[1].sum(0) < 1e-6).sum())
        rows.append((elbo - 0.5 * d * math.log(M), elbo, d, empty))
        models.append(model)
    vbic, elbo, dims, empty = zip(*rows, strict=True)
    table = xr.Dataset(
        {
            "vbic": ("n_clusters", list(vbic)),
            "elbo": ("n_clusters", list(elbo)),
            "n_parameters": ("n_clusters", list(dims)),
            "empty_clusters": ("n_clusters", list(empty)),
        },
        coords={"n_clusters": list(candidates)},
    )
    best = max(range(len(models)), key=lambda i: vbic[i])
    table.attrs = {"best_n_clusters": int(candidates[best])}
    return models[best], table

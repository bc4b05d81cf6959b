"""Run the standard ArviZ functions on our outputs under either ArviZ line.

ArviZ 0.23 (Python 3.11) takes ``InferenceData``; ArviZ 1.x (Python ≥ 3.12) takes
``xr.DataTree`` and renamed some results (``elpd_loo`` → ``elpd``, ``loo_i`` → ``elpd_i``)
and plots (``plot_ppc`` → ``plot_ppc_dist``). Tests call these helpers so that one test
checks both lines.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import xarray as xr

from workbench.io.arviz import arviz_major, import_arviz

__all__ = ["LooResult", "group_names", "loo", "plot_ppc", "summary"]


def group_names(idata: Any) -> set[str]:
    """Names of the groups of an ``InferenceData`` or ArviZ-schema ``DataTree``."""
    if isinstance(idata, xr.DataTree):
        return set(idata.children)
    return set(idata.groups())


def summary(idata: Any, **kwargs: Any) -> Any:
    """``az.summary`` (a pandas DataFrame in both lines)."""
    return import_arviz().summary(idata, **kwargs)


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO in one shape for both lines.

    Attributes
    ----------
    elpd : float
        Expected log pointwise predictive density.
    pareto_k : xr.DataArray
        Pareto shape per observed value.
    pointwise : xr.DataArray or None
        Pointwise elpd (``pointwise=True`` only).
    raw : object
        The ArviZ result itself.
    """

    elpd: float
    pareto_k: xr.DataArray
    pointwise: xr.DataArray | None
    raw: Any


def loo(idata: Any, *, var_name: str | None = None, pointwise: bool = False) -> LooResult:
    """``az.loo``; Pareto-k warnings are silenced (small test problems trigger them)."""
    az = import_arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = az.loo(idata, var_name=var_name, pointwise=True)
    if arviz_major() >= 1:
        elpd, point = result.elpd, result.elpd_i
    else:
        elpd, point = result["elpd_loo"], result["loo_i"]
    return LooResult(float(elpd), result.pareto_k, point if pointwise else None, result)


def plot_ppc(idata: Any, *, var_names: Sequence[str] | None = None, num_samples: int = 10) -> Any:
    """The posterior-predictive density plot (``plot_ppc`` in 0.x, ``plot_ppc_dist`` in 1.x)
    with matplotlib; returns what ArviZ returns (axes, or a plot collection)."""
    az = import_arviz()
    names = list(var_names) if var_names is not None else None
    if arviz_major() >= 1:
        return az.plot_ppc_dist(idata, var_names=names, num_samples=num_samples)
    return az.plot_ppc(idata, var_names=names, num_pp_samples=num_samples)

"""Combine per-item :func:`~workbench.scale.fit_many` results into one labelled Dataset."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from workbench.errors import FitManyError
from workbench.io import make_attrs
from workbench.scale.tasks import ItemResult

__all__ = ["FitManyError", "assemble"]

#: Per-item provenance attrs that would be wrong on the combined Dataset.
_PER_ITEM_ATTRS = ("created_at", "hyperparameters")


def assemble(
    da: xr.DataArray, over: str, dim: str, labels: Sequence[Any], results: Sequence[ItemResult]
) -> xr.Dataset:
    """One Dataset along ``over`` from the items' results (layout: see ``fit_many``).

    Raises
    ------
    FitManyError
        No item succeeded.
    """
    ok = [r for r in results if not r.error]
    if not ok:
        raise FitManyError(_all_failed_message(over, labels, results))
    missing = xr.full_like(_summary(ok[0]), np.nan)  # what a failed item contributes
    parts = [missing if r.error else _summary(r) for r in results]
    ds = xr.concat(
        parts,
        dim=over,
        data_vars="all",
        coords="minimal",
        compat="equals",
        join="exact",
        combine_attrs="drop_conflicts",
    )
    ds["log_marginal_likelihood"].attrs = {"long_name": "log marginal likelihood of the data"}
    ds["hyperparameters"] = _hyperparameter_array(over, results)
    ds["error"] = xr.DataArray(np.array([r.error for r in results], dtype=str), dims=over)
    ds["error"].attrs = {"long_name": "error of the item's fit, empty if it succeeded"}
    ds = _restore_over_coords(ds, da, over, dim).transpose(*da.dims, ..., missing_dims="ignore")
    n_failed = len(results) - len(ok)
    ds.attrs = {**make_attrs(), **ds.attrs, "fit_many_over": over, "n_failed": n_failed}
    return ds


def _summary(result: ItemResult) -> xr.Dataset:
    """Posterior and log marginal likelihood of one item, without per-item provenance."""
    out = result.posterior.assign(log_marginal_likelihood=result.log_marginal_likelihood)
    out.attrs = {k: v for k, v in out.attrs.items() if k not in _PER_ITEM_ATTRS}
    return out


def _hyperparameter_array(over: str, results: Sequence[ItemResult]) -> xr.DataArray:
    names = list(dict.fromkeys(n for r in results for n in r.hyperparameters))
    values = np.full((len(results), len(names)), np.nan)
    for i, r in enumerate(results):
        for j, name in enumerate(names):
            values[i, j] = r.hyperparameters.get(name, np.nan)
    return xr.DataArray(
        values,
        dims=(over, "hyperparameter"),
        coords={"hyperparameter": np.array(names, dtype=str)},
        attrs={"long_name": "fitted hyper-parameter (natural scale)"},
    )


def _restore_over_coords(ds: xr.Dataset, da: xr.DataArray, over: str, dim: str) -> xr.Dataset:
    """Put back ``da``'s coordinates along ``over`` (values and attrs); those also along ``dim``
    only where the output keeps ``da``'s ``dim`` positions (no ``at``)."""
    same_dim = ds.sizes[dim] == da.sizes[dim] and (
        dim not in da.indexes or ds.indexes[dim].equals(da.indexes[dim])
    )
    keep: dict[Hashable, xr.Variable] = {
        name: c.variable
        for name, c in da.coords.items()
        if over in c.dims and (dim not in c.dims or same_dim)
    }
    return ds.assign_coords(keep)


def _all_failed_message(over: str, labels: Sequence[Any], results: Sequence[ItemResult]) -> str:
    distinct = list(dict.fromkeys(r.error for r in results))
    examples = "; ".join(
        f"{over}={labels[[r.error for r in results].index(e)]!r}: {e}" for e in distinct[:3]
    )
    more = f" (and {len(distinct) - 3} more distinct errors)" if len(distinct) > 3 else ""
    return (
        f"expected at least one item along {over!r} to fit, got {len(results)} failures, e.g. "
        f"{examples}{more}"
    )

"""Figures rendered off-screen (Agg) to PNG bytes, shown through ``widgets.Image`` state."""

from __future__ import annotations

import io

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["axis_label", "plot_posterior", "posterior_png"]


def axis_label(da: xr.DataArray, fallback: str) -> str:
    """``long_name [units]`` from CF attrs, as xarray labels its plots."""
    name = da.attrs.get("long_name") or da.name or fallback
    units = da.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def plot_posterior(ds: xr.Dataset, data: xr.DataArray | None, dim: str, ax: Axes) -> Axes:
    """Posterior mean and interval band along ``dim`` (first series of any batch dims)."""
    ds = _first_series(ds, dim)
    x = ds[dim].values
    ax.fill_between(
        x,
        ds.lower.values,
        ds.upper.values,
        alpha=0.3,
        color="C0",
        label=f"{100 * ds.attrs.get('ci_prob', 0.95):.0f}% interval",
    )
    ax.plot(x, ds["mean"].values, color="C0", lw=1.2, label="posterior mean")
    if data is not None:
        data = _first_series(data, dim)
        ax.plot(data[dim].values, data.values, ".", ms=2.5, color="k", label="data")
        ax.set_ylabel(axis_label(data, "value"))
    ax.set_xlabel(axis_label(ds[dim], dim))
    ax.legend(loc="best", fontsize="small", frameon=False)
    return ax


def posterior_png(
    ds: xr.Dataset,
    data: xr.DataArray | None,
    dim: str,
    *,
    title: str = "",
    size: tuple[float, float] = (7.0, 3.6),
    dpi: int = 90,
) -> bytes:
    """PNG bytes of :func:`plot_posterior` (no pyplot, so no global figure state)."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plot_posterior(ds, data, dim, ax)
    if title:
        ax.set_title(title, fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _first_series(obj: xr.Dataset | xr.DataArray, dim: str):
    extra = {d: 0 for d in obj.dims if d != dim}
    out = obj.isel(extra) if extra else obj
    return out.where(np.isfinite(out)) if isinstance(out, xr.DataArray) else out

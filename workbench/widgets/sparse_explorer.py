"""Explorer for SparseInverseCholeskyGP: rho and kernel sliders, maps of data, mean and sd."""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workbench.data.spatial import spatial_data
from workbench.widgets.explorer import ModelExplorer

__all__ = ["SparseGPExplorer", "sparse_png"]


def sparse_png(X: np.ndarray, y: np.ndarray, grid: tuple, post: Any, names: tuple) -> bytes:
    """Three panels for 2-D inputs: the data, the posterior mean and sd on a regular grid."""
    fig = Figure(figsize=(10.5, 3.4), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    gx, gy = grid
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    shown = axes[0].scatter(X[:, 0], X[:, 1], c=y, s=6, vmin=lo, vmax=hi, cmap="viridis")
    fig.colorbar(shown, ax=axes[0])
    mean = post[0].reshape(gx.shape)
    sd = np.sqrt(post[1]).reshape(gx.shape)
    m = axes[1].pcolormesh(gx, gy, mean, vmin=lo, vmax=hi, cmap="viridis", shading="auto")
    fig.colorbar(m, ax=axes[1])
    s = axes[2].pcolormesh(gx, gy, sd, cmap="magma", shading="auto")
    fig.colorbar(s, ax=axes[2])
    for ax, title in zip(axes, ("data", "posterior mean", "posterior sd"), strict=True):
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(names[0])
    axes[0].set_ylabel(names[1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class SparseGPExplorer(ModelExplorer):
    """Move rho or a kernel slider: the model re-orders, rebuilds its pattern and restarts q at
    the Vecchia–Laplace posterior, and the maps and the ELBO update; "fit" runs hyper-parameter
    rounds (``fit_steps``) with a progress bar. Needs 2-D inputs for the maps."""

    def __init__(self, model: Any, data: xr.DataArray, *, fit_steps: int = 3) -> None:
        self.points = spatial_data(data, model.inputs)
        if self.points.X.shape[1] != 2:
            raise ValueError(f"expected 2-D inputs for the maps, got {self.points.X.shape[1]}")
        if model.data is None:
            model.fit(data, epochs=0, progress=False)
        lo, hi = self.points.X.min(0), self.points.X.max(0)
        self.grid = np.meshgrid(np.linspace(lo[0], hi[0], 60), np.linspace(lo[1], hi[1], 60))
        self.rho = widgets.FloatSlider(value=model.rho, min=1.0, max=5.0, step=0.25,
                                       description="rho", continuous_update=False)  # fmt: skip
        self.rho.add_class("wb-rho")
        self.rho.observe(self._set_rho, names="value")  # on the model at once: save() keeps it
        self.watch(self.rho, self.refresh)
        super().__init__(model, data, "point", fit_steps=fit_steps)
        left = self.children[0]
        left.children = (self.rho, *left.children)

    def __repr__(self) -> str:
        return f"SparseGPExplorer(SparseInverseCholeskyGP, rho={self.model.rho})"

    def units(self, name: str) -> str | None:
        """Lengthscales in the inputs' units when they share one; the model standardises the
        data, so its variances have no data units."""
        if "lengthscale" not in name:
            return None
        found = {self.data[i].attrs.get("units") for i in self.points.inputs}
        return found.pop() if len(found) == 1 and None not in found else None

    def _set_rho(self, change: dict) -> None:
        self.model.rho = float(change["new"])

    def refresh(self) -> None:
        """Rebuild q at the current settings, predict on the map grid, redraw."""
        try:
            self.model.rebuild()
            Xg = np.stack([g.reshape(-1) for g in self.grid], 1)
            mean, var = self.model.predict_latent(Xg)
            elbo = self.model.elbo()
        except Exception as err:  # shown to the user instead of lost in the kernel log
            self._show_error(err)
            return
        m = int((self.model.data.index >= 0).sum(1).float().mean())
        self.score.value = f"<b>ELBO</b>: {elbo:.3f} &nbsp; rho {self.model.rho:g}, m ≈ {m}"
        post = (mean.numpy(), var.numpy())
        self.figure.value = sparse_png(self.points.X, self.points.y, self.grid, post,
                                       self.points.inputs)  # fmt: skip
        self.status.value = ""

    def _fit(self, steps: int) -> None:
        self.model.fit(
            self.data,
            epochs=steps,
            progress=False,
            callback=lambda step, loss: setattr(self.progress, "value", step + 1),
        )

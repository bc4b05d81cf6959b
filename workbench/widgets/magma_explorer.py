"""Explorer for Magma / MagmaClust: a new task's mixture prediction and membership bars."""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workbench.widgets.explorer import ModelExplorer
from workbench.widgets.views import axis_label

__all__ = ["MagmaExplorer", "magma_png"]

HYPOTHESES = ("H00", "Hk0", "H0i", "Hki")


def magma_png(
    data: xr.DataArray,
    labels: np.ndarray,
    new: xr.DataArray,
    pred: xr.Dataset,
    means: xr.DataArray | None = None,
    *,
    dpi: int = 90,
) -> bytes:
    """Training curves coloured by cluster, cluster mean processes (dashed), the new task's
    points and mixture prediction (left); the new task's membership probabilities (right)."""
    fig = Figure(figsize=(8.4, 3.8), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax, bars = fig.subplots(1, 2, width_ratios=[4, 1])
    task_dim = next(d for d in data.dims if d != "time")
    for values, k in zip(data.transpose(task_dim, "time").values, labels, strict=True):
        seen = np.isfinite(values)
        ax.plot(data["time"].values[seen], values[seen], color=f"C{k % 10}", lw=0.6, alpha=0.25)
    if means is not None:
        for k, curve in enumerate(means.values):
            ax.plot(means["time"].values, curve, "--", color=f"C{k % 10}", lw=1.2)
    t = pred["time"].values
    ax.fill_between(t, pred.lower, pred.upper, color="k", alpha=0.15, label="mixture interval")
    ax.plot(t, pred["mean"], color="k", lw=1.5, label="mixture mean")
    ax.plot(new["time"].values, new.values, "o", ms=4, color="crimson", label="new task")
    ax.set_xlabel(axis_label(data["time"], "time"))
    ax.set_ylabel(axis_label(data, "value"))
    ax.legend(loc="best", fontsize="small", frameon=False)
    K = pred.sizes["cluster"]
    bars.bar(np.arange(K), pred.membership.values, color=[f"C{k % 10}" for k in range(K)])
    bars.set_ylim(0, 1)
    bars.set_xticks(np.arange(K))
    bars.set_xlabel("cluster")
    bars.set_title("membership", fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class MagmaExplorer(ModelExplorer):
    """Choose K and the hypothesis, edit a new task's points, watch its prediction update.

    Sliders set the shared hyper-parameters on the model (the mean processes' posterior is
    recomputed with the fitted memberships). Points of the new task are added by typing a time
    and a value ("add point") and dropped by selecting them in the list ("drop selected").
    Changing K or the hypothesis takes effect with "fit", which refits a new model on the
    data; ``explorer.model`` is always the model shown.
    """

    def __init__(self, model: Any, data: xr.DataArray, new: xr.DataArray | None = None) -> None:
        if model._fitted is None:
            model.fit(data, progress=False)
        if new is None:  # the first task's first half, as a partially observed new task
            first = data.isel({model.task_dim: 0}).dropna("time")
            new = first.isel(time=slice(0, max(1, first.sizes["time"] // 2)))
        self.new = new.dropna("time")
        self._pred: xr.Dataset | None = None
        self.n_clusters = widgets.Dropdown(
            options=list(range(1, 9)), value=model.n_clusters, description="clusters K"
        )
        self.hypothesis = widgets.Dropdown(
            options=HYPOTHESES, value=model.hypothesis, description="hypothesis"
        )
        self.new_time = widgets.FloatText(description="time")
        self.new_value = widgets.FloatText(description="value")
        self.add_button = widgets.Button(description="add point", icon="plus")
        self.points = widgets.SelectMultiple(description="new task", rows=6)
        self.drop_button = widgets.Button(description="drop selected", icon="minus")
        for name in ("n_clusters", "hypothesis", "points", "new_time", "new_value"):
            getattr(self, name).add_class(f"wb-{name.replace('_', '-')}")
        self.add_button.add_class("wb-add-point")
        self.drop_button.add_class("wb-drop-points")
        self.add_button.on_click(lambda _: self._add_typed())
        self.drop_button.on_click(lambda _: self.drop_points(list(self.points.value)))
        super().__init__(model, data, "time", fit_steps=model.max_iter)
        self._sync_points()
        self._layout()

    def __repr__(self) -> str:
        return f"MagmaExplorer({type(self.model).__name__}, K={self.model.n_clusters})"

    def _layout(self) -> None:
        editing = [self.new_time, self.new_value, self.add_button, self.points, self.drop_button]
        structure = [self.n_clusters, self.hypothesis]
        rest = [self.fit_button, self.progress, self.status]
        self.children[0].children = (*structure, *self.controls.values(), *editing, *rest)

    # -- the new task --------------------------------------------------------------------------
    def _add_typed(self) -> None:
        self.add_point(self.new_time.value, self.new_value.value)

    def add_point(self, time: float, value: float) -> None:
        """Add an observation of the new task (replacing one at the same time) and redraw."""
        if not (np.isfinite(time) and np.isfinite(value)):
            self._show_error(ValueError(f"expected a finite time and value, got {time}, {value}"))
            return
        point = xr.DataArray([float(value)], dims="time", coords={"time": [float(time)]})
        kept = self.new.drop_sel(time=[t for t in self.new["time"].values if t == time])
        self.new = xr.concat([kept, point], "time").sortby("time").assign_attrs(self.new.attrs)
        self._sync_points()
        self.refresh()

    def drop_points(self, times: list[float]) -> None:
        """Drop the new task's observations at ``times`` (at least one point stays)."""
        if len(times) >= self.new.sizes["time"]:
            self._show_error(ValueError("expected at least one point left in the new task"))
            return
        self.new = self.new.drop_sel(time=times)
        self._sync_points()
        self.refresh()

    def _sync_points(self) -> None:
        pairs = zip(self.new["time"].values, self.new.values, strict=True)
        self.points.options = [(f"{t:.4g}: {v:.4g}", t) for t, v in pairs]

    # -- model ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Predict the new task on the training grid with the current model and redraw."""
        try:
            pred = self.model.predict(self.new, at=self.data["time"].values)
            labels = self.model.memberships().values.argmax(1)
            means = self.model.mean_processes()["mean"]
            elbo = self.model.elbo()  # at the sliders' values, not the fit's last
        except Exception as err:  # shown to the user instead of lost in the kernel log
            self._show_error(err)
            return
        self._pred = pred
        weights = pred.membership.values
        best = int(np.argmax(weights))
        self.score.value = (
            f"<b>ELBO</b>: {elbo:.3f} &nbsp; <b>new task</b>: cluster {best} "
            f"(p = {weights[best]:.3f}), {self.new.sizes['time']} points"
        )
        self.figure.value = magma_png(self.data, labels, self.new, pred, means)
        self.status.value = ""

    def _fit(self, steps: int) -> None:
        """Refit (a new model when K or the hypothesis changed), the ELBO shown per iteration."""
        K, hypothesis = int(self.n_clusters.value), self.hypothesis.value
        if (K, hypothesis) != (self.model.n_clusters, self.model.hypothesis):
            config = self.model.get_config()
            config.pop("n_tasks", None)
            config.update(n_clusters=K, hypothesis=hypothesis)
            self.model = type(self.model).registry["MagmaClust"].from_config(config)
        self.progress.max = self.model.max_iter

        def report(step: int, loss: float) -> None:
            self.progress.value = step + 1
            self.score.value = f"<b>ELBO</b>: {-loss:.3f} (iteration {step + 1})"

        self.model.fit(self.data, progress=False, callback=report)
        self._rebuild_controls()  # the new model's (scalar) hyper-parameters

    def _rebuild_controls(self) -> None:
        self.controls = self._make_controls()
        self._layout()

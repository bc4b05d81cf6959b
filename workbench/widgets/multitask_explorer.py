"""Explorer for MultitaskGP: hide a window of one task and watch the others fill it in."""

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

__all__ = ["MultitaskExplorer", "multitask_png"]


def multitask_png(
    post: xr.Dataset, data: xr.DataArray, hidden: xr.DataArray, tasks: list, task_dim: str
) -> bytes:
    """One panel per shown task: posterior mean and band, observed points, hidden points (x)."""
    fig = Figure(figsize=(7.5, 1.2 + 1.6 * len(tasks)), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(len(tasks), 1, sharex=True, squeeze=False)[:, 0])
    for ax, task in zip(axes, tasks, strict=True):
        p = post.sel({task_dim: task})
        t = p["time"].values
        ax.fill_between(t, p.lower, p.upper, color="C0", alpha=0.25)
        ax.plot(t, p["mean"], color="C0", lw=1.2)
        seen = data.sel({task_dim: task}).dropna("time")
        ax.plot(seen["time"].values, seen.values, ".", color="k", ms=3)
        gone = hidden.sel({task_dim: task}).dropna("time")
        if gone.size:
            ax.plot(gone["time"].values, gone.values, "x", color="crimson", ms=5, label="hidden")
            ax.legend(loc="best", fontsize="small", frameon=False)
        ax.set_ylabel(str(task))
    axes[-1].set_xlabel(axis_label(data["time"], "time"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class MultitaskExplorer(ModelExplorer):
    """Pick the tasks to show, hide a time window of one task (its points leave the data the
    model conditions on), move the shared hyper-parameters, refit on the visible data.

    The score line shows the log marginal likelihood of the visible data and the MSE of the
    posterior mean at the hidden points: cross-task transfer, measured.
    """

    def __init__(self, model: Any, data: xr.DataArray, *, fit_steps: int = 10) -> None:
        if model.kernel is None:
            model.fit(data, steps=fit_steps, progress=False)
        names = list(data[model.task_dim].values)
        times = data["time"].values
        self.tasks = widgets.SelectMultiple(
            options=names, value=tuple(names[:3]), description="show", rows=min(6, len(names))
        )
        self.hide_task = widgets.Dropdown(options=names, value=names[-1], description="hide in")
        self.window = widgets.SelectionRangeSlider(
            options=[(_label(t), i) for i, t in enumerate(times)],
            index=(0, 0),
            description="window",
            continuous_update=False,
        )
        for name in ("tasks", "hide_task", "window"):
            getattr(self, name).add_class(f"wb-{name.replace('_', '-')}")
            self.watch(getattr(self, name), self.refresh)
        super().__init__(model, data, "time", fit_steps=fit_steps)
        left = self.children[0]
        left.children = (self.tasks, self.hide_task, self.window, *left.children)

    def __repr__(self) -> str:
        return f"MultitaskExplorer(MultitaskGP, tasks={len(self.tasks.options)})"

    def split(self) -> tuple[xr.DataArray, xr.DataArray]:
        """The visible data, and the hidden points (NaN elsewhere)."""
        lo, hi = self.window.value
        hide = xr.zeros_like(self.data, dtype=bool)
        if hi > lo:
            task = {self.model.task_dim: self.hide_task.value}
            hide.loc[task] = (np.arange(self.data.sizes["time"]) >= lo) & (
                np.arange(self.data.sizes["time"]) <= hi
            )
        return self.data.where(~hide), self.data.where(hide)

    def refresh(self) -> None:
        """Condition on the visible data, score the hidden points, redraw."""
        visible, hidden = self.split()
        try:
            post = self.model.posterior(visible)
            lml = self.model.log_marginal_likelihood(visible)
        except Exception as err:  # shown to the user instead of lost in the kernel log
            self._show_error(err)
            return
        gone = np.isfinite(hidden.values)
        text = f"<b>log marginal likelihood</b> (visible): {lml:.3f}"
        if gone.any():
            mse = float(np.mean((post["mean"].values[gone] - hidden.values[gone]) ** 2))
            text += f" &nbsp; <b>hidden-point MSE</b>: {mse:.4g} ({int(gone.sum())} points)"
        self.score.value = text
        shown = list(self.tasks.value) or [self.hide_task.value]
        self.figure.value = multitask_png(post, visible, hidden, shown, self.model.task_dim)
        self.status.value = ""

    def _fit(self, steps: int) -> None:
        visible, _ = self.split()
        self.model.fit(
            visible,
            steps=steps,
            progress=False,
            callback=lambda step, loss: setattr(self.progress, "value", step + 1),
        )


def _label(t: Any) -> str:
    if np.issubdtype(np.asarray(t).dtype, np.datetime64):
        return str(np.datetime_as_string(t, unit="D"))
    return f"{t:.4g}"

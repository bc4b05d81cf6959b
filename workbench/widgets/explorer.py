"""The model explorer: hyper-parameter controls left, posterior figure right."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import xarray as xr

from workbench.widgets.specs import control_for
from workbench.widgets.views import posterior_png

__all__ = ["ModelExplorer"]


class ModelExplorer(widgets.HBox):
    """Interactive view of a model on one dataset.

    Moving a slider sets that hyper-parameter on the model itself (so ``model.save()`` keeps
    it) and redraws the posterior; "fit" runs ``model.fit`` with a progress bar. Errors are shown
    in the widget's status line. All content is set through widget state (``Image``/``HTML``),
    so the explorer renders the same in JupyterLab, in nbval and in headless tests.

    Parameters
    ----------
    model : workbench model
        Needs ``posterior(data, dim)``, ``log_marginal_likelihood(data, dim)``, ``fit(data, dim,
        steps=, progress=, callback=)`` and ``parameter_specs()``.
    data : xr.DataArray
        The data to condition on.
    dim : str
        The modelled dimension.
    fit_steps : int
        Iterations run by the "fit" button.
    """

    def __init__(
        self, model: Any, data: xr.DataArray, dim: str = "time", *, fit_steps: int = 20
    ) -> None:
        self.model, self.data, self.dim, self.fit_steps = model, data, dim, fit_steps
        values = model.hyperparameters()
        self.controls = {s.name: control_for(s, values[s.name]) for s in model.parameter_specs()}
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.fit_button = widgets.Button(
            description="fit", icon="play", tooltip=f"run {fit_steps} optimiser iterations"
        )
        self.fit_button.add_class("wb-fit")
        self.fit_button.on_click(lambda _: self.run_fit())
        self.progress = widgets.IntProgress(value=0, min=0, max=fit_steps, description="fit")
        self.progress.add_class("wb-progress")
        self.status = widgets.HTML(value="")
        self.status.add_class("wb-status")
        self.score = widgets.HTML(value="")
        self.score.add_class("wb-score")
        self.figure = widgets.Image(format="png", layout=widgets.Layout(width="640px"))
        self.figure.add_class("wb-figure")
        left = widgets.VBox(
            [*self.controls.values(), self.fit_button, self.progress, self.status],
            layout=widgets.Layout(min_width="360px"),
        )
        super().__init__([left, widgets.VBox([self.score, self.figure])])
        self.add_class("wb-explorer")
        self.refresh()

    def __repr__(self) -> str:
        return f"ModelExplorer({type(self.model).__name__}, controls={list(self.controls)})"

    def update(self, **values: float) -> None:
        """Set hyper-parameters by name (on the model and the sliders) and redraw once."""
        for name, value in values.items():
            self.model.set_hyperparameter(name, value)
        self._sync_controls()
        self.refresh()

    def refresh(self) -> None:
        """Recompute the posterior and log marginal likelihood, and redraw."""
        try:
            ds = self.model.posterior(self.data, dim=self.dim)
            lml = self.model.log_marginal_likelihood(self.data, dim=self.dim)
        except Exception as err:  # shown to the user instead of lost in the kernel log
            self._show_error(err)
            return
        total = float(lml.sum()) if isinstance(lml, xr.DataArray) else float(lml)
        self.score.value = f"<b>log marginal likelihood</b>: {total:.3f}"
        self.figure.value = posterior_png(ds, self.data, self.dim, title=type(self.model).__name__)
        self.status.value = ""

    def run_fit(self, steps: int | None = None) -> None:
        """Fit the model (busy state, progress bar), then update sliders and figure."""
        steps = steps or self.fit_steps
        self.progress.max, self.progress.value = steps, 0
        self._set_busy(True)
        try:
            self._fit(steps)
            self.progress.value = steps
        except Exception as err:
            self._show_error(err)
            return
        finally:
            self._set_busy(False)
        self._sync_controls()
        self._after_fit()

    def _fit(self, steps: int) -> None:
        self.model.fit(
            self.data,
            dim=self.dim,
            steps=steps,
            progress=False,
            callback=lambda step, loss: setattr(self.progress, "value", step + 1),
        )

    def _after_fit(self) -> None:
        self.refresh()

    def _on_change(self, change: dict) -> None:
        if getattr(self, "_syncing", False):
            return
        name = next(n for n, c in self.controls.items() if c is change["owner"])
        try:
            self.model.set_hyperparameter(name, change["new"])
        except Exception as err:
            self._show_error(err)
            return
        self.refresh()

    def _sync_controls(self) -> None:
        values = self.model.hyperparameters()
        self._syncing = True
        try:
            for name, control in self.controls.items():
                control.value = values[name]
        finally:
            self._syncing = False

    def _set_busy(self, busy: bool) -> None:
        for control in (*self.controls.values(), self.fit_button):
            control.disabled = busy
        self.status.value = "<i>fitting…</i>" if busy else ""

    def _show_error(self, err: Exception) -> None:
        text = html.escape(f"{type(err).__name__}: {err}")
        self.status.value = f"<span style='color:#b00020'>error: {text}</span>"

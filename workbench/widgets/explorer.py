"""The model explorer: hyper-parameter controls left, posterior figure right."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import numpy as np
import xarray as xr

from workbench.widgets.debounce import Debouncer, from_frontend
from workbench.widgets.specs import control_for, parameter_units
from workbench.widgets.views import posterior_png

__all__ = ["ModelExplorer"]

BUSY = "<i class='wb-busy-text'>{}…</i>"


def _attr_units(obj: Any) -> str | None:
    units = getattr(obj, "attrs", {}).get("units")
    return str(units) if units else None


class ModelExplorer(widgets.HBox):
    """Interactive view of a model on one dataset.

    Moving a slider sets that hyper-parameter on the model itself (so ``model.save()`` keeps
    it) and redraws the posterior, once per burst of moves (debounced); "fit" runs ``model.fit``
    with a progress bar while the controls are disabled. Sliders are labelled with units from
    the data's ``units`` attrs. Errors are shown in the widget's status line. All content is
    set through widget state (``Image``/``HTML``), so the explorer renders the same in
    JupyterLab, in nbval and in headless tests.

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
    debounce : float
        Seconds of quiet after the last slider move in the browser before the redraw.
    """

    def __init__(
        self,
        model: Any,
        data: xr.DataArray,
        dim: str = "time",
        *,
        fit_steps: int = 20,
        debounce: float = 0.3,
    ) -> None:
        self.model, self.data, self.dim, self.fit_steps = model, data, dim, fit_steps
        self._debounce = Debouncer(debounce, self._show_error, self._settled)
        self.controls = self._make_controls()
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
        left.add_class("wb-controls")
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
        self._debounce.flush()  # pending slider moves first, so the fit starts from them
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

    def watch(self, control: widgets.ValueWidget, then: Callable[[], Any]) -> None:
        """Call ``then`` (a redraw) when ``control``'s value changes: debounced for changes
        made in the browser, at once for changes made from Python. Errors go to the status."""
        control.observe(lambda change: self._changed(change, None, then), names="value")

    def units(self, name: str) -> str | None:
        """Units of hyper-parameter ``name`` from the data's and the coordinate's attrs (for a
        Dataset, of the variable the name mentions)."""
        values = self.data
        if isinstance(values, xr.Dataset):
            var = next((p for p in name.split(".") if p in values.data_vars), None)
            values = values[var] if var is not None else None
        return parameter_units(name, self._time_units(), _attr_units(values))

    def _make_controls(self) -> dict[str, widgets.ValueWidget]:
        values = self.model.hyperparameters()
        controls = {}
        for spec in self.model.parameter_specs():
            control = control_for(spec, values[spec.name], self.units(spec.name))
            control.observe(
                lambda change, name=spec.name: self._changed(change, name, self.refresh),
                names="value",
            )
            controls[spec.name] = control
        return controls

    def _changed(self, change: dict, name: str | None, then: Callable[[], Any]) -> None:
        if getattr(self, "_syncing", False):
            return
        if name is not None:  # the model holds the value at once, so save() keeps it
            try:
                self.model.set_hyperparameter(name, change["new"])
            except Exception as err:
                self._show_error(err)
                return
        deferred = from_frontend(change)
        if deferred:
            self.status.value = BUSY.format("updating")
        self._debounce(then, defer=deferred)

    def _settled(self) -> None:
        # redraws that do not reset the status (pickers, scrubbers) must not leave it "busy"
        if self.status.value == BUSY.format("updating"):
            self.status.value = ""

    def _time_units(self) -> str | None:
        coord = self.data[self.dim] if self.dim in self.data.coords else None
        if coord is None:
            return None
        if np.issubdtype(coord.dtype, np.datetime64):
            return getattr(self.model, "time_unit", None)
        return _attr_units(coord)

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
        self.fit_button.description = "fitting…" if busy else "fit"
        (self.add_class if busy else self.remove_class)("wb-busy")
        self.status.value = BUSY.format("fitting") if busy else ""

    def _show_error(self, err: Exception) -> None:
        text = html.escape(f"{type(err).__name__}: {err}")
        self.status.value = f"<span style='color:#b00020'>error: {text}</span>"

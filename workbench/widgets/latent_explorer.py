"""Explorer for latent-trajectory models: spike raster and inferred latent of a chosen trial."""

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

__all__ = ["LatentExplorer", "latent_png"]


def latent_png(
    ds: xr.Dataset,
    spikes: xr.DataArray,
    trial: Any,
    latent: int,
    *,
    trial_dim: str = "trial",
    dpi: int = 90,
) -> bytes:
    """Raster of one trial (units x time) above the latent's posterior mean ± 2 sd."""
    has_trial = trial_dim in ds.dims
    post = ds.sel({trial_dim: trial}) if has_trial else ds
    counts = spikes.sel({trial_dim: trial}) if has_trial else spikes
    fig = Figure(figsize=(7.0, 4.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.2, 1.0])
    time = counts["time"].values
    unit_dim = next(d for d in counts.dims if d != "time")
    values = counts.transpose(unit_dim, "time").values
    t_idx, u_idx = np.nonzero(np.nan_to_num(values.T) > 0)
    top.scatter(time[t_idx], u_idx, s=2, marker="|", color="k")
    top.set_ylabel(unit_dim)
    top.set_title(f"trial {trial}: spikes and latent {latent}", fontsize="medium")
    mean = post.latent_mean.sel(latent=latent).values
    sd = np.sqrt(post.latent_variance.sel(latent=latent).values)
    bottom.fill_between(time, mean - 2 * sd, mean + 2 * sd, alpha=0.3, color="C0", label="± 2 sd")
    bottom.plot(time, mean, color="C0", lw=1.2, label="posterior mean")
    bottom.set_ylabel(f"latent {latent}")
    bottom.set_xlabel(axis_label(spikes["time"], "time"))
    bottom.legend(loc="best", fontsize="small", frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class LatentExplorer(ModelExplorer):
    """Pick a trial and a latent, move kernel sliders, run CVI/EM with an ELBO readout.

    Sliders set the latents' kernel hyper-parameters on the model and rerun the E-step;
    "fit" runs variational EM (``fit_steps`` rounds) with a progress bar and the ELBO after
    each round. Trial and latent pickers only redraw.
    """

    def __init__(self, model: Any, data: xr.DataArray, *, fit_steps: int = 10) -> None:
        self._post: xr.Dataset | None = None
        if model.C is None:  # readout initialised from the data (no EM round yet)
            model.fit(data, steps=0, progress=False)
        trials = data[model.trial_dim].values.tolist() if model.trial_dim in data.dims else [0]
        self.trial = widgets.Dropdown(options=trials, value=trials[0], description="trial")
        self.latent = widgets.Dropdown(
            options=list(range(model.n_latents)), value=0, description="latent"
        )
        self.trial.add_class("wb-trial")
        self.latent.add_class("wb-latent")
        for picker in (self.trial, self.latent):
            self.watch(picker, self._redraw)
        super().__init__(model, data, "time", fit_steps=fit_steps)
        left = self.children[0]
        left.children = (self.trial, self.latent, *left.children)

    def refresh(self, fitted: bool = False) -> None:
        """Rerun the E-step with the current hyper-parameters (or, with ``fitted``, show the
        fit's own q) and redraw."""
        try:
            self._post = self.model.posterior(None if fitted else self.data)
        except Exception as err:  # shown to the user instead of lost in the kernel log
            self._show_error(err)
            return
        self.score.value = f"<b>ELBO</b>: {self._post.attrs['elbo']:.3f}"
        self.status.value = ""
        self._redraw()

    def _redraw(self) -> None:
        if self._post is not None:
            self.figure.value = latent_png(
                self._post,
                self.data,
                self.trial.value,
                int(self.latent.value),
                trial_dim=self.model.trial_dim,
            )

    def _fit(self, steps: int) -> None:
        """Variational EM with the ELBO shown after every round."""

        def report(step: int, loss: float) -> None:
            self.progress.value = step + 1
            self.score.value = f"<b>ELBO</b>: {-loss * self._n_observed():.3f} (round {step + 1})"

        self.model.fit(self.data, steps=steps, progress=False, callback=report)

    def _after_fit(self) -> None:
        self.refresh(fitted=True)

    def _n_observed(self) -> int:
        return int(np.isfinite(self.data.values).sum())

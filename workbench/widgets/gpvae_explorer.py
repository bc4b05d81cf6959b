"""Explorer for GP-VAEs: scrub through a trial, see the behaviour, the spikes and the latents;
latent sliders decode the behaviour (latent traversal)."""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workbench.widgets.explorer import ModelExplorer
from workbench.widgets.views import axis_label

__all__ = ["GPVAEExplorer", "gpvae_png"]


def _behaviour_panel(ax, values: np.ndarray, dims: list[str], title: str) -> None:
    """Frames as images, (keypoint, coord) as points, anything else as bars."""
    if values.ndim == 2 and dims[-1] == "coord":
        ax.plot(values[:, 0], values[:, 1], "o-", color="C2")
        ax.set_aspect("equal")
    elif values.ndim == 2:
        ax.imshow(values, cmap="gray", vmin=0, vmax=max(1e-9, float(np.nanmax(values))))
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.bar(np.arange(values.size), values.reshape(-1), color="C2")
    ax.set_title(title, fontsize="small")


def gpvae_png(
    post: xr.Dataset,
    data: xr.Dataset,
    trial: Any,
    t: int,
    *,
    spikes: str | None,
    behaviour: str | None,
    decoded: np.ndarray | None = None,
    dpi: int = 80,
) -> bytes:
    """Behaviour at bin t (observed and reconstructed, or ``decoded`` from the sliders), the
    trial's raster and its latent posterior means ± 2 sd with bin t marked."""
    fig = Figure(figsize=(8.0, 5.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3)
    p = post.sel(trial=trial)
    time = p["time"].values
    if behaviour is not None:
        recon = p[f"{behaviour}_mean"].isel(time=t)
        dims = list(recon.dims)
        if behaviour in data:
            observed = data[behaviour].sel(trial=trial).isel(time=t).transpose(*dims)
            _behaviour_panel(fig.add_subplot(grid[0, 0]), observed.values, dims, "observed")
        shown = decoded if decoded is not None else recon.values
        label = "decoded from sliders" if decoded is not None else "reconstructed"
        _behaviour_panel(fig.add_subplot(grid[0, 1]), shown, dims, label)
    if spikes is not None and spikes in data:
        counts = data[spikes].sel(trial=trial).transpose("time", ...).values
        ax = fig.add_subplot(grid[0, 2])
        t_idx, u_idx = np.nonzero(np.nan_to_num(counts) > 0)
        ax.scatter(time[t_idx], u_idx, s=1, marker="|", color="k")
        ax.axvline(time[t], color="C3")
        ax.set_title(spikes, fontsize="small")
    ax = fig.add_subplot(grid[1, :])
    for i, name in enumerate(p["latent"].values):
        mean = p.latent_mean.sel(latent=name).values
        sd = np.sqrt(p.latent_variance.sel(latent=name).values)
        ax.fill_between(time, mean - 2 * sd, mean + 2 * sd, color=f"C{i}", alpha=0.2)
        ax.plot(time, mean, color=f"C{i}", label=str(name))
        ax.plot(time[t], mean[t], "o", color=f"C{i}")
    ax.axvline(time[t], color="C3", lw=0.8)
    ax.set_xlabel(axis_label(post["time"], "time"))
    ax.set_ylabel("latent")
    ax.legend(loc="upper right", fontsize="small", frameon=False, ncol=len(p["latent"]))
    fig.suptitle(f"trial {trial}, bin {t}", fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class GPVAEExplorer(ModelExplorer):
    """Trial picker and a time scrubber; one slider per latent decodes the behaviour
    modality when "decode sliders" is on; "fit" trains ``fit_steps`` more epochs with the
    ELBO per trial after each."""

    def __init__(self, model: Any, data: xr.Dataset, *, fit_steps: int = 5) -> None:
        kinds = model.modalities
        self.spikes = next((m for m, k in kinds.items() if k == "poisson"), None)
        self.behaviour = next((m for m, k in kinds.items() if k != "poisson"), None)
        self._post: xr.Dataset | None = None
        if model.layout is None:
            model.fit(data, epochs=1, progress=False)
        trials = data[model.trial_dim].values.tolist()
        self.trial = widgets.Dropdown(options=trials, value=trials[0], description="trial")
        n_bins = data.sizes[model.time_dim]
        self.time = widgets.IntSlider(value=0, min=0, max=n_bins - 1, description="bin")
        self.decode = widgets.Checkbox(value=False, description="decode sliders")
        self.latents = {
            name: widgets.FloatSlider(
                value=0.0, min=-3.0, max=3.0, step=0.05, description=name, continuous_update=False
            )
            for name in model.latent_names
        }
        for w, cls in (
            (self.trial, "wb-trial"),
            (self.time, "wb-time"),
            (self.decode, "wb-decode"),
        ):
            w.add_class(cls)
            self.watch(w, self._redraw)
        for slider in self.latents.values():
            slider.add_class("wb-latent-value")
            self.watch(slider, self._redraw)
        super().__init__(model, data, model.time_dim, fit_steps=fit_steps)
        left = self.children[0]
        left.children = (self.trial, self.time, self.decode, *self.latents.values(), *left.children)

    def refresh(self) -> None:
        """Recompute the posterior of every trial and redraw."""
        try:
            self._post = self.model.posterior(self.data)
        except Exception as err:  # shown to the user instead of lost in the kernel log
            self._show_error(err)
            return
        try:
            elbo = self.model.elbo(self.data)
        except Exception as err:
            self._show_error(err)
            return
        epochs = len(self.model.elbo_trace)
        self.score.value = f"<b>ELBO per trial</b>: {elbo:.2f} (after {epochs} epochs)"
        self.status.value = ""
        self._redraw()

    def decoded(self) -> np.ndarray | None:
        """The behaviour decoded from the latent sliders (feature shape), if switched on."""
        if not self.decode.value or self.behaviour is None:
            return None
        idx = self.model.latent_index(self.behaviour)
        z = torch.tensor([s.value for s in self.latents.values()], dtype=torch.float32)[idx]
        with torch.no_grad():
            out = self.model.nets[self.behaviour].reconstruct(
                z[None, :, None], 0 * z[None, :, None]
            )
        shape = self._post[f"{self.behaviour}_mean"].shape[2:]
        return out.numpy().reshape(shape)

    def _redraw(self) -> None:
        if self._post is None:
            return
        self.figure.value = gpvae_png(
            self._post,
            self.data,
            self.trial.value,
            int(self.time.value),
            spikes=self.spikes,
            behaviour=self.behaviour,
            decoded=self.decoded(),
        )

    def _fit(self, steps: int) -> None:
        def report(epoch: int, loss: float) -> None:
            self.progress.value = epoch + 1
            self.score.value = f"<b>ELBO per trial</b>: {-loss:.2f} (epoch {epoch + 1})"

        self.model.fit(self.data, epochs=steps, progress=False, callback=report)

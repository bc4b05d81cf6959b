"""cvHM latent trajectories: K Hida-Matérn latents read out linearly by a population, O(T)."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Self

import numpy as np
import torch
import xarray as xr

from workbench.data import Observations, TimeAxis, from_dataarray
from workbench.errors import DimensionError, ShapeMismatchError, WorkbenchWarning
from workbench.inference.whittle import is_regular_grid
from workbench.kernels import MaternKernel, StateSpaceKernel, kernel_from_spec, kernel_to_spec
from workbench.likelihoods import (
    Likelihood,
    likelihood_from_spec,
    likelihood_to_spec,
    make_likelihood,
)
from workbench.models.base import Model
from workbench.models.divergence import DivergenceGuard, check_finite, check_moments
from workbench.models.latent_estep import LatentState, elbo, estep
from workbench.models.latent_mstep import mstep
from workbench.models.latent_outputs import LatentData as _Data
from workbench.models.latent_outputs import latent_dataset, latent_inference_data
from workbench.models.latent_sampling import draw_latents
from workbench.models.markov_gp import CVI_ADVICE, MarkovGP
from workbench.models.trials import pack_trials
from workbench.progress import progress_bar

__all__ = ["LatentTrajectoryGP"]


class LatentTrajectoryGP(Model):
    r"""Latent trajectories from population recordings (cvHM, GPFA-style readout), O(T).

    .. math::
        x_k \sim \mathcal{GP}(0, k_k),\; k = 1..K, \qquad
        y_{rtn} \mid x \sim p\bigl(y \mid c_n^\top x_{rt} + d_n\bigr)

    Each latent has a state-space (Hida-Matérn) prior with unit variance (the scale lives in
    the loadings C). Inference is variational EM (:mod:`~workbench.models.latent_estep`,
    :mod:`~workbench.models.latent_mstep`): the E-step runs conjugate-computation VI with one
    K-dimensional Gaussian site per bin, smoothed in linear time on the stacked state of all
    latents (``estep="joint"``), or with per-latent sites, each latent smoothed on its own
    (``estep="mean_field"``, cheaper for many latents); the M-step fits C and d on the
    expected log-likelihood by L-BFGS, then each kernel's hyper-parameters (Whittle on regular
    bins, the pseudo-data marginal likelihood otherwise).

    Trials are a dim of the data; a trial ends at its last bin with any observed unit (NaN
    tails), and the trials are packed end to end, so ragged trials cost no padding.

    Parameters
    ----------
    n_latents : int
        K.
    kernel : StateSpaceKernel or list of them, optional
        Prior of each latent (copied per latent when one is given). Default Matérn-5/2 with
        lengthscale 0.1 (in ``time_unit``).
    likelihood : str or Likelihood
        ``"poisson"`` (default; give ``Poisson(bin_width=...)`` for rates in Hz) or any
        :mod:`workbench.likelihoods` model.
    unit_dim, trial_dim : str
        Names of the unit and (optional) trial dims of the data.
    cvi_steps, cvi_lr : int, float
        CVI iterations per E-step and their damping.
    estep : {"joint", "mean_field"}
        Full K x K sites on the stacked state (keeps posterior correlations between latents;
        O(T (K s)^3)) or independent per-latent sites (O(T K s^3)), s = state size per latent.
    m_step : {"auto", "whittle", "marginal"}
        Kernel objective: ``"auto"`` takes Whittle on a regular grid, else the marginal
        likelihood of the pseudo-data (see :mod:`~workbench.models.latent_mstep`). With the
        joint E-step that likelihood runs a differentiable torch filter, one Python step per
        bin: for long irregular recordings prefer ``estep="mean_field"`` (compiled).
    time_unit : str
        Unit of the float axis for ``datetime64`` times.

    References
    ----------
    1. M. Dowling, Y. Zhao and I. M. Park, "Linear time GPs for inferring latent trajectories
       from neural spike trains", ICML 2023.
    """

    def __init__(
        self,
        n_latents: int,
        kernel: StateSpaceKernel | list[StateSpaceKernel] | None = None,
        likelihood: str | Likelihood | dict = "poisson",
        *,
        unit_dim: str = "unit",
        trial_dim: str = "trial",
        cvi_steps: int = 10,
        cvi_lr: float = 0.5,
        estep: str = "joint",
        m_step: str = "auto",
        time_unit: str = "s",
        n_units: int | None = None,
        axis: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if int(n_latents) != n_latents or n_latents < 1:
            raise ValueError(f"expected n_latents >= 1, got {n_latents}")
        if estep not in ("joint", "mean_field"):
            raise ValueError(f"expected estep in ('joint', 'mean_field'), got {estep!r}")
        if m_step not in ("auto", "whittle", "marginal"):
            raise ValueError(f"expected m_step in ('auto', 'whittle', 'marginal'), got {m_step!r}")
        if int(cvi_steps) != cvi_steps or cvi_steps < 1 or not 0 < cvi_lr <= 1:
            raise ValueError(f"expected cvi_steps >= 1, 0 < cvi_lr <= 1, got {cvi_steps}, {cvi_lr}")
        self.estep, self.m_step = estep, m_step
        kernels = _kernels(kernel, int(n_latents))
        self.latents = torch.nn.ModuleList([_latent_model(k, time_unit) for k in kernels])
        if isinstance(likelihood, dict):
            likelihood = likelihood_from_spec(likelihood)
        self.observation = make_likelihood(likelihood).double()
        self.unit_dim, self.trial_dim, self.time_unit = unit_dim, trial_dim, time_unit
        self.cvi_steps, self.cvi_lr = int(cvi_steps), float(cvi_lr)
        self.axis = TimeAxis(**axis) if axis is not None else None
        self.C: torch.nn.Parameter | None = None
        self.d: torch.nn.Parameter | None = None
        if n_units is not None:
            self._make_readout(int(n_units))
        self._data: tuple | None = None

    _fit_attributes = ("fit_elbo", "_data")  # fitted spikes and q, kept by save

    @property
    def n_latents(self) -> int:
        return len(self.latents)

    def _make_readout(self, n_units: int) -> None:
        dtype = torch.float64
        self.C = torch.nn.Parameter(torch.zeros(n_units, self.n_latents, dtype=dtype))
        self.d = torch.nn.Parameter(torch.zeros(n_units, dtype=dtype))
        self.to(self.device)  # built at the first fit, on the device the model was moved to

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "n_latents": self.n_latents,
            "kernel": [kernel_to_spec(m.kernel) for m in self.latents],
            "likelihood": likelihood_to_spec(self.observation),
            "unit_dim": self.unit_dim,
            "trial_dim": self.trial_dim,
            "cvi_steps": self.cvi_steps,
            "cvi_lr": self.cvi_lr,
            "estep": self.estep,
            "m_step": self.m_step,
            "time_unit": self.time_unit,
        }
        if self.C is not None:
            config["n_units"] = self.C.shape[0]
        if self.axis is not None:
            config["axis"] = self.axis.to_config()
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LatentTrajectoryGP:
        config = dict(config)
        kernels = [kernel_from_spec(spec) for spec in config.pop("kernel")]
        return cls(kernel=kernels, **config)

    # -- data ----------------------------------------------------------------------------------
    def _observe(self, spikes: xr.DataArray) -> tuple[Observations, torch.Tensor, torch.Tensor]:
        """Validated data and (y, mask) arranged as (trial, unit, time)."""
        obs = from_dataarray(
            spikes,
            "time",
            support=self.observation.support,
            time_unit=self.time_unit,
            axis=self.axis,
        ).to(self.device)  # xarray is on the CPU; the model maybe not
        if self.unit_dim not in obs.batch_dims:
            raise DimensionError(
                f"expected a {self.unit_dim!r} dim in the spikes, got dims {tuple(spikes.dims)}"
            )
        extra = set(obs.batch_dims) - {self.unit_dim, self.trial_dim}
        if extra:
            raise DimensionError(
                f"expected dims ({self.trial_dim!r}, 'time', {self.unit_dim!r}), got extra "
                f"{sorted(extra)}"
            )
        order = [d for d in (self.trial_dim, self.unit_dim) if d in obs.batch_dims]
        perm = [obs.batch_dims.index(d) for d in order]
        y, mask = (t.permute(*perm, len(perm)) for t in (obs.y, obs.mask))
        if self.trial_dim not in obs.batch_dims:
            y, mask = y[None], mask[None]
        return obs, y, mask

    def _prepare(self, spikes: xr.DataArray) -> _Data:
        """Validated data, packed trial by trial (see :mod:`workbench.models.trials`)."""
        obs, y, mask = self._observe(spikes)
        if self.C is not None and y.shape[1] != self.C.shape[0]:
            raise ShapeMismatchError(
                f"expected {self.C.shape[0]} entries along dim {self.unit_dim!r} (the fitted "
                f"readout's units), got {y.shape[1]}"
            )
        if self.axis is None:
            self.axis = obs.axis
        x = obs.x.to(torch.float64)
        names = spikes[self.trial_dim].values if self.trial_dim in spikes.dims else [0]
        packed = pack_trials(x, mask, list(names))
        dt = float(x[1] - x[0]) if x.shape[0] >= 2 and is_regular_grid(x) else None
        y = y.to(torch.float64)
        return _Data(obs, packed, packed.pack(y), packed.pack(mask), y, mask, dt)

    # -- inference -----------------------------------------------------------------------------
    def _estep(self, data: _Data, state: LatentState | None, steps: int, scale=1.0) -> LatentState:
        return estep(
            self.latents, data.packed.x, data.packed.starts, data.y, data.mask, self.C, self.d,
            self.observation, state, steps, self.cvi_lr * scale, self.estep == "joint",
        )  # fmt: skip

    def _initialize(self, y: torch.Tensor, mask: torch.Tensor) -> None:
        """Readout from PCA of smoothed log counts (of the values themselves for real-valued
        likelihoods, which may be negative); d from each unit's mean."""
        Y = torch.where(mask, y, torch.nan).double()
        real = self.observation.support == "real"
        rate = torch.nanmean(Y, dim=(0, 2))
        rate = rate if real else rate.clamp_min(1e-3)
        with torch.no_grad():
            self.d.copy_(self.observation.latent_guess_per_unit(rate))
            z = torch.nan_to_num(Y, nan=0.0)
            z = z if real else torch.log(z + 0.5)
            z = torch.where(mask, z - z.mean((0, 2), keepdim=True), 0.0)
            flat = z.permute(1, 0, 2).reshape(z.shape[1], -1)
            # principal axes from the units x units Gram matrix (cheap for long recordings)
            eigval, U = torch.linalg.eigh(flat @ flat.T)
            S, U = eigval.flip(0).clamp_min(0.0).sqrt(), U.flip(1)
            r = min(self.n_latents, U.shape[1])
            self.C.fill_(0.0)
            self.C[:, :r] = 0.5 * U[:, :r] * S[:r] / math.sqrt(flat.shape[1])

    def _kernel_method(self, data: _Data) -> str:
        if self.m_step == "whittle" and data.dt is None:
            warnings.warn(
                "m_step='whittle' needs a regular time grid; using the marginal likelihood",
                WorkbenchWarning,
                stacklevel=3,
            )
            return "marginal"
        if self.m_step != "auto":
            return self.m_step
        return "whittle" if data.dt is not None else "marginal"

    def fit(
        self,
        spikes: xr.DataArray,
        *,
        steps: int = 20,
        m_steps: int = 5,
        learn_hyperparameters: bool = True,
        progress: bool | None = None,
        callback: Any = None,
    ) -> Self:
        """Variational EM for ``steps`` rounds (E: CVI; M: readout, then kernels).

        Each round runs ``cvi_steps`` CVI iterations (warm-started from the last round's sites),
        ``m_steps`` L-BFGS iterations on (C, d), and, with ``learn_hyperparameters``, on each
        kernel's objective (``m_step``). ``callback(step, loss)`` gets -ELBO per observed value.
        A diverged round is rolled back and the next run with 10x smaller CVI damping and
        M-step steps (:class:`~workbench.models.divergence.DivergenceGuard`).
        """
        data = self._prepare(spikes)
        if self.C is None:
            if self.n_latents > data.y.shape[1]:
                warnings.warn(
                    f"n_latents={self.n_latents} exceeds the {data.y.shape[1]} units along "
                    f"{self.unit_dim!r}; the extra latents are not identifiable",
                    WorkbenchWarning,
                    stacklevel=2,
                )
            self._make_readout(data.y.shape[1])
            self._initialize(data.y_grid, data.mask_grid)
        state, trace, n = None, [], int(data.mask.sum())
        method = self._kernel_method(data)
        guard = DivergenceGuard(self, unit="EM round", advice=CVI_ADVICE)
        with progress_bar(steps, type(self).__name__, progress) as bar:
            for step in range(steps):
                with guard.attempt(step) as attempt:
                    new = self._estep(data, state, self.cvi_steps, guard.scale)
                    # ELBO of (q, current parameters), before the M-step moves them
                    value = elbo(self.observation, data.y, data.mask, new, self.C, self.d)
                    check_finite(value, "the ELBO")
                    mstep(self, data, new, n, method, m_steps, learn_hyperparameters, guard.scale)
                if not attempt.ok:
                    continue
                state = new
                trace.append(value)
                bar.update(1)
                bar.set_postfix(elbo=f"{trace[-1]:.4g}")
                if callback is not None:
                    callback(step, -trace[-1] / n)
        self.fit_elbo = trace
        self._data = (spikes.astype("float64", copy=False), state)  # validated: warns once
        return self

    def parameter_specs(self) -> list:
        """Sliders for the latents' learnable kernel hyper-parameters only."""
        learnable = {n.removeprefix("raw_") for n, p in self.named_parameters() if p.requires_grad}
        learnable = {n.replace(".raw_", ".") for n in learnable}
        return [s for s in super().parameter_specs() if s.name in learnable]

    def explore(self, spikes: xr.DataArray, **kwargs: Any) -> Any:
        """Trial/latent pickers, kernel sliders, raster + latent band, and a "fit" (EM) button
        with ELBO progress (see :class:`workbench.widgets.LatentExplorer`)."""
        from workbench.widgets import LatentExplorer

        return LatentExplorer(self, spikes, **kwargs)

    # -- outputs -------------------------------------------------------------------------------
    def _variational(self, spikes: xr.DataArray | None) -> tuple[xr.DataArray, _Data, Any]:
        """Data and q (stored after fit, or a fresh E-step on new spikes)."""
        if self.C is None:
            raise RuntimeError("fit the model before asking for its posterior")
        state = None
        if spikes is None:
            if self._data is None:
                raise ValueError("expected spikes (the model holds no fitted data)")
            spikes, state = self._data
        data = self._prepare(spikes)
        steps = self.cvi_steps if state is None else 0  # fitted sites: re-smooth only
        if state is not None:  # fitted (or loaded) before the model moved: follow it, once
            state = LatentState(*(t if t is None else t.to(self.device) for t in state))
            self._data = (spikes, state)
        state = self._estep(data, state, steps)
        check_moments(state.mean, state.var)  # packed bins: no NaN tails
        return spikes, data, state

    def sample_latents(
        self, num_samples: int = 100, spikes: xr.DataArray | None = None, seed: int = 0
    ) -> torch.Tensor:
        """Joint posterior draws of the latent trajectories, shape (draw, trial, latent, time).

        Exact samples of q by Matheron's rule (see :func:`draw_latents`), O(T) per draw; bins
        outside a trial's span are NaN.
        """
        _, data, state = self._variational(spikes)
        packed = data.packed
        draws = draw_latents(self.latents, packed.x, packed.starts, state, num_samples, seed)
        return torch.stack([packed.unpack(draw[None]) for draw in draws])

    def to_inference_data(
        self,
        spikes: xr.DataArray | None = None,
        num_samples: int = 100,
        *,
        log_likelihood: bool = False,
        seed: int = 0,
    ) -> Any:
        """ArviZ groups: posterior ``latent_trajectory`` draws, posterior-predictive and observed
        ``spikes``.

        ``log_likelihood=True`` adds pointwise log-likelihoods per (trial, time, unit) for
        ``az.loo`` (memory: draws x trials x bins x units values).
        """
        spikes, data, _ = self._variational(spikes)
        latents = self.sample_latents(num_samples, spikes, seed)  # (S, R, K, T)
        return latent_inference_data(self, spikes, data, latents, log_likelihood, seed)

    def posterior(self, spikes: xr.DataArray | None = None) -> xr.Dataset:
        """Latent means/variances (trial, time, latent) and, for Poisson, rates (trial, time, unit).

        ``spikes=None`` uses the data of the last ``fit``; new data run a fresh E-step with the
        learned readout and kernels. Bins outside a trial's span (NaN tails) are NaN. After a
        fit, ``elbo_trace`` (em_round) holds the ELBO of every EM round.
        """
        fitted = spikes is None
        spikes, data, state = self._variational(spikes)
        value = elbo(self.observation, data.y, data.mask, state, self.C, self.d)
        ds = latent_dataset(self, spikes, data, state, value)
        if fitted and getattr(self, "fit_elbo", None):
            ds["elbo_trace"] = ("em_round", np.asarray(self.fit_elbo))
            ds["elbo_trace"].attrs = {"long_name": "ELBO after each E-step of the fit"}
        return ds


def _kernels(kernel, K: int) -> list[StateSpaceKernel]:
    if kernel is None:
        return [MaternKernel(nu=2.5, lengthscale=0.1) for _ in range(K)]
    if isinstance(kernel, StateSpaceKernel):
        return [copy.deepcopy(kernel) for _ in range(K)]
    kernels = list(kernel)
    if len(kernels) != K:
        raise ValueError(f"expected {K} kernels (one per latent), got {len(kernels)}")
    return kernels


def _latent_model(kernel: StateSpaceKernel, time_unit: str) -> MarkovGP:
    """A zero-mean, unit-variance state-space prior for one latent (scale lives in C)."""
    model = MarkovGP(kernel, noise=1.0, time_unit=time_unit)
    for name, param in model.named_parameters():
        if not name.endswith("lengthscale") and "frequency" not in name:
            param.requires_grad_(False)
    return model

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
from workbench.errors import DimensionError, WorkbenchWarning
from workbench.inference import Sites, site_kl, sites_to_observations
from workbench.inference.readout import latent_expectations, readout_moments
from workbench.io import make_attrs, samples_to_inference_data
from workbench.kernels import MaternKernel, StateSpaceKernel, kernel_from_spec, kernel_to_spec
from workbench.likelihoods import (
    Likelihood,
    Poisson,
    likelihood_from_spec,
    likelihood_to_spec,
    make_likelihood,
)
from workbench.models.base import Model
from workbench.models.latent_sampling import draw_latents
from workbench.models.markov_gp import MarkovGP
from workbench.models.training import optimize
from workbench.progress import progress_bar

__all__ = ["LatentTrajectoryGP"]


class LatentTrajectoryGP(Model):
    r"""Latent trajectories from population recordings (cvHM, GPFA-style readout), O(T).

    .. math::
        x_k \sim \mathcal{GP}(0, k_k),\; k = 1..K, \qquad
        y_{rtn} \mid x \sim p\bigl(y \mid c_n^\top x_{rt} + d_n\bigr)

    Each latent has a state-space (Hida-Matérn) prior with unit variance (the scale lives in
    the loadings C). Inference is variational EM: the E-step runs conjugate-computation VI with
    mean-field sites per latent (each latent smoothed in linear time by the compiled Kalman/RTS
    recursions, trials as a batch); the M-step fits C and d on the expected log-likelihood and
    each kernel's lengthscale on its pseudo-data marginal likelihood.

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
        time_unit: str = "s",
        n_units: int | None = None,
        axis: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if int(n_latents) != n_latents or n_latents < 1:
            raise ValueError(f"expected n_latents >= 1, got {n_latents}")
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

    @property
    def n_latents(self) -> int:
        return len(self.latents)

    def _make_readout(self, n_units: int) -> None:
        dtype = torch.float64
        self.C = torch.nn.Parameter(torch.zeros(n_units, self.n_latents, dtype=dtype))
        self.d = torch.nn.Parameter(torch.zeros(n_units, dtype=dtype))

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "n_latents": self.n_latents,
            "kernel": [kernel_to_spec(m.kernel) for m in self.latents],
            "likelihood": likelihood_to_spec(self.observation),
            "unit_dim": self.unit_dim,
            "trial_dim": self.trial_dim,
            "cvi_steps": self.cvi_steps,
            "cvi_lr": self.cvi_lr,
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
        )
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

    # -- inference -----------------------------------------------------------------------------
    def _smooth(self, smoothers: list, sites: Sites) -> tuple[torch.Tensor, ...]:
        outs = [
            smoother(*sites_to_observations(Sites(sites.info[:, k], sites.precision[:, k])))
            for k, smoother in enumerate(smoothers)
        ]
        return tuple(torch.stack([o[i] for o in outs], 1) for i in range(3))

    def _estep(self, x, y, mask, sites: Sites | None, steps: int):
        """Mean-field CVI over the latents; returns (sites, mean, var, log Z) per latent."""
        with torch.no_grad():
            smoothers = [m._cvi_smoother(x) for m in self.latents]
            R, T = y.shape[0], y.shape[-1]
            if sites is None:
                zeros = y.new_zeros(R, self.n_latents, T)
                sites = Sites(zeros, zeros.clone())
            mean, var, log_z = self._smooth(smoothers, sites)
            for _ in range(steps):
                g = latent_expectations(self.observation, y, mask, mean, var, self.C, self.d)
                precision = (-2.0 * g.d_var).clamp_min(0.0)
                info = g.d_mean + precision * mean
                lr = self.cvi_lr
                sites = Sites(
                    (1 - lr) * sites.info + lr * info, (1 - lr) * sites.precision + lr * precision
                )
                mean, var, log_z = self._smooth(smoothers, sites)
        return sites, mean, var, log_z

    def _elbo(self, y, mask, sites, mean, var, log_z) -> float:
        with torch.no_grad():
            expected = latent_expectations(self.observation, y, mask, mean, var, self.C, self.d)
            return float(expected.value.sum() - site_kl(sites, mean, var, log_z).sum())

    def _initialize(self, y: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> None:
        """Readout from PCA of smoothed log counts; d from each unit's mean rate."""
        Y = torch.where(mask, y, torch.nan).double()
        rate = torch.nanmean(Y, dim=(0, 2)).clamp_min(1e-3)
        with torch.no_grad():
            self.d.copy_(self.observation.latent_guess_per_unit(rate))
            z = torch.log(torch.nan_to_num(Y, nan=0.0) + 0.5)
            z = z - z.mean((0, 2), keepdim=True)
            flat = z.permute(1, 0, 2).reshape(z.shape[1], -1)
            U, S, _ = torch.linalg.svd(flat, full_matrices=False)
            r = min(self.n_latents, U.shape[1])
            self.C.fill_(0.0)
            self.C[:, :r] = 0.5 * U[:, :r] * S[:r] / math.sqrt(flat.shape[1])

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
        """Variational EM for ``steps`` rounds (E: CVI; M: readout, then kernels)."""
        obs, y, mask = self._observe(spikes)
        x = obs.x.to(torch.float64)
        if self.axis is None:
            self.axis = obs.axis
        if self.C is None:
            if self.n_latents > y.shape[1]:
                warnings.warn(
                    f"n_latents={self.n_latents} exceeds the {y.shape[1]} units along "
                    f"{self.unit_dim!r}; the extra latents are not identifiable",
                    WorkbenchWarning,
                    stacklevel=2,
                )
            self._make_readout(y.shape[1])
            self._initialize(y, mask, x)
        sites, trace, n = None, [], int(mask.sum())
        with progress_bar(steps, type(self).__name__, progress) as bar:
            for step in range(steps):
                sites, mean, var, log_z = self._estep(x, y, mask, sites, self.cvi_steps)
                optimize(
                    self,
                    self._readout_loss(y, mask, mean, var, n),
                    steps=m_steps,
                    lr=1.0,
                    optimizer="lbfgs",
                    progress=False,
                    params=[self.C, self.d],
                )
                if learn_hyperparameters:
                    for k, latent in enumerate(self.latents):
                        site = Sites(sites.info[:, k], sites.precision[:, k])
                        optimize(
                            latent,
                            latent._pseudo_data_loss(x, site, n),
                            steps=m_steps,
                            lr=1.0,
                            optimizer="lbfgs",
                            progress=False,
                        )
                trace.append(self._elbo(y, mask, sites, mean, var, log_z))
                bar.update(1)
                if callback is not None:
                    callback(step, -trace[-1] / n)
        self.fit_elbo = trace
        self._data = (spikes, sites)
        return self

    def _readout_loss(self, y, mask, mean, var, n):
        def loss() -> torch.Tensor:
            mu, s2 = readout_moments(mean, var, self.C, self.d)
            value = self.observation.expected_log_prob_value(y, mu, s2)
            return -torch.where(mask, value, 0.0).sum() / n

        return loss

    # -- outputs -------------------------------------------------------------------------------
    def _variational(self, spikes: xr.DataArray | None):
        """Data, grid and sites defining q (stored after fit, or a fresh E-step on spikes)."""
        if self.C is None:
            raise RuntimeError("fit the model before asking for its posterior")
        sites = None
        if spikes is None:
            if self._data is None:
                raise ValueError("expected spikes (the model holds no fitted data after load)")
            spikes, sites = self._data
        obs, y, mask = self._observe(spikes)
        x = obs.x.to(torch.float64)
        steps = self.cvi_steps if sites is None else 0  # fitted sites: smooth only
        return spikes, obs, x, y, mask, self._estep(x, y, mask, sites, steps)

    def sample_latents(
        self, num_samples: int = 100, spikes: xr.DataArray | None = None, seed: int = 0
    ) -> torch.Tensor:
        """Joint posterior draws of the latent trajectories, shape (draw, trial, latent, time).

        Exact samples of q by Matheron's rule (see :func:`draw_latents`), O(T) per draw.
        """
        _, _, x, _, _, (sites, *_) = self._variational(spikes)
        return draw_latents(self.latents, x, sites, num_samples, seed)

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
        data, _, x, y, mask, (sites, *_) = self._variational(spikes)
        latents = draw_latents(self.latents, x, sites, num_samples, seed)  # (S, R, K, T)
        eta = torch.einsum("nk,srkt->srnt", self.C.detach(), latents) + self.d.detach()[:, None]
        g = torch.Generator().manual_seed(seed + 1)
        groups: dict[str, dict] = {
            "posterior": {"latent_trajectory": latents.permute(0, 1, 3, 2)[None]},
            "observed_data": {"spikes": y.permute(0, 2, 1)},
        }
        if isinstance(self.observation, Poisson):
            rate = self.observation.rate(eta)
            groups["posterior_predictive"] = {
                "spikes": torch.poisson(rate, generator=g).permute(0, 1, 3, 2)[None]
            }
        if log_likelihood:
            ll = torch.where(mask, self.observation.log_prob(y, eta), torch.nan)
            groups["log_likelihood"] = {"spikes": ll.permute(0, 1, 3, 2)[None]}
        trials = data[self.trial_dim].values if self.trial_dim in data.dims else np.arange(1)
        coords = {
            "trial": trials,
            "time": data["time"].values,
            "latent": np.arange(self.n_latents),
            "unit": data[self.unit_dim].values,
        }
        dims = {
            "latent_trajectory": ["trial", "time", "latent"],
            "spikes": ["trial", "time", "unit"],
        }
        return samples_to_inference_data(
            groups, dims=dims, coords=coords, attrs=make_attrs(type(self).__name__)
        )

    def posterior(self, spikes: xr.DataArray | None = None) -> xr.Dataset:
        """Latent means/variances (trial, time, latent) and, for Poisson, rates (trial, time, unit).

        ``spikes=None`` uses the data of the last ``fit``; new data run a fresh E-step with the
        learned readout and kernels.
        """
        spikes, obs, _, y, mask, (sites, mean, var, log_z) = self._variational(spikes)
        elbo = self._elbo(y, mask, sites, mean, var, log_z)
        return self._to_dataset(spikes, obs, mean, var, elbo)

    def _to_dataset(self, spikes, obs, mean, var, elbo) -> xr.Dataset:
        trial = self.trial_dim in obs.batch_dims
        coords = {"time": spikes["time"].values, "latent": np.arange(self.n_latents)}
        if trial:
            coords[self.trial_dim] = spikes[self.trial_dim].values
        lead = (self.trial_dim,) if trial else ()
        pick = (lambda a: a) if trial else (lambda a: a[0])
        dims = (*lead, "time", "latent")
        ds = xr.Dataset(
            {
                "latent_mean": (dims, pick(mean.transpose(1, 2).numpy())),
                "latent_variance": (dims, pick(var.transpose(1, 2).numpy())),
            },
            coords=coords,
        )
        if isinstance(self.observation, Poisson) and self.observation.link == "exp":
            with torch.no_grad():
                mu, s2 = readout_moments(mean, var, self.C, self.d)
                rate = torch.exp(mu + 0.5 * s2)  # E[exp(eta)]: events per unit time
            ds["rate"] = ((*lead, "time", self.unit_dim), pick(rate.transpose(1, 2).numpy()))
            ds["rate"].attrs = {
                "long_name": "posterior mean firing rate",
                "units": f"1/{spikes['time'].attrs.get('units', self.time_unit)}",
            }
            ds = ds.assign_coords({self.unit_dim: spikes[self.unit_dim].values})
        ds["latent_mean"].attrs = {"long_name": "posterior mean of the latent", "units": "1"}
        ds["latent_variance"].attrs = {
            "long_name": "posterior variance of the latent",
            "units": "1",
        }
        ds.attrs = make_attrs(
            type(self).__name__, self.hyperparameters(), elbo=elbo, n_latents=self.n_latents
        )
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

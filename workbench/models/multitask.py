"""Multi-task GP: correlated outputs observed on their own (irregular) grids."""

from __future__ import annotations

from typing import Any, Self

import gpytorch
import numpy as np
import torch
import xarray as xr

from workbench.data import Observations, TimeAxis, from_dataarray, resolve_at
from workbench.errors import DimensionError
from workbench.io import make_attrs, predictive_to_dataset
from workbench.kernels import kernel_from_spec, kernel_to_spec
from workbench.kernels.multitask import InteractionKernel, LMCKernel
from workbench.models.base import Model
from workbench.models.data_scale import standardized
from workbench.models.multitask_inference import MultitaskInference
from workbench.models.multitask_init import MULTITASK_POWERS, initialize, multitask_scale
from workbench.models.multitask_outputs import inference_data
from workbench.models.rng import forked_rng
from workbench.models.training import optimize

__all__ = ["MultitaskGP"]

INFERENCE = ("auto", "exact", "sparse")


class MultitaskGP(MultitaskInference, Model):
    r"""Linear model of coregionalisation (ICM for one latent), optionally with hierarchical
    latent interactions, on a ``DataArray(task, time)`` whose NaN entries are unobserved.

    .. math::
        y_{i}(x) = c_i + f_i(x) + \varepsilon_i,\quad
        \mathrm{Cov}(f_i(x), f_j(x')) = \sum_q B_q[i, j]\,k_q(x, x'),\quad
        \varepsilon_i \sim N(0, \sigma_i^2)

    (see :mod:`workbench.kernels.multitask`). Every task may be observed at its own inputs;
    all observed values are stacked, so exact inference costs O(N³) in the total number of
    observations N. Above ``max_exact`` observations (or with ``inference="sparse"``) the
    model uses Titsias' collapsed sparse bound with ``n_inducing`` inducing times shared by all
    tasks (M = T × n_inducing inducing variables, O(N M²)).

    Parameters
    ----------
    kernel : gpytorch Kernel, dict, or list of them, optional
        The latents' kernels on the time axis: one template copied Q times, or Q kernels
        (default ``RBFKernel``; the coregionalisation carries the variances). With
        ``interaction=True`` the latents are squared exponentials (the closed form of the
        cross-convolution) and ``kernel`` must be None.
    n_latents : int
        Q.
    interaction : bool
        Add the cross-covariances between different latents
        (:class:`~workbench.kernels.multitask.InteractionKernel`).
    rank : int
        Rank of each coregionalisation factor (of the cross-coregionalisation with
        ``interaction=True``).
    inference : {"auto", "exact", "sparse"}
    max_exact, n_inducing : int
        The "auto" switch and the number of inducing times.
    task_dim : str
        The task dim of the data.
    seed : int
        Seed of the coregionalisation factors' random start (symmetric starts stay symmetric).
    """

    def __init__(
        self,
        kernel: Any = None,
        n_latents: int = 1,
        interaction: bool = False,
        *,
        rank: int = 1,
        inference: str = "auto",
        max_exact: int = 2000,
        n_inducing: int = 32,
        task_dim: str = "task",
        seed: int = 0,
        tasks: list | None = None,
        time_unit: str = "D",
        axis: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if int(n_latents) != n_latents or n_latents < 1:
            raise ValueError(f"expected n_latents >= 1, got {n_latents}")
        if int(rank) != rank or rank < 1:
            raise ValueError(f"expected rank >= 1, got {rank}")
        if inference not in INFERENCE:
            raise ValueError(f"expected inference in {INFERENCE}, got {inference!r}")
        if interaction and kernel is not None:
            raise ValueError("expected kernel=None with interaction=True (SE latents), got one")
        self.n_latents, self.interaction, self.rank = int(n_latents), bool(interaction), int(rank)
        self.inference, self.max_exact, self.n_inducing = inference, int(max_exact), n_inducing
        self.task_dim, self.seed, self.time_unit = task_dim, seed, time_unit
        self.axis = TimeAxis(**axis) if axis is not None else None
        self._templates = self._checked(self._latent_templates(kernel), "kernel")
        self.kernel: gpytorch.kernels.Kernel | None = None
        self.tasks: list | None = None
        if tasks is not None:
            self._make_parameters(list(tasks))
        self.fit_losses: list[float] = []

    def _latent_templates(self, kernel: Any) -> list[gpytorch.kernels.Kernel]:
        if kernel is None:
            return [gpytorch.kernels.RBFKernel() for _ in range(self.n_latents)]
        kernels = kernel if isinstance(kernel, list | tuple) else [kernel] * self.n_latents
        if len(kernels) != self.n_latents:
            raise ValueError(
                f"expected {self.n_latents} kernels (one per latent), got {len(kernels)}"
            )
        return [kernel_from_spec(k) if isinstance(k, dict) else k for k in kernels]

    def _make_parameters(self, tasks: list) -> None:
        T = len(tasks)
        self.tasks = tasks
        if self.interaction:
            self.kernel = InteractionKernel(T, self.n_latents, self.rank, seed=self.seed)
        else:
            with forked_rng():  # gpytorch draws factors (replaced below)
                self.kernel = LMCKernel(self._templates, T, self.rank)
            gen = torch.Generator().manual_seed(self.seed)
            for index in self.kernel.coregionalization:
                start = torch.randn(index.covar_factor.shape, generator=gen, dtype=torch.float64)
                index.covar_factor.data.copy_(0.5 + 0.1 * start)
        self.raw_noise = torch.nn.Parameter(torch.zeros(T, dtype=torch.float64))
        self.raw_noise_constraint = gpytorch.constraints.GreaterThan(1e-8)
        self.task_mean = torch.nn.Parameter(torch.zeros(T, dtype=torch.float64))
        self.to(self.device)  # built at the first fit, on the device the model was moved to

    @property
    def noise(self) -> torch.Tensor:
        """Noise variances sigma_i^2 of the tasks, shape (T,)."""
        return self.raw_noise_constraint.transform(self.raw_noise)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "kernel": None if self.interaction else [kernel_to_spec(k) for k in self._templates],
            "n_latents": self.n_latents,
            "interaction": self.interaction,
            "rank": self.rank,
            "inference": self.inference,
            "max_exact": self.max_exact,
            "n_inducing": self.n_inducing,
            "task_dim": self.task_dim,
            "seed": self.seed,
            "time_unit": self.time_unit,
        }
        if self.tasks is not None:
            config["tasks"] = self.tasks
        if self.axis is not None:
            config["axis"] = self.axis.to_config()
        return config

    # -- data ----------------------------------------------------------------------------------
    def _observe(self, da: xr.DataArray) -> tuple[Observations, torch.Tensor, torch.Tensor]:
        """Observations, stacked inputs (N, 2) = (time, task index) and values (N,)."""
        obs = from_dataarray(da, "time", time_unit=self.time_unit, axis=self.axis)
        if obs.batch_dims != (self.task_dim,):
            raise DimensionError(f"expected dims ({self.task_dim!r}, 'time'), got {tuple(da.dims)}")
        names = [_plain(v) for v in da[self.task_dim].values]
        if self.tasks is not None and names != self.tasks:
            raise DimensionError(
                f"expected the fitted tasks {self.tasks} along {self.task_dim!r}, got {names}"
            )
        obs = obs.to(self.device)  # the data where the model lives (xarray is on the CPU)
        task, point = torch.nonzero(obs.mask, as_tuple=True)
        X = torch.stack([obs.x.double()[point], task.double()], 1)
        return obs, X, obs.y.double()[task, point]

    # -- inference -----------------------------------------------------------------------------
    def _method(self, obs: Observations) -> str:
        """ "kronecker" (exact ICM on a complete grid), "exact" or "sparse"."""
        if self.inference == "sparse":
            return "sparse"
        if not self.interaction and self.n_latents == 1 and bool(obs.mask.all()):
            return "kronecker"
        auto_sparse = self.inference == "auto" and obs.n_observed > self.max_exact
        return "sparse" if auto_sparse else "exact"

    # -- public API ----------------------------------------------------------------------------
    def fit(
        self,
        da: xr.DataArray,
        *,
        steps: int = 50,
        lr: float = 1.0,
        progress: bool | None = None,
        callback: Any = None,
    ) -> Self:
        """Maximise the log marginal likelihood (or the sparse bound) per observation by
        L-BFGS: ``steps`` optimiser steps of up to 20 iterations (strong-Wolfe line search).

        The first fit creates the per-task parameters (means start at the tasks' averages,
        noises at 5 % of their variances, lengthscales at 10 % of the time span).
        """
        obs, X, y = self._observe(da)
        if self.tasks is None:
            if self.rank > obs.n_series:
                raise ValueError(f"expected rank <= the {obs.n_series} tasks, got {self.rank}")
            self.axis = obs.axis
            self._make_parameters([_plain(v) for v in obs.template[self.task_dim].values])
            initialize(self, X, y)
        n, scale = X.shape[0], multitask_scale(X, y)
        with standardized(self, obs, scale=scale, powers=MULTITASK_POWERS) as (obs, offset):
            y = y / scale  # the same problem at any data scale
            report = callback and (lambda step, value: callback(step, value + offset))
            losses = optimize(
                self, lambda: -self._bound(obs, X, y) / n, steps=steps, lr=lr,
                optimizer="lbfgs", progress=progress, desc=type(self).__name__, callback=report,
            )  # fmt: skip
        self.fit_losses = [value + offset for value in losses]
        return self

    def log_marginal_likelihood(self, da: xr.DataArray) -> float:
        """Exact :math:`\\log p(y)` (or the sparse lower bound) of all observations."""
        obs, X, y = self._observe(da)
        self._require_fit()
        scale = multitask_scale(X, y)
        with standardized(self, obs, scale=scale, powers=MULTITASK_POWERS) as (obs, offset):
            with torch.no_grad():  # standardised, plus the log-Jacobian of y / s
                return float(self._bound(obs, X, y / scale)) - X.shape[0] * offset

    def posterior(
        self,
        da: xr.DataArray,
        at: Any = None,
        *,
        ci_prob: float = 0.95,
        observation_noise: bool = False,
    ) -> xr.Dataset:
        """Posterior of every task's latent function given ``da``, on its times or ``at``:
        ``mean``, ``variance``, ``lower``, ``upper`` (task, time), for observed and unobserved
        tasks' points alike. ``observation_noise=True`` adds each task's :math:`\\sigma_i^2`."""
        obs, X, y = self._observe(da)
        self._require_fit()
        x_new, coords = resolve_at(obs, at)
        with torch.no_grad():
            mean, variance = self._predict(obs, X, y, x_new)
            if observation_noise:
                variance = variance + self.noise[:, None]
        attrs = make_attrs(
            type(self).__name__, self.hyperparameters(), observation_noise=observation_noise,
            inference=self._method(obs),
        )  # fmt: skip
        return predictive_to_dataset(
            obs, mean, variance, coords=coords, ci_prob=ci_prob, attrs=attrs
        )

    def task_covariance(self) -> xr.DataArray:
        r"""Covariance of the tasks' latent functions at one time (zero lag),
        ``DataArray(task, task_)``: :math:`\sum_q B_q k_q(0)` for the LMC."""
        self._require_fit()
        T = len(self.tasks)
        X0 = torch.stack([torch.zeros(T, dtype=torch.float64), torch.arange(T).double()], 1)
        with torch.no_grad():
            cov = self._k(X0.to(self.device), X0.to(self.device)).cpu().numpy()
        names = np.asarray(self.tasks)
        return xr.DataArray(
            cov,
            dims=(self.task_dim, f"{self.task_dim}_"),
            coords={self.task_dim: names, f"{self.task_dim}_": names},
            name="task_covariance",
        )

    def task_correlation(self) -> xr.DataArray:
        """Correlation of the tasks' latent functions at zero lag, ``DataArray(task, task_)``."""
        cov = self.task_covariance()
        sd = np.sqrt(np.diag(cov.values))
        out = cov.copy(data=cov.values / np.outer(sd, sd)).rename("task_correlation")
        out.attrs = {"long_name": "correlation of the tasks' latent functions", "units": "1"}
        return out

    def to_inference_data(
        self,
        da: xr.DataArray,
        num_samples: int = 100,
        *,
        log_likelihood: bool = False,
        seed: int = 0,
    ) -> Any:
        """ArviZ groups over one ``obs`` dim of the observed values (``task``/``time``
        coordinates along it): joint ``posterior`` draws of the latent ``f``, replicated
        ``y`` (``posterior_predictive``), ``observed_data`` and, with ``log_likelihood=True``,
        pointwise Gaussian log-likelihoods for ``az.loo``. Needs the N x N posterior covariance
        (N <= :data:`~workbench.models.multitask_outputs.MAX_JOINT`)."""
        self._require_fit()
        return inference_data(self, da, num_samples, log_likelihood, seed)

    def sample_hyperparameters(self, da: xr.DataArray, **options: Any) -> Any:
        """Posterior draws of the hyper-parameters by NUTS on the exact marginal likelihood
        (at most ``max_exact`` observed values) as ArviZ groups; the model is not modified.
        Options (``priors``, ``fixed``, ``num_samples``, ``warmup_steps``, ``num_chains``,
        ``seed``, ...), what is sampled, and the groups: see
        :func:`workbench.models.multitask_nuts.sample_hyperparameters`."""
        from workbench.models.multitask_nuts import sample_hyperparameters

        return sample_hyperparameters(self, da, **options)

    def averaged_posterior(
        self, da: xr.DataArray, idata: Any, at: Any = None, **options: Any
    ) -> xr.Dataset:
        """:meth:`posterior` averaged over the hyper-parameter draws of ``idata`` (from
        :meth:`sample_hyperparameters`): mixture mean, law-of-total-variance variance and
        quantiles (options: :func:`workbench.models.multitask_nuts.averaged_posterior`)."""
        from workbench.models.multitask_nuts import averaged_posterior

        return averaged_posterior(self, da, idata, at, **options)

    def explore(self, data: xr.DataArray, *, fit_steps: int = 10) -> Any:
        """An ipywidgets explorer: pick tasks, hide a time window of one task and watch the
        others fill it in, move the shared hyper-parameters, refit (see
        :class:`workbench.widgets.MultitaskExplorer`)."""
        from workbench.widgets import MultitaskExplorer

        return MultitaskExplorer(self, data, fit_steps=fit_steps)

    def _require_fit(self) -> None:
        if self.kernel is None:
            raise RuntimeError("expected a fitted model (call fit first)")


def _plain(value: Any) -> Any:
    """A JSON-able Python scalar for a coordinate value (task names go into the config)."""
    return value.item() if hasattr(value, "item") else value

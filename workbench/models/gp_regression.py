"""Shared base of GP regression models on one labelled dim (dense and state-space)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any, Self

import gpytorch
import numpy as np
import torch
import xarray as xr
from gpytorch.kernels import Kernel

from workbench.data import Observations, TimeAxis, from_dataarray, resolve_at
from workbench.errors import DTypeError, FitDivergedError, ShapeMismatchError, WorkbenchWarning
from workbench.inference import (
    expected_periodogram,
    is_regular_grid,
    periodogram,
    whittle_log_likelihood,
)
from workbench.io import make_attrs, predictive_to_dataset
from workbench.kernels import kernel_from_spec, kernel_to_spec
from workbench.likelihoods import (
    Gaussian,
    Likelihood,
    likelihood_from_spec,
    likelihood_to_spec,
    make_likelihood,
)
from workbench.models.base import Model, Posterior
from workbench.models.data_scale import match_data_scale, standardized
from workbench.models.regression_samples import regression_inference_data
from workbench.models.training import optimize

__all__ = ["GPRegression"]


class GPRegression(Model):
    r"""Base of GP regression models on one labelled dim.

    Subclasses supply the numerics (:meth:`_log_marginals`, :meth:`predict_moments`); this class
    owns the parameters (kernel, noise :math:`\sigma^2`, prior mean :math:`c` or
    :math:`c + s\,x` with ``trend="linear"``), the likelihood (Gaussian, or another
    :mod:`workbench.likelihoods` model where the subclass supports CVI), the xarray edges,
    fitting, persistence and reprs.
    """

    def __init__(
        self,
        kernel: Kernel,
        likelihood: str | Likelihood = "gaussian",
        *,
        noise: float = 0.1,
        mean: float = 0.0,
        trend: str = "constant",
        share_hyperparameters: bool = True,
        time_unit: str = "D",
        axis: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(kernel, Kernel):
            raise TypeError(f"expected a gpytorch Kernel, got {type(kernel).__name__}")
        observation = self._observation_model(likelihood)
        if observation is not None and not share_hyperparameters:
            raise ValueError("share_hyperparameters=False needs likelihood='gaussian' for now")
        self._checked([kernel], "kernel")  # noise: checked by set_hyperparameter below
        if trend not in ("constant", "linear"):
            raise ValueError(f"expected trend in ('constant', 'linear'), got {trend!r}")
        self.kernel = kernel
        if isinstance(observation, Gaussian):
            noise, observation = observation.noise.item(), None
        self.observation = observation
        self.likelihood = "gaussian" if observation is None else likelihood_to_spec(observation)
        self.time_unit = time_unit
        self.axis = TimeAxis(**axis) if axis is not None else None
        self.raw_noise = torch.nn.Parameter(torch.zeros(()))
        self.raw_noise_constraint = gpytorch.constraints.GreaterThan(1e-8)
        self.mean = torch.nn.Parameter(torch.tensor(float(mean)))
        self.trend = trend
        if trend == "linear":
            self.slope = torch.nn.Parameter(torch.tensor(0.0))
        self.double()
        self.set_hyperparameter("noise", noise)
        self.share_hyperparameters = bool(share_hyperparameters)
        self.members: torch.nn.ModuleList | None = None

    #: Subclasses that can fit non-Gaussian likelihoods (by CVI) set this.
    supports_cvi: bool = False

    def _observation_model(self, likelihood: str | Likelihood) -> Likelihood | None:
        if isinstance(likelihood, str) and likelihood == "gaussian":
            return None
        if isinstance(likelihood, dict):
            likelihood = likelihood_from_spec(likelihood)
        observation = make_likelihood(likelihood)
        if not self.supports_cvi and not isinstance(observation, Gaussian):
            raise ValueError(
                f"expected likelihood='gaussian' for {type(self).__name__}, got "
                f"{type(observation).__name__}; use wb.MarkovGP for non-Gaussian likelihoods"
            )
        return observation

    def _make_members(self, n: int) -> None:
        """One independent copy of this model per series (``share_hyperparameters=False``)."""
        template = copy.deepcopy(self)
        template.share_hyperparameters = True
        self.members = torch.nn.ModuleList([copy.deepcopy(template) for _ in range(n)])

    def _noise_per_series(self, obs: Observations) -> torch.Tensor:
        """Noise variance broadcastable against (*batch, T)."""
        if self.members is None:
            return self.noise.detach()
        noise = torch.stack([m.noise.detach() for m in self.members])
        return noise.reshape(*obs.batch_shape, 1)

    def _per_series(self, obs: Observations, method: str, *args: Any) -> Any:
        """Call ``method`` on each member with its own series, or on self for shared ones."""
        if self.members is None:
            return getattr(self, method)(obs, *args)
        if obs.n_series != len(self.members):
            raise ShapeMismatchError(
                f"expected {len(self.members)} series across dims {obs.batch_dims} (one per "
                f"fitted member, share_hyperparameters=False), got {obs.n_series}"
            )
        outs = [getattr(m, method)(obs.series(i), *args) for i, m in enumerate(self.members)]
        if isinstance(outs[0], Posterior):
            shape = (*obs.batch_shape, outs[0].mean.shape[-1])
            return Posterior(*(torch.stack(v).reshape(shape) for v in zip(*outs, strict=True)))
        return torch.stack(outs).reshape(obs.batch_shape)

    @property
    def noise(self) -> torch.Tensor:
        return self.raw_noise_constraint.transform(self.raw_noise)

    def parameter_specs(self) -> list:
        specs = super().parameter_specs()
        if self.members is None:
            return specs
        return [s for s in specs if s.name.startswith("members.")]  # the template is unused

    def prior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`c` or :math:`c + s x` at float positions ``x`` (shape (T,))."""
        if self.trend == "linear":
            return self.mean + self.slope * x
        return self.mean.expand(x.shape)

    def _initialize_mean(self, obs: Observations) -> None:
        # least squares of the observed values (latent-scale guesses for non-Gaussian) on [1, x]
        x = obs.x.to(self.mean).expand(obs.y.shape)[obs.mask]
        y = obs.y.to(self.mean)[obs.mask]
        if self.observation is not None:
            with torch.no_grad():
                self.mean.copy_(self.observation.latent_guess(y))
            return
        design = torch.stack([torch.ones_like(x), x], -1) if self.trend == "linear" else None
        with torch.no_grad():
            if design is None or x.unique().numel() < 2:
                self.mean.copy_(y.mean())
                return
            coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
            self.mean.copy_(coef[0])
            self.slope.copy_(coef[1])

    def get_config(self) -> dict[str, Any]:
        config = {
            "kernel": kernel_to_spec(self.kernel),
            "likelihood": self.likelihood,
            "trend": self.trend,
            "time_unit": self.time_unit,
            "share_hyperparameters": self.share_hyperparameters,
        }
        if self.members is not None:
            config["n_series"] = len(self.members)
        if self.axis is not None:
            config["axis"] = self.axis.to_config()
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GPRegression:
        model = cls(
            kernel_from_spec(config["kernel"]), config["likelihood"], **cls._init_kwargs(config)
        )
        if config.get("n_series"):
            model._make_members(config["n_series"])
        return model

    @classmethod
    def _init_kwargs(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "trend": config.get("trend", "constant"),
            "share_hyperparameters": config.get("share_hyperparameters", True),
            "time_unit": config["time_unit"],
            "axis": config.get("axis"),
        }

    # -- data ----------------------------------------------------------------------------------
    def _observe(self, da: xr.DataArray, dim: str) -> Observations:
        support = "real" if self.observation is None else self.observation.support
        obs = from_dataarray(da, dim, support=support, time_unit=self.time_unit, axis=self.axis)
        if self.axis is not None and self.axis.kind != obs.axis.kind:
            raise DTypeError(
                f"expected {self.axis.kind} coordinates for dim {dim!r} as at fit time, got "
                f"{obs.axis.kind}"
            )
        return obs.to(self.device)  # the data where the model lives (xarray is on the CPU)

    def _log_marginals(self, obs: Observations) -> torch.Tensor:
        """Exact log marginal likelihood of every series, shape ``obs.batch_shape``."""
        raise NotImplementedError

    def predict_moments(self, obs: Observations, x_new: torch.Tensor) -> Posterior:
        """Latent posterior moments at ``x_new`` (shape (T_new,)) for every series of ``obs``."""
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------
    def fit(
        self,
        da: xr.DataArray,
        dim: str = "time",
        *,
        method: str = "marginal",
        steps: int = 50,
        optimizer: str = "lbfgs",
        lr: float | None = None,
        learn_hyperparameters: bool = True,
        progress: bool | None = None,
        callback: Any = None,
    ) -> Self:
        """Learn the hyper-parameters from ``da``; returns ``self``.

        Parameters
        ----------
        method : {"marginal", "whittle"}
            ``"marginal"`` maximises the exact log marginal likelihood (per observed value).
            ``"whittle"`` maximises the debiased Whittle likelihood (O(T log T), see
            :mod:`workbench.inference.whittle`); it needs a regular grid without missing values
            and otherwise falls back to ``"marginal"`` with a :class:`WorkbenchWarning`. Whittle
            does not inform the prior mean, which stays at its least-squares start.
        steps : int
            Optimiser iterations.
        optimizer : {"lbfgs", "adam"}
            ``lr`` defaults to 1 for L-BFGS and 0.01 for Adam.
        learn_hyperparameters : bool
            ``False`` only records the data's coordinate axis (and the initial mean).
        callback : callable, optional
            ``callback(step, loss)`` after every iteration.

        On the first fit the prior mean (and slope) start at their least-squares values. Data
        whose variance is far from 1 (e.g. at 1e12 or 1e-12) start the noise and outputscales
        at that variance and are fitted in standardised units (:mod:`~workbench.models.data_scale`).
        """
        if method not in ("marginal", "whittle"):
            raise ValueError(f"expected method in ('marginal', 'whittle'), got {method!r}")
        if method == "whittle" and self.observation is not None:
            raise ValueError("method='whittle' needs likelihood='gaussian'; use 'marginal'")
        obs = self._observe(da, dim)
        if self.axis is None:
            self._initialize_mean(obs)
            if learn_hyperparameters and self.observation is None:
                match_data_scale(self, obs)
            self.axis = obs.axis
            if not self.share_hyperparameters and obs.batch_dims and self.members is None:
                self._make_members(obs.n_series)
                for i, member in enumerate(self.members):
                    member._initialize_mean(obs.series(i))
                    member.axis = obs.axis
        lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.01)
        if self.observation is not None:
            self._fit_cvi(obs, steps, lr, optimizer, progress, callback, learn_hyperparameters)
            return self
        if not learn_hyperparameters:
            return self
        with standardized(self, obs) as (obs, offset):  # the same problem at any data scale
            loss = self._whittle_loss(obs) if method == "whittle" else None
            if loss is None:
                n = obs.n_observed
                loss = lambda: -self._per_series(obs, "_log_marginals").sum() / n  # noqa: E731
            report = callback and (lambda step, value: callback(step, value + offset))
            name = type(self).__name__
            losses = optimize(self, loss, steps=steps, lr=lr, optimizer=optimizer,
                              progress=progress, desc=name, callback=report)  # fmt: skip
        self.fit_losses = [value + offset for value in losses]
        return self

    def _whittle_loss(self, obs: Observations) -> Callable[[], torch.Tensor] | None:
        x = obs.x.to(self.mean)
        if x.shape[0] < 4 or not is_regular_grid(x.cpu()) or not bool(obs.mask.all()):
            reason = (
                "fewer than 4 points"
                if x.shape[0] < 4
                else ("missing values" if is_regular_grid(x.cpu()) else "an irregular grid")
            )
            warnings.warn(
                f"method='whittle' needs a regular grid without missing values along "
                f"{obs.dim!r}, got {reason}; fitting the exact marginal likelihood instead",
                WorkbenchWarning,
                stacklevel=3,
            )
            return None
        if self.members is None:
            terms = [self._whittle_term(obs)]
        else:
            terms = [m._whittle_term(obs.series(i)) for i, m in enumerate(self.members)]
        scale = float(sum(n for _, n in terms))
        return lambda: sum(term() for term, _ in terms) / scale

    def _whittle_term(self, obs: Observations) -> tuple[Callable[[], torch.Tensor], int]:
        """Negative Whittle log-likelihood of ``obs`` (regular, complete), and its frequencies."""
        x = obs.x.to(self.mean)
        dt = float(x[1] - x[0])
        with torch.no_grad():
            power = periodogram(obs.y.to(self.mean) - self.prior_mean(x), dt)
        lags = (x - x[0]).unsqueeze(-1)

        def term() -> torch.Tensor:
            cov = self.kernel(lags, lags[:1]).to_dense()[..., 0]
            cov = torch.cat([cov[:1] + self.noise, cov[1:]])
            return -whittle_log_likelihood(power, expected_periodogram(cov, dt)).sum()

        return term, power.numel()

    def log_marginal_likelihood(self, da: xr.DataArray, dim: str = "time") -> float | xr.DataArray:
        """Exact :math:`\\log p(y)` per series: a float, or a DataArray over the batch dims."""
        obs = self._observe(da, dim)
        with torch.no_grad():
            values = self._per_series(obs, "_log_marginals").cpu().numpy()
        if not np.isfinite(values).all():
            raise FitDivergedError(
                f"expected a finite log marginal likelihood, got {np.ravel(values).tolist()[:5]} "
                "(first values); the hyper-parameters are degenerate for this data: refit, or set "
                "them closer to the data's scales"
            )
        if not obs.batch_dims:
            return float(values)
        template = obs.template.isel({dim: 0}, drop=True).rename("log_marginal_likelihood")
        return template.copy(
            data=values.transpose([obs.batch_dims.index(str(d)) for d in template.dims])
        )

    def to_inference_data(
        self,
        da: xr.DataArray,
        dim: str = "time",
        num_samples: int = 200,
        *,
        log_likelihood: bool = True,
        seed: int = 0,
    ) -> Any:
        r"""ArviZ groups for ``da`` with its own dims and coords: ``posterior`` (joint draws of
        the latent ``f``, one chain), ``posterior_predictive`` (replicated data),
        ``observed_data`` and pointwise ``log_likelihood`` :math:`\log p(y_t \mid f_t)`.

        The hyper-parameters are the fitted point values (for their posterior, see
        ``sample_hyperparameters`` on ``MarkovGP``). Data with missing values put the
        observed points on one ``obs`` dim (the data's coordinates along it), so ``az.loo``
        and ``az.plot_ppc`` see finite values only. Draws are exact (see
        :func:`~workbench.models.regression_samples.posterior_draws`) and seeded.
        """
        return regression_inference_data(self, da, dim, num_samples, log_likelihood, seed)

    def posterior(
        self,
        da: xr.DataArray,
        dim: str = "time",
        at: Any = None,
        *,
        ci_prob: float = 0.95,
        observation_noise: bool = False,
    ) -> xr.Dataset:
        """Posterior of the latent function given ``da``, at its coordinates or at ``at``.

        ``observation_noise=True`` adds :math:`\\sigma^2` (predictive of new observations).
        Returns a Dataset with ``mean``, ``variance``, ``lower``, ``upper`` along ``dim``.
        """
        obs = self._observe(da, dim)
        x_new, coords = resolve_at(obs, at)
        if observation_noise and self.observation is not None:
            raise ValueError("observation_noise=True needs likelihood='gaussian'")
        post = self._per_series(obs, "predict_moments", x_new)
        variance = post.variance + (self._noise_per_series(obs) if observation_noise else 0.0)
        attrs = make_attrs(
            type(self).__name__,
            self.hyperparameters(),
            kernel=type(self.kernel).__name__,
            observation_noise=observation_noise,
        )
        return predictive_to_dataset(
            obs, post.mean, variance, coords=coords, ci_prob=ci_prob, attrs=attrs
        )

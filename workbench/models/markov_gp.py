"""Linear-time GP regression with state-space (Hida-Matérn) kernels: Kalman filter + RTS."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import xarray as xr

from workbench.data import Observations
from workbench.inference import Sites, cvi, cvi_elbo, sites_to_observations
from workbench.kernels.statespace import StateSpaceKernel
from workbench.models.base import Posterior
from workbench.models.divergence import DivergenceGuard, check_finite
from workbench.models.gp_regression import GPRegression
from workbench.models.training import optimize, require_progress
from workbench.progress import progress_bar
from workbench.ssm import (
    FilterResult,
    SmootherResult,
    kalman_filter,
    parallel_kalman_filter,
    parallel_rts_smoother,
    rts_smoother,
)
from workbench.ssm.fast import compiled_available, compiled_kalman_filter, compiled_rts_smoother
from workbench.ssm.square_root import SqrtFilterResult, sqrt_kalman_filter, sqrt_rts_smoother

__all__ = ["CVI_ADVICE", "MarkovGP"]

#: What to try when variational EM keeps diverging (the end of ``FitDivergedError``).
CVI_ADVICE = (
    "Try a smaller cvi_lr (CVI damping) or lr, more cvi_steps, rescaling the data, or initial "
    "hyper-parameters closer to the data's scales"
)


class MarkovGP(GPRegression):
    r"""GP regression in O(T) time and memory through the kernel's SDE.

    .. math::
        f \sim \mathcal{GP}(c, k), \quad k = \text{state-space kernel}, \qquad
        y_t = f(x_t) + \varepsilon_t,\; \varepsilon_t \sim \mathcal N(0, \sigma^2)

    The exact log marginal likelihood comes from a Kalman filter and posteriors from a
    Rauch-Tung-Striebel smoother on the union of the data's coordinates and any ``at``
    coordinates; both equal the dense GP to float64 round-off. On CPU the recursions run
    compiled (numba) with a hand-derived adjoint for the gradient; elsewhere (GPU, float32) as
    associative scans. Each distinct step is discretised once (a regular grid needs one
    transition), and the state is scaled to unit stationary variances (Jacobi scaling of
    :math:`P_\infty`), which keeps high orders and short steps well conditioned. Extra dims of
    the input are independent series sharing the hyper-parameters.

    Computations run in float64 by default, where every path equals the dense GP to 1e-10 for
    lengthscales from 1e-3 to 1e4 grid steps and across gaps of 1e6 steps. ``model.float()``
    runs them in float32 (e.g. on a GPU): on unit-scale data with a noise variance of at least
    1e-4, Matérn ν ≤ 5/2 or Hida-Matérn order ≤ 2 kernels and steps from 1e-3 to 1e3
    lengthscales, posterior means stay within 1e-5 of float64 and variances within 1e-3 of the
    largest variance (2e-4 with ``square_root=True``). Both claims are tested
    (``tests/reliability/test_statespace_robustness.py``).

    Parameters
    ----------
    kernel : StateSpaceKernel
        e.g. ``wb.kernels.HidaMaternKernel(order=1) + wb.kernels.MaternKernel(nu=2.5)``.
    likelihood : str or workbench.likelihoods.Likelihood
        ``"gaussian"`` (exact inference), or ``"poisson"``, ``"bernoulli"``,
        ``"negative_binomial"`` or a likelihood object (e.g. ``Poisson(bin_width=0.01)``):
        then the posterior is the CVI approximation (Gaussian sites on the latent, smoothed by
        the same filters; :meth:`log_marginal_likelihood` returns the ELBO) and ``fit`` runs
        variational EM. Data are checked against the likelihood's support (e.g. counts).
    cvi_steps, cvi_lr, m_steps : int, float, int
        CVI iterations per E-step (and for ``posterior``), the damping of each site step, and
        hyper-parameter iterations per M-step; used by non-Gaussian likelihoods only.
    parallel : {"auto", True, False}
        ``True``: filter and smooth by associative scans (O(log T) depth, each level one batched
        tensor operation: the fast path on GPUs). ``False``: the sequential recursions, compiled
        with numba (exact hand-derived gradients) for float64 CPU tensors. ``"auto"`` picks the
        compiled sequential path for float64 on CPU and the scans otherwise.
    square_root : bool
        Filter and smooth in square-root form (:mod:`workbench.ssm.square_root`: covariance
        factors updated by QR, PSD by construction) instead of the ``parallel`` choice. The
        robust option for float32, steps far below the lengthscale and near noise-free data.
        It is a sequential loop over time steps in torch (differentiable by autograd, any
        device), about 1 ms per step on one CPU core: hundreds of times slower than the
        compiled path, so meant for series up to about 10⁴ points or for checking a result.
    noise, mean, trend, share_hyperparameters, time_unit
        As for :class:`~workbench.models.ExactGP`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import workbench as wb
    >>> x = np.linspace(0, 10, 200)
    >>> da = xr.DataArray(np.sin(x), dims="time", coords={"time": x})
    >>> m = wb.MarkovGP(wb.kernels.MaternKernel(nu=2.5), noise=0.01)
    >>> ds = m.fit(da, steps=5, progress=False).posterior(da, at=np.linspace(10, 12, 5))
    >>> ds.sizes["time"]
    5
    """

    def __init__(
        self,
        kernel: StateSpaceKernel,
        likelihood: str = "gaussian",
        *,
        parallel: bool | str = "auto",
        square_root: bool = False,
        cvi_steps: int = 30,
        cvi_lr: float = 0.7,
        m_steps: int = 5,
        **kwargs: Any,
    ) -> None:
        if parallel not in ("auto", True, False):
            raise ValueError(f"expected parallel in ('auto', True, False), got {parallel!r}")
        if not isinstance(kernel, StateSpaceKernel):
            raise TypeError(
                f"expected a state-space kernel (wb.kernels.HidaMaternKernel, MaternKernel or "
                f"sums of them), got {type(kernel).__name__}; use wb.ExactGP for other kernels"
            )
        if cvi_steps < 1 or not 0 < cvi_lr <= 1 or m_steps < 0:
            raise ValueError(
                f"expected cvi_steps >= 1, 0 < cvi_lr <= 1 and m_steps >= 0, got {cvi_steps}, "
                f"{cvi_lr}, {m_steps}"
            )
        super().__init__(kernel, likelihood, **kwargs)
        self.parallel = parallel
        self.square_root = bool(square_root)
        self.cvi_steps, self.cvi_lr, self.m_steps = int(cvi_steps), float(cvi_lr), int(m_steps)

    supports_cvi = True

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "parallel": self.parallel}
        if self.square_root:
            config["square_root"] = True
        if self.observation is not None:
            config.update(cvi_steps=self.cvi_steps, cvi_lr=self.cvi_lr, m_steps=self.m_steps)
        return config

    @classmethod
    def _init_kwargs(cls, config: dict[str, Any]) -> dict[str, Any]:
        extra = {k: config[k] for k in ("cvi_steps", "cvi_lr", "m_steps") if k in config}
        return {
            **super()._init_kwargs(config),
            "parallel": config.get("parallel", "auto"),
            "square_root": config.get("square_root", False),
            **extra,
        }

    def _use_scans(self) -> bool:
        if self.parallel == "auto":
            return not compiled_available(self.mean)
        return bool(self.parallel)

    def _filter(
        self, ssm: tuple, y: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor | None = None
    ) -> FilterResult:
        A, Q, H, Pinf, which = ssm
        noise = self.noise if noise is None else noise
        if self.square_root:
            return sqrt_kalman_filter(A[which], Q[which], H, y, noise, mask, Pinf)
        if not self._use_scans() and compiled_available(self.mean):
            return compiled_kalman_filter(A, Q, H, y, noise, mask, Pinf, which)
        run = parallel_kalman_filter if self._use_scans() else kalman_filter
        return run(A[which], Q[which], H, y, noise, mask, Pinf)

    def _smoother(self, ssm: tuple, filtered: FilterResult) -> SmootherResult:
        A, which = ssm[0], ssm[-1]
        if isinstance(filtered, SqrtFilterResult):
            return sqrt_rts_smoother(A[which], filtered)
        if not self._use_scans() and compiled_available(self.mean):
            return compiled_rts_smoother(A, filtered, which)
        return (parallel_rts_smoother if self._use_scans() else rts_smoother)(A[which], filtered)

    def _state_space(
        self, x: torch.Tensor, starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """(A, Q) per distinct step, H and Pinf, all Jacobi-scaled, and each step's index.

        ``starts`` (bool, shape (T,)) marks bins that begin a new independent series (packed
        trials): the step into them gets an extra entry A = 0, Q = Pinf (a fresh stationary
        state), so one pass runs over ragged trials without padding.
        """
        steps = x.diff()
        within = None if starts is None else ~starts[1:]
        if within is not None:  # boundary steps are arbitrary: keep them out of the table
            fill = steps[within][:1] if bool(within.any()) else steps.new_ones(1)
            steps = torch.where(within, steps, fill)
        # discretise each distinct step once: a regular grid costs one (A, Q), not T of them
        steps, which = torch.unique(steps, return_inverse=True)
        A, Q = self.kernel.discretize(steps)
        sde = self.kernel.sde()
        d = sde.Pinf.diagonal().rsqrt()  # x~ = D x with unit stationary variances
        A = d[:, None] * A / d[None, :]
        Q = d[:, None] * Q * d[None, :]
        Pinf = d[:, None] * sde.Pinf * d[None, :]
        if within is not None:
            A = torch.cat([A, torch.zeros_like(A[:1])])
            Q = torch.cat([Q, Pinf[None]])
            which = torch.where(within, which, steps.shape[0])
        return A, Q, sde.H / d, Pinf, which

    def _log_marginals(self, obs: Observations) -> torch.Tensor:
        if self.observation is not None:
            return self._elbo(obs, self._run_cvi(obs).sites)
        x = obs.x.to(self.mean)
        y = obs.y.to(self.mean) - self.prior_mean(x)
        return self._filter(self._state_space(x), y, obs.mask).log_marginal

    def predict_moments(self, obs: Observations, x_new: torch.Tensor) -> Posterior:
        noise = None
        if self.observation is not None:  # condition on the CVI sites as pseudo-observations
            y_pseudo, noise, mask = sites_to_observations(self._run_cvi(obs).sites)
            obs = replace(obs, y=y_pseudo, mask=mask)
        grid, y, mask, pick, noise = self._prediction_grid(obs, x_new.to(self.mean), noise)
        with torch.no_grad():
            ssm = self._state_space(grid)
            smoothed = self._smoother(ssm, self._filter(ssm, y, mask, noise))
            h = ssm[2][0]
            mean = smoothed.mean @ h + self.prior_mean(grid)
            variance = (smoothed.cov @ h) @ h
        return Posterior(mean[..., pick], variance[..., pick].clamp_min(0.0))

    def _prediction_grid(
        self, obs: Observations, x_new: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple:
        """Union of data and prediction coordinates, the data (and per-bin noise) on it, and
        where the predictions sit."""
        x_obs = obs.x.to(self.mean)
        y_obs = obs.y.to(self.mean) - self.prior_mean(x_obs)
        if x_new.shape == x_obs.shape and torch.equal(x_new, x_obs):
            return x_obs, y_obs, obs.mask, slice(None), noise
        grid, where = torch.unique(torch.cat([x_obs, x_new]), sorted=True, return_inverse=True)
        n = x_obs.shape[0]
        y = y_obs.new_zeros(*obs.batch_shape, grid.shape[0])
        mask = torch.zeros(y.shape, dtype=torch.bool, device=y.device)
        y[..., where[:n]] = y_obs
        mask[..., where[:n]] = obs.mask
        if noise is not None:
            on_grid = torch.ones_like(y)
            on_grid[..., where[:n]] = noise
            noise = on_grid
        return grid, y, mask, where[n:], noise

    # -- full Bayesian hyper-parameters (NUTS on the exact marginal likelihood) -------------
    def sample_hyperparameters(self, da: xr.DataArray, dim: str = "time", **options: Any) -> Any:
        """Posterior draws of the hyper-parameters by NUTS as ArviZ groups (``posterior``,
        ``sample_stats``, ``log_likelihood``, ``posterior_predictive``, ``observed_data``);
        the model is not modified. Options (``priors``, ``fixed``, ``num_samples``,
        ``warmup_steps``, ``num_chains``, ``seed``, ...) and defaults: see
        :func:`workbench.models.hyper_nuts.sample_hyperparameters`."""
        from workbench.models.hyper_nuts import sample_hyperparameters

        return sample_hyperparameters(self, da, dim, **options)

    def averaged_posterior(
        self, da: xr.DataArray, idata: Any, dim: str = "time", at: Any = None, **options: Any
    ) -> xr.Dataset:
        """:meth:`posterior` averaged over the hyper-parameter draws of ``idata`` (from
        :meth:`sample_hyperparameters`): mixture mean, law-of-total-variance variance and the
        mixture's quantiles (``max_draws``, ``ci_prob``, ``observation_noise``: see
        :func:`workbench.models.hyper_outputs.averaged_posterior`)."""
        from workbench.models.hyper_outputs import averaged_posterior

        return averaged_posterior(self, da, idata, dim, at, **options)

    # -- non-Gaussian likelihoods: conjugate-computation VI ---------------------------------
    def _cvi_smoother(self, x: torch.Tensor, starts: torch.Tensor | None = None):
        """Latent marginals of f given Gaussian pseudo-observations on the grid ``x``."""
        ssm = self._state_space(x, starts)
        c, h = self.prior_mean(x), ssm[2][0]

        def smoother(y_pseudo: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor):
            filtered = self._filter(ssm, y_pseudo - c, mask, noise)
            smoothed = self._smoother(ssm, filtered)
            return smoothed.mean @ h + c, (smoothed.cov @ h) @ h, filtered.log_marginal

        return smoother

    def _run_cvi(
        self, obs: Observations, sites: Sites | None = None, steps: int | None = None, scale=1.0
    ):
        """CVI from ``sites``; ``scale`` shrinks the damping after a diverged EM round."""
        with torch.no_grad():
            return cvi(
                obs.y.to(self.mean),
                obs.mask,
                self.observation,
                self._cvi_smoother(obs.x.to(self.mean)),
                steps=self.cvi_steps if steps is None else steps,
                lr=self.cvi_lr * scale,
                sites=sites,
            )

    def _elbo(self, obs: Observations, sites: Sites) -> torch.Tensor:
        with torch.no_grad():
            mean, var, log_marginal = self._cvi_smoother(obs.x.to(self.mean))(
                *sites_to_observations(sites)
            )
            y = obs.y.to(self.mean)
            return cvi_elbo(y, obs.mask, self.observation, sites, mean, var, log_marginal)

    def _pseudo_data_loss(
        self, x: torch.Tensor, sites: Sites, n: int, starts: torch.Tensor | None = None
    ):
        """Negative log marginal likelihood of the sites as Gaussian pseudo-data, per value."""
        y_pseudo, noise, mask = sites_to_observations(sites)

        def loss() -> torch.Tensor:
            y = y_pseudo - self.prior_mean(x)
            ssm = self._state_space(x, starts)
            return -self._filter(ssm, y, mask, noise).log_marginal.sum() / n

        return loss

    def _fit_cvi(
        self,
        obs: Observations,
        steps: int,
        lr: float,
        optimizer: str,
        progress: bool | None,
        callback: Any,
        learn: bool,
    ) -> None:
        r"""Variational EM: CVI on the sites, then hyper-parameter steps on log Z(pseudo-data).

        At a CVI fixed point the ELBO's gradient in the hyper-parameters equals that of the
        pseudo-data log marginal likelihood (the site terms cancel), so the M-step is an exact
        Gaussian marginal-likelihood step with per-bin noise :math:`1/\lambda_t`.

        A round that diverges (non-finite ELBO or parameters, failed factorisation, an M-step
        whose every step failed) is rolled back with its sites; the next rounds run with 10x
        smaller damping and M-step ``lr`` (:class:`~workbench.models.divergence.DivergenceGuard`).
        """
        x, n = obs.x.to(self.mean), obs.n_observed
        sites, trace = None, []  # sites warm-start across outer steps
        guard = DivergenceGuard(self, unit="EM round", advice=CVI_ADVICE)
        with progress_bar(steps, type(self).__name__, progress) as bar:
            for step in range(steps):
                with guard.attempt(step) as attempt:
                    new = self._run_cvi(obs, sites, scale=guard.scale).sites
                    if learn:
                        loss = self._pseudo_data_loss(x, new, n)
                        done = optimize(self, loss, steps=self.m_steps, lr=lr * guard.scale,
                                        optimizer=optimizer, progress=False)  # fmt: skip
                        require_progress(done, self.m_steps)
                    value = self._elbo(obs, new).sum().item()
                    check_finite(value, "the ELBO")
                if not attempt.ok:
                    continue
                sites = new
                trace.append(value)
                bar.update(1)
                bar.set_postfix(elbo=f"{trace[-1]:.4g}")
                if callback is not None:
                    callback(step, -trace[-1] / n)
        self.fit_elbo = trace

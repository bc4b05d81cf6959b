"""Magma and MagmaClust: multi-task GPs with common (clustered) mean processes."""

from __future__ import annotations

import math
import warnings
from typing import Any, Self

import gpytorch
import torch
import xarray as xr

from workbench.data import TimeAxis, from_dataarray
from workbench.errors import DimensionError, ShapeMismatchError, WorkbenchWarning
from workbench.kernels import kernel_from_spec, kernel_to_spec
from workbench.kernels.batched import batched_kernel, dense_kernel, squared_exponential
from workbench.models import magma_vem as vem
from workbench.models.base import Model
from workbench.models.divergence import DivergenceGuard, check_finite, check_hyperparameters
from workbench.models.magma_init import initialize
from workbench.models.magma_results import MagmaResults
from workbench.models.magma_scale import NOISE_FLOOR, standardized_tasks
from workbench.models.task_grid import TaskGrid, grid_patterns, task_grid
from workbench.models.task_table import tasks_from_long
from workbench.models.training import optimize, require_progress
from workbench.progress import progress_bar

__all__ = ["ADVICE", "HYPOTHESES", "Magma", "MagmaClust"]

#: What to try when the EM keeps diverging (the end of ``FitDivergedError``).
ADVICE = (
    "Try fewer m_steps, rescaling the data (times and values), initial kernel hyper-parameters "
    "closer to the data's scales, or fewer clusters"
)

#: Hyper-parameter sharing: mean processes ("0" common, "k" per cluster) x tasks ("0", "i").
HYPOTHESES = ("H00", "Hk0", "H0i", "Hki")
JITTER = 1e-8  # relative to the prior variance, on the mean processes' grid covariance


class MagmaClust(MagmaResults, Model):
    r"""Clustered multi-task GP with cluster-specific mean processes (MagmaClust).

    .. math::
        Z_i \sim \mathrm{Mult}(\pi),\quad \mu_k \sim GP(m_k, C_{\gamma_k}),\quad
        y_i \mid Z_{ik} = 1 = \mu_k(t_i) + f_i(t_i) + \varepsilon_i,\quad
        f_i \sim GP(0, \Sigma_{\theta_i}),\ \varepsilon_i \sim N(0, \sigma_i^2 I)

    Variational EM (:mod:`workbench.models.magma_vem`) on a ``DataArray(task, time)`` whose
    NaN entries are unobserved, so every task may have its own irregular grid.

    Parameters
    ----------
    n_clusters : int
        K (``Magma`` is K = 1).
    hypothesis : {"H00", "Hk0", "H0i", "Hki"}
        Which hyper-parameters are shared: mean-process kernels common ("0") or per cluster
        ("k"), task kernels and noise common ("0") or per task ("i").
    mean_kernel, task_kernel : gpytorch Kernel, optional
        Stationary kernels of the mean processes and task deviations (default
        ``ScaleKernel(RBFKernel())``, the squared exponential of the paper).
    prior_mean : float or "constant"
        Fixed constant prior mean of every mean process, or ``"constant"``: one constant per
        cluster, re-estimated in each M-step by generalised least squares.
    task_dim : str
        Name of the task dim of the data.
    max_iter, tol : int, float
        EM stops after ``max_iter`` iterations or when the relative ELBO change is below ``tol``.
    m_steps : int
        L-BFGS iterations per M-step and hyper-parameter group.
    seed : int
        Seed of the k-means initialisation.

    References
    ----------
    1. A. Leroy, P. Latouche, B. Guedj and S. Gey, "Cluster-specific predictions with multi-task
       Gaussian processes", JMLR 24(5), 2023.
    """

    _fit_attributes = ("fit_elbo", "_fitted")  # training data and memberships, kept by save

    def __init__(
        self,
        n_clusters: int = 2,
        hypothesis: str = "H00",
        mean_kernel: gpytorch.kernels.Kernel | dict | None = None,
        task_kernel: gpytorch.kernels.Kernel | dict | None = None,
        prior_mean: float | str = 0.0,
        *,
        task_dim: str = "task",
        max_iter: int = 25,
        tol: float = 1e-3,
        m_steps: int = 10,
        seed: int = 0,
        n_tasks: int | None = None,
        time_unit: str = "D",
        axis: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if int(n_clusters) != n_clusters or n_clusters < 1:
            raise ValueError(f"expected n_clusters >= 1, got {n_clusters}")
        if hypothesis not in HYPOTHESES:
            raise ValueError(f"expected hypothesis in {HYPOTHESES}, got {hypothesis!r}")
        if not (prior_mean == "constant" or isinstance(prior_mean, int | float)):
            raise ValueError(f"expected a float or 'constant' prior_mean, got {prior_mean!r}")
        self.n_clusters, self.hypothesis = int(n_clusters), hypothesis
        self.task_dim, self.time_unit = task_dim, time_unit
        self.max_iter, self.tol, self.m_steps, self.seed = int(max_iter), tol, int(m_steps), seed
        self.prior_mean_mode = prior_mean
        templates = [mean_kernel, task_kernel]
        templates = [kernel_from_spec(k) if isinstance(k, dict) else k for k in templates]
        for name, kernel in zip(("mean_kernel", "task_kernel"), templates, strict=True):
            if kernel is not None:
                check_hyperparameters(kernel, name)
        self._templates = [k if k is not None else squared_exponential() for k in templates]
        per_cluster = self.n_clusters if hypothesis[1] == "k" else None
        self.mean_kernel = batched_kernel(self._templates[0], per_cluster)
        constant = 0.0 if prior_mean == "constant" else float(prior_mean)
        full = lambda value: torch.full((self.n_clusters,), value, dtype=torch.float64)  # noqa: E731
        self.register_buffer("mean_constant", full(constant))
        self.register_buffer("log_pi", full(-math.log(self.n_clusters)))
        # q(mu) on the training grid, saved with the model (predictions after load)
        empty = lambda *shape: torch.zeros(shape, dtype=torch.float64)  # noqa: E731
        self.register_buffer("hyper_x", empty(0))
        self.register_buffer("hyper_mean", empty(self.n_clusters, 0))
        self.register_buffer("hyper_cov", empty(self.n_clusters, 0, 0))
        self.register_buffer("hyper_logdet", empty(self.n_clusters))
        self._register_load_state_dict_pre_hook(self._resize_hyper_buffers)
        self.task_kernel: gpytorch.kernels.Kernel | None = None
        self.n_tasks: int | None = None
        self.axis = TimeAxis(**axis) if axis is not None else None
        if n_tasks is not None:
            self._make_task_parameters(int(n_tasks))
        self.fit_elbo: list[float] = []
        self._fitted: tuple | None = None

    # -- configuration -------------------------------------------------------------------------
    def _make_task_parameters(self, n_tasks: int) -> None:
        self.n_tasks = n_tasks
        per_task = n_tasks if self.hypothesis[2] == "i" else None
        shape = (n_tasks,) if per_task else ()
        self.task_kernel = batched_kernel(self._templates[1], per_task)
        self.raw_noise = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.raw_noise_constraint = gpytorch.constraints.GreaterThan(NOISE_FLOOR)
        self.to(self.device)  # built at the first fit, on the device the model was moved to

    @property
    def noise(self) -> torch.Tensor:
        """Task noise variances sigma_i^2 (one value when shared)."""
        return self.raw_noise_constraint.transform(self.raw_noise)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "n_clusters": self.n_clusters,
            "hypothesis": self.hypothesis,
            "mean_kernel": kernel_to_spec(self._templates[0]),
            "task_kernel": kernel_to_spec(self._templates[1]),
            "prior_mean": self.prior_mean_mode,
            "task_dim": self.task_dim,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "m_steps": self.m_steps,
            "seed": self.seed,
            "time_unit": self.time_unit,
        }
        if self.n_tasks is not None:
            config["n_tasks"] = self.n_tasks
        if self.axis is not None:
            config["axis"] = self.axis.to_config()
        return config

    # -- data ----------------------------------------------------------------------------------
    def _grid(self, da: xr.DataArray) -> tuple[TaskGrid, Any]:
        obs = from_dataarray(da, "time", time_unit=self.time_unit, axis=self.axis)
        obs = obs.to(self.device)  # the data where the model lives (xarray is on the CPU)
        if obs.batch_dims != (self.task_dim,):
            raise DimensionError(f"expected dims ({self.task_dim!r}, 'time'), got {tuple(da.dims)}")
        if self.axis is None:
            self.axis = obs.axis
        names = list(da[self.task_dim].values)
        return task_grid(obs.x.double(), obs.y.double(), obs.mask, names), obs

    # -- pieces of the model on a grid ---------------------------------------------------------
    def _prior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Covariance of the mean processes on x (K, P, P), or (P, P) when shared (computed and
        factored once, broadcast over clusters), with jitter; and their means (K, P)."""
        cov = dense_kernel(self.mean_kernel, x[:, None], x[:, None])  # (P, P) when shared
        scale = cov.diagonal(0, -2, -1).mean(-1)
        eye = torch.eye(x.shape[0], dtype=cov.dtype, device=cov.device)
        cov = cov + JITTER * scale[..., None, None] * eye
        return cov, self.mean_constant[:, None].expand(-1, x.shape[0])

    def _psi(self, grid: TaskGrid) -> torch.Tensor:
        return vem.task_covariance(self.task_kernel, self.noise, grid)

    def _estep(self, grid: TaskGrid, tau: torch.Tensor, update_tau: bool):
        with torch.no_grad():
            prior_cov, prior_mean = self._prior(grid.x)
            precision = vem.task_precision(self._psi(grid), grid)
            post = vem.mean_posterior(prior_cov, prior_mean, precision, tau, grid)
            terms = vem.task_terms(precision, post, grid)
            if update_tau:
                tau = vem.memberships(self.log_pi, terms)
                post = vem.mean_posterior(prior_cov, prior_mean, precision, tau, grid)
                terms = vem.task_terms(precision, post, grid)
            value = vem.elbo(prior_cov, prior_mean, post, terms, tau, self.log_pi)
        return post, tau, float(value)

    def _mstep(self, grid: TaskGrid, post: vem.MeanPosterior, tau: torch.Tensor, lr=1.0) -> None:
        """Memberships' prior, then ``m_steps`` L-BFGS iterations (initial step ``lr``) per
        hyper-parameter group; raises ``Divergence`` when a group's step failed entirely."""
        with torch.no_grad():
            self.log_pi.copy_(tau.mean(0).clamp_min(1e-300).log())
            moments = vem.second_moments(post, tau, grid)
            shared = self.hypothesis[1] == "0"
            factor = vem.mean_moments(post, self._prior(grid.x)[1], shared)

        def mean_loss() -> torch.Tensor:
            prior_cov, _ = self._prior(grid.x)
            return vem.mean_process_objective(prior_cov, factor, self.n_clusters)

        task_grid_, counts = grid, None
        if self.hypothesis[2] == "0":  # one Psi per distinct input pattern
            task_grid_, inverse, counts = grid_patterns(grid)
            moments = torch.zeros_like(moments[: counts.shape[0]]).index_add_(0, inverse, moments)

        def task_loss() -> torch.Tensor:
            return vem.task_objective(self._psi(task_grid_), moments, task_grid_, counts)

        task_params = [*self.task_kernel.parameters(), self.raw_noise]
        for loss, params in (
            (mean_loss, list(self.mean_kernel.parameters())),
            (task_loss, task_params),
        ):
            done = optimize(
                self, loss, steps=1, lr=lr, optimizer="lbfgs", progress=False, params=params,
                max_iter=self.m_steps,
            )  # fmt: skip
            require_progress(done, 1)
        if self.prior_mean_mode == "constant":
            self._update_constant_means(grid.x, post)

    def _update_constant_means(self, x: torch.Tensor, post: vem.MeanPosterior) -> None:
        """GLS: beta_k = 1^T C_k^{-1} hat m_k / 1^T C_k^{-1} 1, the exact maximiser."""
        with torch.no_grad():
            prior_cov, _ = self._prior(x)
            L = torch.linalg.cholesky(prior_cov)
            ones = torch.ones_like(post.mean)[..., None]
            a = torch.cholesky_solve(ones, L)[..., 0]
            self.mean_constant.copy_((a * post.mean).sum(-1) / a.sum(-1))

    def fit(
        self, da: xr.DataArray | xr.Dataset, *, progress: bool | None = None, callback: Any = None
    ) -> Self:
        """Variational EM until the relative ELBO change is below ``tol`` (or ``max_iter``).

        ``da`` is a ``DataArray(task, time)`` (NaN: not observed) or a long-form Dataset with
        ``task``, ``time`` and one value variable along a row dim (see
        :func:`~workbench.models.task_table.tasks_from_long`).

        Memberships are held at their k-means start in the first iteration (poor initial
        hyper-parameters would otherwise decide them). ``fit_elbo`` records the ELBO after
        every E-step.

        Data whose variance is far from 1 (e.g. at 1e12 or 1e-12) are fitted in standardised
        units (:mod:`~workbench.models.magma_scale`): fitting :math:`s y` gives :math:`s` times
        the fit of :math:`y`. Hyper-parameters, the saved state (noise floor included),
        predictions and ``fit_elbo`` (with the log-Jacobian) are always in data units.
        """
        if isinstance(da, xr.Dataset):
            da = tasks_from_long(da, task=self.task_dim)
        if isinstance(da, xr.DataArray) and da.size and "time" in da.dims:
            da = da.dropna("time", how="all")  # the union grid is that of the observed inputs
        grid, _ = self._grid(da)
        M = grid.y.shape[0]
        if self.n_clusters > M:
            raise ShapeMismatchError(
                f"expected n_clusters <= the {M} tasks along dim {self.task_dim!r}, "
                f"got {self.n_clusters}"
            )
        if self.n_tasks is None:
            self._make_task_parameters(M)
        elif self.n_tasks != M and self.hypothesis[2] == "i":
            raise ShapeMismatchError(
                f"expected {self.n_tasks} tasks along dim {self.task_dim!r} (task-specific "
                f"HPs), got {M}"
            )
        with standardized_tasks(self, da, grid) as (grid, offset):  # the same EM at any scale
            tau, elbos = self._em(grid, progress, callback, offset)
        self.fit_elbo = [value - offset for value in elbos]  # in data units
        self._warn_empty(tau)
        self._fitted = (da.astype("float64", copy=False), tau)  # validated: warns once
        x, _, post = self._hyperposterior()  # new-task predictions: O(P^2 Q), not O(K P^3)
        for name, value in zip(("x", "mean", "cov", "logdet"), (x, *post), strict=True):
            setattr(self, f"hyper_{name}", value.detach().clone())
        return self

    def _em(self, grid: TaskGrid, progress, callback, offset: float) -> tuple:
        """EM iterations on ``grid``: the memberships and the ELBO after every E-step (in the
        grid's units; ``callback`` gets minus the ELBO less ``offset``)."""
        tau, elbos = initialize(self, grid), []
        guard = DivergenceGuard(self, unit="EM iteration", advice=ADVICE)
        with progress_bar(self.max_iter, type(self).__name__, progress) as bar:
            for step in range(self.max_iter):
                with guard.attempt(step) as attempt:  # rolled back (with tau) if it diverges
                    post, new_tau, value = self._estep(grid, tau, update_tau=step > 0)
                    check_finite(value, "the ELBO")
                    last = elbos[-1] if step > 1 and elbos else math.inf
                    if not (done := abs(value - last) < self.tol * abs(value)):
                        self._mstep(grid, post, new_tau, lr=guard.scale)
                if not attempt.ok:
                    continue
                tau = new_tau
                elbos.append(value)
                bar.update(1)
                bar.set_postfix(elbo=f"{value - offset:.5g}")
                if callback is not None:
                    callback(step, offset - value)
                if done:
                    break
        return tau, elbos

    def explore(self, data: xr.DataArray, new: xr.DataArray | None = None) -> Any:
        """An ipywidgets explorer: K and hypothesis pickers, hyper-parameter sliders, a new
        task's points to add or drop, its mixture prediction and membership bars (see
        :class:`workbench.widgets.MagmaExplorer`; fits the model first if needed)."""
        from workbench.widgets import MagmaExplorer

        return MagmaExplorer(self, data, new)

    def _resize_hyper_buffers(self, state_dict, prefix, *args) -> None:
        for name in ("hyper_x", "hyper_mean", "hyper_cov"):
            if prefix + name in state_dict:  # on the model's device, whatever the state's
                value = state_dict[prefix + name]
                setattr(self, name, torch.empty_like(value, device=self.device))

    def _warn_empty(self, tau: torch.Tensor) -> None:
        empty = [k for k, total in enumerate(tau.sum(0).tolist()) if total < 1e-6]
        if empty:
            warnings.warn(
                f"cluster(s) {empty} ended with no members (pi_k ~ 0); consider fewer clusters",
                WorkbenchWarning,
                stacklevel=3,
            )


class Magma(MagmaClust):
    """Multi-task GP with one common mean process (MagmaClust with one cluster)."""

    def __init__(self, hypothesis: str = "H00", **kwargs: Any) -> None:
        kwargs.pop("n_clusters", None)
        super().__init__(1, hypothesis, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("n_clusters")
        return config

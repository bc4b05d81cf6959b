"""Outputs of a fitted Magma / MagmaClust: memberships, mean processes, new-task predictions,
draws and ArviZ groups (a mixin of :class:`~workbench.models.magma.MagmaClust`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.data import from_dataarray, resolve_at
from workbench.errors import DimensionError
from workbench.io.arviz import (
    check_num_samples,
    observed_point_coords,
    samples_to_inference_data,
)
from workbench.kernels.batched import dense_kernel
from workbench.models import magma_vem as vem
from workbench.models.divergence import check_moments
from workbench.models.magma_outputs import label, prediction_dataset
from workbench.models.magma_predict import ClusterPrediction, fit_new_task_kernel, predict_clusters
from workbench.models.magma_sampling import draw_mixture, gaussian_draws, task_predictive
from workbench.models.task_grid import TaskGrid

__all__ = ["MagmaResults"]


class MagmaResults:
    """Methods of a fitted model; ``fit`` stores ``_fitted = (data, tau)`` and the hyper-posterior
    buffers, so predictions also work on a loaded model without its training data."""

    def _state(self) -> tuple[xr.DataArray, TaskGrid, torch.Tensor]:
        if self._fitted is None:
            raise RuntimeError("expected a fitted model with its training data (fit it first)")
        da, tau = self._fitted
        grid, _ = self._grid(da)
        return da, grid, tau.to(self.device)  # fitted before the model was moved

    def elbo(self) -> float:
        """The ELBO at the current hyper-parameters: one E-step from the fit's memberships
        (after a hyper-parameter was set by hand, e.g. in the explorer)."""
        _, grid, tau = self._state()
        with torch.no_grad():
            return float(self._estep(grid, tau, update_tau=self.n_clusters > 1)[2])

    def memberships(self) -> xr.DataArray:
        """Posterior membership probabilities tau, ``DataArray(task, cluster)``."""
        da, grid, tau = self._state()
        _, tau, _ = self._estep(grid, tau, update_tau=self.n_clusters > 1)
        return xr.DataArray(
            tau.cpu().numpy(),
            dims=(self.task_dim, "cluster"),
            coords={self.task_dim: da[self.task_dim].values, "cluster": np.arange(self.n_clusters)},
            name="membership",
            attrs={"long_name": "posterior membership probability", "units": "1"},
        )

    def mean_processes(self) -> xr.Dataset:
        """Posterior of each cluster's mean process on the training union grid: ``mean`` and
        ``variance`` (cluster, time). Works after :func:`workbench.load` too."""
        x, _, post = self._hyperposterior()
        fitted = self._fitted is not None
        time = self._fitted[0]["time"] if fitted else self.axis.from_float(x.cpu().numpy())
        ds = xr.Dataset(
            {
                "mean": (("cluster", "time"), post.mean.cpu().numpy()),
                "variance": (("cluster", "time"), post.cov.diagonal(0, -2, -1).cpu().numpy()),
            },
            coords={"cluster": np.arange(self.n_clusters), "time": np.asarray(time)},
        )
        units = (self._fitted[0].attrs if self._fitted is not None else {}).get("units")
        for var, text in (("mean", "posterior mean"), ("variance", "posterior variance")):
            ds[var].attrs["long_name"] = f"{text} of the cluster mean processes"
            if units is not None:
                ds[var].attrs["units"] = units if var == "mean" else f"({units})^2"
        ds.attrs = {"model": type(self).__name__, "hypothesis": self.hypothesis}
        if self.fit_elbo:
            ds.attrs["elbo"] = self.fit_elbo[-1]
        return ds

    # -- new tasks -----------------------------------------------------------------------------
    def _new_task(self, new: xr.DataArray, at: Any) -> tuple[ClusterPrediction, Any, Any]:
        obs = from_dataarray(new, "time", time_unit=self.time_unit, axis=self.axis)
        obs = obs.to(self.device)  # the new task comes from xarray on the CPU
        if obs.batch_dims:
            raise DimensionError(f"expected a 1-D new task along 'time', got dims {new.dims}")
        x_new, coords = resolve_at(obs, at)
        coords = new["time"].values if coords is None else coords
        x_obs, y_obs = obs.x[obs.mask].double(), obs.y[obs.mask].double()
        x_new = x_new.double().to(obs.x.device)
        z, where = torch.unique(torch.cat([x_obs, x_new]), return_inverse=True)
        n = x_obs.shape[0]
        post = self._posterior_at(z)
        kernel, noise = self._new_task_kernel(post, where[:n], y_obs, z)
        with torch.no_grad():
            task_cov = dense_kernel(kernel, z[:, None], z[:, None])
            pred = predict_clusters(
                post.mean, post.cov, task_cov, noise, where[:n], y_obs, where[n:], self.log_pi
            )
        return pred, noise, coords

    def predict(self, new: xr.DataArray, at: Any = None, *, ci_prob: float = 0.95) -> xr.Dataset:
        """Predictive of a new, partially observed task at ``at`` (default: its own times).

        Returns per-cluster predictions ``cluster_mean``/``cluster_variance`` (cluster, time),
        the new task's ``membership`` (cluster), and the mixture's ``mean``, ``variance`` and
        exact ``lower``/``upper`` quantiles (time). Variances are of new observations (noise
        included). Task-specific hyper-parameters (``H0i``/``Hki``) are fitted to the new task
        by maximising its exact mixture marginal likelihood.
        """
        if not 0.0 < ci_prob < 1.0:
            raise ValueError(f"expected 0 < ci_prob < 1, got {ci_prob}")
        pred, noise, coords = self._new_task(new, at)
        check_moments(pred.mean, pred.cov.diagonal(0, -2, -1), pred.membership)
        ds = prediction_dataset(self, pred, noise, coords, ci_prob)
        label(ds, new.attrs, time_attrs=new["time"].attrs)
        return ds

    def sample(
        self, new: xr.DataArray, at: Any = None, *, num_samples: int = 100, seed: int = 0
    ) -> xr.DataArray:
        """Joint draws of a new task's observations at ``at`` from the mixture predictive,
        ``DataArray(draw, time)``; the ``cluster`` coordinate (draw) says which component
        each draw came from (drawn with the membership probabilities)."""
        check_num_samples(num_samples)
        pred, noise, coords = self._new_task(new, at)
        eye = torch.eye(pred.cov.shape[-1], dtype=pred.cov.dtype, device=pred.cov.device)
        cov = pred.cov + noise * eye
        gen = torch.Generator().manual_seed(seed)
        draws, comp = draw_mixture(pred.membership, pred.mean, cov, num_samples, gen)
        comp = comp.cpu().numpy()
        out = xr.DataArray(
            draws.cpu().numpy(),
            dims=("draw", "time"),
            coords={"draw": np.arange(num_samples), "time": coords, "cluster": ("draw", comp)},
            name=new.name,
            attrs=dict(new.attrs),
        )
        out["time"].attrs = dict(new["time"].attrs)
        return out

    # -- ArviZ ---------------------------------------------------------------------------------
    def to_inference_data(
        self, num_samples: int = 100, *, log_likelihood: bool = False, seed: int = 0
    ) -> Any:
        r"""ArviZ groups for the training tasks, over one ``obs`` dim of observed points (with
        ``task``/``time`` coordinates along it): ``posterior`` draws of the mean processes
        ``mean_process`` (cluster, time_grid) and of each task's cluster ``task_cluster``
        (task); ``posterior_predictive`` replicates of ``y`` (see
        :mod:`~workbench.models.magma_sampling`); ``observed_data``; and with
        ``log_likelihood=True`` pointwise :math:`\log N(y_{it}; g_{it}, \sigma_i^2)` at drawn
        latents, for ``az.loo``."""
        check_num_samples(num_samples)
        da, grid, tau = self._state()
        post, tau, _ = self._estep(grid, tau, update_tau=self.n_clusters > 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            task_cov = dense_kernel(self.task_kernel, grid.t[..., None], grid.t[..., None])
            noise = self.noise.detach()
            latent = task_predictive(post, task_cov, noise, grid)
            g, comp = draw_mixture(tau, latent.mean, latent.cov, num_samples, gen)  # (S, M, N)
            sd = noise.sqrt().reshape(-1, 1).expand_as(grid.y)
            eps = torch.randn(g.shape, generator=gen, dtype=g.dtype)  # CPU stream: moved
            y_rep = g + sd * eps.to(g.device)
            mu = gaussian_draws(post.mean, post.cov, num_samples, gen)  # (S, K, P)
        valid = grid.valid.cpu().numpy()
        names = da[self.task_dim].values
        obs_coords = observed_point_coords(da, self.task_dim)
        obs = obs_coords.pop("obs")
        flat = lambda v: v.cpu().numpy()[..., valid][None]  # noqa: E731  (chain, draw, obs)
        groups: dict[str, dict[str, Any]] = {
            "posterior": {
                "mean_process": mu.cpu().numpy()[None],
                "task_cluster": comp.cpu().numpy()[None],
            },
            "posterior_predictive": {"y": flat(y_rep)},
            "observed_data": {"y": grid.y.cpu().numpy()[valid]},
        }
        if log_likelihood:
            var = noise.reshape(-1, 1).expand_as(grid.y)
            ll = -0.5 * ((grid.y - g).square() / var + var.log() + np.log(2 * np.pi))
            groups["log_likelihood"] = {"y": flat(ll)}
        dims = {
            "mean_process": ["cluster", "time_grid"],
            "task_cluster": [self.task_dim],
            "y": ["obs"],
        }
        coords = {
            "cluster": np.arange(self.n_clusters),
            "time_grid": da["time"].values,
            self.task_dim: names,
            "obs": obs,
        }
        per_value = ("posterior_predictive", "observed_data", "log_likelihood")
        return samples_to_inference_data(
            groups,
            dims=dims,
            coords=coords,
            group_coords={group: obs_coords for group in per_value if group in groups},
        )

    # -- hyper-posterior -----------------------------------------------------------------------
    def _hyperposterior(self) -> tuple:
        """Training grid, Cholesky of its prior covariance and q(mu) there: recomputed from the
        training data when it or any parameter changes, else the stored buffers (a loaded
        model)."""
        if self._fitted is None:
            if self.hyper_x.numel() == 0:
                raise RuntimeError("expected a fitted model (fit it first)")
            x = self.hyper_x
            post = vem.MeanPosterior(self.hyper_mean, self.hyper_cov, self.hyper_logdet)
            with torch.no_grad():
                return x, torch.linalg.cholesky(self._prior(x)[0]), post
        versions = tuple(p._version for p in self.parameters())
        # .to() swaps parameters' data without a version bump: the device is part of the key
        device = (self.device.type, self.device.index)
        key = (id(self._fitted[0]), versions, self.mean_constant._version, device)
        if getattr(self, "_hyper_key", None) != key:
            _, grid, tau = self._state()
            post, _, _ = self._estep(grid, tau, update_tau=False)
            with torch.no_grad():
                L = torch.linalg.cholesky(self._prior(grid.x)[0])
            self._hyper, self._hyper_key = (grid.x, L, post), key
        return self._hyper

    def _posterior_at(self, z: torch.Tensor) -> vem.MeanPosterior:
        r"""q(mu_k) at inputs z from q on the training grid x: the optimal q's conditional
        :math:`q(\mu(z) \mid \mu(x))` is the prior's, so with :math:`A = C_{zx}C_{xx}^{-1}`
        the moments are :math:`m_z + A(\hat m - m_x)` and
        :math:`C_{zz} - A C_{xz} + A\hat C A^\top` (exact; O(P² Q) per call)."""
        x, L, post = self._hyperposterior()
        with torch.no_grad():
            cov, mean = self._prior(torch.cat([x, z]))
            P = x.shape[0]
            c_zx, c_zz = cov[..., P:, :P], cov[..., P:, P:]
            A = torch.cholesky_solve(c_zx.mT, L).mT
            m_z = mean[:, P:] + (A @ (post.mean - mean[:, :P])[..., None])[..., 0]
            cov_z = c_zz - A @ c_zx.mT + A @ post.cov @ A.mT
        return vem.MeanPosterior(m_z, 0.5 * (cov_z + cov_z.mT), post.logdet)

    def _new_task_kernel(self, post, observed, y, x_all):
        """The new task's kernel and noise: the shared ones, or fitted to it (task-specific)."""
        if self.hypothesis[2] != "i":
            return self.task_kernel, self.noise.detach()
        return fit_new_task_kernel(self, post, observed, y, x_all)

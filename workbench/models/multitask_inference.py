"""Exact, Kronecker and sparse (Titsias) inference of :class:`~workbench.models.MultitaskGP`."""

from __future__ import annotations

import torch

from workbench.data import Observations
from workbench.inference import dense_gp_log_marginal, dense_gp_predict
from workbench.inference.kronecker import kronecker_log_marginal, kronecker_predict
from workbench.inference.sgpr import sgpr_bound, sgpr_factors, sgpr_predict
from workbench.kernels.batched import dense_kernel

__all__ = ["MultitaskInference"]


class MultitaskInference:
    """Mixin of :class:`~workbench.models.MultitaskGP` (needs ``kernel``, ``tasks``,
    ``task_mean``, ``noise``, ``n_inducing``, ``_method`` and ``device``). ``X`` (N, 2) stacks
    (time, task index) of the N observed values ``y`` (N,); both, and ``obs``, are on the
    model's device."""

    def _icm_parts(self, obs: Observations) -> tuple[torch.Tensor, torch.Tensor]:
        """B (T, T) and K (P, P) of the ICM on the complete grid."""
        x = obs.x.double()[:, None]
        B = self.kernel.task_matrices()[0]
        return B, dense_kernel(self.kernel.latents[0], x, x)

    def _inducing(self, X: torch.Tensor) -> torch.Tensor:
        """Inducing inputs: ``n_inducing`` times (or every distinct observed time, if fewer)
        for every task, shape (T * m, 2)."""
        times = torch.unique(X[:, 0])
        if times.shape[0] > self.n_inducing:
            times = torch.linspace(
                float(times[0]), float(times[-1]), self.n_inducing, device=X.device
            )
        times = times.double()
        T = len(self.tasks)
        tasks = torch.arange(T, dtype=torch.float64, device=X.device)
        tasks = tasks.repeat_interleave(times.shape[0])
        return torch.stack([times.repeat(T), tasks], 1)

    def _residuals(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residuals from each observation's task mean, and its task's noise variance."""
        task = X[:, 1].long()
        return y - self.task_mean[task], self.noise[task]

    def _bound(self, obs: Observations, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact log marginal likelihood, or the sparse bound."""
        resid, noise = self._residuals(X, y)
        method = self._method(obs)
        if method == "kronecker":
            B, K = self._icm_parts(obs)
            return kronecker_log_marginal(B, K, self.noise, resid.reshape(B.shape[0], -1))
        if method == "exact":
            K = self.kernel(X, X).to_dense() + torch.diag(noise)
            return dense_gp_log_marginal(K, resid, torch.zeros((), dtype=K.dtype))
        Z = self._inducing(X)
        factors = sgpr_factors(self._k(Z, Z), self._k(Z, X), resid, noise)
        return sgpr_bound(factors, self.kernel(X, X, diag=True), resid, noise)

    def _k(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.kernel(a, b).to_dense()

    def _predict(self, obs: Observations, X: torch.Tensor, y: torch.Tensor, x_new: torch.Tensor):
        """Latent posterior mean and variance of every task at ``x_new`` (S,), (T, S) each."""
        T, S = len(self.tasks), x_new.shape[0]
        resid, noise = self._residuals(X, y)
        method = self._method(obs)
        if method == "kronecker":
            B, K = self._icm_parts(obs)
            latent, xs = self.kernel.latents[0], x_new.double()[:, None].to(X.device)
            k_new = dense_kernel(latent, obs.x.double()[:, None], xs)
            k_diag = latent(xs, xs, diag=True)
            mean, variance = kronecker_predict(
                B, K, self.noise, resid.reshape(T, -1), k_new, k_diag
            )
            return self.task_mean[:, None] + mean, variance
        tasks = torch.arange(T, dtype=torch.float64, device=X.device)
        Xs = torch.stack([x_new.double().to(X.device).repeat(T), tasks.repeat_interleave(S)], 1)
        mean, variance = self._predict_stacked(method, X, resid, noise, Xs)
        prior = self.task_mean[:, None]
        return prior + mean.reshape(T, S), variance.reshape(T, S)

    def _predict_stacked(self, method: str, X, resid, noise, Xs):
        kss = self.kernel(Xs, Xs, diag=True)
        if method == "exact":
            K = self._k(X, X) + torch.diag(noise)
            zero = torch.zeros((), dtype=K.dtype)
            pred = dense_gp_predict(K, self._k(Xs, X), kss, resid, zero)
            return pred.mean, pred.variance
        Z = self._inducing(X)
        factors = sgpr_factors(self._k(Z, Z), self._k(Z, X), resid, noise)
        return sgpr_predict(factors, self._k(Z, Xs), kss)

"""Contract tests: subclass, implement ``create_kernel`` and pytest collects the checks."""

from __future__ import annotations

import math

import numpy as np
import torch

from workbench.kernels.statespace import StateSpaceKernel
from workbench.ssm import discretize_sde

__all__ = ["StateSpaceKernelContract"]


class StateSpaceKernelContract:
    """Invariants every :class:`StateSpaceKernel` must satisfy, checked in float64.

    Subclass as ``class TestMyKernel(StateSpaceKernelContract)`` and implement
    :meth:`create_kernel`.
    """

    lags = (0.0, 0.05, 0.4, 1.3, 4.0)
    steps = (1e-3, 0.05, 0.5, 3.0)

    def create_kernel(self) -> StateSpaceKernel:
        raise NotImplementedError

    def _kernel(self) -> StateSpaceKernel:
        kernel = self.create_kernel().double()
        kernel.requires_grad_(False)
        return kernel

    def test_dense_covariance_equals_sde_covariance(self):
        k = self._kernel()
        sde = k.sde()
        tau = torch.tensor(self.lags, dtype=torch.float64)
        A = torch.linalg.matrix_exp(sde.F * tau[:, None, None])
        from_sde = (sde.H @ A @ sde.Pinf @ sde.H.mT)[:, 0, 0]
        x = tau[:, None]
        dense = k(x, torch.zeros_like(x[:1])).to_dense()[:, 0]
        scale = float(k.covariance(tau[:1]))
        torch.testing.assert_close(dense, from_sde, rtol=0, atol=1e-11 * scale)
        torch.testing.assert_close(k.covariance(-tau), k.covariance(tau), rtol=0, atol=0)

    def test_lyapunov_residual_vanishes(self):
        sde = self._kernel().sde()
        residual = sde.F @ sde.Pinf + sde.Pinf @ sde.F.mT + sde.L @ sde.Qc @ sde.L.mT
        assert float(residual.abs().max()) <= 1e-10 * float(
            sde.Pinf.abs().max() * sde.F.abs().max()
        )

    def test_transition_equals_matrix_exponential_and_inverts(self):
        k = self._kernel()
        dt = torch.tensor(self.steps, dtype=torch.float64)
        A, _ = k.discretize(dt)
        A_ref, _ = discretize_sde(k.sde(), dt)
        torch.testing.assert_close(A, A_ref, rtol=1e-11, atol=1e-11)
        A_back, _ = k.discretize(-dt)
        eye = torch.eye(A.shape[-1], dtype=torch.float64)
        # round-off grows with |A(dt)| |A(-dt)| (e^{2 lambda dt} for long steps)
        scale = A.abs().amax((-2, -1)) * A_back.abs().amax((-2, -1)) * A.shape[-1]
        error = (A @ A_back - eye).abs().amax((-2, -1))
        assert (error <= 1e-14 * scale).all(), (error, scale)

    def test_process_noise_matches_stationary_identity_and_factorises(self):
        k = self._kernel()
        sde = k.sde()
        dt = torch.tensor(self.steps, dtype=torch.float64)
        _, Q = k.discretize(dt)
        _, Q_ref = discretize_sde(sde, dt)
        scale = float(sde.Pinf.abs().max())
        torch.testing.assert_close(Q, Q_ref, rtol=0, atol=1e-10 * scale)
        d = sde.Pinf.diagonal().rsqrt()  # Jacobi scaling, as the filters use
        torch.linalg.cholesky(d[:, None] * sde.Pinf * d)
        for Qk in Q:
            dq = Qk.diagonal().rsqrt()
            torch.linalg.cholesky(dq[:, None] * Qk * dq)

    def test_spectral_density_is_the_fourier_transform(self):
        k = self._kernel()
        tau = torch.linspace(0.0, 60.0, 600_001, dtype=torch.float64)
        cov = k.covariance(tau)
        for u in (0.0, 0.7, 2.5):
            integrand = 2 * cov * torch.cos(u * tau)  # S(u) = ∫ k(τ) e^{-iuτ} dτ, k even
            numeric = float(torch.trapezoid(integrand, tau))
            exact = float(k.spectral_density(torch.tensor(u, dtype=torch.float64)))
            assert math.isclose(numeric, exact, rel_tol=1e-5, abs_tol=1e-9), (u, numeric, exact)

    def test_stationary_variance_is_the_covariance_at_zero(self):
        k = self._kernel()
        sde = k.sde()
        prior_var = float((sde.H @ sde.Pinf @ sde.H.mT).squeeze())
        assert np.isclose(prior_var, float(k.covariance(torch.zeros((), dtype=torch.float64))))

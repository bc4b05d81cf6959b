"""Smooth latent trajectories with known ground truth: nonlinear oscillators and GP samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["integrate", "lorenz", "van_der_pol"]


def van_der_pol(mu: float = 1.5) -> Callable[[np.ndarray], np.ndarray]:
    r"""Van der Pol oscillator :math:`\ddot x = \mu(1 - x^2)\dot x - x` as a 2-D vector field."""

    def field(s: np.ndarray) -> np.ndarray:  # s: (..., 2)
        x, v = s[..., 0], s[..., 1]
        return np.stack([v, mu * (1 - x**2) * v - x], axis=-1)

    return field


def lorenz(sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
    """The Lorenz-63 system (chaotic for the classical parameters)."""

    def field(s: np.ndarray) -> np.ndarray:  # s: (..., 3)
        x, y, z = s[..., 0], s[..., 1], s[..., 2]
        return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=-1)

    return field


def integrate(
    field: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,  # shape: (n, d) initial states
    n_steps: int,
    dt: float,
    substeps: int = 10,
) -> np.ndarray:
    """Classical Runge-Kutta (RK4) integration; returns states of shape (n, n_steps, d)."""
    h = dt / substeps
    s = np.array(start, dtype=np.float64)
    out = np.empty((s.shape[0], n_steps, s.shape[-1]))
    for t in range(n_steps):
        out[:, t] = s
        for _ in range(substeps):
            k1 = field(s)
            k2 = field(s + 0.5 * h * k1)
            k3 = field(s + 0.5 * h * k2)
            k4 = field(s + h * k3)
            s = s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out

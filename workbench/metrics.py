"""Evaluation metrics for latent-variable models whose latents are identified only up to an
affine map."""

from __future__ import annotations

import numpy as np

__all__ = ["affine_r2"]


def affine_r2(true: np.ndarray, estimate: np.ndarray) -> float:
    r"""R² of the least-squares regression of ``true`` on ``[estimate, 1]``.

    Both arrays are flattened over their leading axes; a trailing axis of ``estimate`` with
    several columns (e.g. a 2-D latent subspace) is regressed on jointly when ``estimate`` has
    one more dimension than ``true``. :math:`R^2 = 1 - \|t - \hat t\|^2 / \|t - \bar t\|^2`.

    Examples
    --------
    >>> t = np.linspace(0, 1, 50)
    >>> round(affine_r2(t, -3 * t + 2), 12)
    1.0
    """
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    e = np.asarray(estimate, dtype=np.float64)
    e = e.reshape(len(t), -1) if e.ndim > np.ndim(true) else e.reshape(-1, 1)
    if e.shape[0] != len(t):
        raise ValueError(f"expected estimates for {len(t)} values, got {e.shape[0]}")
    design = np.column_stack([e, np.ones(len(t))])
    coef, *_ = np.linalg.lstsq(design, t, rcond=None)
    resid = t - design @ coef
    return float(1 - resid @ resid / np.sum((t - t.mean()) ** 2))

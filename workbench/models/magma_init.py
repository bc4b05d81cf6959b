"""Starting point of MagmaClust's EM: hyper-parameters from the data, k-means memberships."""

from __future__ import annotations

import gpytorch
import numpy as np
import torch

from workbench.models.task_grid import TaskGrid

__all__ = ["TASK_SHARE", "initialize", "kmeans_memberships"]

# Initial task-kernel variance as a share of the data variance: small, so that task deviations
# do not absorb the differences between clusters before the memberships settle.
TASK_SHARE = 0.03


def initialize(model, grid: TaskGrid) -> torch.Tensor:
    """Hyper-parameters from the data's scales; memberships from k-means on the curves."""
    values = grid.y[grid.valid]
    var = float(values.var()) if values.numel() > 1 else 0.0
    # constant data or one value: the mean square (a zero outputscale has no raw value)
    var = var if var > 0 else float(values.square().mean()) or 1.0
    span = float(grid.x.max() - grid.x.min()) or 1.0
    for kernel, scale in ((model.mean_kernel, var), (model.task_kernel, TASK_SHARE * var)):
        for module in kernel.modules():
            if isinstance(module, gpytorch.kernels.ScaleKernel):
                module.initialize(outputscale=scale)
            elif getattr(module, "has_lengthscale", False):
                module.initialize(lengthscale=0.1 * span)
    with torch.no_grad():
        # above the constraint's floor (1e-8), or the raw value is NaN (tiny data)
        floor = 2 * float(model.raw_noise_constraint.lower_bound)
        noise = torch.tensor(max(0.01 * var, floor), dtype=torch.float64)
        model.raw_noise.fill_(model.raw_noise_constraint.inverse_transform(noise))
        if model.prior_mean_mode == "constant":
            model.mean_constant.fill_(float(values.mean()))
    return kmeans_memberships(grid, model.n_clusters, model.seed)


def kmeans_memberships(grid: TaskGrid, n_clusters: int, seed: int) -> torch.Tensor:
    """One-hot tau from k-means (50 starts) on the curves interpolated to a common grid.

    On irregular grids, linear interpolation onto 20 points (held flat beyond a task's
    range) keeps the curves' shapes; (min, mean, max) summaries lose them when cluster
    means cross.
    """
    M, K, device = grid.y.shape[0], n_clusters, grid.y.device
    if K == 1:
        return torch.ones(M, 1, dtype=torch.float64, device=device)
    from sklearn.cluster import KMeans

    # k-means runs in numpy on CPU copies; the memberships go back to the grid's device
    x = grid.x.cpu().numpy()
    common = np.linspace(x.min(), x.max(), 20)
    t, y, valid = (v.cpu().numpy() for v in (grid.t, grid.y, grid.valid))
    features = np.stack([np.interp(common, t[i][valid[i]], y[i][valid[i]]) for i in range(M)])
    labels = KMeans(K, n_init=50, random_state=seed).fit_predict(features)
    labels = torch.as_tensor(labels, dtype=torch.long)
    return torch.nn.functional.one_hot(labels, K).double().to(device)

"""The simulation scheme of the MagmaClust paper: clustered curves on irregular grids."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["magma_clusters"]

_HYPOTHESES = ("H00", "Hk0", "H0i", "Hki")


def _se(t1: np.ndarray, t2: np.ndarray, log_var: float, log_sq_len: float) -> np.ndarray:
    """Squared exponential in the paper's log parameters: exp(a - exp(-b) (t - t')^2 / 2)."""
    return np.exp(log_var - 0.5 * np.exp(-log_sq_len) * (t1[:, None] - t2[None, :]) ** 2)


def _draw(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)  # robust square root of a near-singular SE covariance
    return mean + vecs @ (np.sqrt(np.clip(vals, 0.0, None)) * rng.normal(size=mean.shape[0]))


def magma_clusters(
    n_tasks: int = 50,
    n_points: int = 30,
    n_clusters: int = 3,
    *,
    hypothesis: str = "H00",
    common_grid: bool = False,
    grid: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    noise_sd: tuple[float, float] = (0.0, 0.1),
    log_variance: tuple[float, float] = (0.0, 5.0),
    log_sq_lengthscale: tuple[float, float] = (0.0, 2.0),
    seed: int = 0,
) -> xr.Dataset:
    r"""Curves :math:`y_i = \mu_{Z_i}(t_i) + f_i(t_i) + \varepsilon_i` as in Leroy et al. (2023).

    Cluster means :math:`\mu_k \sim GP(a_k t + b_k, SE(\alpha_\mu, \beta_\mu))` with
    :math:`a_k \sim U[-2, 2]`, :math:`b_k \sim U[20, 30]`; task deviations
    :math:`f_i \sim GP(0, SE(\alpha_i, \beta_i))`; :math:`SE(\alpha, \beta)(t, t') =
    e^{\alpha - e^{-\beta}(t - t')^2/2}` with :math:`\alpha \sim U(\text{log\_variance})`,
    :math:`\beta \sim U(\text{log\_sq\_lengthscale})` and the noise sd
    :math:`\sigma_i \sim U(\text{noise\_sd})`, drawn once, per cluster or per task as
    ``hypothesis`` says (the noise goes with the task hyper-parameters).

    Parameters
    ----------
    n_tasks, n_points, n_clusters : int
        M tasks with N points each, K clusters.
    hypothesis : {"H00", "Hk0", "H0i", "Hki"}
        Mean-process hyper-parameters common ("0") or per cluster ("k"); task ones common
        ("0") or per task ("i").
    common_grid : bool
        All tasks observed at the same N inputs, or each at its own N inputs of ``grid``.
    grid : array, optional
        Candidate inputs (default 0, 0.05, ..., 10).
    weights : array, optional
        Cluster probabilities (default (0.34, 0.33, 0.33) for K = 3, else uniform).
    noise_sd : (float, float)
        Range of the tasks' noise standard deviations.
    log_variance, log_sq_lengthscale : (float, float)
        Ranges of the kernels' log variance and log squared length-scale. The defaults are the
        paper's text; its committed common-grid datasets used (0, 3) and (0, 1).
    seed : int
        Seed of every draw.

    Returns
    -------
    xr.Dataset
        ``y`` (task, time) on the union of the observed inputs, NaN where a task is not
        observed; ground truth ``cluster`` (task) and ``mean_process`` (cluster, time).
    """
    if hypothesis not in _HYPOTHESES:
        raise ValueError(f"expected hypothesis in {_HYPOTHESES}, got {hypothesis!r}")
    rng = np.random.default_rng(seed)
    G = np.round(np.arange(0, 10.0001, 0.05) if grid is None else np.asarray(grid, float), 10)
    if n_points > G.size:
        raise ValueError(f"expected n_points <= {G.size} grid inputs, got {n_points}")
    if weights is None:
        weights = np.array([0.34, 0.33, 0.33]) if n_clusters == 3 else np.full(n_clusters, 1.0)
    weights = np.asarray(weights, float) / np.sum(weights)

    def hps(count: int, specific: bool, noise: bool) -> np.ndarray:
        draws = np.c_[rng.uniform(*log_variance, count), rng.uniform(*log_sq_lengthscale, count)]
        if noise:
            draws = np.c_[draws, rng.uniform(*noise_sd, count)]
        return draws if specific else np.repeat(draws[:1], count, 0)

    mean_hp = hps(n_clusters, hypothesis[1] == "k", False)
    task_hp = hps(n_tasks, hypothesis[2] == "i", True)
    means = np.stack(
        [
            _draw(rng.uniform(-2, 2) * G + rng.uniform(20, 30), _se(G, G, *mean_hp[k]), rng)
            for k in range(n_clusters)
        ]
    )
    labels = rng.choice(n_clusters, size=n_tasks, p=weights)
    shared = np.sort(rng.choice(G.size, n_points, replace=False))
    values = np.full((n_tasks, G.size), np.nan)
    for i in range(n_tasks):
        idx = shared if common_grid else np.sort(rng.choice(G.size, n_points, replace=False))
        t = G[idx]
        cov = _se(t, t, *task_hp[i, :2]) + task_hp[i, 2] ** 2 * np.eye(n_points)
        values[i, idx] = _draw(means[labels[i], idx], cov, rng)
    seen = ~np.isnan(values).all(0)
    ds = xr.Dataset(
        {
            "y": (("task", "time"), values[:, seen]),
            "cluster": (("task",), labels),
            "mean_process": (("cluster_id", "time"), means[:, seen]),
        },
        coords={"task": np.arange(n_tasks), "time": G[seen], "cluster_id": np.arange(n_clusters)},
    )
    ds.attrs = {
        "source": f"workbench.simulate.magma_clusters(hypothesis={hypothesis!r}, seed={seed})",
        "reference": "Leroy, Latouche, Guedj and Gey, JMLR 24(5), 2023, simulation scheme",
    }
    return ds

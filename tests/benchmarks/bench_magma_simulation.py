"""Benchmark: the MagmaClust paper's H00 simulation study, regenerated with the paper's scheme.

Run: ``python tests/benchmarks/bench_magma_simulation.py [--replicates 100]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64.

Scheme (``wb.simulate.magma_clusters``): 51 tasks with 30 points on a common grid drawn from
0, 0.05, ..., 10, K* = 3 equiprobable clusters, one set of hyper-parameters (H00), log variance
in U[0, 3], log squared length-scale in U[0, 1] and noise sd in U[0, 0.1] (the ranges of the
paper's committed common-grid datasets). Protocol of the paper: train on tasks 1..50; observe
task 0's first 20 points, predict its last 10. Reported next to the paper's figures
(``res_pred_Hoo_M50.csv``, ``res_clust_Hoo_M50.csv`` in ``../shared/data/magmaclust``, whose
data file is not published, so the datasets differ, not the scheme): MSE of the predictive mean,
WCIC95 (the paper's tau-weighted per-cluster coverage; mixture-interval coverage in brackets),
ARI of the training memberships, median fit time and prediction time.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.kernels.batched import squared_exponential  # noqa: E402

torch.set_num_threads(1)
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "magmaclust"
PAPER_NAMES = {"MagmaClust": "MAGMAclust", "Magma": "MAGMA", "GP": "GP"}


def dataset(seed: int) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray, np.ndarray]:
    """Training tasks, the test task's observed and held-out points, true training labels."""
    ds = wb.simulate.magma_clusters(
        51, 30, 3, common_grid=True, weights=np.ones(3), log_variance=(0.0, 3.0),
        log_sq_lengthscale=(0.0, 1.0), noise_sd=(0.0, 0.1), seed=seed,
    )  # fmt: skip
    test = ds.y.isel(task=0).dropna("time")
    train = ds.y.isel(task=slice(1, None))
    return train, test.isel(time=slice(0, 20)), test.isel(time=slice(20, 30)), ds.cluster[1:]


def score(pred: xr.Dataset, hold: xr.DataArray) -> tuple[float, float, float]:
    """MSE, tau-weighted per-cluster 95% coverage (the paper's WCIC) and mixture coverage."""
    y = hold.values
    mse = float(((pred["mean"].values - y) ** 2).mean())
    mixture = 100 * float(((y >= pred.lower.values) & (y <= pred.upper.values)).mean())
    if "cluster_mean" not in pred:
        return mse, mixture, mixture
    half = norm.ppf(0.975) * np.sqrt(pred.cluster_variance.values)
    inside = np.abs(y - pred.cluster_mean.values) <= half  # (cluster, time)
    weighted = 100 * float((pred.membership.values[:, None] * inside).sum(0).mean())
    return mse, weighted, mixture


def replicate(seed: int, n_clusters: int = 3) -> list[tuple]:
    """(method, MSE, WCIC, mixture coverage, ARI, fit s, predict s) for one dataset."""
    train, obs, hold, labels = dataset(seed)
    rows = []
    for name, model in (
        ("MagmaClust", wb.MagmaClust(n_clusters, prior_mean="constant")),
        ("Magma", wb.Magma(prior_mean="constant")),
    ):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(train, progress=False)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = model.predict(obs, at=hold.time.values)
        pred_s = time.perf_counter() - start
        ari = adjusted_rand_score(labels, model.memberships().values.argmax(1))
        rows.append((name, *score(pred, hold), ari, fit_s, pred_s))
    gp = wb.ExactGP(squared_exponential(), mean=float(obs.mean()))  # constant mean, learned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp.fit(obs, progress=False)
        pred = gp.posterior(obs, at=hold.time.values, observation_noise=True)
    rows.append(("GP", *score(pred, hold), np.nan, 0.0, 0.0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    args = parser.parse_args()
    rows = [row for seed in range(args.replicates) for row in replicate(seed)]
    ours = pd.DataFrame(rows, columns=["method", "MSE", "WCIC", "mixture", "ARI", "fit", "pred"])
    paper = pd.read_csv(args.data / "res_pred_Hoo_M50.csv")
    clust = pd.read_csv(args.data / "res_clust_Hoo_M50.csv")
    paper_ari = clust[clust.Method == "MAGMAclust"].RI.mean()
    print(f"\n### H00 simulation, M = 50, N = 30, K* = 3, {args.replicates} datasets (ours)")
    print("### vs the paper's 100 datasets in brackets\n")
    print("| method | MSE mean (sd) | MSE median | WCIC95 % [mixture] | ARI | fit s | pred ms |")
    print("|---|---|---|---|---|---|---|")
    for method, g in ours.groupby("method", sort=False):
        ref = paper[paper.Method == PAPER_NAMES[method]]
        ari = f"{g.ARI.mean():.3f} ({paper_ari:.3f})" if method == "MagmaClust" else "–"
        print(
            f"| {method} | {g.MSE.mean():.2f} ({g.MSE.std():.1f}) [{ref.MSE.mean():.2f}] | "
            f"{g.MSE.median():.2f} [{ref.MSE.median():.2f}] | "
            f"{g.WCIC.mean():.1f} [{g.mixture.mean():.1f}] ({ref.WCIC.mean():.1f}) | {ari} | "
            f"{g.fit.median():.2f} ({ref.Time_train.median():.0f}) | "
            f"{1000 * g.pred.median():.0f} ({1000 * ref.Time_pred.median():.0f}) |"
        )
    mc, mg = (ours[ours.method == m].MSE.values for m in ("MagmaClust", "Magma"))
    print(f"\nMagmaClust beats Magma on MSE in {int((mc < mg).sum())} of {len(mc)} datasets")
    print(f"MagmaClust fit time: median {np.median(ours[ours.method == 'MagmaClust'].fit):.2f} s,")
    print(f"  90th percentile {np.quantile(ours[ours.method == 'MagmaClust'].fit, 0.9):.2f} s")


if __name__ == "__main__":
    main()

"""Benchmark: MagmaClust, Magma and a single-task GP on the MagmaClust paper's own data.

Run: ``python tests/benchmarks/bench_magma_parity.py [--datasets 100] [--data DIR]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64. Data: ``db_i_clust_100rep_M20_N30_diff_time_Hoo.csv`` from the authors' repository
(``../shared/data/magmaclust``; not shipped). Protocol of the paper: train on the 20 tasks of a
dataset, observe the test task's first 20 points (by time), predict its last 10; report MSE of
the predictive mean and the % of the 10 points inside the 95 % interval (WCIC95), next to the
paper's figures from ``res_pred_Hoo_diff_time.csv``.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import gpytorch  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

import workbench as wb  # noqa: E402

torch.set_num_threads(1)
PAPER_NAMES = {"MagmaClust": "MAGMAclust", "Magma": "MAGMA", "GP": "GP"}  # rows in dataset order
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "magmaclust"


def split(frame: pd.DataFrame) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """Training tasks (task, time) on their union grid, and the test task's two halves."""
    frame = frame.assign(Timestamp=frame.Timestamp.round(6))
    train = frame[frame.ID != 1].pivot_table(index="ID", columns="Timestamp", values="Output")
    da = xr.DataArray(
        train.values,
        dims=("task", "time"),
        coords={"task": train.index.values, "time": train.columns.values},
    )
    test = frame[frame.ID == 1].sort_values("Timestamp")
    series = xr.DataArray(test.Output.values, dims="time", coords={"time": test.Timestamp.values})
    return da, series.isel(time=slice(0, 20)), series.isel(time=slice(20, 30))


def score(pred: xr.Dataset, hold: xr.DataArray) -> tuple[float, float]:
    mse = float(((pred["mean"].values - hold.values) ** 2).mean())
    inside = (hold.values >= pred.lower.values) & (hold.values <= pred.upper.values)
    return mse, 100 * float(inside.mean())


def single_gp(obs: xr.DataArray, hold: xr.DataArray) -> tuple[float, float]:
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    model = wb.ExactGP(kernel, mean=float(obs.mean()))  # constant mean, learned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(obs, progress=False)
        post = model.posterior(obs, at=hold.time.values, observation_noise=True)
    return score(post, hold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--clusters", type=int, default=3)
    args = parser.parse_args()
    frame = pd.read_csv(args.data / "db_i_clust_100rep_M20_N30_diff_time_Hoo.csv")
    paper = pd.read_csv(args.data / "res_pred_Hoo_diff_time.csv")
    rows = []
    for i in sorted(frame.ID_dataset.unique())[: args.datasets]:
        da, obs, hold = split(frame[frame.ID_dataset == i])
        for name, model in (
            ("MagmaClust", wb.MagmaClust(args.clusters, prior_mean="constant")),
            ("Magma", wb.Magma(prior_mean="constant")),
        ):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(da, progress=False)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            pred = model.predict(obs, at=hold.time.values)
            rows.append((name, *score(pred, hold), fit_s, time.perf_counter() - start))
        rows.append(("GP", *single_gp(obs, hold), 0.0, 0.0))
    ours = pd.DataFrame(rows, columns=["method", "MSE", "WCIC", "train_s", "pred_s"])
    print(f"\n### Irregular grids, H00, M = 20, N = 30, {args.datasets} datasets\n")
    print("| method | MSE mean (paper) | MSE median (paper) | WCIC95 % (paper) | train s |", end="")
    print(" pred ms |")
    print("|---|---|---|---|---|---|")
    for method, group in ours.groupby("method", sort=False):
        ref = paper[paper.Method == PAPER_NAMES[method]].head(args.datasets)
        print(
            f"| {method} | {group.MSE.mean():.1f} ({ref.MSE.mean():.1f}) | "
            f"{group.MSE.median():.2f} ({ref.MSE.median():.2f}) | "
            f"{group.WCIC.mean():.1f} ({ref.WCIC.mean():.1f}) | "
            f"{group.train_s.median():.2f} | {1000 * group.pred_s.median():.0f} |"
        )


if __name__ == "__main__":
    main()

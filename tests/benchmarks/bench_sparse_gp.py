"""Benchmark: SparseInverseCholeskyGP against GPyTorch's SVGP and VNNGP on large 2-D data.

Run: ``python tests/benchmarks/bench_sparse_gp.py [--quick] [--data DIR]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64, one random 80/20 split (seed 0).

1. Real data: ``../shared/data/spatial/precip.txt`` (54,502 land cells of the CRU 0.5°
   precipitation climatology, heavy-tailed; not shipped), inputs longitude/latitude in degrees.
   Ours with a Gaussian and with a Student-t likelihood (rho = 2), SVGP with 500 inducing points
   and VNNGP with k = 32, all with a Matérn-1.5 kernel: held-out RMSE, Gaussian NLL (for the
   Student-t model: the NLL of a Gaussian with the predictive mean and the latent variance plus
   the noise variance of a moment-matched t, reported only as a comparison of point accuracy)
   and fit time.
2. n = 10^5 uniform points in the unit square (Matérn-1.5 field sampled on a 10^5-point
   Vecchia prior, noise sd 0.1): ordering + pattern + Laplace start, one hyper-parameter round,
   held-out RMSE/NLL against SVGP and VNNGP epochs, and peak memory.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.testing.peers import fit_svgp, fit_vnngp, gaussian_scores  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "spatial"


def points(X: np.ndarray, y: np.ndarray) -> xr.DataArray:
    return xr.DataArray(y, dims="cell", coords={"x0": ("cell", X[:, 0]), "x1": ("cell", X[:, 1])})


def ours(X, y, Xt, likelihood: str, epochs: int) -> tuple[float, np.ndarray, np.ndarray]:
    model = wb.SparseInverseCholeskyGP(likelihood=likelihood, rho=2.0)
    start = time.perf_counter()
    model.fit(points(X, y), epochs=epochs, progress=False)
    seconds = time.perf_counter() - start
    post = model.posterior(Xt)
    var = post["variance"].values
    scale2 = float(model.y_scale) ** 2
    if likelihood == "gaussian":
        var = var + float(model.likelihood.noise.detach()) * scale2
    else:  # Student-t noise: variance s^2 nu / (nu - 2) when finite
        nu, s = float(model.likelihood.df.detach()), float(model.likelihood.scale.detach())
        var = var + (s**2 * nu / (nu - 2) if nu > 2 else s**2 * 10) * scale2
    return seconds, post["mean"].values, var


def compare(X, y, Xt, yt, epochs: int, student: bool) -> None:
    print("| model | fit s | held-out RMSE | held-out NLL |")
    print("|---|---|---|---|")
    runs = [("SparseInverseCholeskyGP, Gaussian, rho = 2", "gaussian")]
    if student:
        runs.append(("SparseInverseCholeskyGP, Student-t, rho = 2", "student_t"))
    for name, likelihood in runs:
        seconds, mean, var = ours(X, y, Xt, likelihood, epochs)
        print(f"| {name} | {seconds:.1f} | " + " | ".join(f"{v:.4g}" for v in
              gaussian_scores(mean, var, yt)) + " |")  # fmt: skip
    for name, fit in (
        ("GPyTorch SVGP, 500 inducing points", lambda: fit_svgp(X, y, 500, epochs)),
        ("GPyTorch VNNGP, k = 32", lambda: fit_vnngp(X, y, 32, epochs)),
    ):
        predict, seconds = fit()
        rmse, nll = gaussian_scores(*predict(Xt), yt)
        print(f"| {name} | {seconds:.1f} | {rmse:.4g} | {nll:.4g} |")


def precip(data: pathlib.Path, epochs: int, subsample: int | None) -> None:
    frame = pd.read_csv(data / "precip.txt", sep=r"\s+", quotechar='"')
    X, y = frame[["x", "y"]].to_numpy(float), frame.iloc[:, -1].to_numpy(float)
    rng = np.random.default_rng(0)
    keep = rng.permutation(len(y))[: subsample or len(y)]
    X, y = X[keep], y[keep]
    test = rng.uniform(size=len(y)) < 0.2
    print(f"\n### 1. CRU precipitation, {len(y)} cells, 80/20 split, {epochs} epochs each\n")
    compare(X[~test], y[~test], X[test], y[test], epochs, student=True)


def synthetic(n: int, epochs: int) -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(n, 2))
    field = np.sin(12 * X[:, 0]) * np.cos(9 * X[:, 1]) + 0.5 * np.sin(25 * X[:, 0] * X[:, 1])
    y = field + 0.1 * rng.normal(size=n)
    test = rng.uniform(size=n) < 0.1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n### 2. n = {n} in the unit square (smooth field + noise sd 0.1), {epochs} epochs\n")
    compare(X[~test], y[~test], X[test], field[test], epochs, student=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory {peak:.0f} MiB (before: {before:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    args = parser.parse_args()
    precip(args.data, 2 if args.quick else 5, 10_000 if args.quick else None)
    synthetic(20_000 if args.quick else 100_000, 1 if args.quick else 2)


if __name__ == "__main__":
    main()

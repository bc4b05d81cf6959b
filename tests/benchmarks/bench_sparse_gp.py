"""Benchmark: SparseInverseCholeskyGP against GPyTorch's SVGP and VNNGP on large 2-D data.

Run: ``python tests/benchmarks/bench_sparse_gp.py [--quick] [--data DIR] [--only PART]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64, one random 80/20 split (seed 0).

1. Real data: ``../shared/data/spatial/precip.txt`` (54,502 land cells of the CRU 0.5°
   precipitation climatology, heavy-tailed; not shipped), inputs longitude/latitude in degrees.
   Ours with a Gaussian and with a Student-t likelihood (rho = 2), SVGP with 500 inducing points
   and VNNGP with k = 32, all with a Matérn-1.5 kernel: held-out RMSE, NLL (each model's own
   predictive density: Gaussian, or for the Student-t model the t likelihood integrated against
   the latent predictive by quadrature) and fit time.
2. n = 10^5 uniform points in the unit square (a smooth sinusoidal field plus noise sd 0.1,
   10% held out and scored against the noise-free field): for ours the time of the maximin
   ordering + pattern + reduced ancestors, of the Vecchia–Laplace start, of one epoch of
   hyper-parameter Adam and of the re-ordering round that follows; per epoch for SVGP and
   VNNGP; held-out RMSE/NLL; each method runs in a forked child so that its peak resident
   memory (above the parent's at the fork) is its own.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.models.sic_state import order_data  # noqa: E402
from workbench.testing.peers import fit_svgp, fit_vnngp, gaussian_scores  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")
DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "spatial"


def points(X: np.ndarray, y: np.ndarray) -> xr.DataArray:
    return xr.DataArray(y, dims="cell", coords={"x0": ("cell", X[:, 0]), "x1": ("cell", X[:, 1])})


def ours(X, y, Xt, yt, likelihood: str, epochs: int) -> tuple[float, float, float]:
    """Fit time, held-out RMSE of the predictive mean and held-out NLL: Gaussian for the
    Gaussian likelihood; for the Student-t, the exact predictive density
    :math:`\\int t(y \\mid f) N(f \\mid m, v) df` by 40-point Gauss-Hermite quadrature."""
    model = wb.SparseInverseCholeskyGP(likelihood=likelihood, rho=2.0)
    start = time.perf_counter()
    model.fit(points(X, y), epochs=epochs, progress=False)
    seconds = time.perf_counter() - start
    post = model.posterior(Xt)
    mean, var = post["mean"].values, post["variance"].values
    scale = float(model.y_scale)
    if likelihood == "gaussian":
        return (seconds, *gaussian_scores(mean, var + float(model.likelihood.noise) * scale**2, yt))
    nodes, weights = np.polynomial.hermite.hermgauss(40)
    m = torch.as_tensor((mean - float(model.y_loc)) / scale)[:, None]
    f = m + torch.as_tensor(np.sqrt(2 * var) / scale)[:, None] * torch.as_tensor(nodes)
    target = torch.as_tensor((yt - float(model.y_loc)) / scale)[:, None].expand_as(f)
    with torch.no_grad():
        log_t = model.likelihood.log_prob(target, f)
    log_p = torch.logsumexp(log_t + torch.as_tensor(np.log(weights / np.sqrt(np.pi))), 1)
    nll = float(-(log_p.mean()) + np.log(scale))
    return seconds, float(np.sqrt(np.mean((mean - yt) ** 2))), nll


def compare(X, y, Xt, yt, epochs: int, student: bool) -> None:
    print("| model | fit s | held-out RMSE | held-out NLL |")
    print("|---|---|---|---|")
    runs = [("SparseInverseCholeskyGP, Gaussian, rho = 2", "gaussian")]
    if student:
        runs.append(("SparseInverseCholeskyGP, Student-t, rho = 2", "student_t"))
    for name, likelihood in runs:
        seconds, rmse, nll = ours(X, y, Xt, yt, likelihood, epochs)
        print(f"| {name} | {seconds:.1f} | {rmse:.4g} | {nll:.4g} |")
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


def _child(work, queue) -> None:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = work()
    queue.put((*row, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base))


def _forked(work) -> tuple:
    """Run ``work`` in a forked child; its result plus the child's peak memory growth (MiB)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    proc = context.Process(target=_child, args=(work, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return row


def _ours_phases(X, y, Xt, ft) -> tuple:
    model = wb.SparseInverseCholeskyGP(likelihood="gaussian", rho=2.0)
    da = points(X, y)
    model._initialize(X, y)
    unit = model._unit(X)
    tic = time.perf_counter()
    order_data(unit, y, model._lengthscale(2), model.rho)
    order = time.perf_counter() - tic
    tic = time.perf_counter()
    model.fit(da, epochs=0, progress=False)
    start = time.perf_counter() - tic
    hyper = [*model.kernel.parameters(), *model.likelihood.parameters(), model.mean_constant]
    gen = torch.Generator().manual_seed(0)
    tic = time.perf_counter()
    model._epoch(torch.optim.Adam(hyper, lr=0.05), len(y), 128, gen)
    epoch = time.perf_counter() - tic
    tic = time.perf_counter()
    model.rebuild()
    rebuild = time.perf_counter() - tic
    mean, var = (v.numpy() for v in model.predict_latent(Xt))
    var = var * float(model.y_scale) ** 2
    mean = float(model.y_loc) + float(model.y_scale) * mean
    return (order, start, epoch, rebuild, *gaussian_scores(mean, var, ft))


def _peer(fit, Xt, ft, epochs: int) -> tuple:
    predict, seconds = fit()
    mean, var = predict(Xt)
    return (seconds / epochs, *gaussian_scores(mean, var, ft))


def synthetic(n: int, epochs: int) -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(n, 2))
    field = np.sin(12 * X[:, 0]) * np.cos(9 * X[:, 1]) + 0.5 * np.sin(25 * X[:, 0] * X[:, 1])
    y = field + 0.1 * rng.normal(size=n)
    test = rng.uniform(size=n) < 0.1
    X, y, Xt, ft = X[~test], y[~test], X[test], field[test]
    _ours_phases(X[:2000], y[:2000], Xt[:100], ft[:100])  # compiled kernels loaded before forks
    print(f"\n### 2. n = {n} in the unit square (smooth field + noise sd 0.1)\n")
    order, start, epoch, rebuild, rmse, nll, mem = _forked(lambda: _ours_phases(X, y, Xt, ft))
    print("| model | ordering + pattern s | start s | epoch s | re-ordering round s "
          "| held-out RMSE | held-out NLL | peak MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print(f"| SparseInverseCholeskyGP, rho = 2 (one epoch) | {order:.1f} | {start:.1f} | "
          f"{epoch:.1f} | {rebuild:.1f} | {rmse:.4g} | {nll:.4g} | {mem:.0f} |")  # fmt: skip
    for name, fit in (
        ("GPyTorch SVGP, 500 inducing points", lambda: fit_svgp(X, y, 500, epochs)),
        ("GPyTorch VNNGP, k = 32", lambda: fit_vnngp(X, y, 32, epochs)),
    ):
        per_epoch, rmse, nll, mem = _forked(lambda fit=fit: _peer(fit, Xt, ft, epochs))
        print(f"| {name} ({epochs} epochs) | – | – | {per_epoch:.1f} | – | {rmse:.4g} | "
              f"{nll:.4g} | {mem:.0f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    parser.add_argument("--only", choices=("precip", "synthetic"), default=None)
    args = parser.parse_args()
    if args.only != "synthetic":
        precip(args.data, 2 if args.quick else 5, 10_000 if args.quick else None)
    if args.only != "precip":
        synthetic(20_000 if args.quick else 100_000, 1 if args.quick else 2)


if __name__ == "__main__":
    main()

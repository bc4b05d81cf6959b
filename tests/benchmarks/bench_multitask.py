"""Benchmark: MultitaskGP against GPyTorch's Kronecker ``MultitaskKernel`` exact model.

Run: ``python tests/benchmarks/bench_multitask.py [--quick]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64, medians over repeats.

1. Complete grids (every task at every input, which GPyTorch's ``MultitaskKernel`` needs):
   ICM with an RBF kernel, rank-1 coregionalisation and per-task noise in both libraries
   (``MultitaskGaussianLikelihood(rank=0, has_global_noise=False)``). Our hyper-parameters are
   copied into GPyTorch's model: the predictive means must agree; then the time of one
   marginal-likelihood evaluation with its gradient, with GPyTorch exact (Cholesky at every
   size) and at its defaults (conjugate gradients and stochastic log-determinants above 800
   values, so approximate there), and of a 10-step L-BFGS fit (exact).
2. 20 tasks x 500 irregular points each (which the Kronecker model cannot take): a sparse
   MultitaskGP against independent exact GPs: fit time and held-out MSE of the hidden points.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import gpytorch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

import workbench as wb  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")


def lmc_data(T: int, P: int, seed: int, missing: float = 0.0) -> tuple[xr.DataArray, np.ndarray]:
    """T tasks mixing two smooth latents, with noise; NaN where not observed."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10, P)) if missing else np.linspace(0, 10, P)
    latents = np.stack([np.sin(1.3 * x + rng.uniform(0, 6)), np.cos(0.5 * x + rng.uniform(0, 6))])
    truth = rng.normal(size=(T, 2)) @ latents + rng.normal(size=(T, 1))
    values = truth + 0.1 * rng.normal(size=truth.shape)
    if missing:
        values[rng.uniform(size=values.shape) < missing] = np.nan
    tasks = [f"task{i}" for i in range(T)]
    da = xr.DataArray(values, dims=("task", "time"), coords={"task": tasks, "time": x})
    return da, truth


class KroneckerICM(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood, n_tasks):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.MultitaskMean(gpytorch.means.ConstantMean(), n_tasks)
        self.covar_module = gpytorch.kernels.MultitaskKernel(
            gpytorch.kernels.RBFKernel(), num_tasks=n_tasks, rank=1
        )

    def forward(self, x):
        return gpytorch.distributions.MultitaskMultivariateNormal(
            self.mean_module(x), self.covar_module(x)
        )


def gpytorch_copy(model: wb.MultitaskGP, da: xr.DataArray) -> tuple[KroneckerICM, torch.Tensor]:
    T = da.sizes["task"]
    x = torch.as_tensor(da.time.values)[:, None]
    y = torch.as_tensor(da.values.T.copy())  # (P, T)
    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(
        num_tasks=T, rank=0, has_global_noise=False
    ).double()
    peer = KroneckerICM(x, y, likelihood, T).double()
    index = model.kernel.coregionalization[0]
    with torch.no_grad():
        peer.covar_module.task_covar_module.covar_factor.copy_(index.covar_factor)
        peer.covar_module.task_covar_module.var = index.var
        peer.covar_module.data_covar_module.lengthscale = model.kernel.latents[0].lengthscale
        likelihood.task_noises = model.noise
        for i, mean in enumerate(peer.mean_module.base_means):
            mean.constant.copy_(model.task_mean[i])
    return peer, x


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _gradient_step(model: wb.MultitaskGP, da: xr.DataArray):
    obs, X, y = model._observe(da)

    def step():
        model.zero_grad()
        (-model._bound(obs, X, y)).backward()

    return step


def _peer_gradient_step(peer: KroneckerICM, x: torch.Tensor):
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(peer.likelihood, peer)

    def step():
        peer.zero_grad()
        (-mll(peer(x), peer.train_targets)).backward()

    return step


def _peer_fit(da: xr.DataArray, steps: int) -> None:
    """GPyTorch's model from the same start, the same L-BFGS loop as ``MultitaskGP.fit``."""
    peer, x = gpytorch_copy(wb.MultitaskGP().fit(da, steps=0, progress=False), da)
    peer.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(peer.likelihood, peer)
    opt = torch.optim.LBFGS(peer.parameters(), lr=1.0, line_search_fn="strong_wolfe")
    n = x.shape[0] * da.sizes["task"]

    def closure():
        opt.zero_grad()
        loss = -mll(peer(x), peer.train_targets) * peer.train_targets.shape[0] / n
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)


def complete_grids(sizes: list[tuple[int, int]], repeats: int) -> None:
    print("\n### 1. Complete grids, ICM (rank 1), RBF: MultitaskGP vs GPyTorch MultitaskKernel\n")
    print("| tasks x points | max abs diff of means | loss+grad ms: ours / GPyTorch exact ", end="")
    print("(ratio) | GPyTorch default ms (ratio) | fit, 10 L-BFGS steps, s: ours / exact |")
    print("|---|---|---|---|---|")
    for T, P in sizes:
        da, _ = lmc_data(T, P, seed=T + P)
        model = wb.MultitaskGP().fit(da, steps=10, progress=False)
        peer, x = gpytorch_copy(model, da)
        xs = torch.linspace(0, 10, 50, dtype=torch.float64)[:, None]
        peer.eval()
        with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
            theirs = peer.likelihood(peer(xs)).mean.T.numpy()
        ours = model.posterior(da, at=xs[:, 0].numpy())["mean"].values
        diff = float(np.abs(ours - theirs).max())
        peer.train()
        a = median_time(_gradient_step(model, da), repeats)
        b = median_time(_peer_gradient_step(peer, x), repeats)
        with gpytorch.settings.max_cholesky_size(10**6):  # exact (Cholesky) at every size
            c = median_time(_peer_gradient_step(peer, x), repeats)
            fc = median_time(lambda d=da: _peer_fit(d, 10), 1)
        fa = median_time(lambda d=da: wb.MultitaskGP().fit(d, steps=10, progress=False), 1)
        print(
            f"| {T} x {P} | {diff:.1e} | {1e3 * a:.1f} / {1e3 * c:.1f} ({a / c:.3f}) | "
            f"{1e3 * b:.1f} ({a / b:.3f}) | {fa:.2f} / {fc:.2f} ({fa / fc:.3f}) |"
        )


def irregular(T: int, P: int) -> None:
    print(f"\n### 2. {T} tasks x {P} irregular points (Kronecker model: not applicable)\n")
    rng = np.random.default_rng(2)
    grid = np.sort(rng.uniform(0, 10, (T, P)), axis=1)  # each task on its own inputs
    x = np.unique(grid)
    values = np.full((T, x.size), np.nan)
    hidden = np.zeros_like(values, dtype=bool)
    target = np.full_like(values, np.nan)
    latents = [np.sin(1.3 * x + 1.0), np.cos(0.5 * x + 2.0)]
    mix = rng.normal(size=(T, 2))
    for i in range(T):
        idx = np.searchsorted(x, grid[i])
        f = mix[i] @ np.stack(latents)[:, idx] + i * 0.1
        values[i, idx] = f + 0.1 * rng.normal(size=P)
        target[i, idx] = f
        gap = (grid[i] > 4) & (grid[i] < 6)  # hide a window of each task
        hidden[i, idx[gap]] = True
    train = xr.DataArray(np.where(hidden, np.nan, values), dims=("task", "time"),
                         coords={"task": [f"task{i}" for i in range(T)], "time": x})  # fmt: skip
    start = time.perf_counter()
    model = wb.MultitaskGP(n_latents=2, inference="sparse", n_inducing=16)
    model.fit(train, steps=10, progress=False)
    fit_s = time.perf_counter() - start
    post = model.posterior(train)["mean"].values
    mse = float(np.mean((post[hidden] - target[hidden]) ** 2))
    start = time.perf_counter()
    errors = []
    for i in range(T):
        series = train.isel(task=i).dropna("time")
        gp = wb.ExactGP(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()))
        gp.fit(series, steps=10, progress=False)
        at = x[hidden[i]]
        errors.append((gp.posterior(series, at=at)["mean"].values - target[i, hidden[i]]) ** 2)
    single_s = time.perf_counter() - start
    print("| model | N observed | fit s | held-out MSE (hidden window) |")
    print("|---|---|---|---|")
    n = int(np.isfinite(train.values).sum())
    print(f"| MultitaskGP, Q = 2, sparse (M = {T * 16}) | {n} | {fit_s:.1f} | {mse:.4f} |")
    print(
        f"| independent exact GPs | {n} | {single_s:.1f} | {np.mean(np.concatenate(errors)):.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [(4, 50), (4, 200)] if args.quick else [(4, 50), (4, 200), (8, 250), (4, 500)]
    complete_grids(sizes, 3 if args.quick else 10)
    irregular(*((5, 100) if args.quick else (20, 500)))


if __name__ == "__main__":
    main()

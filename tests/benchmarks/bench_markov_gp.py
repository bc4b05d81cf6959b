"""Benchmark: MarkovGP (state-space, O(T)) vs Pyro IndependentMaternGP and GPyTorch exact GP.

Run: ``python tests/benchmarks/bench_markov_gp.py [--quick]``. Everything runs single-threaded
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``, set
below before torch is imported) in float64, on the same simulated Matérn-5/2 data for every
library. Times are medians over repeats; the ratio column is peer time / our time. Peak memory is
the high-water resident set of a fresh subprocess during one smoothing pass.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gpytorch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
from pyro.contrib.timeseries import IndependentMaternGP  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.kernels import MaternKernel  # noqa: E402
from workbench.ssm import kalman_filter, rts_smoother, sample_state_space_prior  # noqa: E402

torch.set_num_threads(1)
LENGTHSCALE, OUTPUTSCALE, NOISE, DT = 20.0, 1.0, 0.1, 1.0


def data(T: int) -> xr.DataArray:
    kernel = MaternKernel(nu=2.5, lengthscale=LENGTHSCALE, outputscale=OUTPUTSCALE).double()
    x = torch.arange(T, dtype=torch.float64) * DT
    g = torch.Generator().manual_seed(T)
    f = sample_state_space_prior(kernel, x, 1, g)[0]
    y = f + NOISE**0.5 * torch.randn(T, generator=g, dtype=torch.float64)
    return xr.DataArray(y.numpy(), dims="time", coords={"time": x.numpy()})


def ours(parallel: bool | str = "auto") -> wb.MarkovGP:
    kernel = MaternKernel(nu=2.5, lengthscale=LENGTHSCALE, outputscale=OUTPUTSCALE)
    return wb.MarkovGP(kernel, noise=NOISE, mean=0.0, parallel=parallel)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours_value_and_grad(model: wb.MarkovGP, da: xr.DataArray) -> None:
    obs = model._observe(da, "time")
    model.zero_grad()
    model._log_marginals(obs).sum().backward()


def pyro_value_and_grad(da: xr.DataArray) -> tuple[float, float]:
    gp = IndependentMaternGP(
        nu=2.5,
        dt=DT,
        obs_dim=1,
        length_scale_init=torch.tensor([LENGTHSCALE]),
        kernel_scale_init=torch.tensor([OUTPUTSCALE**0.5]),
        obs_noise_scale_init=torch.tensor([NOISE**0.5]),
    ).double()
    y = torch.from_numpy(da.values)[:, None]
    start = time.perf_counter()
    value = gp.log_prob(y)
    forward = time.perf_counter() - start
    value.sum().backward()
    return forward, time.perf_counter() - start, value.sum().item()


def loop_smoother(da: xr.DataArray) -> None:
    """The plain-torch sequential filter and RTS smoother on the model's state space."""
    model = ours()
    obs = model._observe(da, "time")
    with torch.no_grad():
        A, Q, H, Pinf, which = model._state_space(obs.x)
        y = obs.y - model.prior_mean(obs.x)
        filtered = kalman_filter(A[which], Q[which], H, y, model.noise, obs.mask, Pinf)
        rts_smoother(A[which], filtered)


def table_smoothing(sizes: list[int], repeats: int) -> None:
    print("\n## Smoothing posterior (mean + variance), Matérn-5/2\n")
    print(
        "ours = default `parallel='auto'` (compiled sequential on CPU); scans = associative "
        "scans (the GPU path); loop = plain-torch sequential recursions (the reference)\n"
    )
    print("| T | ours (s) | µs/step | scans (s) | loop (s) |")
    print("|---|---|---|---|---|")
    for T in sizes:
        da = data(T)
        ours().posterior(da.isel(time=slice(0, 10)))  # load compiled code before timing
        t_ours = median_time(lambda da=da: ours().posterior(da), repeats)
        t_scan = median_time(lambda da=da: ours(parallel=True).posterior(da), 1)
        if T <= 20_000:
            t_loop = f"{median_time(lambda da=da: loop_smoother(da), 1):.3f}"
        else:
            t_loop = "(skipped)"
        print(
            f"| {T:,} | {t_ours:.3f} | {1e6 * t_ours / T:.2f} | {t_scan:.3f} | {t_loop} |",
            flush=True,
        )


def table_pyro(sizes: list[int], repeats: int) -> None:
    print("\n## Exact log marginal likelihood + gradient vs pyro IndependentMaternGP(nu=2.5)\n")
    print(
        "| T | ours value+grad (s) | pyro value (s) | pyro value+grad (s) | ratio (grad) "
        "| |Δ log p| |"
    )
    print("|---|---|---|---|---|---|")
    for T in sizes:
        da = data(T)
        model = ours()
        t_ours = median_time(lambda m=model, da=da: ours_value_and_grad(m, da), repeats)
        runs = [pyro_value_and_grad(da) for _ in range(max(1, repeats // 2))]
        t_fwd = statistics.median(r[0] for r in runs)
        t_pyro = statistics.median(r[1] for r in runs)
        diff = abs(runs[0][2] - model.log_marginal_likelihood(da))
        print(
            f"| {T:,} | {t_ours:.3f} | {t_fwd:.3f} | {t_pyro:.3f} | {t_pyro / t_ours:.1f}x "
            f"| {diff:.2e} |",
            flush=True,
        )


class _Exact(gpytorch.models.ExactGP):
    def __init__(self, x, y):
        lik = gpytorch.likelihoods.GaussianLikelihood().double()
        super().__init__(x, y, lik)
        lik.noise = torch.tensor(NOISE, dtype=torch.float64)
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5))
        self.covar_module.base_kernel.lengthscale = torch.tensor(LENGTHSCALE, dtype=torch.float64)
        self.covar_module.outputscale = torch.tensor(OUTPUTSCALE, dtype=torch.float64)
        self.double()

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(
            torch.zeros_like(x[..., 0]), self.covar_module(x)
        )


def gpytorch_posterior(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.tensor(da.time.values)[:, None]
    model = _Exact(x, torch.tensor(da.values))
    model.eval()
    with (
        torch.no_grad(),
        gpytorch.settings.max_cholesky_size(100_000),
        gpytorch.settings.fast_pred_var(False),
        gpytorch.settings.skip_posterior_variances(False),
    ):
        f = model(x)
        return f.mean.numpy(), f.variance.numpy()


def table_gpytorch(sizes: list[int]) -> None:
    print("\n## Posterior vs GPyTorch exact GP (Cholesky), same Matérn-5/2 hyper-parameters\n")
    print("| T | ours (s) | gpytorch (s) | ratio | max |Δ mean| | max |Δ var| |")
    print("|---|---|---|---|---|---|")
    for T in sizes:
        da = data(T)
        start = time.perf_counter()
        post = ours().posterior(da)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        mean, var = gpytorch_posterior(da)
        t_gp = time.perf_counter() - start
        dm = float(np.abs(post["mean"].values - mean).max())
        dv = float(np.abs(post["variance"].values - var).max())
        print(
            f"| {T:,} | {t_ours:.3f} | {t_gp:.2f} | {t_gp / t_ours:.0f}x | {dm:.1e} | {dv:.1e} |",
            flush=True,
        )


def peak_memory(T: int) -> tuple[float, float]:
    """(resident MB before, peak resident MB during one smoothing pass) in a fresh process.

    Reads VmHWM from /proc (ru_maxrss would carry the parent's peak across fork/exec) after
    resetting it with /proc/self/clear_refs once the data are built.
    """
    code = (
        "import re, sys; sys.argv=['x']; "
        f"sys.path.insert(0, {os.path.dirname(__file__)!r}); import bench_markov_gp as b; "
        "status = lambda key: float(re.search(key + r':\\s+(\\d+)', "
        "open('/proc/self/status').read())[1]) / 1024; "
        f"da = b.data({T}); model = b.ours(); "
        "open('/proc/self/clear_refs', 'w').write('5'); before = status('VmRSS'); "
        "model.posterior(da); print(before, status('VmHWM'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.strip().splitlines()[-1].split())
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    big = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    repeats = 3
    print(f"workbench {wb.__version__}, torch {torch.__version__}, 1 thread, float64")
    table_smoothing(big, repeats)
    table_pyro(big, repeats)
    table_gpytorch([1_000] if args.quick else [1_000, 4_000, 8_000])
    print("\n## Peak resident memory of one smoothing pass (fresh process)\n")
    print("| T | RSS before (MB) | peak RSS (MB) | increase (MB) | bytes/step |")
    print("|---|---|---|---|---|")
    for T in big:
        before, after = peak_memory(T)
        print(
            f"| {T:,} | {before:.0f} | {after:.0f} | {after - before:.0f} "
            f"| {(after - before) * 2**20 / T:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

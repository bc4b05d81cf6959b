"""Benchmark: LatentTrajectoryGP (cvHM, O(T)) against Elephant's GPFA and a dense-GP CVI.

Run: ``python tests/benchmarks/bench_latent_peers.py [--bins 500 2000] [--repeats 3]
[--dense-bins 500 2000]``. Everything runs single-threaded (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``, set below before numpy and torch
are imported) in float64, after one untimed warm-up per method (numba compilation). Times are
medians over ``--repeats``. It prints two markdown tables:

1. ``elephant.gpfa.GPFA`` (EM with a dense GP on square-root counts) vs ``LatentTrajectoryGP``
   (Poisson, Matérn-5/2) on ``wb.simulate.latent_spikes`` van der Pol data (10 trials): time of
   fit + posterior means, the ratio Elephant / workbench, and the latent R² after an affine
   alignment to the true latents. Elephant gets spike trains with spikes at bin centres, so
   its binned counts equal ours (checked). One workbench row per ``estep`` mode.
2. CVI on one latent read out by 20 Poisson units (true loadings), the same ``cvi`` loop,
   iterations and damping with two smoothers: the state-space Kalman/RTS smoother of
   ``MarkovGP`` (O(T)) and a dense Cholesky GP (O(T³)); time, ratio, and the largest
   difference between their posterior means (equal up to round-off).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.inference import cvi, dense_gp_predict  # noqa: E402
from workbench.inference.readout import readout_moments  # noqa: E402
from workbench.kernels import MaternKernel  # noqa: E402
from workbench.likelihoods import Poisson  # noqa: E402
from workbench.likelihoods.base import ExpectedLogProb  # noqa: E402
from workbench.testing.gpfa import elephant_gpfa, spike_trains  # noqa: E402

torch.set_num_threads(1)
TRIALS, CVI_STEPS, CVI_LR, DENSE_UNITS, DENSE_LENGTHSCALE = 10, 20, 0.7, 20, 0.2


def median_time(repeats: int, fn, *args, **kwargs):
    """(median seconds of ``fn(*args, **kwargs)``, result of the last call)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def aligned_r2(estimate: np.ndarray, truth: np.ndarray) -> float:
    """R² of least squares of the truth on [estimate, 1] over all trials and bins."""
    X = np.c_[estimate.reshape(-1, estimate.shape[-1]), np.ones(estimate[..., 0].size)]
    Z = truth.reshape(-1, truth.shape[-1])
    coef, *_ = np.linalg.lstsq(X, Z, rcond=None)
    return float(1 - ((Z - X @ coef) ** 2).sum() / ((Z - Z.mean(0)) ** 2).sum())


# -- 1. Elephant GPFA ---------------------------------------------------------------------------
def workbench_fit(spikes, dt: float, K: int, steps: int = 20, **kwargs) -> np.ndarray:
    model = wb.LatentTrajectoryGP(
        K,
        kernel=MaternKernel(nu=2.5, lengthscale=0.1),
        likelihood=Poisson(bin_width=dt),
        **kwargs,
    )
    model.fit(spikes, steps=steps, progress=False)
    return model.posterior().latent_mean.values


def estep_modes() -> list[dict]:
    return [{"estep": "mean_field"}, {"estep": "joint"}]


def gpfa_table(args) -> None:
    print(
        f"\n### Elephant GPFA vs LatentTrajectoryGP ({TRIALS} trials, {args.units} units, ", end=""
    )
    print(f"{args.latents} latents, median of {args.repeats})\n")
    print("| bins | method | fit + posterior (s) | Elephant / this | latent R² |")
    print("|---|---|---|---|---|")
    warm = wb.simulate.latent_spikes(n_units=args.units, n_latents=2, n_trials=2, n_bins=100)
    dt = warm.attrs["bin_width"]
    elephant_gpfa(spike_trains(warm.spikes.values, dt), dt, args.latents, em_iters=2)
    for mode in estep_modes():
        workbench_fit(warm.spikes, dt, args.latents, steps=1, **mode)
    for T in args.bins:
        ds = wb.simulate.latent_spikes(
            n_units=args.units, n_latents=2, n_trials=TRIALS, n_bins=T, latent="van_der_pol"
        )
        truth, trains = ds.true_latent.values, spike_trains(ds.spikes.values, dt)
        ref, (latents, iters) = median_time(args.repeats, elephant_gpfa, trains, dt, args.latents)
        name = f"Elephant GPFA ({iters} EM iterations, sqrt counts)"
        print(f"| {T:,} | {name} | {ref:.2f} | 1.00 | {aligned_r2(latents, truth):.4f} |")
        for mode in estep_modes():
            seconds, latents = median_time(
                args.repeats, workbench_fit, ds.spikes, dt, args.latents, **mode
            )
            name = f"workbench cvHM ({mode['estep']}, 20 EM rounds, Poisson)"
            r2 = aligned_r2(latents, truth)
            print(
                f"| {T:,} | {name} | {seconds:.2f} | {ref / seconds:.2f} | {r2:.4f} |", flush=True
            )


# -- 2. dense-GP CVI ----------------------------------------------------------------------------
class ReadoutPoisson:
    """Likelihood of one latent f_t read out by N Poisson units, eta_nt = c_n f_t + d_n.

    Duck-types :meth:`Likelihood.expected_log_prob` for :func:`workbench.inference.cvi`: the
    per-unit expectations are summed over units by the chain rule (the readout of cvHM, K = 1).
    """

    def __init__(self, counts: torch.Tensor, C: torch.Tensor, d: torch.Tensor, dt: float):
        self.counts, self.C, self.d, self.poisson = counts, C, d, Poisson(bin_width=dt)

    def expected_log_prob(self, y, mean, var) -> ExpectedLogProb:
        mu, s2 = readout_moments(mean[None], var[None], self.C[:, None], self.d)
        e = self.poisson.expected_log_prob(self.counts, mu, s2)
        c = self.C[:, None]
        return ExpectedLogProb(e.value.sum(0), (c * e.d_mean).sum(0), (c**2 * e.d_var).sum(0))


def dense_smoother(model: wb.MarkovGP, x: torch.Tensor):
    """The smoother interface of ``cvi`` by Cholesky of the dense T x T prior covariance."""
    with torch.no_grad():
        K = model.kernel.covariance(x[:, None] - x[None, :])
        c = model.prior_mean(x).detach()

    def smoother(y, noise, mask):
        zero = torch.zeros((), dtype=y.dtype)
        if not mask.any():  # no information yet: the prior
            return c.clone(), K.diagonal().clone(), zero
        pred = dense_gp_predict(
            K[mask][:, mask], K[:, mask], K.diagonal(), (y - c)[mask], noise[mask]
        )
        return c + pred.mean, pred.variance, zero  # log Z is not needed for the means

    return smoother


def cvi_problem(T: int):
    ds = wb.simulate.latent_spikes(
        n_units=DENSE_UNITS, n_latents=1, n_trials=1, n_bins=T, latent="gp"
    )
    dt = ds.attrs["bin_width"]
    counts = torch.from_numpy(ds.spikes.values[0].T).double()  # (unit, time)
    C = torch.from_numpy(ds.loading.values[:, 0])
    lik = ReadoutPoisson(counts, C, torch.from_numpy(ds.bias.values), dt)
    kernel = MaternKernel(nu=2.5, lengthscale=DENSE_LENGTHSCALE)
    model = wb.MarkovGP(kernel, likelihood=Poisson(bin_width=dt), mean=0.0)
    return model, torch.tensor(ds.time.values, dtype=torch.float64), lik


def run_cvi(model, x, lik, dense: bool, steps=CVI_STEPS) -> torch.Tensor:
    """Posterior means after ``steps`` CVI iterations (building the smoother is timed too)."""
    smoother = dense_smoother(model, x) if dense else model._cvi_smoother(x)
    y, mask = torch.zeros_like(x), torch.ones_like(x, dtype=torch.bool)
    with torch.no_grad():
        return cvi(y, mask, lik, smoother, steps=steps, lr=CVI_LR).mean


def dense_table(args) -> None:
    print(f"\n### Dense-GP CVI vs state-space CVI (1 latent, {DENSE_UNITS} Poisson units, ", end="")
    print(f"{CVI_STEPS} CVI iterations, damping {CVI_LR}, median of {args.repeats})\n")
    print("| bins | dense CVI (s) | state-space CVI (s) | dense / state-space | max abs Δ mean |")
    print("|---|---|---|---|---|")
    model, x, lik = cvi_problem(100)
    for dense in (True, False):
        run_cvi(model, x, lik, dense, steps=2)  # warm up
    for T in args.dense_bins:
        problem = cvi_problem(T)
        t_dense, m_dense = median_time(args.repeats, run_cvi, *problem, dense=True)
        t_ssm, m_ssm = median_time(args.repeats, run_cvi, *problem, dense=False)
        diff = float((m_dense - m_ssm).abs().max())
        print(
            f"| {T:,} | {t_dense:.3f} | {t_ssm:.3f} | {t_dense / t_ssm:.1f} | {diff:.1e} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--bins", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--dense-bins", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--latents", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    gpfa_table(args)
    dense_table(args)
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()

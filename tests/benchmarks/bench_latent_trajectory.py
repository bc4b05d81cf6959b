"""Benchmark: LatentTrajectoryGP mean-field CVI at scale (100 units x 10 latents x T bins).

Run: ``python tests/benchmarks/bench_latent_trajectory.py [--bins 100000]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64. Reports the time of 20 CVI iterations (the E-step) and of one full EM round. The peer
comparisons of the issue (Elephant GPFA, dense-GP CVI) are not included yet.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.kernels import MaternKernel  # noqa: E402
from workbench.likelihoods import Poisson  # noqa: E402

torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bins", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print("| bins | units | latents | 20 CVI iterations (s) | one EM round (s) |")
    print("|---|---|---|---|---|")
    for T in args.bins:
        ds = wb.simulate.latent_spikes(
            n_units=100, n_latents=2, n_trials=1, n_bins=T, latent="gp", seed=0
        )
        model = wb.LatentTrajectoryGP(
            10,
            kernel=MaternKernel(nu=2.5, lengthscale=0.1),
            likelihood=Poisson(bin_width=0.01),
            cvi_steps=1,
        )
        model.fit(ds.spikes.isel(time=slice(0, 200)), steps=1, progress=False)  # warm up
        model = wb.LatentTrajectoryGP(
            10,
            kernel=MaternKernel(nu=2.5, lengthscale=0.1),
            likelihood=Poisson(bin_width=0.01),
            cvi_steps=20,
        )
        start = time.perf_counter()
        model.fit(ds.spikes, steps=1, progress=False)
        em = time.perf_counter() - start
        obs, y, mask = model._observe(ds.spikes)
        start = time.perf_counter()
        model._estep(obs.x, y, mask, None, 20)
        estep = time.perf_counter() - start
        print(f"| {T:,} | 100 | 10 | {estep:.1f} | {em:.1f} |", flush=True)


if __name__ == "__main__":
    main()

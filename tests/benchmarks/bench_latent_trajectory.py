"""Benchmark: LatentTrajectoryGP mean-field CVI at scale (100 units x 10 latents x T bins).

Run: ``python tests/benchmarks/bench_latent_trajectory.py [--bins 100000]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64. Reports, for the joint and the mean-field E-step, the time of 20 CVI iterations (one
E-step) and of one full EM round with 20 CVI iterations (E-step, readout and Whittle kernel
M-steps). Peer comparisons (Elephant GPFA, dense-GP CVI) are in ``bench_latent_peers.py``.
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
    parser.add_argument("--estep", nargs="+", default=["mean_field", "joint"])
    args = parser.parse_args()
    print("| bins | units | latents | E-step | 20 CVI iterations (s) | one EM round (s) |")
    print("|---|---|---|---|---|---|")
    for T in args.bins:
        ds = wb.simulate.latent_spikes(
            n_units=100, n_latents=2, n_trials=1, n_bins=T, latent="gp", seed=0
        )
        for estep in args.estep:
            make = lambda steps, estep=estep: wb.LatentTrajectoryGP(  # noqa: E731
                10,
                kernel=MaternKernel(nu=2.5, lengthscale=0.1),
                likelihood=Poisson(bin_width=0.01),
                cvi_steps=steps,
                estep=estep,
            )
            make(1).fit(ds.spikes.isel(time=slice(0, 200)), steps=1, progress=False)  # warm up
            model = make(20)
            start = time.perf_counter()
            model.fit(ds.spikes, steps=1, progress=False)
            em = time.perf_counter() - start
            data = model._prepare(ds.spikes)
            start = time.perf_counter()
            model._estep(data, None, 20)
            e_step = time.perf_counter() - start
            print(f"| {T:,} | 100 | 10 | {estep} | {e_step:.1f} | {em:.1f} |", flush=True)


if __name__ == "__main__":
    main()

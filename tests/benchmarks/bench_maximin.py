"""Benchmark: maximin ordering + rho-pattern build, and the KL-optimal prior factor.

Run: ``python tests/benchmarks/bench_maximin.py [--quick]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64, uniform inputs in the unit square, medians of 3 runs (1 at n = 10^6). Issue target:
ordering and pattern for n = 10^6 in <= 60 s. The reference implementation (DKL-GP's C++ sort,
one tensor operation per distance) is not installed here; the notes report 2-5 s at n = 2,000
and 16-23 s at n = 8,000 for it. The O(n^2) oracle of the tests is timed for scale.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import gpytorch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from workbench.linalg import maximin_pattern  # noqa: E402
from workbench.linalg.factor import kl_factor, padded_pattern  # noqa: E402

torch.set_num_threads(1)


def oracle(X: np.ndarray) -> None:
    dist = np.linalg.norm(X - X[0], axis=1)
    for _ in range(1, len(X)):
        i = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(X - X[i], axis=1))
        dist[i] = -1.0


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    maximin_pattern(rng.uniform(size=(100, 2)), 2.0)  # compile
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
    print("\n### Maximin ordering + rho-pattern, 2-D uniform\n")
    print("| n | rho | mean column size m | time s | us per point |")
    print("|---|---|---|---|---|")
    for n in sizes:
        X = rng.uniform(size=(n, 2))
        for rho in (2.0, 3.0):
            seconds = timed(lambda x=X, r=rho: maximin_pattern(x, r), 1 if n >= 10**6 else 3)
            m = np.diff(maximin_pattern(X, rho).indptr).mean() if n < 10**6 else float("nan")
            print(f"| {n} | {rho} | {m:.2f} | {seconds:.2f} | {1e6 * seconds / n:.1f} |")
    X = rng.uniform(size=(5000, 2))
    print(f"\nO(n^2) oracle at n = 5,000: {timed(lambda: oracle(X), 1):.2f} s; "
          f"compiled: {timed(lambda: maximin_pattern(X, 2.0), 3):.3f} s")  # fmt: skip
    n = 10**5
    X = rng.uniform(size=(n, 2))
    pattern = maximin_pattern(X, 3.0)
    index = torch.as_tensor(padded_pattern(pattern.indptr, pattern.indices))
    Xo = torch.as_tensor(X[pattern.order])
    kernel = gpytorch.kernels.MaternKernel(nu=1.5).double()
    kernel.lengthscale = 0.05

    def factor():
        with torch.no_grad():
            for chunk in torch.split(torch.arange(n), 8192):
                kl_factor(lambda a, b: kernel(a, b).to_dense(), Xo, index[chunk], 1e-6)

    seconds = timed(factor, 3)
    print(f"\nKL-optimal factor, n = 10^5, rho = 3 (m_max {index.shape[1]}): {seconds:.2f} s "
          f"({1e6 * seconds / n:.1f} us per column)")  # fmt: skip


if __name__ == "__main__":
    main()

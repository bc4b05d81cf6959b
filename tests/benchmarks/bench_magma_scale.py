"""Benchmark: MagmaClust fit, model-selection, prediction and scaling times.

Run: ``python tests/benchmarks/bench_magma_scale.py [--quick]``. One thread
(``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``),
float64, medians over datasets. The peer is the authors' R package, which is not installable
here (no R); its times are the paper's own (``../shared/notes/magma.md`` §10, recomputed from
the authors' result files), on datasets of the same scheme and size.

1. Fit, 50 tasks x 30 points, K = 3, H00 (common and irregular grids). R: 132 s (common grid).
2. Model selection K = 1..6 by VBIC, 200 tasks x 11 irregular points. R: 3.98 h for K = 1..6 on
   205 children x <= 11 points (the paper's weight data).
3. New-task prediction (20 observed points, 10 predicted). R: 0.37 s.
4. Scale: 250 .. 1,000 tasks x 30 irregular points (union grid of 201 inputs), K = 3: fit time,
   EM iterations, ARI and peak resident memory of a fresh process per size.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

import workbench as wb  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")  # empty-cluster warnings of over-specified K


def simulate(n_tasks: int, n_points: int, seed: int, common: bool = False):
    return wb.simulate.magma_clusters(
        n_tasks, n_points, 3, common_grid=common, weights=np.ones(3), log_variance=(0.0, 3.0),
        log_sq_lengthscale=(0.0, 1.0), seed=seed,
    )  # fmt: skip


def fit_times(repeats: int) -> None:
    print("\n### 1. Fit, 50 tasks x 30 points, K = 3 (R package: 132 s, common grid)\n")
    print("| grid | union size | fit s (median) | fit s (max) | EM iterations (median) |")
    print("|---|---|---|---|---|")
    for common in (True, False):
        times, iters, sizes = [], [], []
        for seed in range(repeats):
            ds = simulate(50, 30, seed, common)
            start = time.perf_counter()
            model = wb.MagmaClust(3, prior_mean="constant").fit(ds.y, progress=False)
            times.append(time.perf_counter() - start)
            iters.append(len(model.fit_elbo))
            sizes.append(ds.sizes["time"])
        name = "common" if common else "irregular"
        print(
            f"| {name} | {int(np.median(sizes))} | {np.median(times):.2f} | {max(times):.2f} | "
            f"{int(np.median(iters))} |"
        )


def selection(repeats: int) -> None:
    print("\n### 2. VBIC over K = 1..6, 200 tasks x 11 irregular points (R: 3.98 h)\n")
    print("| dataset | total s | chosen K (truth 3) | ARI | VBIC, K = 1..6 |")
    print("|---|---|---|---|---|")
    for seed in range(repeats):
        ds = simulate(200, 11, seed)
        start = time.perf_counter()
        best, table = wb.select_n_clusters(ds.y, range(1, 7), prior_mean="constant")
        total = time.perf_counter() - start
        ari = adjusted_rand_score(ds.cluster.values, best.memberships().values.argmax(1))
        vbic = ", ".join(f"{v:.0f}" for v in table.vbic.values)
        print(f"| {seed} | {total:.1f} | {best.n_clusters} | {ari:.3f} | {vbic} |")


def prediction(repeats: int) -> None:
    ds = simulate(51, 30, 0, common=True)
    model = wb.MagmaClust(3, prior_mean="constant").fit(ds.y[1:], progress=False)
    test = ds.y[0].dropna("time")
    obs, at = test[:20], test.time.values[20:]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(obs, at=at)
        times.append(time.perf_counter() - start)
    print(f"\n### 3. New-task prediction: median {1000 * np.median(times):.1f} ms (R: 370 ms)")


def _scale_child(n_tasks: int, queue) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    ds = simulate(n_tasks, 30, 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    model = wb.MagmaClust(3, prior_mean="constant").fit(ds.y, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ari = adjusted_rand_score(ds.cluster.values, model.memberships().values.argmax(1))
    queue.put((ds.sizes["time"], seconds, len(model.fit_elbo), ari, before / 1024, peak / 1024))


def scale(sizes: list[int]) -> None:
    print("\n### 4. Scale, 30 irregular points per task, K = 3\n")
    print("| tasks | union size | fit s | EM iterations | ARI | RSS before fit MiB | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    ctx = multiprocessing.get_context("spawn")
    for n in sizes:
        queue = ctx.Queue()
        child = ctx.Process(target=_scale_child, args=(n, queue))
        child.start()
        P, seconds, iters, ari, before, peak = queue.get()
        child.join()
        print(f"| {n} | {P} | {seconds:.1f} | {iters} | {ari:.3f} | {before:.0f} | {peak:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer datasets and sizes")
    args = parser.parse_args()
    fit_times(3 if args.quick else 10)
    selection(1 if args.quick else 3)
    prediction(20 if args.quick else 200)
    scale([250] if args.quick else [250, 500, 1000])


if __name__ == "__main__":
    main()

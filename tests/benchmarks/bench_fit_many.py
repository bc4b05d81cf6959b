"""Benchmark: ``fit_many`` over many series, serial vs a 2-worker LocalCluster vs a plain loop.

Run: ``python tests/benchmarks/bench_fit_many.py [--series 200 --points 10000 --steps 20]``.

Everything is single-threaded per process (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``, set below before torch is imported;
the cluster's workers get the same from their nanny and from ``fit_many``), float64. The data are
independent Matérn-3/2 series (lengthscales log-uniform in [10, 100] steps, unit variance, noise
variance 0.1) on a regular grid, with a fixed seed. Each series is fitted from the same start by
L-BFGS (``steps`` iterations) and summarised by its posterior, log marginal likelihood and
hyper-parameters, in three ways:

(a) a plain Python loop: ``MarkovGP(...).fit(series)``, ``.posterior``,
    ``.log_marginal_likelihood``, ``.hyperparameters`` per series (the peer);
(b) ``fit_many(make_model, da, over="unit")`` in this process;
(c) the same on ``LocalCluster(n_workers=2, threads_per_worker=1)`` (loopback).

Compiled code is loaded (one short fit) in this process and on every worker before timing, and
the cluster's start-up is reported apart. The script checks that (b) and (c) are identical
(bitwise) and that (a) and (b) agree exactly.
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
import xarray as xr  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.kernels import MaternKernel  # noqa: E402
from workbench.scale import fit_many  # noqa: E402
from workbench.ssm import sample_state_space_prior  # noqa: E402

torch.set_num_threads(1)
NOISE = 0.1


def simulate(series: int, points: int, seed: int = 0) -> xr.DataArray:
    """Independent Matérn-3/2 draws plus noise, dims (unit, time)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(points, dtype=torch.float64)
    lengthscales = torch.exp(torch.empty(series, dtype=torch.float64).uniform_(
        np.log(10.0), np.log(100.0), generator=g
    ))  # fmt: skip
    rows = []
    for ell in lengthscales.tolist():
        kernel = MaternKernel(nu=1.5, lengthscale=ell).double()
        f = sample_state_space_prior(kernel, x, 1, g)[0]
        rows.append(f + NOISE**0.5 * torch.randn(points, generator=g, dtype=torch.float64))
    return xr.DataArray(
        torch.stack(rows).numpy(),
        dims=("unit", "time"),
        coords={"unit": np.arange(series), "time": x.numpy()},
        name="y",
    )


def make_model() -> wb.MarkovGP:
    return wb.MarkovGP(MaternKernel(nu=1.5, lengthscale=20.0), noise=NOISE)


def warm_up() -> None:
    """Load compiled code and lazy imports (numba, torch._dynamo) in the calling process."""
    fit_many(make_model, simulate(2, 50, seed=1), "unit", fit_kwargs={"steps": 1}, progress=False)


def plain_loop(da: xr.DataArray, steps: int) -> tuple[list[float], list[tuple]]:
    """(a): the loop a user would write; per-series times and (mean, lml, hyper-parameters)."""
    times, results = [], []
    for unit in da["unit"].values:
        start = time.perf_counter()
        series = da.sel(unit=unit)
        model = make_model().fit(series, dim="time", steps=steps, progress=False)
        post = model.posterior(series, dim="time")
        lml = model.log_marginal_likelihood(series, dim="time")
        results.append((post["mean"].values, lml, model.hyperparameters()))
        times.append(time.perf_counter() - start)
    return times, results


def timed(fn, *args, workers=None, **kwargs) -> tuple[float, float, object]:
    """(wall s, CPU s, value) of one call; CPU counts this process and any ``workers``' (a
    dask Client), so per-series costs stay comparable when the shared box is busy."""
    cpu = _cpu(workers)
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, _cpu(workers) - cpu, value


def _cpu(workers) -> float:
    extra = 0.0 if workers is None else sum(workers.run(time.process_time).values())
    return time.process_time() + extra


def repeat(repeats: int, fn, *args, **kwargs) -> tuple[float, float, object]:
    """Median wall and CPU time over ``repeats`` calls, and the last value."""
    runs = [timed(fn, *args, **kwargs) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    return wall, statistics.median(r[1] for r in runs), runs[-1][2]


def check(loop: list[tuple], serial: xr.Dataset, cluster: xr.Dataset) -> None:
    a, b = serial.copy(), cluster.copy()
    a.attrs.pop("created_at")
    b.attrs.pop("created_at")
    xr.testing.assert_identical(a, b)  # (b) == (c), bitwise
    for i, (mean, lml, hyper) in enumerate(loop):  # (a) == (b), exactly
        item = serial.isel(unit=i)
        np.testing.assert_array_equal(item["mean"].values, mean)
        assert item["log_marginal_likelihood"].item() == lml
        for name, value in hyper.items():
            assert item["hyperparameters"].sel(hyperparameter=name).item() == value
    if serial.attrs["n_failed"]:
        raise SystemExit(f"{serial.attrs['n_failed']} series failed: {set(serial.error.values)}")


def run_cluster(da: xr.DataArray, steps: int, repeats: int) -> tuple[float, tuple]:
    """(c): start-up time, and (wall, CPU, result) on a fresh 2-worker loopback cluster."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            scheduler_kwargs={"dashboard_address": ":0"},
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm_up)  # on every worker, before timing
        startup = time.perf_counter() - start
        kwargs = {"fit_kwargs": {"steps": steps}, "client": client, "workers": client}
        return startup, repeat(repeats, fit_many, make_model, da, "unit", **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20, help="L-BFGS iterations per series")
    parser.add_argument("--repeats", type=int, default=1, help="median over this many runs")
    parser.add_argument(
        "--no-profiler",
        action="store_true",
        help="turn off dask's statistical worker profiler (on by default; it costs CPU here)",
    )
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_PROGRESS", "0")
    if args.no_profiler:  # read by the workers when they start
        import dask

        dask.config.set({"distributed.worker.profile.enabled": False})
    S, T = args.series, args.points
    print(
        f"# fit_many: {S} series x {T:,} points, MarkovGP Matérn-3/2, L-BFGS steps={args.steps}, "
        f"median of {args.repeats} run(s), dask worker profiler "
        f"{'off' if args.no_profiler else 'on (default)'}"
    )
    print(
        f"torch threads {torch.get_num_threads()} (OMP/OPENBLAS/MKL_NUM_THREADS=1), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n"
    )
    da = simulate(S, T)
    warm_up()
    loop = repeat(args.repeats, plain_loop, da, args.steps)
    kwargs = {"fit_kwargs": {"steps": args.steps}}
    serial = repeat(args.repeats, fit_many, make_model, da, "unit", **kwargs)
    startup, cluster = run_cluster(da, args.steps, args.repeats)
    check(loop[2][1], serial[2], cluster[2])
    print_table(S, loop, serial, cluster)
    print(
        f"\nper series in (a): median {1e3 * statistics.median(loop[2][0]):.1f} ms wall; "
        f"cluster start-up + worker warm-up {startup:.1f} s (not in (c)); load average "
        f"{os.getloadavg()[0]:.1f} at end.\n(b) == (c) bitwise and (a) == (b) exactly: checked."
    )


def print_table(S: int, loop: tuple, serial: tuple, cluster: tuple) -> None:
    rows = [
        ("(a) Python loop of MarkovGP", loop),
        ("(b) fit_many, serial", serial),
        ("(c) fit_many, LocalCluster 2 workers x 1 thread", cluster),
    ]
    print("| run | wall (s) | wall per series (ms) | CPU per series (ms) | wall (a)/run |")
    print("|---|---|---|---|---|")
    for name, (wall, cpu, _) in rows:
        print(
            f"| {name} | {wall:.2f} | {1e3 * wall / S:.1f} | {1e3 * cpu / S:.1f} "
            f"| {loop[0] / wall:.2f}x |"
        )
    print(
        f"\nserial / cluster (wall) = {serial[0] / cluster[0]:.2f}x; loop / fit_many serial: "
        f"wall {loop[0] / serial[0]:.2f}x, CPU {loop[1] / serial[1]:.2f}x; CPU cluster / serial "
        f"= {cluster[1] / serial[1]:.2f}x (scheduler and transfer overhead)"
    )


if __name__ == "__main__":
    main()

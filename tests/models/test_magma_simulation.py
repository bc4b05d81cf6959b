"""MagmaClust on the paper's H00 simulation scheme (5 replicates; the 100-replicate study is
tests/benchmarks/bench_magma_simulation.py, whose protocol this test imports)."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pandas as pd

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_magma_simulation.py"


def _replicate():
    spec = importlib.util.spec_from_file_location("bench_magma_simulation", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.replicate


def test_h00_simulation_against_the_papers_magmaclust_row():
    replicate = _replicate()
    rows = [row for seed in range(5) for row in replicate(seed)]
    res = pd.DataFrame(rows, columns=["method", "MSE", "WCIC", "mixture", "ARI", "fit", "pred"])
    clust, magma, gp = (res[res.method == m] for m in ("MagmaClust", "Magma", "GP"))
    # paper (100 datasets): MSE 3.7 mean / 1.67 median, WCIC 95.0 %, ARI 0.889
    assert clust.MSE.median() <= 1.67, clust.MSE.values
    assert clust.ARI.mean() >= 0.889, clust.ARI.values
    assert clust.WCIC.mean() >= 85.0, clust.WCIC.values
    # clearly better than Magma and a single GP on the same datasets
    assert clust.MSE.mean() < 0.5 * min(magma.MSE.mean(), gp.MSE.mean())
    assert np.sum(clust.MSE.values < magma.MSE.values) >= 4

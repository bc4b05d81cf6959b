"""MagmaClust on the paper's own irregular-grid data: the paper's protocol on 6 datasets.

Protocol: train on the 20 training tasks, observe the test task's first 20 points (by time),
predict its last 10. The full 100-dataset comparison is tests/benchmarks/bench_magma_parity.py.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pandas as pd
import pytest

import workbench as wb

HERE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "magmaclust"
BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_magma_parity.py"


def _protocol():
    """The benchmark script's ``split`` and ``score`` (one definition of the paper protocol)."""
    spec = importlib.util.spec_from_file_location("bench_magma_parity", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.split, module.score


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_paper_protocol_matches_the_papers_magmaclust_results():
    data = pd.read_csv(HERE / "magmaclust_paper_datasets_1-6.csv")
    paper = pd.read_csv(HERE / "magmaclust_paper_results_1-6.csv")
    split, score = _protocol()
    mse, inside = [], []
    for i in range(1, 7):
        da, obs, hold = split(data[data.ID_dataset == i])
        model = wb.MagmaClust(3, prior_mean="constant").fit(da, progress=False)
        error, coverage = score(model.predict(obs, at=hold.time.values), hold)
        mse.append(error)
        inside.append(coverage)
    ref = paper[paper.Method == "MAGMAclust"]
    # 6 datasets are too few for means (one hard dataset dominates them; the 100-dataset
    # benchmark is at parity): at least as good as the paper on most, calibrated as well
    wins = np.asarray(mse) <= 1.05 * ref.MSE.values
    assert wins.sum() >= 4, (mse, ref.MSE.values)
    assert np.mean(inside) >= ref.WCIC.mean() - 5, (np.mean(inside), ref.WCIC.mean())

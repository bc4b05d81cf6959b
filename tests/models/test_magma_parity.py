"""MagmaClust on the paper's own irregular-grid data: the paper's protocol on 6 datasets.

Protocol: train on the 20 training tasks, observe the test task's first 20 points (by time),
predict its last 10. The full 100-dataset comparison is tests/benchmarks/bench_magma_parity.py.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import workbench as wb

HERE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "magmaclust"


def _split(frame: pd.DataFrame):
    frame = frame.assign(Timestamp=frame.Timestamp.round(6))
    train = frame[frame.ID != 1].pivot_table(index="ID", columns="Timestamp", values="Output")
    da = xr.DataArray(
        train.values,
        dims=("task", "time"),
        coords={"task": train.index.values, "time": train.columns.values},
    )
    test = frame[frame.ID == 1].sort_values("Timestamp")
    series = xr.DataArray(test.Output.values, dims="time", coords={"time": test.Timestamp.values})
    return da, series.isel(time=slice(0, 20)), series.isel(time=slice(20, 30))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_paper_protocol_matches_the_papers_magmaclust_results():
    data = pd.read_csv(HERE / "magmaclust_paper_datasets_1-6.csv")
    paper = pd.read_csv(HERE / "magmaclust_paper_results_1-6.csv")
    mse, inside = [], []
    for i in range(1, 7):
        da, obs, hold = _split(data[data.ID_dataset == i])
        model = wb.MagmaClust(3, prior_mean="constant").fit(da, progress=False)
        pred = model.predict(obs, at=hold.time.values)
        mse.append(float(((pred["mean"].values - hold.values) ** 2).mean()))
        inside.append((hold.values >= pred.lower.values) & (hold.values <= pred.upper.values))
    ref = paper[paper.Method == "MAGMAclust"]
    # 6 datasets are too few for means (one hard dataset dominates them; the 100-dataset
    # benchmark is at parity): at least as good as the paper on most, calibrated as well
    wins = np.asarray(mse) <= 1.05 * ref.MSE.values
    assert wins.sum() >= 4, (mse, ref.MSE.values)
    assert 100 * np.mean(inside) >= ref.WCIC.mean() - 5, (100 * np.mean(inside), ref.WCIC.mean())

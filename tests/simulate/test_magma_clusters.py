"""wb.simulate.magma_clusters: the MagmaClust paper's simulation scheme."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import workbench as wb


def test_shapes_grids_truth_and_determinism():
    ds = wb.simulate.magma_clusters(n_tasks=12, n_points=30, seed=4)
    assert ds.y.dims == ("task", "time") and ds.sizes["task"] == 12
    assert (np.isfinite(ds.y).sum("time") == 30).all()
    assert set(np.unique(ds.cluster)) <= {0, 1, 2}
    assert ds.mean_process.sizes["cluster_id"] == 3
    xr.testing.assert_identical(ds, wb.simulate.magma_clusters(n_tasks=12, n_points=30, seed=4))
    assert not ds.y.equals(wb.simulate.magma_clusters(n_tasks=12, n_points=30, seed=5).y)
    common = wb.simulate.magma_clusters(n_tasks=5, n_points=20, common_grid=True, seed=1)
    assert common.sizes["time"] == 20 and bool(np.isfinite(common.y).all())


def test_curves_follow_their_cluster_mean():
    ds = wb.simulate.magma_clusters(n_tasks=30, noise_sd=(0.0, 0.01), seed=2)
    truth = ds.mean_process.isel(cluster_id=xr.DataArray(ds.cluster.values, dims="task"))
    resid = (ds.y - truth).std("time")
    others = (ds.y - ds.mean_process).std("time").min("cluster_id")
    assert float(resid.median()) <= float(others.median()) + 1e-12


def test_bad_arguments():
    with pytest.raises(ValueError, match="hypothesis"):
        wb.simulate.magma_clusters(hypothesis="H11")
    with pytest.raises(ValueError, match="n_points"):
        wb.simulate.magma_clusters(n_points=500)

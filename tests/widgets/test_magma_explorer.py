"""MagmaExplorer: K/hypothesis pickers, sliders, new-task point editing, fit button."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb


@pytest.fixture(scope="module")
def data():
    ds = wb.simulate.magma_clusters(n_tasks=12, n_points=10, n_clusters=2, seed=0)
    return ds.y.assign_attrs(long_name="height", units="cm")


def test_explorer_renders_and_sliders_change_the_prediction(data):
    model = wb.MagmaClust(2, prior_mean="constant", max_iter=6)
    ex = model.explore(data)
    assert isinstance(ex, wb.widgets.MagmaExplorer) and model._fitted is not None
    assert ex.figure.value[:4] == b"\x89PNG" and "ELBO" in ex.score.value
    assert "task_kernel.outputscale" in ex.controls
    before_png, before_pred = ex.figure.value, ex._pred["mean"].values.copy()
    before_score = ex.score.value
    ex.controls["task_kernel.outputscale"].value = 50.0
    assert model.hyperparameters()["task_kernel.outputscale"] == 50.0
    assert ex.figure.value != before_png
    assert ex.score.value != before_score and f"{model.elbo():.3f}" in ex.score.value
    assert not np.allclose(ex._pred["mean"].values, before_pred)


def test_adding_and_dropping_points_updates_memberships(data):
    model = wb.MagmaClust(2, prior_mean="constant", max_iter=6).fit(data, progress=False)
    new = data.isel(task=0).dropna("time").isel(time=slice(0, 2))
    ex = model.explore(data, new=new)
    assert len(ex.points.options) == 2
    means = model.mean_processes()["mean"]
    weights = ex._pred.membership.values
    far = int(1 - np.argmax(weights))  # move the new task to the other cluster
    original = [t for _, t in ex.points.options]
    for t in data["time"].values[::20]:
        ex.new_time.value, ex.new_value.value = float(t), float(means.sel(cluster=far, time=t))
        ex.add_button.click()
    assert ex.status.value == "" and len(ex.points.options) == 2 + len(data.time[::20])
    ex.points.value = tuple(original)
    ex.drop_button.click()
    assert int(np.argmax(ex._pred.membership.values)) == far
    assert ex._pred.membership.values[far] > weights[far]
    ex.points.value = tuple(t for _, t in ex.points.options[:-1])
    ex.drop_button.click()
    assert len(ex.points.options) == 1 and ex.new.sizes["time"] == 1
    ex.points.value = tuple(t for _, t in ex.points.options)
    ex.drop_button.click()  # the last point stays, with an error in the widget
    assert "at least one point" in ex.status.value and ex.new.sizes["time"] == 1
    ex.new_value.value = float("nan")
    ex.add_button.click()
    assert "finite" in ex.status.value


def test_fit_button_refits_with_the_chosen_k_and_hypothesis(data):
    model = wb.Magma(prior_mean="constant", max_iter=5)
    ex = model.explore(data)
    ex.n_clusters.value, ex.hypothesis.value = 2, "H0i"
    ex.fit_button.click()
    assert ex.status.value == ""
    assert ex.model.n_clusters == 2 and ex.model.hypothesis == "H0i"
    assert ex.progress.value == ex.progress.max
    assert ex._pred.sizes["cluster"] == 2
    assert "task_kernel.outputscale" not in ex.controls  # task-specific: no shared slider
    assert f"{ex.model.elbo():.3f}" in ex.score.value
    # the ELBO after the fit's last M-step is no lower than the last one recorded before it
    assert ex.model.elbo() >= ex.model.fit_elbo[-1] - 1e-6 * abs(ex.model.fit_elbo[-1])

"""Headless tests of the explorer: state (Image/HTML values, model attributes), not outputs."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import xarray as xr

import workbench as wb
from workbench.widgets import ModelExplorer, control_for, css_class


def _data() -> xr.DataArray:
    x = np.linspace(0, 6, 30)
    da = xr.DataArray(
        np.sin(x) + 0.1 * np.cos(7 * x),
        dims="time",
        coords={"time": x},
        name="v",
        attrs={"long_name": "voltage", "units": "mV"},
    )
    return da


def _explorer() -> ModelExplorer:
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
    return wb.ExactGP(kernel, noise=0.05).explore(_data(), fit_steps=3)


def test_explorer_renders_figure_score_and_controls():
    ex = _explorer()
    assert ex.figure.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "log marginal likelihood" in ex.score.value
    assert set(ex.controls) == {
        "noise",
        "mean",
        "kernel.outputscale",
        "kernel.base_kernel.lengthscale",
    }
    assert (
        "wb-kernel-base-kernel-lengthscale"
        in ex.controls["kernel.base_kernel.lengthscale"]._dom_classes
    )
    assert all(not c.continuous_update for c in ex.controls.values())
    assert repr(ex) == repr(_explorer())


def test_moving_a_slider_updates_model_figure_and_score():
    ex = _explorer()
    image, score = ex.figure.value, ex.score.value
    ex.controls["kernel.base_kernel.lengthscale"].value = 0.05
    assert ex.model.hyperparameters()["kernel.base_kernel.lengthscale"] == pytest.approx(0.05)
    assert ex.figure.value != image and ex.score.value != score


def test_fit_button_runs_fit_completes_progress_and_syncs_sliders():
    ex = _explorer()
    before = ex.model.log_marginal_likelihood(ex.data)
    ex.fit_button.click()
    assert ex.progress.value == ex.progress.max == 3
    assert ex.model.log_marginal_likelihood(ex.data) > before
    noise = ex.model.hyperparameters()["noise"]
    assert ex.controls["noise"].value == pytest.approx(noise, rel=1e-6)
    assert not ex.fit_button.disabled and ex.status.value == ""


def test_update_sets_several_values_and_saved_model_keeps_them(tmp_path):
    ex = _explorer()
    ex.update(noise=0.2, mean=0.5)
    assert ex.controls["noise"].value == pytest.approx(0.2)
    ex.model.save(tmp_path / "m.wbm")
    assert wb.load(tmp_path / "m.wbm").hyperparameters()["noise"] == pytest.approx(0.2)


def test_errors_are_shown_in_the_widget():
    ex = _explorer()
    ex.data = ex.data.rename(time="t")  # the model can no longer find its dim
    ex.refresh()
    assert "error" in ex.status.value and "DimensionError" in ex.status.value


def test_control_for_linear_spec():
    spec = wb.models.ParameterSpec("kernel.alpha", 0.0, 2.0, False, "alpha")
    slider = control_for(spec, 1.0)
    assert (slider.min, slider.max, slider.value) == (0.0, 2.0, 1.0)
    assert css_class("kernel.alpha") in slider._dom_classes


def test_markov_gp_explorer_has_kernel_sliders_and_refits():
    kernel = wb.kernels.HidaMaternKernel(order=1, lengthscale=2.0, frequency=1.0)
    ex = wb.MarkovGP(kernel, noise=0.05).explore(_data(), fit_steps=2)
    assert {"kernel.lengthscale", "kernel.frequency", "kernel.outputscale", "noise"} <= set(
        ex.controls
    )
    image = ex.figure.value
    ex.controls["kernel.lengthscale"].value = 0.3
    assert ex.figure.value != image
    ex.fit_button.click()
    assert ex.progress.value == 2 and ex.status.value == ""


def test_unshared_model_explorer_offers_only_member_controls():
    da = xr.concat([_data(), _data() * 2], dim="unit")
    model = wb.MarkovGP(wb.kernels.MaternKernel(), noise=0.05, share_hyperparameters=False)
    model.fit(da, steps=1, progress=False)
    ex = model.explore(da)
    assert ex.controls and all(name.startswith("members.") for name in ex.controls)


def _timed_data() -> xr.DataArray:
    da = _data()
    da["time"].attrs = {"long_name": "time", "units": "s"}
    return da


def test_slider_labels_carry_units_from_the_data_attrs():
    kernel = wb.kernels.HidaMaternKernel(order=1, lengthscale=2.0, frequency=1.0)
    ex = wb.MarkovGP(kernel, noise=0.05).explore(_timed_data())
    labels = {name: c.description for name, c in ex.controls.items()}
    assert labels["kernel.lengthscale"].endswith("[s]")
    assert labels["kernel.frequency"].endswith("[rad/s]")
    assert labels["noise"].endswith("[(mV)^2]")
    assert labels["kernel.outputscale"].endswith("[(mV)^2]")


def test_units_are_left_out_when_the_data_has_none():
    ex = _explorer()  # time coordinate without units
    assert "[" not in ex.controls["kernel.base_kernel.lengthscale"].description
    assert ex.controls["noise"].description.endswith("[(mV)^2]")


def test_a_burst_of_browser_moves_redraws_once_after_the_quiet_period():
    import asyncio

    ex = _explorer()
    calls = []
    ex.refresh = lambda: calls.append(ex.model.hyperparameters()["noise"])
    slider = ex.controls["noise"]
    image = ex.figure.value

    async def burst() -> None:
        for value in (0.1, 0.2, 0.3, 0.4):
            slider.set_state({"value": value})  # what a frontend update does
            await asyncio.sleep(0.01)
        assert calls == [] and "updating" in ex.status.value
        # the model already holds the last value, so save() keeps it before the redraw
        assert ex.model.hyperparameters()["noise"] == pytest.approx(0.4)
        await asyncio.sleep(ex._debounce.delay + 0.2)

    asyncio.run(burst())
    assert calls == [pytest.approx(0.4)]
    assert ex.figure.value == image  # the spy replaced the redraw


def test_python_side_changes_redraw_at_once_even_in_a_running_loop():
    import asyncio

    ex = _explorer()
    image = ex.figure.value

    async def move() -> None:
        ex.controls["kernel.base_kernel.lengthscale"].value = 0.05
        assert ex.figure.value != image

    asyncio.run(move())


def test_a_failing_deferred_redraw_is_shown_in_the_status():
    import asyncio

    ex = _explorer()

    def broken() -> None:
        raise RuntimeError("redraw failed")

    ex.refresh = broken

    async def move() -> None:
        ex.controls["noise"].set_state({"value": 0.3})
        await asyncio.sleep(ex._debounce.delay + 0.2)

    asyncio.run(move())
    assert "RuntimeError: redraw failed" in ex.status.value


def test_fit_shows_a_busy_state_while_it_runs():
    ex = _explorer()
    seen = []
    fit = ex.model.fit

    def spy(*args, **kwargs):
        seen.append(
            (
                ex.fit_button.disabled,
                all(c.disabled for c in ex.controls.values()),
                "wb-busy" in ex._dom_classes,
                "fitting" in ex.status.value,
                ex.fit_button.description,
            )
        )
        return fit(*args, **kwargs)

    ex.model.fit = spy
    ex.run_fit()
    assert seen == [(True, True, True, True, "fitting…")]
    assert not ex.fit_button.disabled and "wb-busy" not in ex._dom_classes
    assert ex.fit_button.description == "fit"


def test_fit_runs_pending_redraws_first():
    import asyncio

    ex = _explorer()
    order = []
    ex.refresh = lambda: order.append("refresh")
    ex._fit = lambda steps: order.append("fit")
    ex._after_fit = lambda: order.append("after fit")

    async def move_then_fit() -> None:
        ex.controls["noise"].set_state({"value": 0.3})
        ex.run_fit()

    asyncio.run(move_then_fit())
    assert order == ["refresh", "fit", "after fit"]


def test_a_watched_picker_clears_the_busy_status_after_its_redraw():
    import asyncio

    import ipywidgets as widgets

    ex = _explorer()
    picker = widgets.Dropdown(options=["a", "b"], value="a")
    drawn = []
    ex.watch(picker, lambda: drawn.append(picker.value))

    async def pick() -> None:
        picker.set_state({"index": 1})
        assert "updating" in ex.status.value
        await asyncio.sleep(ex._debounce.delay + 0.2)

    asyncio.run(pick())
    assert drawn == ["b"] and ex.status.value == ""

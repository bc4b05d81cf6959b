"""Every model on an emulated CUDA device (``virtual_cuda``), so that device bugs fail on CPU CI.

Two flows per model, as a user would run them: moved to the device and then fitted, outputs
and ArviZ draws; and fitted on the CPU, moved, outputs, ArviZ draws and a refit. Nothing may mix
device and CPU tensors or call ``.numpy()`` on a device tensor, and after a fit every parameter,
buffer and fitted state tensor must still be on the device. The real-GPU check of the numbers is
``test_device_every_model.py`` (``gpu`` marker).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import virtual_cuda
from device_cases import CASES

FLOWS = ("moved_then_fitted", "fitted_then_moved")


def _untagged_state(model: torch.nn.Module, extra: dict[str, torch.Tensor]) -> list[str]:
    tensors = [*model.named_parameters(), *model.named_buffers(), *extra.items()]
    return [name for name, t in tensors if not virtual_cuda.tagged(t)]


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("name", list(CASES))
def test_model_stays_on_the_emulated_device(name, flow):
    case = CASES[name]
    data = case.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if flow == "moved_then_fitted":
            model = case.make()
            steps = ("fit", "outputs", "idata")
        else:
            model = copy.deepcopy(case.fit(case.make(), data))
            steps = ("outputs", "idata", "fit")
        mode = virtual_cuda.Mode()
        with mode:  # a real move: the models' own _apply hooks run, the Mode tags the result
            model.to(virtual_cuda.VCUDA)
        left_on_cpu = []
        for step in steps:
            with mode:
                getattr(case, step)(model, data)
            if step == "fit":
                left_on_cpu = _untagged_state(model, case.fit_tensors(model))
    assert not mode.hits, "device mixing on the emulated GPU:\n" + virtual_cuda.report(mode)
    assert not left_on_cpu, f"expected every tensor on the device after a fit, got {left_on_cpu}"


NUTS_OPTIONS = {
    "num_samples": 2,
    "warmup_steps": 2,
    "num_chains": 1,
    "max_tree_depth": 2,
    "progress": False,
}


@pytest.mark.parametrize("name", ["MarkovGP", "MultitaskGP_exact"])
def test_hyperparameter_nuts_on_the_emulated_device(name):
    # NUTS itself runs on the CPU; each likelihood evaluation, the replicates and the
    # averaged posterior run where the model lives
    case = CASES[name]
    data = case.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = case.fit(case.make(), data)
        fixed = [n for n in ("mean", "mean_slope") if n in model.hyperparameters()]
        mode = virtual_cuda.Mode()
        with mode:
            model.to(virtual_cuda.VCUDA)
            idata = model.sample_hyperparameters(data, fixed=fixed, **NUTS_OPTIONS)
            model.averaged_posterior(data, idata)
    assert not mode.hits, "device mixing on the emulated GPU:\n" + virtual_cuda.report(mode)

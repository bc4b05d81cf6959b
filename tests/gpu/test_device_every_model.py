"""Every public model follows its device: ``model.to(device)`` then ``fit``, ``posterior`` (and
the other deterministic outputs) and ``to_inference_data`` run there and agree with the CPU.

The tests are device-parametric. Each runs on ``cpu`` (the CPU compared with itself: proves the
test code, the builders and the comparisons work, and that every model is reproducible) and on
``cuda`` (marked ``gpu``; skipped where torch sees no CUDA device, see ``tests/conftest.py``):
there they are the real check that a model moved to the GPU computes on the GPU, keeps every
parameter and buffer there through a fit, hands back labelled, numpy-backed xarray objects, and
matches the float64 CPU reference.

For every model class (``ExactGP``, ``MarkovGP`` Gaussian and Poisson/CVI, ``LatentTrajectoryGP``,
``MultitaskGP`` exact and sparse, ``Magma``, ``MagmaClust``, ``SparseInverseCholeskyGP``, ``GPVAE``,
``MultimodalGPVAE``) a :class:`Case` builds the same tiny model and data twice: a reference fitted
on the CPU, and one moved with ``.to(device)`` *before* its fit (the workflow the project
promises). A third model, the CPU reference deep-copied and then moved, isolates the outputs
from the fit: identical parameters, so the tolerances there only cover round-off.

Tolerances (float64 unless said otherwise)
------------------------------------------
- moved model vs reference (same parameters): ``rtol=1e-8, atol=1e-10``. cuBLAS/cuSOLVER and the
  CPU's BLAS/LAPACK sum in different orders, and ``MarkovGP`` takes the associative scans on the
  GPU instead of the compiled sequential filter; both are float64 round-off (~1e-15) amplified by
  the conditioning of the tiny, well-posed problems here, and the existing
  ``tests/gpu/test_cuda_oracles.py`` finds 1e-9 between the two filters. Magma's mean-process
  covariances carry a relative jitter of 1e-8 only, so their condition numbers reach ~1e8:
  ``rtol=1e-6, atol=1e-8`` there.
- fitted on the device vs fitted on the CPU: ``rtol=1e-6`` (as ``test_cuda_oracles``): a few
  L-BFGS/Adam/EM steps amplify round-off, but stay continuous in it on these well-posed fits.
- GP-VAEs run in float32 (their data edge makes float32 tensors, see
  ``workbench.data.multimodal.trial_data``, so ``.double()`` is not an option). TF32 is switched
  off for the comparison (``_exact_float32`` below; cuDNN convolutions default to TF32 on Ampere
  and later). Moved model: ``rtol=1e-4, atol=1e-5`` (float32 eps 1.2e-7 through four layers and a
  Fourier basis). Fitted: ``rtol=atol=5e-3``: Adam divides each gradient by its own magnitude, so a
  weight whose true gradient is ~0 steps by up to ±lr (1e-3) on round-off alone.

Random numbers
--------------
Every seeded draw in workbench comes from a CPU ``torch.Generator`` and is moved to the model's
device, so ``to_inference_data(seed=...)`` is compared value by value. The exception is Pyro's
reparameterised sample in a GP-VAE fit with a decoded (Gaussian/Bernoulli) modality: Pyro draws
from torch's global generator *on the model's device*, and the CUDA (Philox) and CPU (Mersenne
twister) streams differ for the same seed. So ``MultimodalGPVAE`` (spikes + frames) fitted on
CUDA is compared by deterministic quantities only (placement, finiteness, labels, and every value
of the moved model); on ``cpu`` its fit is still compared value by value (same stream).
``GPVAE`` with a Poisson modality has a deterministic fit (closed-form expected log-likelihood
and analytic KL: the sampled latents do not enter the loss) and is compared in full.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from device_cases import CASES, Case, Outputs

import workbench as wb

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def test_every_public_model_class_has_a_case():
    covered = {type(case.make()).__name__ for case in CASES.values()}
    public = {name for name in wb.__all__ if name in wb.models.Model.registry}
    assert covered == public


# -- fitted models, built once per (case, device) ------------------------------------------------
_FITTED: dict[tuple[str, str], Any] = {}


@pytest.fixture(autouse=True)
def _exact_float32() -> Iterator[None]:
    """No TF32 in CUDA matmuls and cuDNN convolutions (on by default for convolutions): the
    float32 GP-VAE comparisons are meant for float32 arithmetic."""
    matmul, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = conv


def _fit(case: Case, model: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a cluster left empty by a 3-step EM
        return case.fit(model, case.data())


def _fitted(name: str, device: str) -> Any:
    """The case's model moved to ``device`` and then fitted there (cached; copy before use)."""
    key = (name, device)
    if key not in _FITTED:
        case = CASES[name]
        _FITTED[key] = _fit(case, case.make().to(device))
    return _FITTED[key]


def _reference(name: str) -> Any:
    """The case's model fitted on the CPU."""
    return _fitted(name, "cpu")


def _moved(name: str, device: str) -> Any:
    """The CPU-fitted reference, deep-copied and moved to ``device``."""
    return copy.deepcopy(_reference(name)).to(device)


# -- comparisons ---------------------------------------------------------------------------------
def _misplaced(tensors: Iterator[tuple[str, torch.Tensor]], device: str) -> list[str]:
    return [f"{name} on {t.device}" for name, t in tensors if t.device.type != device]


def _assert_on_device(model: torch.nn.Module, device: str, extra=None) -> None:
    tensors = [*model.named_parameters(), *model.named_buffers(), *(extra or {}).items()]
    assert tensors, "expected the model to hold tensors"
    misplaced = _misplaced(iter(tensors), device)
    assert not misplaced, f"expected every tensor on {device}, got {misplaced}"


def _coords(ds: xr.Dataset) -> xr.Dataset:
    """The coordinates alone (with their own attrs; not the Dataset's provenance attrs)."""
    return xr.Dataset(coords={name: coord.variable for name, coord in ds.coords.items()})


def _numeric(var: xr.Variable) -> bool:
    return var.dtype.kind in "biufc"


def _assert_labelled(got: Any, expected: Any, rtol: float | None, atol: float, where: str) -> None:
    """``got`` is labelled like ``expected`` (dims, sizes, coords) and numpy-backed (moved back
    to the CPU), finite where ``expected`` is not NaN, and, unless ``rtol`` is None (results of
    a different, device-RNG fit), close to it."""
    assert type(got) is type(expected), (where, type(got), type(expected))
    if isinstance(expected, xr.DataArray):
        assert got.name == expected.name, where
        got, expected = got.to_dataset(name="value"), expected.to_dataset(name="value")
    assert list(got.data_vars) == list(expected.data_vars), where
    assert dict(got.sizes) == dict(expected.sizes), where
    for name, var in got.variables.items():
        assert isinstance(var.data, np.ndarray), f"{where}.{name}: {type(var.data)} not numpy"
        other = expected.variables[name]
        assert var.dims == other.dims, (where, name, var.dims, other.dims)
        assert var.dtype == other.dtype, (where, name, var.dtype, other.dtype)
    xr.testing.assert_identical(_coords(got), _coords(expected))
    assert set(got.attrs) == set(expected.attrs), where
    for name in got.data_vars:
        a, b = got[name].values, expected[name].values
        if not _numeric(got[name].variable):
            np.testing.assert_array_equal(a, b, err_msg=f"{where}.{name}")
            continue
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{where}.{name}: NaN pattern"
        assert np.isfinite(a[~np.isnan(b)]).all(), f"{where}.{name}: not finite"
        if rtol is not None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{where}.{name}")


def _assert_outputs_close(got: Outputs, expected: Outputs, rtol: float | None, atol: float):
    """Every output labelled like the CPU's and (unless ``rtol`` is None) close to it."""
    assert list(got) == list(expected)
    for key, value in expected.items():
        if isinstance(value, xr.Dataset | xr.DataArray):
            _assert_labelled(got[key], value, rtol, atol, key)
        else:  # a plain float (log marginal likelihood, ELBO)
            assert isinstance(got[key], float) and math.isfinite(got[key]), key
            if rtol is not None:
                assert got[key] == pytest.approx(value, rel=rtol, abs=atol), key


def _groups(idata: Any) -> dict[str, xr.Dataset]:
    """ArviZ groups as Datasets (InferenceData on ArviZ 0.x, DataTree on ArviZ 1.x)."""
    if isinstance(idata, xr.DataTree):
        return {name: node.to_dataset() for name, node in idata.children.items()}
    return {group: idata[group] for group in idata.groups()}


def _assert_idata_close(got: Any, expected: Any, rtol: float | None, atol: float) -> None:
    """Same groups, variables, dims and coords, finite draws, numpy-backed; values close
    unless ``rtol`` is None (draws that depend on a device-specific RNG stream)."""
    got, expected = _groups(got), _groups(expected)
    assert sorted(got) == sorted(expected)
    assert {"posterior", "observed_data"} <= set(got)
    for group, ds in expected.items():
        _assert_labelled(got[group], ds, rtol, atol, group)


def _traces(model: Any) -> dict[str, list[float]]:
    names = ("fit_losses", "fit_elbo", "elbo_trace")
    return {n: list(getattr(model, n)) for n in names if getattr(model, n, None)}


def _flat_hyperparameters(model: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in model.hyperparameters().items()}


# -- the tests -----------------------------------------------------------------------------------
case_names = pytest.mark.parametrize("name", list(CASES))
devices = pytest.mark.parametrize("device", DEVICES)


@devices
@case_names
def test_to_device_moves_every_parameter_and_buffer(name, device):
    """``.to(device)`` moves an unfitted model (what it holds before a fit) and a fitted one."""
    case = CASES[name]
    unfitted = case.make().to(device)
    if [*unfitted.parameters(), *unfitted.buffers()]:  # some create their tensors at fit time
        _assert_on_device(unfitted, device)
    _assert_on_device(_moved(name, device), device)


@devices
@case_names
def test_fit_on_device_keeps_every_tensor_there(name, device):
    """A model moved before its fit is still there after it: parameters and buffers created by
    the fit (per-task parameters, readouts, networks) and its variational state included."""
    case = CASES[name]
    model = _fitted(name, device)
    _assert_on_device(model, device, case.fit_tensors(model))
    traces = _traces(model)
    assert traces, "expected a fit trace"
    assert all(math.isfinite(v) for trace in traces.values() for v in trace), traces


@devices
@case_names
def test_fit_on_device_follows_the_cpu_fit(name, device):
    """Hyper-parameters and the fit's trace after a short seeded fit equal the CPU fit's."""
    case = CASES[name]
    model, reference = _fitted(name, device), _reference(name)
    got, expected = _flat_hyperparameters(model), _flat_hyperparameters(reference)
    assert list(got) == list(expected)
    assert all(np.isfinite(v).all() for v in got.values())
    if not case.deterministic_fit and device != "cpu":
        return  # Pyro's sample came from the device's own stream: nothing to compare
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=case.rtol, atol=case.atol, err_msg=key)
    traces, reference_traces = _traces(model), _traces(reference)
    assert list(traces) == list(reference_traces)
    for key, trace in reference_traces.items():
        np.testing.assert_allclose(traces[key], trace, rtol=case.rtol, atol=case.atol, err_msg=key)


@devices
@case_names
def test_outputs_of_the_fit_on_device_match_the_cpu_fit(name, device):
    """Posteriors, predictions and bounds of the model fitted on the device: labelled like the
    CPU ones (numpy-backed xarray, same dims and coords) and equal to them."""
    case = CASES[name]
    data = case.data()
    got = case.outputs(copy.deepcopy(_fitted(name, device)), data)
    expected = case.outputs(copy.deepcopy(_reference(name)), data)
    _assert_outputs_close(got, expected, rtol=None, atol=case.atol)  # labels, finiteness
    if case.deterministic_fit or device == "cpu":
        # else: different fits (device RNG); values are compared for the moved model in
        # test_moved_fitted_model_gives_the_cpu_outputs
        _assert_outputs_close(got, expected, case.rtol, case.atol)


@devices
@case_names
def test_moved_fitted_model_gives_the_cpu_outputs(name, device):
    """A CPU-fitted model moved to the device (same parameters) gives the CPU's outputs to
    round-off, and its parameters and buffers stay on the device while computing them."""
    case = CASES[name]
    data = case.data()
    moved = _moved(name, device)
    got = case.outputs(moved, data)
    _assert_on_device(moved, device)
    expected = case.outputs(copy.deepcopy(_reference(name)), data)
    _assert_outputs_close(got, expected, case.moved_rtol, case.moved_atol)


@devices
@case_names
def test_seeded_inference_data_matches_the_cpu(name, device):
    """``to_inference_data(seed=...)``: the same groups, variables, dims and coords as on the
    CPU, finite draws, numpy-backed; the draws themselves equal the CPU's (all seeded draws come
    from CPU generators), for the moved model and for the model fitted on the device."""
    case = CASES[name]
    data = case.data()
    expected = case.idata(copy.deepcopy(_reference(name)), data)
    moved = case.idata(_moved(name, device), data)
    _assert_idata_close(moved, expected, case.moved_rtol, case.moved_atol)
    fitted = case.idata(copy.deepcopy(_fitted(name, device)), data)
    deterministic = case.deterministic_fit or device == "cpu"
    _assert_idata_close(fitted, expected, case.rtol if deterministic else None, case.atol)

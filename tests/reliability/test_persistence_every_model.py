"""Every public model saves and loads losslessly; interrupted writes never damage a file; old and
unknown format versions are handled or refused clearly; golden files of format version 1 load.

The tiny fitted models come from ``tests/fixtures/saved_models/make_golden.py`` (the same
builders wrote the golden files there).
"""

from __future__ import annotations

import copy
import io
import json
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import gpytorch
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from edge_checks import GOLDEN, import_golden

import workbench as wb
from workbench import persistence
from workbench.errors import ModelFileError

golden = import_golden()
ALL_CASES = [*golden.CASES, *golden.EXTRA_CASES]
GOLDEN_FILES = sorted(GOLDEN.glob("*.v*.model"))  # every format version's set


def _golden(case: str, version: int = 1) -> tuple[Path, Path, Path]:
    return golden.golden_paths(case, version)


PROVENANCE = ("created_at",)  # differs between two calls by design
VERSIONS = ("created_at", "workbench_version", "creation_library_version")


# -- comparisons ---------------------------------------------------------------------------------
def _strip(obj: Any, keys: tuple[str, ...] = PROVENANCE) -> Any:
    obj = obj.copy()
    for key in keys:
        obj.attrs.pop(key, None)
    variables = obj.variables.values() if isinstance(obj, xr.Dataset) else obj.coords.values()
    for var in variables:
        for key in keys:
            var.attrs.pop(key, None)
    return obj


def _groups(idata: Any) -> dict[str, xr.Dataset]:
    """ArviZ groups as Datasets (InferenceData on ArviZ 0.x, DataTree on ArviZ 1.x)."""
    if isinstance(idata, xr.DataTree):
        return {name: node.to_dataset() for name, node in idata.children.items()}
    return {group: idata[group] for group in idata.groups()}


def _assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Bit-for-bit equality of outputs and fit state (tensors, arrays, labelled data, plain
    values and containers of them), ignoring only the ``created_at`` provenance attr."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, xr.Dataset | xr.DataArray):
        xr.testing.assert_identical(_strip(a), _strip(b))
        for name, var in (a.variables if isinstance(a, xr.Dataset) else {"": a.variable}).items():
            other = b.variables[name] if isinstance(b, xr.Dataset) else b.variable
            assert var.dtype == other.dtype, (where, name)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.requires_grad == b.requires_grad, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _assert_same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert type(a) is type(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key
    assert a.get_config() == b.get_config()
    assert repr(a) == repr(b)
    assert a._repr_html_() == b._repr_html_()
    assert a.hyperparameters() == b.hyperparameters()
    assert [p.requires_grad for p in a.parameters()] == [p.requires_grad for p in b.parameters()]
    _assert_identical(a._fit_state(), b._fit_state(), "fit_state")


def _draws(case: str, model: Any, inputs: dict) -> dict[str, Any]:
    """Seeded random outputs (ArviZ draws, samples, Monte Carlo ELBOs) of ``case``'s model."""
    kind, seed = case.split("_")[0], 3
    if kind in ("ExactGP", "MarkovGP"):
        return _groups(model.to_inference_data(inputs["data"], num_samples=4, seed=seed))
    if kind == "LatentTrajectoryGP":
        idata = model.to_inference_data(num_samples=4, log_likelihood=True, seed=seed)
        return {**_groups(idata), "latents": model.sample_latents(4, seed=seed)}
    if kind == "MultitaskGP":
        idata = model.to_inference_data(inputs["data"], num_samples=4, seed=seed)
        return _groups(idata)
    if kind in ("Magma", "MagmaClust"):
        idata = model.to_inference_data(num_samples=4, log_likelihood=True, seed=seed)
        at = inputs["at"].values
        return {
            **_groups(idata),
            "sample": model.sample(inputs["new"], at, num_samples=4, seed=seed),
        }
    if kind == "SparseInverseCholeskyGP":
        return _groups(model.to_inference_data(num_samples=4, seed=seed))
    data = inputs["data"]
    idata = model.to_inference_data(data, draws=3, seed=seed)
    return {**_groups(idata), "elbo": model.elbo(data, seed=seed)}


def _refit(case: str, model: Any, inputs: dict) -> Any:
    """One more (tiny) fit of ``model`` on its training data."""
    kind = case.split("_")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in ("ExactGP", "MarkovGP", "MultitaskGP"):
            return model.fit(inputs["data"], steps=1, progress=False)
        if kind == "LatentTrajectoryGP":
            return model.fit(inputs["spikes"], steps=1, progress=False)
        if kind in ("Magma", "MagmaClust"):
            return model.fit(model._fitted[0], progress=False)
        if kind == "SparseInverseCholeskyGP":
            return model.fit(model._template, epochs=1, variational_epochs=1, progress=False)
        return model.fit(inputs["data"], epochs=1, batch_size=2, progress=False)


# -- the fitted, saved and loaded models ---------------------------------------------------------
@pytest.fixture(scope="module", params=ALL_CASES)
def case(request, tmp_path_factory) -> SimpleNamespace:
    name = request.param
    model, inputs = golden.build(name)
    path = tmp_path_factory.mktemp(name) / "model.wbm"
    model.save(path)
    loaded = wb.load(path)
    return SimpleNamespace(name=name, model=model, inputs=inputs, path=path, loaded=loaded)


def test_state_config_repr_and_fit_state_are_identical(case):
    assert case.loaded is not case.model
    _assert_same_model(case.loaded, case.model)
    header = persistence.read_header(case.path)
    assert header["model_class"] == type(case.model).__name__
    assert header["format_version"] == persistence.FORMAT_VERSION == 1


def test_outputs_are_identical(case):
    expected = golden.outputs(case.name, case.model, case.inputs)
    _assert_identical(golden.outputs(case.name, case.loaded, case.inputs), expected)


def test_seeded_draws_are_identical(case):
    expected = _draws(case.name, case.model, case.inputs)
    _assert_identical(_draws(case.name, case.loaded, case.inputs), expected)


def test_fitting_on_after_loading_is_identical(case):
    """Nothing a further fit depends on (data, sites, q, traces that seed it) is lost."""
    original = _refit(case.name, copy.deepcopy(case.model), case.inputs)
    again = _refit(case.name, wb.load(case.path), case.inputs)
    _assert_same_model(again, original)


def test_saving_a_loaded_model_writes_the_same_bytes(case, tmp_path):
    """Saving a loaded model writes the same file (header, config, state and fit state)."""
    path = tmp_path / "again.wbm"
    case.loaded.save(path)
    assert path.read_bytes() == case.path.read_bytes()


UNFITTED = {
    "ExactGP": lambda: wb.ExactGP(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())),
    "MarkovGP": lambda: wb.MarkovGP(wb.kernels.MaternKernel(nu=2.5), trend="linear"),
    "MarkovGP_poisson": lambda: wb.MarkovGP(wb.kernels.MaternKernel(), likelihood="poisson"),
    "LatentTrajectoryGP": lambda: wb.LatentTrajectoryGP(2),
    "MultitaskGP": lambda: wb.MultitaskGP(n_latents=2, seed=4),
    "Magma": lambda: wb.Magma(hypothesis="H0i"),
    "MagmaClust": lambda: wb.MagmaClust(3, hypothesis="Hki", prior_mean="constant"),
    "SparseInverseCholeskyGP": lambda: wb.SparseInverseCholeskyGP(likelihood="poisson"),
    "GPVAE": lambda: wb.GPVAE("frames", "bernoulli", n_latents=3),
    "MultimodalGPVAE": lambda: wb.MultimodalGPVAE({"a": "poisson", "b": "gaussian"}),
}


@pytest.mark.parametrize("name", list(UNFITTED))
def test_unfitted_model_round_trips(name, tmp_path):
    model = UNFITTED[name]()
    model.save(tmp_path / "m.wbm")
    loaded = wb.load(tmp_path / "m.wbm")
    _assert_same_model(loaded, model)
    loaded.save(tmp_path / "again.wbm")
    assert (tmp_path / "again.wbm").read_bytes() == (tmp_path / "m.wbm").read_bytes()


# -- interrupted writes --------------------------------------------------------------------------
class _DiesMidWrite:
    """A file that writes half of the first large chunk (the payload) and is then interrupted."""

    def __init__(self, f: Any, exc: BaseException) -> None:
        self.f, self.exc = f, exc

    def __enter__(self) -> _DiesMidWrite:
        return self

    def __exit__(self, *args: Any) -> None:
        self.f.close()

    def write(self, chunk: bytes) -> int:
        if len(chunk) >= 1000:
            self.f.write(chunk[: len(chunk) // 2])
            self.f.flush()
            raise self.exc
        return self.f.write(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def _changed(model: Any) -> Any:
    """A copy of ``model`` whose file would differ (one hyper-parameter moved)."""
    other = copy.deepcopy(model)
    name, value = next((n, v) for n, v in other.hyperparameters().items() if isinstance(v, float))
    other.set_hyperparameter(name, value * 1.5 + 0.1)
    return other


@pytest.mark.parametrize(
    ("where", "exc"),
    [
        ("write", KeyboardInterrupt()),
        ("fsync", OSError("disk full")),
        ("replace", KeyboardInterrupt()),
    ],
    ids=["killed-mid-write", "fsync-fails", "killed-before-rename"],
)
def test_interrupted_save_leaves_existing_file(case, tmp_path, monkeypatch, where, exc):
    path = tmp_path / "model.wbm"
    path.write_bytes(case.path.read_bytes())
    before = path.read_bytes()
    other = _changed(case.loaded)
    if where == "write":
        real = persistence.os.fdopen
        monkeypatch.setattr(persistence.os, "fdopen", lambda *a: _DiesMidWrite(real(*a), exc))
    else:

        def fail(*args: Any, **kwargs: Any) -> None:
            raise exc

        monkeypatch.setattr(persistence.os, where, fail)
    with pytest.raises(type(exc)):
        other.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.wbm"]
    _assert_same_model(wb.load(path), case.model)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_process_killed_mid_write_leaves_existing_file(tmp_path):
    """A real SIGKILL halfway through writing the payload (no cleanup runs) of a model with fit
    state: the target is untouched and only a hidden, partial temporary file is left."""
    source = _golden("LatentTrajectoryGP")[0]
    path = tmp_path / "model.wbm"
    path.write_bytes(source.read_bytes())
    script = textwrap.dedent(
        f"""
        import os, signal
        import workbench as wb
        from workbench import persistence

        class Dies:
            def __init__(self, f):
                self.f = f
            def __enter__(self):
                return self
            def __exit__(self, *args):
                self.f.close()
            def write(self, chunk):
                if len(chunk) >= 1000:
                    self.f.write(chunk[: len(chunk) // 2])
                    self.f.flush()
                    os.fsync(self.f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
                return self.f.write(chunk)

        model = wb.load({str(path)!r})
        model.set_hyperparameter("latents.0.kernel.lengthscale", 0.5)
        real = os.fdopen
        persistence.os.fdopen = lambda *a: Dies(real(*a))
        model.save({str(path)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    assert path.read_bytes() == source.read_bytes()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "model.wbm"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".model.wbm.")
    partial = leftovers[0].read_bytes()
    assert partial.startswith(persistence.MAGIC) and len(partial) < len(source.read_bytes())
    _assert_same_model(wb.load(path), wb.load(source))
    with pytest.raises(ModelFileError, match="truncated"):
        wb.load(leftovers[0])


def test_unsavable_fit_state_raises_before_writing(tmp_path):
    model, _ = golden.build("MarkovGP")
    path = tmp_path / "model.wbm"
    model.save(path)
    before = path.read_bytes()
    model.fit_losses = [object()]
    with pytest.raises(TypeError, match="savable"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.wbm"]


# -- the fit-state encoding ----------------------------------------------------------------------
class _Local(NamedTuple):
    a: int


def test_fit_state_encoding_round_trips_every_supported_type():
    da = xr.DataArray(
        np.array([[1.0, np.nan], [-0.0, 2.5]], dtype=np.float32),
        dims=("trial", "time"),
        coords={
            "trial": np.array(["a", "b"], dtype=object),
            "time": pd.date_range("2020-01-01", periods=2, freq="h").values,
            "label": ("trial", np.array(["x", "yz"])),
        },
        name="v",
        attrs={"units": "Hz", "n": np.int64(3), "weights": np.arange(3.0)},
    )
    state = wb.models.latent_estep.LatentState(*(torch.randn(1, 2, 3) for _ in range(4)),
                                               None, torch.tensor([1.5]))  # fmt: skip
    value = {
        "tensor": torch.randn(3, dtype=torch.float64).requires_grad_(True),
        "ints": torch.arange(4),
        "array": np.array([1, 2], dtype=np.uint16),
        "scalar": np.float32(0.1),
        "strings": np.array(["a", "bc"]),
        "dates": np.array(["2001-01-01"], dtype="datetime64[D]"),
        "objects": np.array(["x", 1, None], dtype=object),
        "dataarray": da,
        "named": state,
        "tuple": (1, 2.0, "three", None, True, b"bytes"),
        "list": [float("nan"), float("inf")],
        7: {"nested": [da.isel(trial=0)]},
    }
    encoded = persistence.encode_state(value)
    buffer = io.BytesIO()
    torch.save(encoded, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    _assert_identical(persistence.decode_state(loaded), value)


@pytest.mark.parametrize(
    "value",
    [{1, 2}, lambda: 0, _Local(1), np.zeros(2, dtype=[("a", "f8")]), pd.Timestamp("2020")],
    ids=["set", "function", "foreign-namedtuple", "structured-array", "timestamp"],
)
def test_unsupported_fit_state_raises_type_error(value):
    with pytest.raises(TypeError, match="expected"):
        persistence.encode_state({"x": value})


# -- format versions -----------------------------------------------------------------------------
def _rewrite(data: bytes, header_edit=None, payload_edit=None) -> bytes:
    """``data`` with its header and/or payload edited (checksum and size kept consistent when
    the payload changes)."""
    (n,) = persistence._LENGTH.unpack(data[8:16])
    header, payload = json.loads(data[16 : 16 + n]), data[16 + n :]
    if payload_edit is not None:
        state = torch.load(io.BytesIO(payload), weights_only=True)
        buffer = io.BytesIO()
        torch.save(payload_edit(state), buffer)
        payload = buffer.getvalue()
        header["payload_bytes"] = len(payload)
        header["payload_sha256"] = persistence.hashlib.sha256(payload).hexdigest()
    if header_edit is not None:
        header = header_edit(header)
    head = json.dumps(header).encode()
    return persistence.MAGIC + persistence._LENGTH.pack(len(head)) + head + payload


def _set_version(value: Any):
    def edit(header: dict) -> dict:
        header = dict(header)
        if value is KeyError:
            del header["format_version"]
        else:
            header["format_version"] = value
        return header

    return edit


@pytest.mark.parametrize(
    ("version", "advice"),
    [
        (0, "refit the model and save it again"),
        (-1, "refit the model and save it again"),
        (2, "upgrade workbench"),
        (10**6, "upgrade workbench"),
        (KeyError, "save the model again"),
        (None, "save the model again"),
        ("1", "save the model again"),
        (1.0, "save the model again"),
        (True, "save the model again"),
        ([1], "save the model again"),
    ],
    ids=[
        "v0",
        "negative",
        "v2",
        "far-future",
        "missing",
        "null",
        "string",
        "float",
        "bool",
        "list",
    ],
)
def test_unsupported_format_versions_are_refused_with_advice(tmp_path, version, advice):
    path = tmp_path / "model.wbm"
    data = _golden("ExactGP")[0].read_bytes()
    path.write_bytes(_rewrite(data, header_edit=_set_version(version)))
    for read in (wb.load, persistence.read_header):
        with pytest.raises(ModelFileError, match="format_version") as info:
            read(path)
        assert advice in str(info.value)
        assert str(path) in str(info.value)


def test_version_one_file_without_fit_state_still_loads(tmp_path):
    """Version-1 files written before the fit state existed load as models without their
    fitted data: parameters and predictions from saved buffers survive."""
    source = _golden("MagmaClust")[0]
    path = tmp_path / "old.wbm"
    strip = lambda state: {"state_dict": state["state_dict"]}  # noqa: E731
    path.write_bytes(_rewrite(source.read_bytes(), payload_edit=strip))
    old, full = wb.load(path), wb.load(source)
    assert old._fitted is None and full._fitted is not None
    assert old.get_config() == full.get_config()
    for key, value in full.state_dict().items():
        assert torch.equal(old.state_dict()[key], value), key
    inputs = golden.read_tree(_golden("MagmaClust")[1])
    at = inputs["at"].values
    a, b = old.predict(inputs["new"], at=at), full.predict(inputs["new"], at=at)
    xr.testing.assert_allclose(_strip(a), _strip(b), rtol=1e-12)
    with pytest.raises(RuntimeError, match="training data"):
        old.memberships()


def test_plain_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(wb.load(_golden("ExactGP")[0]).state_dict(), path)
    with pytest.raises(ModelFileError, match="another file type"):
        wb.load(path)


# -- golden files (format version 1) -------------------------------------------------------------
def test_golden_files_cover_every_case_of_the_current_version():
    assert {p.name for p in GOLDEN_FILES} >= {
        golden_model.name
        for golden_model, _, _ in (_golden(c, persistence.FORMAT_VERSION) for c in golden.CASES)
    }
    kinds = {p.name.split(".")[0].split("_")[0] for p in GOLDEN_FILES}
    assert kinds == {cls for cls in wb.__all__ if cls in wb.models.Model.registry}


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_golden_file_loads_with_its_outputs(path):
    case, version = path.name.split(".")[0], int(path.name.split(".")[1][1:])
    header = persistence.read_header(path)
    assert header["format_version"] == version
    assert header["model_class"] == case.split("_")[0]
    model = wb.load(path)
    assert type(model).__name__ == case.split("_")[0]
    _, inputs_path, expected_path = _golden(case, version)
    inputs, expected = golden.read_tree(inputs_path), golden.read_tree(expected_path)
    got = golden.outputs(case, model, inputs)
    assert sorted(got) == sorted(expected)
    rtol = 1e-5 if "GPVAE" in case else 1e-8  # a format check: float32 networks, BLAS bits
    for key, value in got.items():
        a, b = _strip(value, VERSIONS), _strip(expected[key], VERSIONS)
        if isinstance(a, xr.DataArray):
            a, b = a.to_dataset(name="value"), b.to_dataset(name="value")
        xr.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)
        assert a.attrs == b.attrs, key
        for var in a.variables:
            assert a[var].attrs == b[var].attrs, (key, var)
            assert a[var].dims == b[var].dims, (key, var)
        xr.testing.assert_identical(a.coords.to_dataset(), b.coords.to_dataset())


def test_golden_files_are_small():
    """Each case's three files stay under 200 KiB and one version's set under 1 MiB."""
    for version in {int(p.name.split(".")[1][1:]) for p in GOLDEN_FILES}:
        per_case = {c: sum(p.stat().st_size for p in _golden(c, version)) for c in golden.CASES}
        assert max(per_case.values()) < 200 * 1024, per_case
        assert sum(per_case.values()) < 1024 * 1024, per_case

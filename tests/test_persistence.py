"""Saving and loading models: bit-for-bit round trips, damaged files, atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gpytorch
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from gpytorch.constraints import Interval
from gpytorch.kernels import PeriodicKernel, RBFKernel, ScaleKernel, SpectralMixtureKernel

import workbench as wb
from workbench import persistence
from workbench.errors import ModelFileError

N = 40
NAN_AT = [3, 17, 18, 31]


def _kernel() -> gpytorch.kernels.Kernel:
    return ScaleKernel(RBFKernel()) + ScaleKernel(PeriodicKernel() * RBFKernel())


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(N, dtype=np.float64)
    y = 0.05 * t + np.sin(2 * np.pi * t / 6.0) + 0.1 * rng.standard_normal(N)
    y[NAN_AT] = np.nan
    return y


@pytest.fixture(scope="module")
def series() -> xr.DataArray:
    return xr.DataArray(
        _values(),
        dims="time",
        coords={"time": np.arange(N, dtype=np.float64)},
        name="y",
        attrs={"long_name": "synthetic series", "units": "m"},
    )


@pytest.fixture(scope="module")
def dated_series() -> xr.DataArray:
    time = pd.date_range("2001-01-06", periods=N, freq="7D")
    return xr.DataArray(_values(1), dims="time", coords={"time": time}, name="y")


@pytest.fixture(scope="module")
def fitted(series: xr.DataArray) -> wb.ExactGP:
    torch.manual_seed(0)
    return wb.ExactGP(_kernel(), noise=0.05).fit(series, steps=2, progress=False)


@pytest.fixture(scope="module")
def saved(fitted: wb.ExactGP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "model.wbm"
    fitted.save(path)
    return path


def _without_created_at(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs.pop("created_at", None)
    for var in ds.variables.values():
        var.attrs.pop("created_at", None)
    return ds


def _assert_same_posterior(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(_without_created_at(a), _without_created_at(b))
    for name in a.data_vars:
        assert a[name].dtype == np.float64
        assert np.array_equal(a[name].values, b[name].values), name  # bit for bit, no tolerance


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def _split(data: bytes) -> tuple[int, bytes, bytes]:
    """(header length, header bytes, payload bytes) of a saved file."""
    (n,) = persistence._LENGTH.unpack(data[8:16])
    return n, data[16 : 16 + n], data[16 + n :]


def _with_header(data: bytes, edit) -> bytes:
    """``data`` with its JSON header replaced by ``edit(header)`` (payload untouched)."""
    _, head, payload = _split(data)
    header = edit(json.loads(head))
    new = json.dumps(header).encode()
    return persistence.MAGIC + persistence._LENGTH.pack(len(new)) + new + payload


# -- round trips ---------------------------------------------------------------------------------
def test_round_trip_is_bit_for_bit(fitted, saved, series):
    loaded = wb.load(saved)

    assert type(loaded) is wb.ExactGP
    assert loaded is not fitted
    _assert_same_state(loaded, fitted)
    assert loaded.get_config() == fitted.get_config()
    assert loaded.hyperparameters() == fitted.hyperparameters()
    assert loaded.axis == fitted.axis

    _assert_same_posterior(loaded.posterior(series), fitted.posterior(series))
    _assert_same_posterior(
        loaded.posterior(series, observation_noise=True, ci_prob=0.8),
        fitted.posterior(series, observation_noise=True, ci_prob=0.8),
    )
    lml = loaded.log_marginal_likelihood(series)
    assert isinstance(lml, float)
    assert lml == fitted.log_marginal_likelihood(series)


def test_round_trip_at_new_coordinates(fitted, saved, series):
    loaded = wb.load(str(saved))  # str paths as well as Path
    at = np.linspace(-5.0, 55.0, 37)
    a, b = loaded.posterior(series, at=at), fitted.posterior(series, at=at)
    _assert_same_posterior(a, b)
    assert np.array_equal(a["time"].values, at)


def test_round_trip_with_batch_dims(fitted, saved, series):
    batched = xr.concat(
        [series, series.copy(data=_values(7))], dim=pd.Index(["a", "b"], name="station")
    )
    loaded = wb.load(saved)
    a, b = loaded.log_marginal_likelihood(batched), fitted.log_marginal_likelihood(batched)
    xr.testing.assert_identical(a, b)
    _assert_same_posterior(loaded.posterior(batched), fitted.posterior(batched))


def test_round_trip_with_datetime_coordinates(dated_series, tmp_path):
    model = wb.ExactGP(_kernel(), time_unit="D").fit(dated_series, steps=2, progress=False)
    path = tmp_path / "dated.wbm"
    model.save(path)
    loaded = wb.load(path)

    assert loaded.axis == model.axis
    assert loaded.axis.kind == "datetime"
    assert loaded.get_config() == model.get_config()
    _assert_same_state(loaded, model)
    assert loaded.log_marginal_likelihood(dated_series) == model.log_marginal_likelihood(
        dated_series
    )
    _assert_same_posterior(loaded.posterior(dated_series), model.posterior(dated_series))

    at = pd.date_range("2000-12-01", "2002-01-01", freq="10D").values
    a, b = loaded.posterior(dated_series, at=at), model.posterior(dated_series, at=at)
    _assert_same_posterior(a, b)
    assert np.issubdtype(a["time"].dtype, np.datetime64)
    assert np.array_equal(a["time"].values, at)


def test_set_hyperparameters_survive(series, tmp_path):
    model = wb.ExactGP(_kernel()).fit(series, steps=2, progress=False)
    chosen = {
        "noise": 0.0123,
        "kernel.kernels.0.outputscale": 2.5,
        "kernel.kernels.0.base_kernel.lengthscale": 7.0,
        "kernel.kernels.1.base_kernel.kernels.0.period_length": 6.0,
        "mean": -0.75,
    }
    for name, value in chosen.items():
        model.set_hyperparameter(name, value)
    path = tmp_path / "hp.wbm"
    model.save(path)
    loaded = wb.load(path)

    hp = loaded.hyperparameters()
    assert hp == model.hyperparameters()
    for name, value in chosen.items():
        assert hp[name] == pytest.approx(value, rel=1e-12), name
    _assert_same_state(loaded, model)
    _assert_same_posterior(loaded.posterior(series), model.posterior(series))


def test_non_default_constraint_survives(series, tmp_path):
    rbf = RBFKernel()
    rbf.register_constraint("raw_lengthscale", Interval(0.5, 20.0))
    periodic = PeriodicKernel(period_length_constraint=Interval(4.0, 8.0))
    model = wb.ExactGP(ScaleKernel(rbf) + ScaleKernel(periodic)).fit(
        series, steps=2, progress=False
    )
    path = tmp_path / "interval.wbm"
    model.save(path)
    loaded = wb.load(path)

    lengthscale = loaded.kernel.kernels[0].base_kernel.raw_lengthscale_constraint
    period = loaded.kernel.kernels[1].base_kernel.raw_period_length_constraint
    assert type(lengthscale) is Interval
    assert type(period) is Interval
    assert float(lengthscale.lower_bound) == pytest.approx(0.5)
    assert float(lengthscale.upper_bound) == pytest.approx(20.0)
    assert float(period.lower_bound) == pytest.approx(4.0)
    assert float(period.upper_bound) == pytest.approx(8.0)
    assert loaded.hyperparameters() == model.hyperparameters()
    assert 0.5 <= loaded.hyperparameters()["kernel.kernels.0.base_kernel.lengthscale"] <= 20.0
    _assert_same_state(loaded, model)
    _assert_same_posterior(loaded.posterior(series), model.posterior(series))


def test_read_header(saved):
    header = persistence.read_header(saved)
    assert header["model_class"] == "ExactGP"
    assert header["workbench_version"] == wb.__version__
    assert header["format"] == "workbench-model"
    assert header["format_version"] == persistence.FORMAT_VERSION
    assert header["torch_version"] == torch.__version__
    assert header["payload_bytes"] == len(_split(saved.read_bytes())[2])


def test_header_is_strict_json_at_start_of_file(saved):
    data = saved.read_bytes()
    assert data.startswith(persistence.MAGIC)
    _, head, _ = _split(data)

    def reject(token):
        raise AssertionError(f"non-standard JSON constant {token} in header")

    header = json.loads(head.decode("utf-8"), parse_constant=reject)
    assert header == persistence.read_header(saved)


# -- damaged and foreign files -------------------------------------------------------------------
def _cut_points(data: bytes) -> dict[str, int]:
    n, _, payload = _split(data)
    return {
        "inside-magic": 3,
        "after-magic": 8,
        "inside-length": 12,
        "header-start": 17,
        "inside-header": 16 + n // 2,
        "header-end": 16 + n,
        "inside-payload": 16 + n + len(payload) // 2,
        "last-byte-removed": len(data) - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "inside-magic",
        "after-magic",
        "inside-length",
        "header-start",
        "inside-header",
        "header-end",
        "inside-payload",
        "last-byte-removed",
    ],
)
def test_truncated_file_raises(saved, tmp_path, where):
    data = saved.read_bytes()
    cut = _cut_points(data)[where]
    path = tmp_path / "truncated.wbm"
    path.write_bytes(data[:cut])

    with pytest.raises(ModelFileError) as info:
        wb.load(path)
    if cut >= len(persistence.MAGIC):
        assert "truncated" in str(info.value)
    with pytest.raises(ModelFileError):
        persistence.read_header(path)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), id="png"),
        pytest.param(b"just some text\n", id="text"),
        pytest.param(b"WBMODEL", id="magic-prefix"),
        pytest.param(persistence.MAGIC + bytes(8), id="zero-length-header"),
        pytest.param(persistence.MAGIC + persistence._LENGTH.pack(2) + b"[]", id="non-dict"),
    ],
)
def test_foreign_file_raises(tmp_path, content):
    path = tmp_path / "foreign.wbm"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        wb.load(path)


def test_plain_torch_save_file_raises(fitted, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(fitted.state_dict(), path)
    with pytest.raises(ModelFileError, match="another file type"):
        wb.load(path)


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_flipped_payload_byte_fails_checksum(saved, tmp_path, position):
    data = bytearray(saved.read_bytes())
    n, _, payload = _split(bytes(data))
    offset = 16 + n + {"first": 0, "middle": len(payload) // 2, "last": len(payload) - 1}[position]
    data[offset] ^= 0x01
    path = tmp_path / "flipped.wbm"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        wb.load(path)


def test_newer_format_version_raises(saved, tmp_path):
    path = tmp_path / "future.wbm"
    path.write_bytes(_with_header(saved.read_bytes(), lambda h: {**h, "format_version": 999}))
    with pytest.raises(ModelFileError, match="format_version") as info:
        wb.load(path)
    assert "999" in str(info.value)
    with pytest.raises(ModelFileError, match="format_version"):
        persistence.read_header(path)


def test_unknown_model_class_raises(saved, tmp_path):
    path = tmp_path / "unknown.wbm"
    path.write_bytes(_with_header(saved.read_bytes(), lambda h: {**h, "model_class": "NoSuchGP"}))
    with pytest.raises(ModelFileError, match="NoSuchGP"):
        wb.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "payload_bytes"}, id="no-size"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "payload_sha256"}, id="no-sha"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "model_class"}, id="no-class"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "config"}, id="no-config"),
        pytest.param(lambda h: {**h, "format": "something-else"}, id="wrong-format"),
        pytest.param(lambda h: {**h, "config": {**h["config"], "kernel": {}}}, id="bad-kernel"),
        pytest.param(
            lambda h: {**h, "config": {**h["config"], "kernel": {"type": "NoSuchKernel"}}},
            id="unknown-kernel",
        ),
    ],
)
def test_corrupted_header_raises(saved, tmp_path, edit):
    path = tmp_path / "corrupted.wbm"
    path.write_bytes(_with_header(saved.read_bytes(), edit))
    with pytest.raises(ModelFileError):
        wb.load(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        wb.load(tmp_path / "nope.wbm")
    with pytest.raises(FileNotFoundError):
        persistence.read_header(tmp_path / "nope.wbm")


# -- atomic writes -------------------------------------------------------------------------------
def _interrupt(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize("target", ["fsync", "replace"])
@pytest.mark.parametrize(
    "exc", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "interrupt"]
)
def test_interrupted_save_leaves_existing_file(fitted, saved, tmp_path, monkeypatch, target, exc):
    path = tmp_path / "model.wbm"
    path.write_bytes(saved.read_bytes())
    before = path.read_bytes()
    other = wb.ExactGP(RBFKernel(), noise=0.5)

    monkeypatch.setattr(persistence.os, target, _interrupt(exc))
    with pytest.raises(type(exc)):
        other.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.wbm"]
    _assert_same_state(wb.load(path), fitted)


def test_successful_save_replaces_file_and_leaves_no_temp(fitted, tmp_path):
    path = tmp_path / "model.wbm"
    path.write_bytes(b"old contents")
    fitted.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.wbm"]
    _assert_same_state(wb.load(path), fitted)


def test_save_creates_parent_folders(fitted, tmp_path):
    path = tmp_path / "a" / "b" / "model.wbm"
    fitted.save(path)
    assert wb.load(path).get_config() == fitted.get_config()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_killed_save_leaves_existing_file(saved, tmp_path):
    """A process killed (SIGKILL, no cleanup) right before the rename never damages the target."""
    path = tmp_path / "model.wbm"
    path.write_bytes(saved.read_bytes())
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import os, signal
        import gpytorch
        import workbench as wb
        from workbench import persistence

        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        persistence.os.replace = killed
        wb.ExactGP(gpytorch.kernels.RBFKernel(), noise=0.5).save({str(path)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    assert path.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.wbm"]
    # Without a chance to clean up, only a hidden temporary file can be left behind.
    assert all(name.startswith(".model.wbm.") and name.endswith(".tmp") for name in leftovers)
    assert persistence.read_header(path)["model_class"] == "ExactGP"


def test_unsupported_kernel_raises_at_save_time(tmp_path):
    model = wb.ExactGP(SpectralMixtureKernel(num_mixtures=2))
    path = tmp_path / "model.wbm"
    with pytest.raises(TypeError, match="SpectralMixtureKernel"):
        model.save(path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_unsupported_kernel_leaves_existing_file(saved, tmp_path):
    path = tmp_path / "model.wbm"
    path.write_bytes(saved.read_bytes())
    with pytest.raises(TypeError):
        wb.ExactGP(ScaleKernel(SpectralMixtureKernel(num_mixtures=2))).save(path)
    assert path.read_bytes() == saved.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.wbm"]


def test_saved_file_permissions_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        wb.ExactGP(gpytorch.kernels.RBFKernel()).save(tmp_path / "m.wbm")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.wbm").stat().st_mode) == 0o644

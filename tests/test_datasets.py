"""Shipped datasets: contents, documentation, and availability from a non-editable install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.errors import DatasetNotFoundError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

# pip output that means the build backend could not be fetched, not that the build is broken.
_OFFLINE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Max retries exceeded",
    "ProxyError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


def test_list_datasets():
    names = wb.list_datasets()
    assert "co2_mauna_loa" in names
    assert names == sorted(names)


def test_co2_mauna_loa():
    ds = wb.load_dataset("co2_mauna_loa")
    co2 = ds["co2"]

    assert co2.dims == ("time",)
    assert co2.dtype == np.float64
    assert co2.attrs["units"] == "ppm"
    assert co2.attrs["long_name"]
    assert ds.attrs["source"]
    assert ds.attrs["license"]

    time = ds["time"].values
    assert time.dtype == np.dtype("datetime64[ns]")
    assert time.shape == (2284,)
    assert time[0] == np.datetime64("1958-03-29")
    assert time[-1] == np.datetime64("2001-12-29")
    assert (np.diff(time) == np.timedelta64(7, "D")).all()  # weekly, no gaps in the axis

    values = co2.values
    assert int(np.isnan(values).sum()) == 59
    observed = values[~np.isnan(values)]
    assert 300.0 < observed.min() < observed.max() < 400.0


def test_load_dataset_returns_in_memory_copies():
    a = wb.load_dataset("co2_mauna_loa")
    b = wb.load_dataset("co2_mauna_loa")
    a["co2"][0] = -1.0
    assert b["co2"].values[0] != -1.0


def test_unknown_dataset_raises():
    with pytest.raises(DatasetNotFoundError) as info:
        wb.load_dataset("no_such_dataset")
    message = str(info.value)
    assert "no_such_dataset" in message
    for name in wb.list_datasets():
        assert name in message
    assert isinstance(info.value, ValueError)


def test_every_shipped_file_is_documented():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    files = sorted(DATA.glob("*.nc"))
    assert files, f"no .nc files in {DATA}"
    for path in files:
        assert path.name in readme, f"{path.name} is not documented in data/README.md"
        assert f"`{path.stem}`" in readme, f"dataset name {path.stem!r} missing from README"
    assert {p.stem for p in files} == set(wb.list_datasets())


def _build_wheel(dest: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dest), str(REPO)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        reasons = [line.strip() for line in output.splitlines() if any(m in line for m in _OFFLINE)]
        if reasons and not os.environ.get("CI"):
            pytest.skip(f"cannot build the wheel without the package index: {reasons[0]}")
        pytest.fail(f"pip wheel failed (exit {proc.returncode}):\n{output[-4000:]}")
    wheels = sorted(dest.glob("workbench-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_datasets_ship_in_wheel(tmp_path):
    wheel = _build_wheel(tmp_path / "dist")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "workbench/_data/co2_mauna_loa.nc" in names
        assert "workbench/_data/README.md" in names
        for path in DATA.glob("*.nc"):
            assert f"workbench/_data/{path.name}" in names
        assert "workbench/__init__.py" in names
        site = tmp_path / "site"
        zf.extractall(site)

    work = tmp_path / "elsewhere"
    work.mkdir()
    script = textwrap.dedent(
        """
        import json
        import workbench as wb
        from workbench.datasets import data_dir

        ds = wb.load_dataset("co2_mauna_loa")
        print(json.dumps({
            "file": wb.__file__,
            "data_dir": str(data_dir()),
            "names": wb.list_datasets(),
            "units": ds["co2"].attrs["units"],
            "n": int(ds.sizes["time"]),
        }))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PYTHONHOME", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    site = site.resolve()
    assert Path(result["file"]).resolve().is_relative_to(site), result["file"]
    assert Path(result["data_dir"]).resolve() == site / "workbench" / "_data"
    assert "co2_mauna_loa" in result["names"]
    assert result["units"] == "ppm"
    assert result["n"] == 2284

"""The `workbench` console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from workbench.cli import main


def test_demo_writes_netcdf_png_and_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out"), "--steps", "1"]) == 0
    summary = capsys.readouterr().out
    assert "log marginal likelihood" in summary and "forecast 2011-12" in summary
    assert "ppm/year" in summary
    ds = xr.load_dataset(tmp_path / "out" / "posterior.nc")
    assert set(ds.data_vars) == {"mean", "variance", "lower", "upper"}
    assert ds["mean"].attrs["units"] == "ppm"
    assert np.isfinite(ds["mean"]).all()
    assert np.datetime64("2011-12-20") <= ds.time.values[-1] <= np.datetime64("2011-12-31")
    assert ds.attrs["model"] == "MarkovGP"
    png = (tmp_path / "out" / "posterior.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_datasets_command(capsys):
    assert main(["datasets"]) == 0
    assert "co2_mauna_loa" in capsys.readouterr().out


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("workbench")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout

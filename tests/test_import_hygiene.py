"""`import workbench` must not pull in the UI stack (ipywidgets, matplotlib)."""

from __future__ import annotations

import subprocess
import sys


def test_import_workbench_leaves_ui_libraries_unimported():
    code = (
        "import sys, workbench as wb\n"
        "wb.load_dataset('co2_mauna_loa')\n"
        "bad = [m for m in ('ipywidgets', 'matplotlib', 'arviz') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_explore_imports_widgets_lazily():
    code = (
        "import sys, numpy as np, xarray as xr, gpytorch, workbench as wb\n"
        "da = xr.DataArray(np.sin(np.arange(10.0)), dims='time',"
        " coords={'time': np.arange(10.0)})\n"
        "wb.ExactGP(gpytorch.kernels.RBFKernel()).explore(da)\n"
        "print('ipywidgets' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]

"""The explorer inside a real ipykernel, driven by the comm messages a browser sends.

A widget frontend updates a slider with a ``comm_msg`` (``method: update``); this test sends
those messages itself, so the kernel side of debouncing is checked without a browser.
"""

from __future__ import annotations

import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

SETUP = """
import gpytorch, numpy as np, xarray as xr
import workbench as wb
x = np.linspace(0, 6, 30)
da = xr.DataArray(np.sin(x), dims="time", coords={"time": x}, attrs={"units": "mV"})
kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())
ex = wb.ExactGP(kernel, noise=0.05).explore(da, debounce=1.0)
redraws = []
draw = ex.refresh
ex.refresh = lambda: (redraws.append(round(ex.model.hyperparameters()["noise"], 6)), draw())
print(ex.controls["noise"].model_id)
"""


def _run(kc, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=120)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out).strip()


def _move(kc, comm_id: str, value: float) -> None:
    state = {"method": "update", "state": {"value": value}, "buffer_paths": []}
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": state}))


def test_slider_burst_from_the_frontend_redraws_once_in_a_kernel():
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        comm_id = _run(kc, SETUP)
        for value in (0.1, 0.2, 0.3, 0.4, 0.5):
            _move(kc, comm_id, value)
        busy = _run(kc, "print(len(redraws), 'updating' in ex.status.value)")
        time.sleep(2.5)  # the kernel idles, the debounce timer fires
        after = _run(kc, "print(redraws, repr(ex.status.value), ex.controls['noise'].value)")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert busy == "0 True"
    redraws, status, noise = after.rsplit(" ", 2)
    assert redraws == "[0.5]" and status == "''" and float(noise) == pytest.approx(0.5)

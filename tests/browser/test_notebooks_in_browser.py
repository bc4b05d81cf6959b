"""Every tutorial notebook in JupyterLab in a real Chromium: runs clean, its explorer renders,
a hyper-parameter slider redraws the figure and the score, the fit button completes.

JupyterLab runs on 127.0.0.1 (free port, token, throwaway settings/runtime dirs) over copies
of the notebooks, with ``CI`` set so they take their short paths. Chromium is Debian's
(``/usr/bin/chromium``) driven by the ``playwright`` package. Without Chromium the test is
skipped with the reason, except when ``CI`` is set: there its absence is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
pytestmark = pytest.mark.browser

_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
_KERNEL_IDLE = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.connectionStatus === "connected" && k.status === "idle"
        && window.jupyterapp.commands.hasCommand("notebook:run-all-cells");
}"""
_ALL_RUN = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const k = w.sessionContext.session.kernel;
    const cells = w.content.widgets.filter(c => c.model.type === "code");
    return k.status === "idle" && cells.every(c => c.model.executionCount !== null);
}"""


def _browser_or_skip():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"expected Chromium at {CHROMIUM} in CI (.ci/run installs it)")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over copies of the notebooks; yields (base url, token)."""
    _browser_or_skip()
    scratch = tmp_path_factory.mktemp("lab")
    shutil.copytree(
        ROOT / "notebooks",
        scratch / "notebooks",
        ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"),
    )
    settings = scratch / "settings"
    for name, value in {
        "@jupyterlab/notebook-extension/tracker": {
            "autoStartDefaultKernel": True,
            "windowingMode": "none",
        },
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }.items():
        path = settings / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = os.environ | {
        "CI": "1",
        "JUPYTER_CONFIG_DIR": str(scratch / "config"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "WORKBENCH_PROGRESS": "0",
        "OMP_NUM_THREADS": "1",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={scratch}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={scratch / 'ws'}",
            "--LabApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(scratch / "server.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log = (scratch / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab did not start:\n{log}") from None
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser(lab):
    sync_api = _browser_or_skip()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _state(page) -> tuple[str, str]:
    explorer = page.locator(".wb-explorer").first
    figure = explorer.locator(".wb-figure").first.get_attribute("src") or ""
    return figure, explorer.locator(".wb-score").first.inner_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_and_its_explorer_responds(lab, browser, notebook, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    base, token = lab
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        # a workspace of its own, so no notebook opened earlier is restored next to it
        workspace = Path(notebook).stem.replace("_", "-")
        page.goto(f"{base}/lab/workspaces/{workspace}/tree/notebooks/{notebook}?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_function(_KERNEL_IDLE, timeout=120_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(_ALL_RUN, timeout=600_000, polling=1000)
        errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]')
        assert errors.count() == 0, errors.first.inner_text()
        explorer = page.locator(".wb-explorer").first
        expect(explorer).to_be_visible(timeout=60_000)
        expect(explorer.locator(".wb-figure").first).to_be_visible()
        figure, score = _state(page)
        assert figure and score
        # a hyper-parameter slider (a lengthscale where there is one), moved by keyboard,
        # redraws the figure and the score once the burst of moves is over (debounced)
        sliders = explorer.locator('.wb-hyper[class*="lengthscale"]')
        if sliders.count() == 0:
            sliders = explorer.locator(".wb-hyper")
        handle = sliders.first.locator(".noUi-handle")
        handle.focus()
        for _ in range(3):
            handle.press("ArrowRight")
        try:
            page.wait_for_function(
                "([f, s]) => { const e = document.querySelector('.wb-explorer');"
                " return e.querySelector('.wb-figure').getAttribute('src') !== f"
                " && e.querySelector('.wb-score').innerText !== s"
                " && e.querySelector('.wb-status').innerText.trim() === ''; }",
                arg=[figure, score],
                timeout=120_000,
            )
        except PlaywrightTimeout as err:
            status = explorer.locator(".wb-status").first.inner_text()
            raise AssertionError(f"the slider did not redraw; status: {status!r}") from err
        # the fit button, pressed from the keyboard, runs to a full progress bar without an
        # error in the status line
        fit = explorer.locator(".wb-fit").first
        fit.focus()
        fit.press("Enter")
        page.wait_for_function(
            "() => { const e = document.querySelector('.wb-explorer');"
            " const bar = e.querySelector('.wb-progress .progress-bar');"
            " return bar && bar.style.width === '100%'"
            " && !e.querySelector('.wb-fit').disabled; }",
            timeout=300_000,
        )
        assert "error" not in explorer.locator(".wb-status").first.inner_text()
    finally:
        page.screenshot(path=str(tmp_path / f"{Path(notebook).stem}.png"), full_page=True)
        page.close()
        _shut_down_kernels(base, token)


def _shut_down_kernels(base: str, token: str) -> None:
    """Free each notebook's kernel before the next notebook starts its own."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as reply:
        sessions = json.load(reply)
    for session in sessions:
        request = urllib.request.Request(
            f"{base}/api/sessions/{session['id']}?token={token}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=30).close()

"""The README's quickstart block runs as written (with fewer optimiser steps)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart\s+```python\n(.*?)```", readme, re.S)[1]
    assert len(block.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.replace("steps=5", "steps=1"), "README.md", "exec"), scope)
    post, same = scope["post"], scope["same"]
    assert np.isfinite(post["mean"]).all() and post["mean"].attrs["units"] == "ppm"
    assert same.hyperparameters() == scope["model"].hyperparameters()
    assert (tmp_path / "co2.wbm").exists()


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = 'pip install torch==2.13.0 && pip install -e ".[test]" && workbench demo'
    assert install in readme and install in ci
    assert "\npython -m pytest\n" in readme and "\npython -m pytest\n" in ci


def test_index_notebook_links_every_tutorial_with_a_binder_badge():
    import json

    index = json.loads((ROOT / "notebooks" / "index.ipynb").read_text())
    text = "".join("".join(cell["source"]) for cell in index["cells"])
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"]({notebook.name})" in text, notebook.name
        assert f"urlpath=lab/tree/notebooks/{notebook.name}" in text, notebook.name

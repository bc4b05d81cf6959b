"""The Binder configuration agrees with pyproject's ranges and CI's torch."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PROVIDED_BY_BINDER = {"jupyterlab", "ipywidgets"}  # pinned by the repo2docker base image


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _binder_pins() -> dict[str, Requirement]:
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            pins[req.name.lower()] = req
    return pins


def _pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"expected an exact pin for {req.name}, got {spec}"
    return spec.version


def test_every_core_dependency_is_pinned_within_pyproject_range():
    pins = _binder_pins()
    for dep in map(Requirement, _pyproject()["project"]["dependencies"]):
        name = dep.name.lower()
        if name in PROVIDED_BY_BINDER:
            continue
        assert name in pins, f"binder/requirements.txt lacks {dep.name}"
        version = _pinned_version(pins[name])
        assert dep.specifier.contains(version, prereleases=True), (
            f"binder pins {name}=={version}, outside pyproject's {dep.specifier}"
        )
        assert pins[name].extras == dep.extras


def test_binder_python_satisfies_requires_python():
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, runtime
    assert SpecifierSet(_pyproject()["project"]["requires-python"]).contains(match[1] + ".0")


def test_binder_torch_is_the_ci_cpu_torch():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    ci_torch = re.search(r"pip install torch==([\d.]+)", ci)[1]
    assert f"pip install torch=={ci_torch}" in readme
    assert _pinned_version(_binder_pins()["torch"]) == ci_torch


def test_requirements_keep_the_cached_layer_and_postbuild_installs_the_package():
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    local = [
        ln for ln in lines if ln.strip() in {".", "-e ."} or ln.startswith(("-r", "-c", "file:"))
    ]
    assert local == []
    assert any(ln.startswith("--extra-index-url") for ln in lines)
    post = (ROOT / "binder" / "postBuild").read_text()
    assert post.startswith("#!/bin/bash") and "set -e" in post
    assert "pip install --no-deps" in post and post.rstrip().endswith(".")
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111


def test_readme_links_binder_to_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"urlpath=lab/tree/notebooks/{nb.name}" in readme, nb.name

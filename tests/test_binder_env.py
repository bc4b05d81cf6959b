"""The Binder configuration in ``binder/`` builds a working kernel environment (no Docker).

The first test replays repo2docker's steps in a fresh virtual environment: install
``binder/requirements.txt`` (beside the base image's Jupyter packages), run ``postBuild`` in a copy
of the repository, then execute the quickstart notebook with that environment's kernel. The second
asks repo2docker itself (``--no-build``) for the Dockerfile it would build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
PYTHON = "3.11"  # what binder/runtime.txt must select
REPO2DOCKER = "jupyter-repo2docker==2026.4.0"
# provided by repo2docker's base environment, so not in binder/requirements.txt: the versions
# of its Python 3.11 lock file (repo2docker 2026.4.0), so the notebook meets what Binder has
BASE_IMAGE = ["jupyterlab==4.4.9", "notebook==7.4.7", "ipywidgets==8.1.7", "ipykernel==7.0.1"]
NOTEBOOK = "notebooks/00_quickstart.ipynb"


def _run(cmd: list[str | Path], *, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, failing the test with the tail of its output on error or timeout."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        out = b"".join(
            s if isinstance(s, bytes) else s.encode() for s in (exc.stdout, exc.stderr) if s
        )
        pytest.fail(f"{cmd} timed out after {timeout} s:\n{out.decode(errors='replace')[-4000:]}")
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"{cmd} exited with {proc.returncode}:\n{tail}"
    return proc


def _copy_repo(dest: Path) -> Path:
    """Copy the repository's files (tracked, or new and not ignored) to `dest`, as if committed."""
    ls = ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = _run(ls, timeout=60).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():  # tracked but deleted in the working tree: skip
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _venv(path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment at `path`: its python and an environment that activates it."""
    _run([sys.executable, "-m", "venv", path], timeout=120)
    drop = {"PYTHONPATH", "PYTHONHOME", "WORKBENCH_PROGRESS"}  # the last is set by tests/conftest
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(VIRTUAL_ENV=str(path), PATH=f"{path / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return path / "bin" / "python", env


def _reachable(url: str) -> bool:
    """Whether `url`'s host accepts a connection (no request is sent)."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=5).close()
    except OSError:
        return False
    return True


def _requirements_here(dest: Path) -> Path:
    """``binder/requirements.txt`` without extra indexes this machine cannot reach.

    Left in, pip retries an unreachable index for every project (minutes); the pinned torch then
    has to come from the machine's own pip configuration, which the test checks is a CPU build.
    """
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    keep = [
        ln
        for ln in lines
        if not (ln.startswith("--extra-index-url") and not _reachable(ln.split()[-1]))
    ]
    dest.write_text("\n".join(keep) + "\n")
    return dest


def _line(lines: list[str], pattern: str) -> int:
    """Index of the single Dockerfile line matching `pattern`."""
    hits = [i for i, ln in enumerate(lines) if re.search(pattern, ln)]
    assert len(hits) == 1, f"{pattern!r} matches lines {hits} of the Dockerfile"
    return hits[0]


def _unescape(name: str) -> str:
    """Undo repo2docker's (escapism's) ``-XX`` escaping of build-script file names."""
    return re.sub(r"-([0-9a-f]{2})", lambda m: chr(int(m[1], 16)), name)


@pytest.mark.slow
def test_fresh_binder_environment_imports_workbench_and_runs_a_notebook(tmp_path: Path) -> None:
    assert (BINDER / "runtime.txt").read_text().strip() == f"python-{PYTHON}"
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON
    repo = _copy_repo(tmp_path / "repo")
    python, env = _venv(tmp_path / "venv")
    reqs = _requirements_here(tmp_path / "requirements.txt")
    pip = [python, "-m", "pip", "install", "--progress-bar", "off", "-r", reqs]
    _run([*pip, *BASE_IMAGE, "nbval==0.11.0", "pytest"], env=env, timeout=900)

    # repo2docker: `RUN chmod +x binder/postBuild` then `RUN ./binder/postBuild` in the repo
    (repo / "binder" / "postBuild").chmod(0o755)
    _run(["./binder/postBuild"], cwd=repo, env=env, timeout=300)
    _run([python, "-m", "pip", "check"], env=env, timeout=120)  # workbench's ranges hold

    code = (
        "import json, sysconfig, torch, workbench; print(json.dumps({'version': "
        "workbench.__version__, 'file': workbench.__file__, 'torch': torch.__version__, "
        "'cuda': torch.version.cuda, 'site': sysconfig.get_path('purelib')}))"
    )
    info = json.loads(_run([python, "-c", code], cwd=tmp_path, env=env, timeout=300).stdout)
    print(f"workbench {info['version']} from {info['file']}; torch {info['torch']}")
    assert Path(info["site"]).is_relative_to(tmp_path / "venv")
    assert Path(info["file"]).is_relative_to(info["site"]), info
    torch_pin = re.search(r"^torch==(\S+)", reqs.read_text(), re.M)[1]
    assert info["torch"].split("+")[0] == torch_pin and info["cuda"] is None, info

    nbval = ["--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider"]
    nbval += ["--nbval-sanitize-with", "notebooks/nbval_sanitize.cfg"]
    run = _run(
        [python, "-m", "pytest", *nbval, NOTEBOOK],
        cwd=repo,
        env={**env, "CI": "true"},
        timeout=600,
    )
    cells = json.loads((repo / NOTEBOOK).read_text())["cells"]
    n_code = sum(c["cell_type"] == "code" for c in cells)
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed[1]) >= n_code, run.stdout[-4000:]
    assert not re.search(r"\d+ (failed|error)", run.stdout), run.stdout[-4000:]


@pytest.mark.slow
def test_repo2docker_dry_run_picks_python_311_and_caches_requirements(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path / "repo")
    python, env = _venv(tmp_path / "venv")
    _run(
        [python, "-m", "pip", "install", "--progress-bar", "off", REPO2DOCKER], env=env, timeout=600
    )
    # --no-build only prints the Dockerfile: no Docker daemon is needed
    proc = _run(["repo2docker", "--no-build", repo], cwd=tmp_path, env=env, timeout=120)
    log, lines = proc.stderr, proc.stdout.splitlines()

    assert f"Building conda environment for python={PYTHON}\n" in log, log
    copy_env = lines[_line(lines, r"^COPY .* /tmp/env/environment\.lock$")]
    assert f"/environment.py-{PYTHON}-" in _unescape(copy_env.split()[-2]), copy_env

    copy_reqs = _line(lines, r"^COPY .*\bsrc/binder/requirements\.txt ")
    install = _line(lines, r'^RUN .*pip install .*-r "?binder/requirements\.txt"?$')
    copy_repo = _line(lines, r"^COPY .*\bsrc/ \$\{REPO_DIR\}/$")
    post_build = _line(lines, r"^RUN (\./)?binder/postBuild$")
    # requirements are installed in a layer cached across changes to the rest of the repository
    assert copy_reqs < install < copy_repo < post_build, (copy_reqs, install, copy_repo, post_build)

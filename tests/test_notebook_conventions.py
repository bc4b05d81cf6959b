"""The tutorials follow the nbval conventions the notebook suite relies on.

nbval (``--nbval-lax``, see pyproject) runs every cell and compares only cells marked
``# NBVAL_CHECK_OUTPUT`` against their stored outputs, after the sanitize file's rewrites.
These checks keep that comparison meaningful: the stored outputs come from one clean run, the
checked cells have something to compare, and CI can switch every tutorial to its smoke size.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "notebooks" / "nbval_sanitize.cfg"
TUTORIALS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser()
    parser.read(SANITIZE)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def test_pytest_runs_notebooks_with_the_sanitize_file_and_a_cell_timeout():
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "addopts"
    ]
    assert "--nbval-lax" in addopts and "--nbval-current-env" in addopts
    assert f"--nbval-sanitize-with={SANITIZE.relative_to(ROOT)}" in addopts
    assert any(a.startswith("--nbval-cell-timeout=") for a in addopts)
    assert len(_sanitizers()) >= 5  # addresses, cell files, timings, rates, uuids


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_has_a_smoke_switch_and_one_clean_stored_run(path):
    cells = _code_cells(path)
    assert 'smoke_test = "CI" in os.environ' in cells[0].source
    counts = [c.execution_count for c in cells]
    assert None not in counts, "every cell's outputs come from a run"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "one top-to-bottom run"
    for cell in cells:
        kinds = {out.output_type for out in cell.outputs}
        assert "error" not in kinds, cell.source[:80]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_checked_cells_compare_stable_text(path):
    checked = [c for c in _code_cells(path) if "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, "at least one cell's output is compared"
    for cell in checked:
        text = _text(cell)
        assert text.strip(), f"a checked cell with nothing to compare: {cell.source[:80]}"
        for pattern, _ in _sanitizers():  # run-dependent text would only match as a placeholder
            assert not pattern.search(text), f"{pattern.pattern} in {text[:120]!r}"
        # numbers are printed rounded, so the same in smoke (CI) and full runs
        long_floats = re.findall(r"\d+\.\d{5,}", text)
        assert not long_floats, f"unrounded numbers {long_floats} in {cell.source[:80]}"

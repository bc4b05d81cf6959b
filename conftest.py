"""Repository-wide pytest hooks. nbval: stderr (warnings, progress bars) is never compared."""

from __future__ import annotations


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)

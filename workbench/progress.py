"""Progress bars for fit loops (``tqdm.auto``: a widget in Jupyter, text elsewhere)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int, desc: str, enabled: bool | None = None) -> Any:
    """A ``tqdm.auto`` bar over ``total`` steps.

    ``enabled=None`` shows the bar unless ``TQDM_DISABLE`` or ``WORKBENCH_PROGRESS=0`` is set;
    ``False`` silences it. The bar is returned even when disabled so callers need no branches.
    """
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = os.environ.get("WORKBENCH_PROGRESS", "1") != "0"
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)

"""Provenance and CF attributes for workbench outputs (netCDF-serialisable types only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = ["cf_attrs", "make_attrs"]


def make_attrs(
    model: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Provenance attributes following the ArviZ schema plus workbench keys.

    Values are strings or numbers only (netCDF cannot store ``None``, booleans or dicts), so
    hyper-parameters are stored as one JSON string.

    Examples
    --------
    >>> attrs = make_attrs("ExactGP", {"noise": 0.1})
    >>> attrs["model"], attrs["hyperparameters"]
    ('ExactGP', '{"noise": 0.1}')
    """
    from workbench import __version__

    attrs: dict[str, Any] = {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "creation_library": "workbench",
        "creation_library_version": __version__,
        "workbench_version": __version__,
    }
    if model is not None:
        attrs["model"] = model
    if hyperparameters is not None:
        attrs["hyperparameters"] = json.dumps(dict(hyperparameters), sort_keys=True)
    for key, value in extra.items():
        if value is not None:
            attrs[key] = _serialisable(value)
    return attrs


def _serialisable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, default=str)
    return value


def cf_attrs(source: Mapping[str, Any], role: str) -> dict[str, Any]:
    """CF ``long_name``/``units`` for an output variable derived from an input's attrs.

    ``role`` is one of ``"mean"``, ``"variance"``, ``"lower"``, ``"upper"``, ``"sd"``.
    """
    name = source.get("long_name") or source.get("standard_name") or "value"
    units = source.get("units")
    out: dict[str, Any] = {"long_name": f"posterior {role} of {name}"}
    if units is not None:
        out["units"] = f"({units})^2" if role == "variance" else units
    return out

"""Offline access to the small real datasets shipped in the repository's ``data/`` folder."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from workbench.errors import DatasetNotFoundError

__all__ = ["data_dir", "list_datasets", "load_dataset"]


def data_dir() -> Path:
    """Folder of shipped datasets: ``workbench/_data`` in a wheel, ``data/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data", here.parent / "data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no shipped data folder next to {here}; reinstall workbench")


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`.

    Examples
    --------
    >>> "co2_mauna_loa" in list_datasets()
    True
    """
    return sorted(p.stem for p in data_dir().glob("*.nc"))


def load_dataset(name: str) -> xr.Dataset:
    """Load a shipped dataset into memory (no network access).

    Each dataset carries CF attrs (``long_name``, ``units``) and ``source``/``license`` attrs;
    ``data/README.md`` records provenance and licences.

    Raises
    ------
    DatasetNotFoundError
        ``name`` is not among :func:`list_datasets`.

    Examples
    --------
    >>> ds = load_dataset("co2_mauna_loa")
    >>> ds.co2.attrs["units"], ds.sizes["time"]
    ('ppm', 2284)
    """
    names = list_datasets()
    if name not in names:
        raise DatasetNotFoundError(f"expected a dataset name in {names}, got {name!r}")
    return xr.load_dataset(data_dir() / f"{name}.nc")

"""Scale-out: fit one independent model per series, locally or on a ``dask.distributed`` cluster."""

from __future__ import annotations

from workbench.errors import FitManyError as FitManyError
from workbench.scale.many import fit_many as fit_many

__all__ = ["FitManyError", "fit_many"]

"""Sparse linear algebra for Vecchia / sparse inverse Cholesky GPs: maximin ordering, sparsity
patterns, KL-optimal inverse-Cholesky factors and compiled sparse triangular solves."""

from __future__ import annotations

from workbench.linalg.ancestors import reduced_ancestors as reduced_ancestors
from workbench.linalg.maximin import MaximinPattern as MaximinPattern
from workbench.linalg.maximin import maximin_pattern as maximin_pattern

__all__ = ["MaximinPattern", "maximin_pattern", "reduced_ancestors"]

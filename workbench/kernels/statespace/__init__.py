"""State-space (Markov) kernels: dense covariance and SDE views of one object."""

from __future__ import annotations

from workbench.kernels.statespace.base import SDE as SDE
from workbench.kernels.statespace.base import StateSpaceKernel as StateSpaceKernel
from workbench.kernels.statespace.hida_matern import HidaMaternKernel as HidaMaternKernel
from workbench.kernels.statespace.matern import MaternKernel as MaternKernel
from workbench.kernels.statespace.sum import StateSpaceSum as StateSpaceSum

__all__ = ["SDE", "HidaMaternKernel", "MaternKernel", "StateSpaceKernel", "StateSpaceSum"]

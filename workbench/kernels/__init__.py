"""Kernels: Hida-Matérn / Matérn state-space kernels, and specs of kernel structure."""

from __future__ import annotations

from workbench.kernels.batched import squared_exponential as squared_exponential
from workbench.kernels.spec import kernel_from_spec as kernel_from_spec
from workbench.kernels.spec import kernel_to_spec as kernel_to_spec
from workbench.kernels.spec import register_kernel as register_kernel
from workbench.kernels.statespace import SDE as SDE
from workbench.kernels.statespace import HidaMaternKernel as HidaMaternKernel
from workbench.kernels.statespace import MaternKernel as MaternKernel
from workbench.kernels.statespace import StateSpaceKernel as StateSpaceKernel
from workbench.kernels.statespace import StateSpaceSum as StateSpaceSum

__all__ = [
    "SDE",
    "HidaMaternKernel",
    "MaternKernel",
    "StateSpaceKernel",
    "StateSpaceSum",
    "kernel_from_spec",
    "kernel_to_spec",
    "register_kernel",
    "squared_exponential",
]

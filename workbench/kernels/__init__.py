"""Kernels: GPyTorch kernels, plus (de)serialisable specs of their structure."""

from __future__ import annotations

from workbench.kernels.spec import kernel_from_spec as kernel_from_spec
from workbench.kernels.spec import kernel_to_spec as kernel_to_spec
from workbench.kernels.spec import register_kernel as register_kernel

__all__ = ["kernel_from_spec", "kernel_to_spec", "register_kernel"]

"""Contract test bases shipped with the package (for workbench's tests and for extensions)."""

from __future__ import annotations

from workbench.testing.contracts import StateSpaceKernelContract as StateSpaceKernelContract

__all__ = ["StateSpaceKernelContract"]

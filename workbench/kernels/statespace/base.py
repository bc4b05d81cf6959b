"""The state-space kernel base: one GPyTorch kernel, two views (dense covariance and SDE)."""

from __future__ import annotations

from typing import Any

import gpytorch
import torch
from gpytorch.kernels import Kernel

from workbench.errors import ValueRangeError
from workbench.ssm.discretize import SDE, discretize_sde

__all__ = ["SDE", "PositiveParameter", "StateSpaceKernel"]


class PositiveParameter:
    """Descriptor exposing ``raw_<name>`` through its GPyTorch constraint as ``<name>``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        raw = getattr(obj, f"raw_{self.name}")
        return getattr(obj, f"raw_{self.name}_constraint").transform(raw)

    def __set__(self, obj: Any, value: Any) -> None:
        raw = getattr(obj, f"raw_{self.name}")
        value = torch.as_tensor(value, dtype=raw.dtype, device=raw.device)
        if not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueRangeError(f"expected a finite {self.name} > 0, got {value.tolist()}")
        constraint = getattr(obj, f"raw_{self.name}_constraint")
        obj.initialize(**{f"raw_{self.name}": constraint.inverse_transform(value.expand_as(raw))})


def register_positive(kernel: Kernel, name: str, value: float) -> None:
    """Register ``raw_<name>`` (scalar) with a ``Positive`` constraint and set it to ``value``."""
    kernel.register_parameter(f"raw_{name}", torch.nn.Parameter(torch.zeros(())))
    kernel.register_constraint(f"raw_{name}", gpytorch.constraints.Positive())
    setattr(kernel, name, value)


class StateSpaceKernel(Kernel):
    r"""A stationary 1-D kernel with an exact linear-SDE (Markov) representation.

    Subclasses implement :meth:`covariance` (:math:`k(\tau)`), :meth:`sde` and
    :meth:`spectral_density`, and may override :meth:`discretize` with closed forms. The dense
    :meth:`forward` is derived from :meth:`covariance`, so these kernels also work in any GPyTorch
    model; sums of state-space kernels stay state-space (block-diagonal SDE).
    """

    is_stationary = True

    def covariance(self, tau: torch.Tensor) -> torch.Tensor:
        r""":math:`k(\tau)` for lags of any shape."""
        raise NotImplementedError

    def sde(self) -> SDE:
        """The SDE view ``(F, L, Qc, H, Pinf)``."""
        raise NotImplementedError

    def spectral_density(self, omega: torch.Tensor) -> torch.Tensor:
        r"""Two-sided spectral density in angular frequency.

        Convention: :math:`k(\tau)=\frac{1}{2\pi}\int S(u)e^{iu\tau}du`.
        """
        raise NotImplementedError

    @property
    def state_dim(self) -> int:
        return self.sde().F.shape[-1]

    def discretize(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, Q)`` of shapes (*n, S, S) for steps ``dt`` of shape (*n,)."""
        return discretize_sde(self.sde(), dt)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any
    ) -> torch.Tensor:
        if x1.shape[-1] != 1 or x2.shape[-1] != 1:
            raise ValueError(
                f"expected 1-D inputs of shape (..., n, 1), got {tuple(x1.shape)} and "
                f"{tuple(x2.shape)}"
            )
        if diag:
            return self.covariance(x1[..., 0] - x2[..., 0])
        return self.covariance(x1 - x2[..., 0].unsqueeze(-2))

    def __add__(self, other: Kernel) -> Kernel:
        if isinstance(other, StateSpaceKernel):
            from workbench.kernels.statespace.sum import StateSpaceSum

            left = list(self.kernels) if isinstance(self, StateSpaceSum) else [self]
            right = list(other.kernels) if isinstance(other, StateSpaceSum) else [other]
            return StateSpaceSum(*left, *right)
        return super().__add__(other)

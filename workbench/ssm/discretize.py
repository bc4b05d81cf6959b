"""Generic discretisation of a stationary linear SDE (the oracle for closed forms)."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["SDE", "discretize_sde"]


class SDE(NamedTuple):
    r"""A linear time-invariant SDE :math:`dx = Fx\,dt + L\,d\beta`, :math:`f = Hx`.

    Shapes: ``F`` (S, S), ``L`` (S, W), ``Qc`` (W, W), ``H`` (1, S), ``Pinf`` (S, S), with
    :math:`F P_\infty + P_\infty F^\top + L Q_c L^\top = 0`.
    """

    F: torch.Tensor
    L: torch.Tensor
    Qc: torch.Tensor
    H: torch.Tensor
    Pinf: torch.Tensor


def discretize_sde(sde: SDE, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Transition and process noise over steps ``dt`` (shape (*n,)), each of shape (*n, S, S).

    .. math:: A = \exp(F\Delta), \qquad Q = P_\infty - A P_\infty A^\top

    The second identity loses accuracy in the smallest eigenvalues of Q at small
    :math:`\Delta` (cancellation); kernels override this with closed forms where they exist.
    """
    A = torch.linalg.matrix_exp(sde.F * dt[..., None, None])
    Q = sde.Pinf - A @ sde.Pinf @ A.mT
    return A, 0.5 * (Q + Q.mT)

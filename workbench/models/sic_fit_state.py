"""The fitted state of the sparse inverse Cholesky GP (q and the ordered training data): saving,
rollback and device moves (a mixin, keeping ``sic_gp`` to fitting and prediction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from workbench.data.spatial import spatial_data

__all__ = ["SparseFitStateMixin"]

_DATA_TENSORS = ("X", "y", "index", "ancestors")


class SparseFitStateMixin:
    """q (``nu``, ``raw_v``) and the ordered data (``data``) of
    :class:`~workbench.models.SparseInverseCholeskyGP`.

    They are plain tensors, not parameters or buffers: they are sized by the data, and saved
    models keep them as fit state (see :meth:`_fit_state`) so that the state dict stays the
    hyper-parameters'. ``.to()``, ``.double()`` and the like move them with the module
    (:meth:`_apply`); state restored from a file joins the model's device
    (:meth:`_follow_device`).
    """

    def _fit_state(self) -> dict[str, Any]:
        """The training data, the lengthscales that ordered it, q and the ELBO trace."""
        if self.data is None:
            return {}
        return {"template": self._template, "ordered_by": self._ordered_by, "nu": self.nu,
                "raw_v": self.raw_v, "elbo_trace": self.elbo_trace}  # fmt: skip

    def _restore_fit_state(self, state: dict[str, Any]) -> None:
        self._template = state["template"]
        self._points = spatial_data(self._template, self.inputs)
        self._order(state["ordered_by"])
        self.nu, self.raw_v, self.elbo_trace = state["nu"], state["raw_v"], state["elbo_trace"]
        self._follow_device()

    def _save_q(self) -> tuple:
        """q, the ordered data and the lengthscales that ordered them (a fit's rollback)."""
        q = (self.nu.detach().clone(), self.raw_v.detach().clone())
        return self.data, getattr(self, "_ordered_by", None), *q

    def _load_q(self, saved: tuple) -> None:
        self.data, self._ordered_by = saved[:2]
        self.nu, self.raw_v = (t.clone().requires_grad_(True) for t in saved[2:])

    def _convert_fit_state(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply the tensor conversion ``fn`` to the ordered data and q; q stays a leaf that
        requires grad, and tensors ``fn`` returns unchanged are kept (an optimiser's q)."""
        data = getattr(self, "data", None)
        with torch.no_grad():
            if data is not None:
                self.data = data._replace(**{k: fn(getattr(data, k)) for k in _DATA_TENSORS})
            for name in ("nu", "raw_v"):
                value = getattr(self, name, None)
                if isinstance(value, torch.Tensor) and (moved := fn(value)) is not value:
                    setattr(self, name, moved.detach().requires_grad_(value.requires_grad))

    def _apply(self, fn: Callable, recurse: bool = True) -> Any:
        out = super()._apply(fn, recurse)
        self._convert_fit_state(fn)
        return out

    def _follow_device(self) -> None:
        """Put the fitted state on the model's device (a no-op where it already is)."""
        device = self.device
        self._convert_fit_state(lambda t: t.to(device))

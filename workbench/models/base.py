"""The one abstract base of workbench models: parameters, reprs, persistence, explorers."""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import torch

from workbench.models.divergence import check_hyperparameters, check_value

__all__ = ["Model", "ParameterSpec", "Posterior"]


class Posterior(NamedTuple):
    """Gaussian marginal predictive moments (tensors), recomputed on every call."""

    mean: torch.Tensor  # shape: (*batch, T)
    variance: torch.Tensor  # shape: (*batch, T)


class ParameterSpec(NamedTuple):
    """Metadata from which explorers build a control for one hyper-parameter."""

    name: str  # dotted name as in Model.hyperparameters()
    low: float
    high: float
    log: bool
    label: str


class Model(torch.nn.Module):
    """Base class: subclasses define ``get_config`` (JSON-able constructor arguments).

    Everything else (hyper-parameter access, text/HTML reprs, save, explore) derives from the
    module's parameters and their GPyTorch constraints.
    """

    registry: ClassVar[dict[str, type[Model]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # moved by .to()/.double() like any buffer, so that what a fit builds later (networks,
        # per-task parameters, fitted data) knows the model's device and dtype; not saved
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """The device the model lives on (``model.to(device)`` moves it); everything a fit
        creates is created there."""
        return self._anchor.device

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Model.registry[cls.__name__] = cls

    # -- configuration and persistence -------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild an unfitted model of the same structure."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        """Inverse of :meth:`get_config`."""
        return cls(**config)

    def save(self, path: str | Any) -> None:
        """Write the model (with its fit state) to one self-describing file, atomically (see
        :func:`workbench.load`)."""
        from workbench.persistence import save_model

        save_model(self, path)

    #: Attributes a fit sets outside parameters, buffers and config (fitted data, memberships,
    #: variational state, traces); saved with the model so that a loaded one is the same model.
    #: By default the loss/ELBO traces; models that keep more list it all.
    _fit_attributes: ClassVar[tuple[str, ...]] = ("fit_losses", "fit_elbo", "elbo_trace")

    def _fit_state(self) -> dict[str, Any]:
        """Values of :attr:`_fit_attributes` that are set (tensors, arrays, DataArrays, ...)."""
        return {name: getattr(self, name) for name in self._fit_attributes if hasattr(self, name)}

    def _restore_fit_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_fit_state` (called by :func:`workbench.load`)."""
        unknown = sorted(set(state) - set(self._fit_attributes))
        if unknown:
            raise ValueError(f"expected fit state in {list(self._fit_attributes)}, got {unknown}")
        for name, value in state.items():
            setattr(self, name, value)

    # -- hyper-parameters ----------------------------------------------------------------------
    def _constrained(self) -> Iterator[tuple[str, torch.nn.Parameter, Any]]:
        for raw_name, param in self.named_parameters():
            owner_name, _, leaf = raw_name.rpartition(".")
            owner = self.get_submodule(owner_name) if owner_name else self
            constraint = getattr(owner, f"{leaf}_constraint", None)
            name = leaf[4:] if leaf.startswith("raw_") else leaf
            yield (f"{owner_name}.{name}" if owner_name else name), param, constraint

    def hyperparameters(self) -> dict[str, float | list]:
        """Current hyper-parameter values on their natural (constrained) scale."""
        out: dict[str, float | list] = {}
        with torch.no_grad():
            for name, param, constraint in self._constrained():
                value = constraint.transform(param) if constraint is not None else param
                out[name] = value.item() if value.numel() == 1 else value.tolist()
        return out

    def set_hyperparameter(self, name: str, value: float) -> None:
        """Set a hyper-parameter on its natural scale (inverse-transforms into the raw one)."""
        for key, param, constraint in self._constrained():
            if key == name:
                target = torch.as_tensor(value, dtype=param.dtype, device=param.device)
                target = target.expand_as(param)
                check_value(name, target, constraint)
                raw = constraint.inverse_transform(target) if constraint is not None else target
                with torch.no_grad():
                    param.copy_(raw)
                return
        raise KeyError(f"expected one of {sorted(self.hyperparameters())}, got {name!r}")

    @staticmethod
    def _checked(modules: list[torch.nn.Module], what: str) -> list[torch.nn.Module]:
        """``modules`` (kernels, likelihoods) once each has finite hyper-parameters inside
        their constraints (else :class:`~workbench.errors.ValueRangeError`)."""
        for module in modules:
            check_hyperparameters(module, what)
        return modules

    def parameter_specs(self) -> list[ParameterSpec]:
        """Controls for explorers, one per scalar hyper-parameter.

        Positive (constrained) values get a log-scale range of ×/÷ 100; unconstrained ones a
        linear range of ±10 (|value| + 1) around the current value.
        """
        specs = []
        constrained = {name: c is not None for name, _, c in self._constrained()}
        for name, value in self.hyperparameters().items():
            if not isinstance(value, float) or not math.isfinite(value):
                continue
            label = name.replace("base_kernel.", "").replace("kernels.", "k")
            if constrained[name] and value > 0:
                specs.append(ParameterSpec(name, value / 100.0, value * 100.0, True, label))
            else:
                half = 10.0 * (abs(value) + 1.0)
                specs.append(ParameterSpec(name, value - half, value + half, False, label))
        return specs

    # -- Jupyter -------------------------------------------------------------------------------
    def explore(self, data: Any, **kwargs: Any) -> Any:
        """An ipywidgets explorer of this model on ``data`` (imports ipywidgets lazily)."""
        from workbench.widgets import ModelExplorer

        return ModelExplorer(self, data, **kwargs)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        lines += [f"  {key}={value!r}," for key, value in self._repr_config().items()]
        lines.append("  hyperparameters:")
        lines += [f"    {name} = {_fmt(v)}" for name, v in self.hyperparameters().items()]
        lines.append(")")
        return "\n".join(lines)

    def _repr_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.get_config().items() if not isinstance(v, dict | list)}

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(_fmt(v))}</td></tr>"
            for n, v in self.hyperparameters().items()
        )
        config = ", ".join(f"{k}={v!r}" for k, v in self._repr_config().items())
        return (
            f"<div class='wb-model'><pre style='display:none'>{html.escape(repr(self))}</pre>"
            f"<b>{type(self).__name__}</b> <small>{html.escape(config)}</small>"
            f"<table><tr><th>hyper-parameter</th><th>value</th></tr>{rows}</table></div>"
        )


def _fmt(value: float | list) -> str:
    if isinstance(value, list):
        flat = torch.tensor(value).flatten().tolist()
        return "[" + ", ".join(f"{v:.4g}" for v in flat) + "]"
    return f"{value:.4g}"

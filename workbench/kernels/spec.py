"""JSON specs of kernel structure, so a saved model can be rebuilt before loading its weights.

A spec records a kernel's class, constructor arguments, children and constraint types. Parameter
values are not part of it: they travel in the model's ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

import gpytorch
import torch
from gpytorch.kernels import Kernel

from workbench.errors import ModelFileError

__all__ = ["kernel_from_spec", "kernel_to_spec", "register_kernel"]

_LEAF_ARGS: dict[str, tuple[str, ...]] = {
    "RBFKernel": (),
    "MaternKernel": ("nu",),
    "PeriodicKernel": (),
    "RQKernel": (),
    "CosineKernel": (),
    "LinearKernel": (),
}
_CONSTRAINTS = ("Positive", "GreaterThan", "LessThan", "Interval")
_KERNELS: dict[str, type[Kernel]] = {
    name: getattr(gpytorch.kernels, name)
    for name in (*_LEAF_ARGS, "ScaleKernel", "AdditiveKernel", "ProductKernel")
}


def _type_name(cls: type) -> str:
    # workbench's own kernels are prefixed: its MaternKernel is not GPyTorch's MaternKernel
    prefix = "workbench." if cls.__module__.startswith("workbench.") else ""
    return prefix + cls.__name__


def register_kernel(cls: type[Kernel]) -> type[Kernel]:
    """Class decorator: let specs name ``cls`` (it must define ``get_config()``)."""
    _KERNELS[_type_name(cls)] = cls
    return cls


def kernel_to_spec(kernel: Kernel) -> dict[str, Any]:
    """Structure of ``kernel`` as JSON-able data.

    Raises
    ------
    TypeError
        For kernel classes workbench cannot rebuild (save would not round-trip).
    """
    name = _type_name(type(kernel))
    if _KERNELS.get(name) is not type(kernel):
        raise TypeError(
            f"expected a kernel built from {sorted(_KERNELS)}, got {name}; "
            "register custom kernels with workbench.kernels.register_kernel"
        )
    spec: dict[str, Any] = {"type": name, "args": _args(kernel, name)}
    if name == "ScaleKernel":
        spec["children"] = [kernel_to_spec(kernel.base_kernel)]
    elif isinstance(getattr(kernel, "kernels", None), torch.nn.ModuleList):
        spec["children"] = [kernel_to_spec(k) for k in kernel.kernels]
    spec["constraints"] = {
        n: [type(c).__name__, _bound(c.lower_bound), _bound(c.upper_bound)]
        for n, c in kernel._constraints.items()
    }
    return spec


def _bound(value: Any) -> float | None:
    # Strict JSON has no Infinity: an unbounded side is null (the constraint type implies it).
    value = float(value)
    return value if math.isfinite(value) else None


def kernel_from_spec(spec: dict[str, Any]) -> Kernel:
    """Inverse of :func:`kernel_to_spec` (parameters at their initial values)."""
    try:
        cls = _KERNELS[spec["type"]]
        args = dict(spec.get("args", {}))
        if "batch_shape" in args:
            args["batch_shape"] = torch.Size(args["batch_shape"])
        children = [kernel_from_spec(child) for child in spec.get("children", [])]
        kernel = cls(*children, **args)
        for param_constraint, (cname, low, high) in spec.get("constraints", {}).items():
            _restore_constraint(kernel, param_constraint, cname, low, high)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise ModelFileError(f"expected a valid kernel spec, got {spec!r} ({err})") from err
    return kernel


def _args(kernel: Kernel, name: str) -> dict[str, Any]:
    if hasattr(kernel, "get_config"):
        return kernel.get_config()
    args: dict[str, Any] = {}
    if list(kernel.batch_shape) and name not in ("AdditiveKernel", "ProductKernel"):
        args["batch_shape"] = list(kernel.batch_shape)
    if getattr(kernel, "ard_num_dims", None) is not None and name in _LEAF_ARGS:
        args["ard_num_dims"] = kernel.ard_num_dims
    if kernel.active_dims is not None:
        args["active_dims"] = kernel.active_dims.tolist()
    for arg in _LEAF_ARGS.get(name, ()):
        args[arg] = getattr(kernel, arg)
    return args


def _restore_constraint(
    kernel: Kernel, key: str, cname: str, low: float | None, high: float | None
) -> None:
    current = kernel._constraints[key]
    if type(current).__name__ == cname:
        return
    if cname not in _CONSTRAINTS:
        raise ValueError(f"unknown constraint {cname!r}")
    cls = getattr(gpytorch.constraints, cname)
    constraint = {
        "Positive": lambda: cls(),
        "GreaterThan": lambda: cls(low),
        "LessThan": lambda: cls(high),
        "Interval": lambda: cls(low, high),
    }[cname]()
    kernel.register_constraint(key.removesuffix("_constraint"), constraint)

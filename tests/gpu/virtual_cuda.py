"""An emulated CUDA device for CPU-only machines, to find device bugs without a GPU.

Tensors of a model's parameters and buffers (:func:`tag_module`), and everything computed from
them, carry a tag and report ``device.type == "cuda"``; factories given that device (or
``*_like`` a tagged tensor) make tagged tensors. Inside :class:`Mode`, what would fail or go
wrong on a real GPU is recorded with the workbench line that did it:

- an op mixing a tagged tensor with an untagged one of more than one element (CUDA accepts
  0-dim CPU scalars only);
- ``.numpy()`` of a tagged tensor (needs ``.cpu()`` first);
- advanced indexing or writes across the two;
- a CPU generator for a factory on the device.

``.cpu()`` and ``.to("cpu")`` untag, so CPU-only kernels fed with ``.cpu()`` copies pass. The
arithmetic is the CPU's: this finds placement bugs, not numerical differences (those are the
``gpu``-marked tests' job on a real device).
"""

from __future__ import annotations

import collections
import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


class VDev(str):
    """A device that parses as 'cpu' but says type 'cuda' (tagged tensors report it)."""

    type = "cuda"
    index = 0


VCUDA = VDev("cpu")
LIKE = {
    torch.zeros_like,
    torch.ones_like,
    torch.empty_like,
    torch.full_like,
    torch.randn_like,
    torch.rand_like,
    torch.randint_like,
}
FACTORIES = LIKE | {
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.eye,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.randn,
    torch.rand,
    torch.randint,
    torch.randperm,
    torch.tensor,
    torch.as_tensor,
    torch.scalar_tensor,
}
NEW = {"new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"}
T = torch.Tensor

__all__ = ["VCUDA", "Mode", "report", "tag_module", "tagged"]


def tagged(t) -> bool:
    """Whether ``t`` is a tensor on the emulated device."""
    return isinstance(t, torch.Tensor) and getattr(t, "_vdev", False)


def tag(obj) -> None:
    """Put every tensor in ``obj`` (any pytree) on the emulated device."""
    leaves, _ = tree_flatten(obj)
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            try:
                leaf._vdev = True
            except Exception:
                pass


def untag(obj) -> None:
    """Put every tensor in ``obj`` back on the CPU."""
    leaves, _ = tree_flatten(obj)
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor) and getattr(leaf, "_vdev", False):
            leaf._vdev = False


def tag_module(module: torch.nn.Module) -> None:
    """Put a module's parameters and buffers on the emulated device."""
    for t in [*module.parameters(), *module.buffers()]:
        t._vdev = True


class Mode(TorchFunctionMode):
    """Records device mixing (see the module docstring) in ``hits``; also makes
    ``module.to(<the emulated device>)`` tag the module's tensors, as a real move would."""

    def __init__(self):
        super().__init__()
        self.hits = collections.OrderedDict()
        self._module_to = self._copy_parameter = None

    def __enter__(self):
        original = self._module_to = torch.nn.Module.to

        def to(module, *args, **kwargs):
            out = original(module, *args, **kwargs)
            if any(isinstance(a, VDev) or tagged(a) for a in (*args, *kwargs.values())):
                # Module.to parses the device to a plain "cpu": convert again with the emulated
                # one, so that models' own _apply hooks move their extra state too
                out._apply(lambda t: t.to(VCUDA))
                tag_module(out)
            return out

        torch.nn.Module.to = to
        # Parameter.__deepcopy__ builds a new Parameter outside torch functions: keep its device
        copy_parameter = self._copy_parameter = torch.nn.Parameter.__deepcopy__

        def deepcopy(parameter, memo):
            out = copy_parameter(parameter, memo)
            if tagged(parameter):
                out._vdev = True
            return out

        torch.nn.Parameter.__deepcopy__ = deepcopy
        return super().__enter__()

    def __exit__(self, *exc):
        torch.nn.Module.to = self._module_to
        torch.nn.Parameter.__deepcopy__ = self._copy_parameter
        return super().__exit__(*exc)

    def record(self, kind: str, func) -> None:
        stack = [f for f in traceback.extract_stack()[:-2] if "/workbench/" in f.filename]
        if not stack:
            return
        where = stack[-1]
        key = (kind, getattr(func, "__name__", str(func)), where.filename, where.lineno)
        if key not in self.hits:
            chain = " <- ".join(
                f"{f.filename.split('/workbench/')[-1]}:{f.lineno}" for f in reversed(stack[-4:])
            )
            self.hits[key] = (where.line, chain)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        # properties
        if name == "__get__":
            owner = getattr(func, "__self__", None)
            pname = getattr(owner, "__name__", "")
            out = func(*args, **kwargs)
            if pname == "device" and tagged(args[0]):
                return VCUDA
            if pname == "is_cuda" and tagged(args[0]):
                return True
            if pname in ("T", "mT", "H", "mH", "real", "imag", "data", "grad") and tagged(args[0]):
                tag(out)
            return out
        leaves, _ = tree_flatten((args, kwargs))
        tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
        any_tagged = any(tagged(t) for t in tensors)
        device_kw = kwargs.get("device")
        gen = kwargs.get("generator")
        # conversions
        if func in (T.cpu,):
            out = func(*args, **kwargs)
            if out is args[0]:  # .cpu() of a CPU tensor returns itself; a real copy on CUDA
                out = out.view_as(out) if out.dim() else out.clone()
            untag(out)
            return out
        if func in (T.numpy, T.__array__) and tagged(args[0]):
            self.record("numpy() of a CUDA tensor", func)
            return func(*args, **kwargs)
        if func is T.to:
            out = func(*args, **kwargs)
            target = [a for a in [*args[1:], *kwargs.values()]]
            to_tagged = any(tagged(a) or isinstance(a, VDev) for a in target)
            to_cpu = any((a == "cpu" and not isinstance(a, VDev)) or
                         (isinstance(a, torch.device) and a.type == "cpu") for a in target
                         if isinstance(a, str | torch.device))  # fmt: skip
            if to_tagged:
                if out is args[0] and not tagged(out):
                    out = out.view_as(out) if out.dim() else out.clone()
                tag(out)
            elif to_cpu:
                if out is args[0] and tagged(out):
                    out = out.view_as(out) if out.dim() else out.clone()
                untag(out)
            elif tagged(args[0]):
                tag(out)
            return out
        if name == "__deepcopy__":  # a copy stays on its device
            out = func(*args, **kwargs)
            if tagged(args[0]):
                tag(out)
            return out
        if name in ("_has_compatible_shallow_copy_type", "__set__"):
            return func(*args, **kwargs)  # Module._apply swapping a tensor's data: a move
        if func is T.copy_:
            return func(*args, **kwargs)  # cross-device copies are fine
        if func in FACTORIES or name in NEW:
            out = func(*args, **kwargs)
            src_tagged = (
                isinstance(device_kw, VDev)
                or (func in LIKE and tagged(args[0]) and device_kw is None)
                or (name in NEW and tagged(args[0]) and device_kw is None)
                or (func in (torch.as_tensor, torch.tensor) and device_kw is None
                    and tagged(args[0]))
            )  # fmt: skip
            if isinstance(device_kw, VDev) and gen is not None and gen.device.type == "cpu":
                self.record("CPU generator for a CUDA factory", func)
            if src_tagged:
                tag(out)
            else:
                untag(out)  # .tensor/as_tensor of a CPU thing, or a device-less factory
            return out
        if name == "__getitem__":
            base, index = args[0], args[1]
            idx = [x for x in tree_flatten(index)[0] if isinstance(x, torch.Tensor)]
            if not tagged(base) and any(tagged(i) and i.dim() > 0 for i in idx):
                self.record("CPU tensor indexed by a CUDA index", func)
            out = func(*args, **kwargs)
            if tagged(base):
                tag(out)
            return out
        if name == "__setitem__":
            base, index, value = args[0], args[1], args[2]
            idx = [x for x in tree_flatten(index)[0] if isinstance(x, torch.Tensor)]
            advanced = bool(idx)
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                if tagged(base) != tagged(value) and advanced:
                    self.record("index_put_ across devices", func)
                elif not tagged(base) and tagged(value):
                    self.record("CUDA values written into a CPU tensor (silent CPU)", func)
            if not tagged(base) and any(tagged(i) and i.dim() > 0 for i in idx):
                self.record("CPU tensor indexed by a CUDA index", func)
            return func(*args, **kwargs)
        if any_tagged:
            plain = [t for t in tensors if not tagged(t) and t.dim() > 0]
            if plain:
                self.record("CUDA tensor combined with a CPU tensor", func)
        out = func(*args, **kwargs)
        if any_tagged and name not in ("tolist", "item", "__len__", "dim", "size", "numel"):
            tag(out)
        return out


def report(mode: Mode) -> str:
    lines = []
    for (kind, fname, filename, lineno), (line, chain) in mode.hits.items():
        short = filename.split("/workbench/")[-1]
        lines.append(f"{short}:{lineno} [{kind}; {fname}] {line}\n    via {chain}")
    return "\n".join(lines)

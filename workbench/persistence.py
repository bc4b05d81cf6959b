"""Save and load models as one self-describing, checksummed file, written atomically.

File layout::

    b"WBMODEL\\0"                  8-byte magic
    <uint64 little-endian>         length of the JSON header
    <JSON header>                  format, versions, model class, config, payload size + SHA-256
    <payload>                      torch.save({"state_dict": ..., "fit_state": ...});
                                   loaded with weights_only=True

The header is plain text at the start of the file (``head -c 2000 model.wbm`` shows it). Loading
checks the magic, format version, payload length and checksum before building anything, so a
truncated, corrupted or foreign file raises :class:`~workbench.errors.ModelFileError` and never
returns a half-built model.

``fit_state`` holds what a fit keeps outside parameters, buffers and config (the fitted data,
memberships, variational state, traces: ``Model._fit_state``), encoded into tensors, bytes and
plain Python values so that the weights-only unpickler reads it. Files without it (written
before it existed, same format version) load as models without their fitted data.

Format versions: 1 is the first and current one. A file with a newer version asks for a newer
workbench; version 0 or a missing or non-integer version is refused (no such workbench file
was ever written: pre-release models saved by a plain ``torch.save`` are not model files).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.errors import ModelFileError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MIN_FORMAT_VERSION",
    "decode_state",
    "encode_state",
    "load",
    "read_header",
    "save_model",
]

MAGIC = b"WBMODEL\0"
FORMAT_VERSION = 1
MIN_FORMAT_VERSION = 1  # oldest format version this workbench reads
_LENGTH = struct.Struct("<Q")
_TAG = "__workbench__"


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder + rename)."""
    from workbench import __version__

    buffer = io.BytesIO()
    fit_state = encode_state(model._fit_state())
    torch.save({"state_dict": model.state_dict(), "fit_state": fit_state}, buffer)
    payload = buffer.getvalue()
    header = {
        "format": "workbench-model",
        "format_version": FORMAT_VERSION,
        "workbench_version": __version__,
        "torch_version": torch.__version__,
        "model_class": type(model).__name__,
        "config": model.get_config(),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    head = json.dumps(header, sort_keys=True).encode()
    _atomic_write(Path(path), [MAGIC, _LENGTH.pack(len(head)), head, payload])


def _atomic_write(path: Path, chunks: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use what open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not possible on every platform or filesystem
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a saved model (no payload is read or checked)."""
    with open(path, "rb") as f:
        return _parse_header(f.read(), path)[0]


def load(path: str | os.PathLike) -> Any:
    """Load a model saved with ``model.save(path)``: parameters, buffers, configuration and
    the fit state (fitted data, memberships, variational state, traces) come back bit for bit.

    Raises
    ------
    ModelFileError
        The file is not a workbench model, is truncated or corrupted, has a format version
        this workbench does not read (newer, or below :data:`MIN_FORMAT_VERSION`), or names an
        unknown model class.
    FileNotFoundError
        ``path`` does not exist.
    """
    from workbench.models.base import Model

    with open(path, "rb") as f:
        data = f.read()
    header, payload = _parse_header(data, path)
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise ModelFileError(
            f"expected the checksum recorded in {path}, got a different one: the file is corrupted"
        )
    cls = Model.registry.get(header["model_class"])
    if cls is None:
        raise ModelFileError(
            f"expected a model class in {sorted(Model.registry)}, got {header['model_class']!r}"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        model = cls.from_config(header["config"])
        model.load_state_dict(state["state_dict"], strict=True)
        # absent from files written before it existed; empty for an unfitted model
        fit_state = decode_state(state["fit_state"]) if "fit_state" in state else {}
        if fit_state:
            model._restore_fit_state(fit_state)
    except Exception as err:  # anything short of a complete model is a file error
        raise ModelFileError(f"expected a loadable {cls.__name__} in {path}, got: {err}") from err
    return model


def _parse_header(data: bytes, path: Any) -> tuple[dict[str, Any], bytes]:
    if not data.startswith(MAGIC):
        raise ModelFileError(f"expected a workbench model file at {path}, got another file type")
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start:
        raise ModelFileError(f"expected a complete header in {path}, got a truncated file")
    (n,) = _LENGTH.unpack(data[len(MAGIC) : start])
    try:
        header = json.loads(data[start : start + n])
    except ValueError as err:
        raise ModelFileError(
            f"expected a JSON header in {path}, got a truncated or corrupted header"
        ) from err
    if not isinstance(header, dict) or header.get("format") != "workbench-model":
        raise ModelFileError(
            f"expected a workbench-model JSON header in {path}, got a corrupted or foreign header"
        )
    _check_version(header.get("format_version"), header.get("workbench_version"), path)
    missing = sorted({"model_class", "config", "payload_bytes", "payload_sha256"} - set(header))
    if missing:
        raise ModelFileError(f"expected header keys {missing} in {path}, got a corrupted header")
    payload = data[start + n :]
    if len(payload) != header["payload_bytes"]:
        raise ModelFileError(
            f"expected {header['payload_bytes']} payload bytes in {path}, got {len(payload)}: "
            "the file is truncated"
        )
    return header, payload


def _check_version(version: Any, saved_by: Any, path: Any) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(
            f"expected an integer format_version in the header of {path}, got {version!r}: the "
            "header is corrupted or was not written by workbench; save the model again with "
            "model.save(path)"
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"expected format_version <= {FORMAT_VERSION} in {path}, got {version} (saved by "
            f"workbench {saved_by}); upgrade workbench to load it"
        )
    if version < MIN_FORMAT_VERSION:
        raise ModelFileError(
            f"expected format_version >= {MIN_FORMAT_VERSION} in {path}, got {version}: format "
            f"version {version} is not supported (no release wrote it); refit the model and save "
            "it again with model.save(path)"
        )


# -- fit state: plain values, tensors and bytes that the weights-only unpickler reads ------------
def encode_state(value: Any) -> Any:
    """``value`` (nested dicts, lists, tuples, NamedTuples, tensors, numpy arrays and scalars,
    DataArrays, plain scalars) as tensors, bytes and plain containers, losslessly."""
    if _numpy(value):  # before the Python scalars: np.float64 and np.str_ subclass them
        return _encode_array(np.asarray(value), scalar=isinstance(value, np.generic))
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, xr.DataArray):
        coords = [(encode_state(n), _encode_variable(c.variable)) for n, c in value.coords.items()]
        return {_TAG: "DataArray", "name": encode_state(value.name), "coords": coords,
                "variable": _encode_variable(value.variable)}  # fmt: skip
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        kind = f"{type(value).__module__}:{type(value).__qualname__}"
        _named_tuple(kind)  # only workbench's own (loadable) NamedTuples
        return {_TAG: "NamedTuple", "type": kind, "fields": [encode_state(v) for v in value]}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [encode_state(v) for v in value]}
    if isinstance(value, list):
        return [encode_state(v) for v in value]
    if isinstance(value, dict):
        return {
            _TAG: "dict",
            "items": [(encode_state(k), encode_state(v)) for k, v in value.items()],
        }
    raise TypeError(f"expected fit state of savable types, got {type(value).__name__}")


def decode_state(value: Any) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TAG)
    if kind == "ndarray":
        return _decode_array(value)
    if kind == "DataArray":
        coords = {decode_state(n): _decode_variable(v) for n, v in value["coords"]}
        var = _decode_variable(value["variable"])
        return xr.DataArray(var, coords=coords, name=decode_state(value["name"]))
    if kind == "NamedTuple":
        return _named_tuple(value["type"])(*(decode_state(v) for v in value["fields"]))
    if kind == "tuple":
        return tuple(decode_state(v) for v in value["items"])
    if kind == "dict":
        return {decode_state(k): decode_state(v) for k, v in value["items"]}
    raise ValueError(f"expected an encoded fit state, got a dict tagged {kind!r}")


def _numpy(value: Any) -> bool:
    return isinstance(value, np.ndarray | np.generic)


def _encode_array(a: np.ndarray, scalar: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {_TAG: "ndarray", "shape": list(a.shape), "scalar": scalar}
    if a.dtype.kind == "O":
        return {**out, "dtype": "O", "items": [encode_state(v) for v in a.reshape(-1).tolist()]}
    if a.dtype.kind == "V":
        raise TypeError(f"expected numpy arrays of plain dtypes in the fit state, got {a.dtype}")
    return {**out, "dtype": a.dtype.str, "bytes": np.ascontiguousarray(a).tobytes()}


def _decode_array(value: dict[str, Any]) -> np.ndarray | np.generic:
    if value["dtype"] == "O":
        a = np.empty(len(value["items"]), dtype=object)
        a[:] = [decode_state(v) for v in value["items"]]
    else:
        a = np.frombuffer(value["bytes"], dtype=np.dtype(value["dtype"])).copy()
    a = a.reshape(value["shape"])
    return a[()] if value["scalar"] else a


def _encode_variable(var: xr.Variable) -> dict[str, Any]:
    return {"dims": [encode_state(d) for d in var.dims], "data": encode_state(var.values),
            "attrs": encode_state(dict(var.attrs))}  # fmt: skip


def _decode_variable(value: dict[str, Any]) -> xr.Variable:
    dims = tuple(decode_state(d) for d in value["dims"])
    return xr.Variable(dims, decode_state(value["data"]), decode_state(value["attrs"]))


def _named_tuple(kind: str) -> type:
    """The NamedTuple class ``module:qualname``, from workbench's own modules only."""
    module, _, name = kind.partition(":")
    if module.split(".")[0] != "workbench" or "<" in name:
        raise TypeError(f"expected a workbench NamedTuple in the fit state, got {kind!r}")
    cls = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"expected a NamedTuple class, got {kind!r}")
    return cls

"""Save and load models as one self-describing, checksummed file, written atomically.

File layout::

    b"WBMODEL\\0"                  8-byte magic
    <uint64 little-endian>         length of the JSON header
    <JSON header>                  format, versions, model class, config, payload size + SHA-256
    <payload>                      torch.save({"state_dict": ...}); loaded with weights_only=True

The header is plain text at the start of the file (``head -c 2000 model.wbm`` shows it). Loading
checks the magic, format version, payload length and checksum before building anything, so a
truncated, corrupted or foreign file raises :class:`~workbench.errors.ModelFileError` and never
returns a half-built model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch

from workbench.errors import ModelFileError

__all__ = ["FORMAT_VERSION", "MAGIC", "load", "read_header", "save_model"]

MAGIC = b"WBMODEL\0"
FORMAT_VERSION = 1
_LENGTH = struct.Struct("<Q")


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder + rename)."""
    from workbench import __version__

    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict()}, buffer)
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
    """Load a model saved with ``model.save(path)``.

    Raises
    ------
    ModelFileError
        The file is not a workbench model, is truncated or corrupted, comes from a newer format
        version, or names an unknown model class.
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
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"expected format_version <= {FORMAT_VERSION} in {path}, got {version!r} "
            f"(saved by workbench {header.get('workbench_version')}; upgrade workbench)"
        )
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

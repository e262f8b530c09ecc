"""The grader's pipe protocol: length-prefixed frames, and a pickle-free codec for what the worker sends back.

Every reply is at most `MAX_MESSAGE_BYTES`, its JSON header at most `MAX_HEADER_BYTES` (1 MiB, so parsing it
takes milliseconds and little memory, whatever a forged reply claims).

Parent -> worker messages are pickles (the parent is trusted; the worker only ever unpickles what the parent
wrote). Worker -> parent messages are *untrusted*: they are encoded as a JSON header plus raw byte buffers for
tensors and arrays, and `unpack` accepts only None, bool, int, float, str, lists, tuples, str-keyed dicts,
torch dtypes, tensors and numeric NumPy arrays of whitelisted dtypes, within size limits. Anything else the
student's code returns arrives as a `StudentObject` that only describes itself. Nothing the worker sends can
run code in the parent.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

__all__ = ["MAX_MESSAGE_BYTES", "MAX_HEADER_BYTES", "ProtocolError", "ChannelClosed", "ChannelTimeout", "StudentObject",
           "send_frame", "send_frame_until", "recv_frame", "recv_frame_until", "pack", "unpack"]

MAX_MESSAGE_BYTES = 64 * 2**20  # a whole reply: the JSON header and the raw buffers of its tensors
MAX_HEADER_BYTES = 2**20  # the JSON part of a reply (structure, numbers, strings), parsed within the deadline
_MAX_STR = 100_000
_MAX_ITEMS = 100_000
_MAX_DEPTH = 32
_HEADER = struct.Struct(">Q")

_TORCH_DTYPES = ["float16", "bfloat16", "float32", "float64", "complex64", "complex128", "uint8", "int8", "int16",
                 "int32", "int64", "bool"]


class ProtocolError(Exception):
    """The worker sent something that is not a valid message."""


class ChannelClosed(Exception):
    """The other end of the pipe is gone (the worker exited or was killed)."""


class ChannelTimeout(Exception):
    """No complete message arrived before the deadline."""


class StudentObject:
    """A value of a type the grader does not bring back from the student's process; it can only describe itself.

    Using it like a tensor (``.shape``, arithmetic) fails with a message for the student."""

    _dlcourse_student_object = True
    __slots__ = ("type_name", "text")

    def __init__(self, type_name: str, text: str):
        self.type_name = str(type_name)[:200]
        self.text = str(text)[:200]

    def describe(self) -> str:
        return f"a {self.type_name} object ({self.text})" if self.text else f"a {self.type_name} object"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def __getattr__(self, name: str) -> Any:
        from .checks import CheckFailed

        raise CheckFailed(f"the test needed a tensor but got {self.describe()} (it has no attribute {name!r}).")


# --------------------------------------------------------------------------------------------------------------
# frames


def send_frame(fd: int, payload: bytes) -> None:
    data = _HEADER.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send_frame_until(fd: int, payload: bytes, deadline: float) -> None:
    """Write one frame before ``deadline`` (the parent's side: a worker that stops reading cannot block us)."""
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ChannelTimeout()
        _, ready, _ = select.select([], [fd], [], left)
        if not ready:
            raise ChannelTimeout()
        try:
            n = os.write(fd, data[: 1 << 16])
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise ChannelClosed() from None
        data = data[n:]


def _read_exact_blocking(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def recv_frame(fd: int) -> bytes | None:
    """Blocking read of one frame (the worker's side); None at end of file."""
    head = _read_exact_blocking(fd, _HEADER.size)
    if head is None:
        return None
    (n,) = _HEADER.unpack(head)
    return _read_exact_blocking(fd, n) if n else b""


def recv_frame_until(fd: int, deadline: float, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """Read one frame before ``deadline`` (time.monotonic); raises ChannelTimeout, ChannelClosed or ProtocolError."""

    def read_exact(n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise ChannelTimeout()
            b = os.read(fd, min(n, 1 << 20))
            if not b:
                raise ChannelClosed()
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    (n,) = _HEADER.unpack(read_exact(_HEADER.size))
    if n > max_bytes:
        raise ProtocolError(f"a message of {n} bytes is larger than the limit of {max_bytes} bytes")
    return read_exact(n)


# --------------------------------------------------------------------------------------------------------------
# codec: worker side


def _safe_repr(v: Any) -> str:
    try:
        return repr(v)[:200]
    except BaseException:  # noqa: BLE001 - a student's __repr__ may raise anything
        return ""


def pack(msg: dict) -> bytes:
    """Encode a message whose values may hold tensors, arrays and plain Python data (the worker's side)."""
    import torch

    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    buffers: list[bytes] = []
    budget = [_MAX_ITEMS]

    def enc(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            return {"t": "object", "type": "too large or too deeply nested", "repr": ""}
        if v is None or type(v) in (bool, int, float):
            return v
        if type(v) is str:
            return v[:_MAX_STR]
        if isinstance(v, torch.Tensor):
            try:
                x = v.detach()
                if x.layout != torch.strided:
                    x = x.to_dense()
                x = x.as_subclass(torch.Tensor).resolve_conj().resolve_neg().cpu().contiguous()
                dtype = str(x.dtype).replace("torch.", "")
                if dtype not in _TORCH_DTYPES:
                    return {"t": "object", "type": f"tensor of dtype {x.dtype}", "repr": ""}
                raw = x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b""
                buffers.append(raw)
                return {"t": "tensor", "i": len(buffers) - 1, "dtype": dtype, "shape": list(x.shape),
                        "requires_grad": bool(v.requires_grad)}
            except Exception as exc:  # noqa: BLE001
                return {"t": "object", "type": "tensor that could not be read", "repr": str(exc)[:200]}
        if np is not None and isinstance(v, np.ndarray):
            if v.dtype.kind not in "biufc":
                return {"t": "object", "type": f"numpy array of dtype {v.dtype}", "repr": _safe_repr(v)}
            a = np.ascontiguousarray(v)
            buffers.append(a.tobytes())
            return {"t": "ndarray", "i": len(buffers) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}
        if np is not None and isinstance(v, np.generic) and v.dtype.kind in "biufc":
            return enc(v.item(), depth + 1)
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return float(v)
        if isinstance(v, str):
            return str(v)[:_MAX_STR]
        if isinstance(v, torch.dtype):
            return {"t": "dtype", "name": str(v).replace("torch.", "")}
        if isinstance(v, tuple):
            return {"t": "tuple", "items": [enc(x, depth + 1) for x in v]}
        if isinstance(v, list):
            return {"t": "list", "items": [enc(x, depth + 1) for x in v]}
        if isinstance(v, dict) and all(type(k) is str for k in v):
            return {"t": "dict", "items": [[k, enc(x, depth + 1)] for k, x in v.items()]}
        return {"t": "object", "type": type(v).__qualname__, "repr": _safe_repr(v)}

    encoded = {k: enc(v, 0) for k, v in msg.items()}
    header = json.dumps({"msg": encoded, "nbuf": len(buffers)}).encode()
    if len(header) > MAX_HEADER_BYTES:  # e.g. a Python list of 10^5 numbers: say what it was instead
        for k, v in msg.items():
            if len(json.dumps(encoded[k])) > MAX_HEADER_BYTES // 2:
                encoded[k] = {"t": "object", "type": f"{type(v).__qualname__} too large to send back",
                              "repr": f"{len(v)} items" if isinstance(v, (list, tuple, dict)) else ""}
        header = json.dumps({"msg": encoded, "nbuf": len(buffers)}).encode()
    parts = [_HEADER.pack(len(header)), header]
    for b in buffers:
        parts += [_HEADER.pack(len(b)), b]
    return b"".join(parts)


# --------------------------------------------------------------------------------------------------------------
# codec: parent side (untrusted input)


def unpack(data: bytes) -> dict:
    """Decode a worker's message, accepting only the safe types; raises ProtocolError on anything else."""
    import numpy as np
    import torch

    try:
        pos = 0

        def take() -> bytes:
            nonlocal pos
            if pos + _HEADER.size > len(data):
                raise ProtocolError("truncated message")
            (n,) = _HEADER.unpack_from(data, pos)
            pos += _HEADER.size
            if pos + n > len(data):
                raise ProtocolError("truncated message")
            out = data[pos:pos + n]
            pos += n
            return out

        head = take()
        if len(head) > MAX_HEADER_BYTES:
            raise ProtocolError(f"a reply's header of {len(head)} bytes is larger than the limit of "
                                f"{MAX_HEADER_BYTES} bytes")
        header = json.loads(head.decode("utf-8"))
        if not isinstance(header, dict) or not isinstance(header.get("msg"), dict):
            raise ProtocolError("bad header")
        nbuf = header.get("nbuf")
        if type(nbuf) is not int or nbuf < 0 or nbuf > _MAX_ITEMS:
            raise ProtocolError("bad buffer count")
        buffers = [take() for _ in range(nbuf)]
        if pos != len(data):
            raise ProtocolError("trailing bytes")
        count = [0]

        def dec(v: Any, depth: int) -> Any:
            count[0] += 1
            if count[0] > _MAX_ITEMS or depth > _MAX_DEPTH:
                raise ProtocolError("message too large or too deeply nested")
            if v is None or type(v) in (bool, int, float, str):
                return v
            if type(v) is not dict or type(v.get("t")) is not str:
                raise ProtocolError("unexpected value")
            t = v["t"]
            if t in ("list", "tuple"):
                items = v.get("items")
                if type(items) is not list:
                    raise ProtocolError("bad sequence")
                out = [dec(x, depth + 1) for x in items]
                return out if t == "list" else tuple(out)
            if t == "dict":
                items = v.get("items")
                if type(items) is not list or not all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in items):
                    raise ProtocolError("bad dict")
                return {k: dec(x, depth + 1) for k, x in items}
            if t == "dtype":
                name = v.get("name")
                if name not in _TORCH_DTYPES:
                    raise ProtocolError("bad dtype")
                return getattr(torch, name)
            if t in ("tensor", "ndarray"):
                i, shape = v.get("i"), v.get("shape")
                if type(i) is not int or not 0 <= i < len(buffers):
                    raise ProtocolError("bad buffer index")
                if type(shape) is not list or not all(type(s) is int and 0 <= s < 2**40 for s in shape):
                    raise ProtocolError("bad shape")
                numel = 1
                for s in shape:
                    numel *= s
                raw = buffers[i]
                if t == "tensor":
                    name = v.get("dtype")
                    if name not in _TORCH_DTYPES:
                        raise ProtocolError("bad dtype")
                    dtype = getattr(torch, name)
                    itemsize = torch.empty((), dtype=dtype).element_size()
                    if numel * itemsize != len(raw):
                        raise ProtocolError("tensor size does not match its data")
                    if numel == 0:
                        return torch.empty(shape, dtype=dtype)
                    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
                    return flat.reshape(shape).clone()
                dt = np.dtype(str(v.get("dtype")))
                if dt.kind not in "biufc":
                    raise ProtocolError("bad array dtype")
                if numel * dt.itemsize != len(raw):
                    raise ProtocolError("array size does not match its data")
                return np.frombuffer(raw, dtype=dt).reshape(shape).copy()
            if t == "object":
                return StudentObject(str(v.get("type", "?")), str(v.get("repr", "")))
            raise ProtocolError(f"unknown value tag {t[:40]!r}")

        return {str(k): dec(x, 0) for k, x in header["msg"].items()}
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, UnicodeDecodeError, RuntimeError, OverflowError) as exc:
        raise ProtocolError(f"malformed message ({type(exc).__name__})") from None

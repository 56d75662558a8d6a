"""The model file: one integer :class:`~spikeforge.golden.integer.Network` plus metadata.

A model file is a single ``.safetensors`` file.  The tensors are stored with
safetensors (never pickle); the description of the network is a JSON document
stored as the one entry ``"spikeforge"`` of the safetensors header's
``__metadata__`` (a str -> str map; no other entry is allowed).

Tensors
-------
Every tensor is stored as **int64** (safetensors dtype ``I64``, little-endian)
and loaded back as ``torch.int64``.  int64 is used, not int32, because the
integer model allows bit widths up to 48, so int32 cannot hold every legal
value; model files are small, so the extra bytes do not matter.  A file with a
tensor of any other dtype (float, int32, ...) is rejected.

The writer names tensors by position: ``layers.<i>.alpha``, ``layers.<i>.theta``,
``layers.<i>.bias``, ``layers.<i>.inputs.<j>.weight`` (LIF layer ``i``, input
``j``), ``layers.<i>.decay`` and ``layers.<i>.<k|v|q>`` (constant operands of
SSM layer ``i``).  A reader does not rely on these names: the JSON names each
tensor explicitly.  Every tensor in the file must be referenced exactly once by
the JSON, and every referenced tensor must be in the file.

The JSON document, the checks of its structure and types, and the digests are
:mod:`.modeldoc`.

Writing is atomic: the file is written to a temporary file in the same
directory, flushed with fsync and moved over the target with ``os.replace``, so
a failed save never leaves a half-written or clobbered file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from typing import Any

import safetensors.torch

from .integer import Network, NetworkError
from .modeldoc import (
    FORMAT_VERSION,
    METADATA_KEY,
    DocumentError,
    canonical_json,
    check_document,
    check_json_value,
    content_digest,
    decode_network,
    encode_network,
    uses_version_2,
)

__all__ = ["ModelFileError", "save_model", "load_model"]


MAX_FILE_BYTES = 1 << 28
"""The largest model file read (256 MiB: 32 M int64 values, 256 times what the largest
board holds; loading one takes about three times its size in memory)."""

MAX_HEADER_BYTES = 1 << 23
"""The largest safetensors header read (8 MiB; safetensors itself allows 100 MB, whose
JSON can take gigabytes once parsed into Python objects)."""


MAX_DEPTH = 64
"""The deepest nesting of lists and objects the metadata may have."""


def _depth(obj) -> int:
    """How deep lists and objects nest in ``obj`` (iteratively)."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                  else item))
    return deepest


class ModelFileError(ValueError):
    """A model file (or a network / meta to be saved) that breaks the model file format."""


def save_model(path: str | os.PathLike, net: Network, meta: dict) -> None:
    """Write ``net`` and ``meta`` to the model file ``path`` (atomically).

    Everything is checked before anything is written: the network (its own
    validation plus the value types the file stores) and ``meta`` (a dict of
    plain JSON: str keys; dict, list, str, int, finite float, bool, None; no
    tuples, so that it loads back equal).  A refusal raises
    :class:`ModelFileError` and leaves the file system untouched; an OS error
    while writing propagates and leaves any existing file at ``path`` intact and
    no temporary file behind.
    """
    name = os.fspath(path)
    try:
        netdoc, tensors = encode_network(net)
    except NetworkError as exc:
        raise ModelFileError(f"{name}: cannot save an invalid network: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name}: meta must be a dict, not {type(meta).__name__}")
    try:
        check_json_value(meta, "meta")
    except DocumentError as exc:
        raise ModelFileError(f"{name}: cannot save: {exc}") from exc
    version = FORMAT_VERSION if uses_version_2(netdoc) else 1
    doc = {"format_version": version, **netdoc, "meta": json.loads(canonical_json(meta))}
    doc["digest"] = content_digest(doc, tensors)
    try:  # a self-check: what is written must be loadable
        refs = check_document(doc)
    except DocumentError as exc:  # pragma: no cover - encode_network produces valid documents
        raise ModelFileError(f"{name}: internal error, invalid document: {exc}") from exc
    assert sorted(key for _, key in refs) == sorted(tensors)
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: canonical_json(doc).decode()})
    _write_atomic(name, data)


def _write_atomic(name: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(name))
    try:
        mode = os.stat(name).st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(name)}.", suffix=".tmp",
                               dir=directory)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename durable; not possible on every platform
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise DocumentError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constants(word: str) -> Any:
    raise DocumentError(f"{word} is not allowed")


_NOT_SAFETENSORS = "not a valid safetensors file (truncated or corrupt?): "
_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
           "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
           "BF16": "bfloat16", "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn",
           "F8_E5M2": "float8_e5m2"}
"""safetensors' dtype names as torch's (for the messages)."""


def _read_header(f, size: int, fail) -> dict:
    """The safetensors header of the open file ``f`` (``size`` bytes), parsed with
    duplicate keys refused (safetensors silently keeps the last one)."""
    length = f.read(8)
    if len(length) < 8:
        fail(f"{_NOT_SAFETENSORS}{size} bytes, too short for the 8-byte header length")
    n = int.from_bytes(length, "little")
    if n > MAX_HEADER_BYTES:
        fail(f"{_NOT_SAFETENSORS}a header of {n} bytes, more than the {MAX_HEADER_BYTES} a "
             f"model file's header may have")
    if n > size - 8:
        fail(f"{_NOT_SAFETENSORS}a header of {n} bytes runs past the end of the file "
             f"({size} bytes)")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except DocumentError as exc:
        fail(f"not a valid safetensors file: header: {exc}", exc)
    except ValueError as exc:  # (UnicodeDecodeError too)
        fail(f"{_NOT_SAFETENSORS}header: {exc}", exc)
    except RecursionError:
        fail(f"{_NOT_SAFETENSORS}header: JSON nested too deeply")
    if not isinstance(header, dict):
        fail(f"{_NOT_SAFETENSORS}the header is not a JSON object")
    return header


def _read_document(header: dict, fail) -> tuple[dict, list[tuple[str, str]]]:
    """The checked JSON document of the header's metadata and its tensor references."""
    entries = header.get("__metadata__")
    if not isinstance(entries, dict) or METADATA_KEY not in entries:
        fail(f"no {METADATA_KEY!r} entry in the safetensors metadata "
             f"(not a spikeforge model file)")
    extra = sorted(k for k in entries if k != METADATA_KEY)
    if extra:
        fail(f"unexpected safetensors metadata entries {extra}; only {METADATA_KEY!r} "
             f"is allowed")
    text = entries[METADATA_KEY]
    if not isinstance(text, str):
        fail(f"{_NOT_SAFETENSORS}the {METADATA_KEY!r} metadata entry is not a string")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (DocumentError, ValueError) as exc:
        fail(f"the {METADATA_KEY!r} metadata is not valid JSON: {exc}", exc)
    except RecursionError:
        fail(f"the {METADATA_KEY!r} metadata is nested too deeply")
    if _depth(doc) > MAX_DEPTH:
        fail(f"the {METADATA_KEY!r} metadata is nested more than {MAX_DEPTH} deep")
    try:
        refs = check_document(doc)
        check_json_value(doc["meta"], "meta")  # no number out of float range (1e999)
    except DocumentError as exc:
        fail(str(exc), exc)
    return doc, refs


def _check_references(header: dict, refs: list[tuple[str, str]], fail) -> None:
    """Every tensor the document names is in the header once, every tensor in the
    header is named, and each one is int64."""
    stored = [k for k in header if k != "__metadata__"]
    first: dict[str, str] = {}
    for where, key in refs:
        if key in first:
            fail(f"tensor {key!r} is referenced twice ({first[key]} and {where})")
        first[key] = where
        if key not in header or key == "__metadata__":
            fail(f"tensor {key!r} ({where}) is not in the file")
    extra = sorted(k for k in stored if k not in first)
    if extra:
        s = "s" if len(extra) > 1 else ""
        fail(f"tensor{s} {', '.join(repr(k) for k in extra)} in the file "
             f"{'are' if s else 'is'} not referenced by the metadata")
    for key in sorted(stored):
        dtype = header[key].get("dtype") if isinstance(header[key], dict) else None
        if isinstance(dtype, str) and dtype != "I64":  # (a malformed entry: safetensors names it)
            fail(f"tensor {key!r} has dtype {_DTYPES.get(dtype, dtype)}; model tensors must "
                 f"be int64")


def load_model(path: str | os.PathLike) -> tuple[Network, dict]:
    """Read, check and return ``(network, meta)`` from the model file ``path``.

    Any problem raises :class:`ModelFileError` naming the file and the problem.
    Only a regular file of at most :data:`MAX_FILE_BYTES` is opened; its header (at
    most :data:`MAX_HEADER_BYTES`), the JSON document and the tensor names and dtypes
    are checked before the tensor data are read.
    """
    name = os.fspath(path)

    def fail(message: str, cause: BaseException | None = None):
        raise ModelFileError(f"{name}: {message}") from cause

    try:
        info = os.stat(name)  # (follows a symlink: /dev/zero is no model file)
        if stat.S_ISDIR(info.st_mode):
            fail("is a directory, not a model file")
        if not stat.S_ISREG(info.st_mode):
            fail("not a regular file (a device, a pipe, ...)")
        if info.st_size > MAX_FILE_BYTES:
            fail(f"{info.st_size} bytes, more than the {MAX_FILE_BYTES} a model file may have")
        with open(name, "rb") as f:
            header = _read_header(f, info.st_size, fail)
            doc, refs = _read_document(header, fail)
            _check_references(header, refs, fail)
            f.seek(0)
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        fail("no such model file", exc)
    except OSError as exc:
        fail(f"cannot read the model file ({exc.strerror or exc})", exc)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # SafetensorError, or a dtype torch cannot build
        fail(f"{_NOT_SAFETENSORS}{exc}", exc)
    del data  # the tensors hold their own copies
    computed = content_digest(doc, tensors)
    if computed != doc["digest"]:
        fail(f"digest mismatch (stored {doc['digest']}, computed {computed}): the file is "
             f"corrupt or was edited")
    try:
        net = decode_network(doc, tensors)
    except NetworkError as exc:
        fail(f"invalid network: {exc}", exc)
    return net, doc["meta"]

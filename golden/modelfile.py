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

The JSON document (format_version 1)
------------------------------------
An object with exactly these fields (a missing or an unknown field, at any
level, is an error; integers are JSON integers, never booleans or floats)::

    format_version  integer, 1
    format          object: exactly the fields of ``Format``: w_bits, u_bits,
                    frac_bits, in_bits, s_bits, y_bits, acc_bits (integers)
    input_size      integer
    input_kind      string ("spike" or "int")
    output          string: the name of the output layer
    layers          list of layer objects, in run order (see below)
    meta            object: free-form, supplied by the caller (task name, encoder,
                    readout rule, training info, ...); any JSON, no NaN/Infinity
    digest          string: 64 lowercase hex digits, see "Digest"

A LIF layer object::

    kind     "lif"
    name     string
    size     integer
    reset    string ("subtract", "zero" or "none")
    v_reset  integer
    spiking  boolean
    alpha, theta, bias   tensor keys (strings): int64 vectors of length size
    inputs   list of {"source": string, "recurrent": boolean, "weight": tensor key}
             (weight: int64 [size, source size]); "input" names the network input

An SSM layer object::

    kind            "ssm"
    name            string
    n, m            integers
    mode            string ("fixed" or "selective")
    gate            string or null (the gate layer of selective mode)
    gate_recurrent  boolean
    y_shift         integer
    decay           tensor key: int64 [n] (fixed) or [2**gate size, n] (selective)
    k, v, q         each an operand object, either {"source": string,
                    "recurrent": boolean} or {"const": tensor key} (an int64
                    vector: length n for k and q, m for v)

A constant operand has no ``recurrent`` flag (it is meaningless there), so an
``Operand(const=..., recurrent=True)`` loads back with ``recurrent=False``.

Values (layer names, reset and decay modes, shapes, ranges, sources, ...) are
checked by ``Network``'s own validation when the file is loaded; a failure is
reported as a :class:`ModelFileError` carrying the ``NetworkError`` message.

Digest
------
``digest`` is the SHA-256 (hex) of, in order:

1. the bytes ``b"spikeforge-model-file\\n"``;
2. the canonical JSON of the document without its ``digest`` field: UTF-8 of
   ``json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
   allow_nan=False)``;
3. for every tensor, keys in sorted (code point) order: an 8-byte little-endian
   length, then that many bytes of the canonical JSON
   ``{"dtype": "int64", "key": key, "shape": [...]}``, then the tensor's values
   as little-endian int64 bytes in row-major order.

So any change to a tensor value, a shape, a tensor key or a JSON value is
detected; reformatting the JSON (whitespace, key order) is not a change.

:func:`model_digest` is a short (16 hex digits) hash of the network alone (no
``meta``, no file framing), computed the same way over the network part of the
document (``format``, ``input_size``, ``input_kind``, ``output``, ``layers``)
and its tensors, with the prefix ``b"spikeforge-network\\n"``.  It is the same
for a network before saving and after loading.

Writing is atomic: the file is written to a temporary file in the same
directory, flushed with fsync and moved over the target with ``os.replace``, so
a failed save never leaves a half-written or clobbered file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
from typing import Any

import safetensors.torch
import torch

from .integer import (
    Format,
    LIFLayer,
    Network,
    NetworkError,
    Operand,
    Projection,
    SSMLayer,
)

__all__ = ["FORMAT_VERSION", "METADATA_KEY", "ModelFileError", "save_model", "load_model",
           "model_digest"]

FORMAT_VERSION = 1
METADATA_KEY = "spikeforge"

_FILE_PREFIX = b"spikeforge-model-file\n"
_NETWORK_PREFIX = b"spikeforge-network\n"
_NETWORK_FIELDS = ("format", "input_size", "input_kind", "output", "layers")
_TOP_FIELDS = ("format_version", *_NETWORK_FIELDS, "meta", "digest")
_FORMAT_FIELDS = tuple(f.name for f in dataclasses.fields(Format))
_LIF_FIELDS = ("kind", "name", "size", "reset", "v_reset", "spiking", "alpha", "theta", "bias",
               "inputs")
_SSM_FIELDS = ("kind", "name", "n", "m", "mode", "gate", "gate_recurrent", "y_shift", "decay",
               "k", "v", "q")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ModelFileError(ValueError):
    """A model file (or a network / meta to be saved) that breaks the model file format."""


class _Problem(ValueError):
    """A format problem, without the file name (wrapped into ModelFileError)."""


# ------------------------------------------------------------------ helpers
def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("utf-8")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().astype("<i8", copy=False).tobytes()


def _hash_tensors(h, tensors: dict[str, torch.Tensor]) -> None:
    for key in sorted(tensors):
        t = tensors[key]
        head = _canonical_json({"dtype": "int64", "key": key, "shape": list(t.shape)})
        h.update(len(head).to_bytes(8, "little"))
        h.update(head)
        h.update(_tensor_bytes(t))


def _content_digest(doc: dict, tensors: dict[str, torch.Tensor]) -> str:
    """The file digest: SHA-256 over the JSON without ``digest`` and the tensors."""
    h = hashlib.sha256(_FILE_PREFIX)
    h.update(_canonical_json({k: v for k, v in doc.items() if k != "digest"}))
    _hash_tensors(h, tensors)
    return h.hexdigest()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------ meta (JSON check)
def _check_json_value(value: Any, where: str) -> None:
    """Raise _Problem unless ``value`` is plain JSON (round-trips unchanged)."""
    if value is None or isinstance(value, (bool, str)) or _is_int(value):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Problem(f"{where} is {value!r}; JSON has no NaN or Infinity")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Problem(f"{where} has a non-string key {key!r}; JSON keys are strings")
            _check_json_value(item, f"{where}[{key!r}]")
        return
    raise _Problem(f"{where} is a {type(value).__name__} ({value!r}), which is not JSON "
                   f"(use dict, list, str, int, float, bool or None)")


# ------------------------------------------------------------- schema checks
def _fields(obj: Any, where: str, expected: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise _Problem(f"{where} must be an object, not {_type_name(obj)}")
    missing = [k for k in expected if k not in obj]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise _Problem(f"{where}: missing field{s} " + ", ".join(repr(k) for k in missing))
    unknown = sorted(k for k in obj if k not in expected)
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise _Problem(f"{where}: unknown field{s} " + ", ".join(repr(k) for k in unknown))


def _want(obj: dict, key: str, where: str, kind: str) -> Any:
    value = obj[key]
    ok = {
        "int": _is_int(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "str|null": value is None or isinstance(value, str),
        "key": isinstance(value, str) and value != "",
        "list": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]
    if not ok:
        words = {"int": "an integer", "bool": "a boolean", "str": "a string",
                 "str|null": "a string or null", "key": "a tensor key (a non-empty string)",
                 "list": "a list", "object": "an object"}[kind]
        raise _Problem(f"{where}.{key} must be {words}, not {_type_name(value)} ({value!r})")
    return value


def _check_operand(op: Any, where: str, refs: list[tuple[str, str]]) -> None:
    if isinstance(op, dict) and "const" in op:
        _fields(op, where, ("const",))
        refs.append((f"{where}.const", _want(op, "const", where, "key")))
    else:
        _fields(op, where, ("source", "recurrent"))
        _want(op, "source", where, "str")
        _want(op, "recurrent", where, "bool")


def _check_layer(layer: Any, where: str, refs: list[tuple[str, str]]) -> None:
    if not isinstance(layer, dict):
        raise _Problem(f"{where} must be an object, not {_type_name(layer)}")
    if "kind" not in layer:
        raise _Problem(f"{where}: missing field 'kind'")
    kind = layer["kind"]
    if kind == "lif":
        _fields(layer, where, _LIF_FIELDS)
        _want(layer, "name", where, "str")
        _want(layer, "size", where, "int")
        _want(layer, "reset", where, "str")
        _want(layer, "v_reset", where, "int")
        _want(layer, "spiking", where, "bool")
        for what in ("alpha", "theta", "bias"):
            refs.append((f"{where}.{what}", _want(layer, what, where, "key")))
        for j, proj in enumerate(_want(layer, "inputs", where, "list")):
            pw = f"{where}.inputs[{j}]"
            _fields(proj, pw, ("source", "recurrent", "weight"))
            _want(proj, "source", pw, "str")
            _want(proj, "recurrent", pw, "bool")
            refs.append((f"{pw}.weight", _want(proj, "weight", pw, "key")))
    elif kind == "ssm":
        _fields(layer, where, _SSM_FIELDS)
        _want(layer, "name", where, "str")
        _want(layer, "n", where, "int")
        _want(layer, "m", where, "int")
        _want(layer, "mode", where, "str")
        _want(layer, "gate", where, "str|null")
        _want(layer, "gate_recurrent", where, "bool")
        _want(layer, "y_shift", where, "int")
        refs.append((f"{where}.decay", _want(layer, "decay", where, "key")))
        for what in ("k", "v", "q"):
            _check_operand(layer[what], f"{where}.{what}", refs)
    else:
        raise _Problem(f"{where}.kind must be 'lif' or 'ssm', not {kind!r}")


def _check_document(doc: Any) -> list[tuple[str, str]]:
    """Check the JSON document's structure and types; return its tensor references
    as ``(where, key)`` in document order."""
    if not isinstance(doc, dict):
        raise _Problem(f"the {METADATA_KEY!r} metadata must be a JSON object, "
                       f"not {_type_name(doc)}")
    if "format_version" not in doc:
        raise _Problem("missing field 'format_version'")
    version = doc["format_version"]
    if not _is_int(version):
        raise _Problem(f"format_version must be an integer, not {_type_name(version)} "
                       f"({version!r})")
    if version != FORMAT_VERSION:
        raise _Problem(f"unsupported format_version {version} (this reader supports "
                       f"{FORMAT_VERSION})")
    _fields(doc, "document", _TOP_FIELDS)
    fmt = _want(doc, "format", "document", "object")
    _fields(fmt, "format", _FORMAT_FIELDS)
    for name in _FORMAT_FIELDS:
        _want(fmt, name, "format", "int")
    _want(doc, "input_size", "document", "int")
    _want(doc, "input_kind", "document", "str")
    _want(doc, "output", "document", "str")
    _want(doc, "meta", "document", "object")
    digest = _want(doc, "digest", "document", "str")
    if not _HEX64.fullmatch(digest):
        raise _Problem(f"digest must be 64 lowercase hex digits, not {digest!r}")
    refs: list[tuple[str, str]] = []
    for i, layer in enumerate(_want(doc, "layers", "document", "list")):
        _check_layer(layer, f"layers[{i}]", refs)
    return refs


# ------------------------------------------------------------ encode / decode
def _encode(net: Network) -> tuple[dict, dict[str, torch.Tensor]]:
    """The network part of the document and the tensors (int64, owning their memory).

    Raises NetworkError for a network that is invalid or holds values the file
    cannot represent (e.g. a float ``v_reset``).
    """
    if not isinstance(net, Network):
        raise NetworkError(f"expected a Network, not {type(net).__name__}")
    net.validate()
    tensors: dict[str, torch.Tensor] = {}

    def put(key: str, t: torch.Tensor) -> str:
        tensors[key] = t.detach().cpu().to(torch.int64).contiguous().clone()
        return key

    def need(value: Any, ok: bool, owner: str, what: str, words: str) -> Any:
        if not ok:
            raise NetworkError(f"{owner}: {what} must be {words}, not {value!r}")
        return value

    def need_int(value, owner, what):
        return need(value, _is_int(value), owner, what, "an integer")

    def need_bool(value, owner, what):
        return need(value, isinstance(value, bool), owner, what, "a boolean")

    layers = []
    for i, layer in enumerate(net.layers):
        owner = f"layer {layer.name!r}"
        p = f"layers.{i}"
        if layer.kind == "lif":
            inputs = []
            for j, proj in enumerate(layer.inputs):
                inputs.append({
                    "source": proj.source,
                    "recurrent": need_bool(proj.recurrent, owner,
                                           f"recurrent of the input from {proj.source!r}"),
                    "weight": put(f"{p}.inputs.{j}.weight", proj.weight),
                })
            layers.append({
                "kind": "lif",
                "name": layer.name,
                "size": need_int(layer.size, owner, "size"),
                "reset": layer.reset,
                "v_reset": need_int(layer.v_reset, owner, "v_reset"),
                "spiking": need_bool(layer.spiking, owner, "spiking"),
                "alpha": put(f"{p}.alpha", layer.alpha),
                "theta": put(f"{p}.theta", layer.theta),
                "bias": put(f"{p}.bias", layer.bias),
                "inputs": inputs,
            })
        else:
            entry = {
                "kind": "ssm",
                "name": layer.name,
                "n": need_int(layer.n, owner, "n"),
                "m": need_int(layer.m, owner, "m"),
                "mode": layer.mode,
                "gate": layer.gate,
                "gate_recurrent": need_bool(layer.gate_recurrent, owner, "gate_recurrent"),
                "y_shift": need_int(layer.y_shift, owner, "y_shift"),
                "decay": put(f"{p}.decay", layer.decay),
            }
            for what, op in layer.operands().items():
                if op.is_const:
                    entry[what] = {"const": put(f"{p}.{what}", op.const)}
                else:
                    entry[what] = {"source": op.source,
                                   "recurrent": need_bool(op.recurrent, owner,
                                                          f"recurrent of operand {what}")}
            layers.append(entry)
    doc = {
        "format": net.fmt.to_dict(),
        "input_size": need_int(net.input_size, "network", "input_size"),
        "input_kind": net.input_kind,
        "output": net.output,
        "layers": layers,
    }
    return doc, tensors


def _decode(doc: dict, tensors: dict[str, torch.Tensor]) -> Network:
    """Build (and so validate) the Network of a structurally checked document."""
    layers = []
    for entry in doc["layers"]:
        if entry["kind"] == "lif":
            layers.append(LIFLayer(
                name=entry["name"],
                size=entry["size"],
                alpha=tensors[entry["alpha"]],
                theta=tensors[entry["theta"]],
                bias=tensors[entry["bias"]],
                inputs=[Projection(source=p["source"], weight=tensors[p["weight"]],
                                   recurrent=p["recurrent"]) for p in entry["inputs"]],
                reset=entry["reset"],
                v_reset=entry["v_reset"],
                spiking=entry["spiking"],
            ))
        else:
            ops = {}
            for what in ("k", "v", "q"):
                op = entry[what]
                if "const" in op:
                    ops[what] = Operand(const=tensors[op["const"]])
                else:
                    ops[what] = Operand(source=op["source"], recurrent=op["recurrent"])
            layers.append(SSMLayer(
                name=entry["name"], n=entry["n"], m=entry["m"], **ops,
                decay=tensors[entry["decay"]], mode=entry["mode"], gate=entry["gate"],
                gate_recurrent=entry["gate_recurrent"], y_shift=entry["y_shift"],
            ))
    return Network(input_size=doc["input_size"], input_kind=doc["input_kind"], layers=layers,
                   output=doc["output"], fmt=Format(**doc["format"]))


# --------------------------------------------------------------------- API
def model_digest(net: Network) -> str:
    """A short (16 hex digits) hash of the network's configuration and tensors.

    Independent of ``meta`` and of the file; equal for a network and the same
    network loaded back from a model file.  Raises ``NetworkError`` for an
    invalid network.
    """
    doc, tensors = _encode(net)
    h = hashlib.sha256(_NETWORK_PREFIX)
    h.update(_canonical_json(doc))
    _hash_tensors(h, tensors)
    return h.hexdigest()[:16]


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
        netdoc, tensors = _encode(net)
    except NetworkError as exc:
        raise ModelFileError(f"{name}: cannot save an invalid network: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name}: meta must be a dict, not {type(meta).__name__}")
    try:
        _check_json_value(meta, "meta")
    except _Problem as exc:
        raise ModelFileError(f"{name}: cannot save: {exc}") from exc
    doc = {"format_version": FORMAT_VERSION, **netdoc, "meta": json.loads(_canonical_json(meta))}
    doc["digest"] = _content_digest(doc, tensors)
    try:  # a self-check: what is written must be loadable
        refs = _check_document(doc)
    except _Problem as exc:  # pragma: no cover - _encode produces valid documents
        raise ModelFileError(f"{name}: internal error, invalid document: {exc}") from exc
    assert sorted(key for _, key in refs) == sorted(tensors)
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: _canonical_json(doc).decode()})
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
            raise _Problem(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constants(word: str) -> Any:
    raise _Problem(f"{word} is not allowed")


def load_model(path: str | os.PathLike) -> tuple[Network, dict]:
    """Read, check and return ``(network, meta)`` from the model file ``path``.

    Any problem raises :class:`ModelFileError` naming the file and the problem.
    """
    name = os.fspath(path)

    def fail(message: str, cause: BaseException | None = None):
        raise ModelFileError(f"{name}: {message}") from cause

    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        fail("no such model file", exc)
    except IsADirectoryError as exc:
        fail("is a directory, not a model file", exc)
    except OSError as exc:
        fail(f"cannot read the model file ({exc.strerror or exc})", exc)

    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # SafetensorError, or a dtype torch cannot build
        fail(f"not a valid safetensors file (truncated or corrupt?): {exc}", exc)
    # safetensors accepted the framing; read the header ourselves for the metadata
    # and to reject duplicate keys, which safetensors silently tolerates.
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size], object_pairs_hook=_no_duplicates)
    except (_Problem, ValueError) as exc:
        fail(f"not a valid safetensors file: header: {exc}", exc)
    entries = header.get("__metadata__")
    if not isinstance(entries, dict) or METADATA_KEY not in entries:
        fail(f"no {METADATA_KEY!r} entry in the safetensors metadata "
             f"(not a spikeforge model file)")
    extra = sorted(k for k in entries if k != METADATA_KEY)
    if extra:
        fail(f"unexpected safetensors metadata entries {extra}; only {METADATA_KEY!r} "
             f"is allowed")
    try:
        doc = json.loads(entries[METADATA_KEY], object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constants)
    except (_Problem, ValueError) as exc:
        fail(f"the {METADATA_KEY!r} metadata is not valid JSON: {exc}", exc)

    try:
        refs = _check_document(doc)
    except _Problem as exc:
        fail(str(exc), exc)
    first: dict[str, str] = {}
    for where, key in refs:
        if key in first:
            fail(f"tensor {key!r} is referenced twice ({first[key]} and {where})")
        first[key] = where
        if key not in tensors:
            fail(f"tensor {key!r} ({where}) is not in the file")
    extra = sorted(k for k in tensors if k not in first)
    if extra:
        s = "s" if len(extra) > 1 else ""
        fail(f"tensor{s} {', '.join(repr(k) for k in extra)} in the file "
             f"{'are' if s else 'is'} not referenced by the metadata")
    for key in sorted(tensors):
        dtype = tensors[key].dtype
        if dtype != torch.int64:
            fail(f"tensor {key!r} has dtype {str(dtype).removeprefix('torch.')}; model "
                 f"tensors must be int64")
    computed = _content_digest(doc, tensors)
    if computed != doc["digest"]:
        fail(f"digest mismatch (stored {doc['digest']}, computed {computed}): the file is "
             f"corrupt or was edited")
    try:
        net = _decode(doc, tensors)
    except NetworkError as exc:
        fail(f"invalid network: {exc}", exc)
    return net, doc["meta"]

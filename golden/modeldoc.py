"""The JSON document of a model file and its tensors (:mod:`.modelfile` stores them).

:func:`encode_network` turns an integer :class:`~spikeforge.golden.integer.Network`
into the document's network part and its int64 tensors, :func:`decode_network`
builds the Network back; :func:`check_document` checks a document's structure
and types, :func:`check_json_value` that a value is plain JSON; a problem raises
:class:`DocumentError` (without the file name).

The JSON document (format_version 1 or 2)
-----------------------------------------
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

and, only in format_version 2 (written when the network uses them)::

    alpha_syn  (optional) tensor key: int64 vector of length size (current-based)
    shape      (optional) list of integers: the neurons as a feature map
    multi_spike (optional) boolean: spike counts floor(v / theta)
    v_min      (optional) tensor key: int64 vector, the membrane's lower bound
    inputs[j]  may add "in_shape" (list of integers), "pool" ({"kernel": list,
               "stride": list or null, "padding": list or null}) and "conv"
               ({"stride", "padding", "dilation": integer or list, "groups":
               integer}); the weight is then the pooled map's dense weight or
               the convolution's kernel [C_out, C_in/groups, *kernel]

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
reported as a :class:`~.modelfile.ModelFileError` carrying the ``NetworkError``
message.

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any

import torch

from .integer import (
    Conv,
    Format,
    LIFLayer,
    Network,
    NetworkError,
    Operand,
    Pool,
    Projection,
    SSMLayer,
)

__all__ = ["FORMAT_VERSION", "VERSIONS", "uses_version_2", "METADATA_KEY", "DocumentError",
           "canonical_json", "content_digest", "model_digest", "check_json_value",
           "check_document", "encode_network", "decode_network"]

FORMAT_VERSION = 2
"""The newest version; a network without feature maps or current-based layers is
written as version 1 (unchanged files and digests for what version 1 can hold)."""
VERSIONS = (1, 2)
METADATA_KEY = "spikeforge"        # the safetensors metadata entry that holds the document

_FILE_PREFIX = b"spikeforge-model-file\n"
_NETWORK_PREFIX = b"spikeforge-network\n"
_NETWORK_FIELDS = ("format", "input_size", "input_kind", "output", "layers")
_TOP_FIELDS = ("format_version", *_NETWORK_FIELDS, "meta", "digest")
_FORMAT_FIELDS = tuple(f.name for f in dataclasses.fields(Format))
_LIF_FIELDS = ("kind", "name", "size", "reset", "v_reset", "spiking", "alpha", "theta", "bias",
               "inputs")
_LIF_OPTIONAL = ("alpha_syn", "shape", "multi_spike", "v_min")
_PROJ_FIELDS = ("source", "recurrent", "weight")
_PROJ_OPTIONAL = ("in_shape", "pool", "conv")
_SSM_FIELDS = ("kind", "name", "n", "m", "mode", "gate", "gate_recurrent", "y_shift", "decay",
               "k", "v", "q")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DocumentError(ValueError):
    """A problem in the document, without the file name (:mod:`.modelfile` wraps it
    into a ``ModelFileError``)."""


# ------------------------------------------------------------------ helpers
def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("utf-8")


def _tensor_bytes(t: torch.Tensor):
    """The tensor's values as little-endian int64 bytes, row-major (a buffer: no copy of
    a contiguous int64 tensor on a little-endian machine)."""
    return t.detach().cpu().contiguous().numpy().astype("<i8", copy=False).reshape(-1)


def _hash_tensors(h, tensors: dict[str, torch.Tensor]) -> None:
    for key in sorted(tensors):
        t = tensors[key]
        head = canonical_json({"dtype": "int64", "key": key, "shape": list(t.shape)})
        h.update(len(head).to_bytes(8, "little"))
        h.update(head)
        h.update(_tensor_bytes(t))


def content_digest(doc: dict, tensors: dict[str, torch.Tensor]) -> str:
    """The file digest: SHA-256 over the JSON without ``digest`` and the tensors."""
    h = hashlib.sha256(_FILE_PREFIX)
    h.update(canonical_json({k: v for k, v in doc.items() if k != "digest"}))
    _hash_tensors(h, tensors)
    return h.hexdigest()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------ meta (JSON check)
def check_json_value(value: Any, where: str) -> None:
    """Raise DocumentError unless ``value`` is plain JSON (round-trips unchanged)."""
    if value is None or isinstance(value, (bool, str)) or _is_int(value):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DocumentError(f"{where} is {value!r}; JSON has no NaN or Infinity")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_json_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DocumentError(f"{where} has a non-string key {key!r}; JSON keys are strings")
            check_json_value(item, f"{where}[{key!r}]")
        return
    raise DocumentError(f"{where} is a {type(value).__name__} ({value!r}), which is not JSON "
                   f"(use dict, list, str, int, float, bool or None)")


# ------------------------------------------------------------- schema checks
def _fields(obj: Any, where: str, expected: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> None:
    if not isinstance(obj, dict):
        raise DocumentError(f"{where} must be an object, not {_type_name(obj)}")
    missing = [k for k in expected if k not in obj]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise DocumentError(f"{where}: missing field{s} " + ", ".join(repr(k) for k in missing))
    unknown = sorted(k for k in obj if k not in expected and k not in optional)
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise DocumentError(f"{where}: unknown field{s} " + ", ".join(repr(k) for k in unknown))


def _want(obj: dict, key: str, where: str, kind: str) -> Any:
    value = obj[key]
    ok = {
        "int": _is_int(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "str|null": value is None or isinstance(value, str),
        "key": isinstance(value, str) and value != "",
        "list": isinstance(value, list),
        "ints": isinstance(value, list) and all(_is_int(v) for v in value),
        "int|ints": _is_int(value) or (isinstance(value, list) and all(map(_is_int, value))),
        "ints|null": value is None or (isinstance(value, list) and all(map(_is_int, value))),
        "object": isinstance(value, dict),
    }[kind]
    if not ok:
        words = {"int": "an integer", "bool": "a boolean", "str": "a string",
                 "str|null": "a string or null", "key": "a tensor key (a non-empty string)",
                 "list": "a list", "ints": "a list of integers",
                 "int|ints": "an integer or a list of integers",
                 "ints|null": "a list of integers or null", "object": "an object"}[kind]
        raise DocumentError(f"{where}.{key} must be {words}, not {_type_name(value)} ({value!r})")
    return value


def _check_operand(op: Any, where: str, refs: list[tuple[str, str]]) -> None:
    if isinstance(op, dict) and "const" in op:
        _fields(op, where, ("const",))
        refs.append((f"{where}.const", _want(op, "const", where, "key")))
    else:
        _fields(op, where, ("source", "recurrent"))
        _want(op, "source", where, "str")
        _want(op, "recurrent", where, "bool")


def _check_projection(proj: Any, where: str, refs: list[tuple[str, str]], version: int) -> None:
    _fields(proj, where, _PROJ_FIELDS, _PROJ_OPTIONAL if version >= 2 else ())
    _want(proj, "source", where, "str")
    _want(proj, "recurrent", where, "bool")
    refs.append((f"{where}.weight", _want(proj, "weight", where, "key")))
    if "in_shape" in proj:
        _want(proj, "in_shape", where, "ints")
    if "pool" in proj:
        pool = _want(proj, "pool", where, "object")
        _fields(pool, f"{where}.pool", ("kernel", "stride", "padding"))
        _want(pool, "kernel", f"{where}.pool", "ints")
        _want(pool, "stride", f"{where}.pool", "ints|null")
        _want(pool, "padding", f"{where}.pool", "ints|null")
    if "conv" in proj:
        conv = _want(proj, "conv", where, "object")
        _fields(conv, f"{where}.conv", ("stride", "padding", "dilation", "groups"))
        for what in ("stride", "padding", "dilation"):
            _want(conv, what, f"{where}.conv", "int|ints")
        _want(conv, "groups", f"{where}.conv", "int")


def _check_layer(layer: Any, where: str, refs: list[tuple[str, str]], version: int) -> None:
    if not isinstance(layer, dict):
        raise DocumentError(f"{where} must be an object, not {_type_name(layer)}")
    if "kind" not in layer:
        raise DocumentError(f"{where}: missing field 'kind'")
    kind = layer["kind"]
    if kind == "lif":
        _fields(layer, where, _LIF_FIELDS, _LIF_OPTIONAL if version >= 2 else ())
        _want(layer, "name", where, "str")
        _want(layer, "size", where, "int")
        _want(layer, "reset", where, "str")
        _want(layer, "v_reset", where, "int")
        _want(layer, "spiking", where, "bool")
        for what in ("alpha", "theta", "bias", "alpha_syn", "v_min"):
            if what in layer:
                refs.append((f"{where}.{what}", _want(layer, what, where, "key")))
        if "multi_spike" in layer:
            _want(layer, "multi_spike", where, "bool")
        if "shape" in layer:
            _want(layer, "shape", where, "ints")
        for j, proj in enumerate(_want(layer, "inputs", where, "list")):
            _check_projection(proj, f"{where}.inputs[{j}]", refs, version)
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
        raise DocumentError(f"{where}.kind must be 'lif' or 'ssm', not {kind!r}")


def check_document(doc: Any) -> list[tuple[str, str]]:
    """Check the JSON document's structure and types; return its tensor references
    as ``(where, key)`` in document order."""
    if not isinstance(doc, dict):
        raise DocumentError(f"the {METADATA_KEY!r} metadata must be a JSON object, "
                       f"not {_type_name(doc)}")
    if "format_version" not in doc:
        raise DocumentError("missing field 'format_version'")
    version = doc["format_version"]
    if not _is_int(version):
        raise DocumentError(f"format_version must be an integer, not {_type_name(version)} "
                       f"({version!r})")
    if version not in VERSIONS:
        raise DocumentError(f"unsupported format_version {version} (this reader supports "
                       f"{', '.join(map(str, VERSIONS))})")
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
        raise DocumentError(f"digest must be 64 lowercase hex digits, not {digest!r}")
    refs: list[tuple[str, str]] = []
    for i, layer in enumerate(_want(doc, "layers", "document", "list")):
        _check_layer(layer, f"layers[{i}]", refs, version)
    return refs


# ------------------------------------------------------------ encode / decode
def encode_network(net: Network) -> tuple[dict, dict[str, torch.Tensor]]:
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
                entry = {
                    "source": proj.source,
                    "recurrent": need_bool(proj.recurrent, owner,
                                           f"recurrent of the input from {proj.source!r}"),
                    "weight": put(f"{p}.inputs.{j}.weight", proj.weight),
                }
                entry.update({k: v for k, v in proj.to_dict().items() if v is not None})
                inputs.append(entry)
            extra = {}
            if layer.alpha_syn is not None:
                extra["alpha_syn"] = put(f"{p}.alpha_syn", layer.alpha_syn)
            if layer.shape is not None:
                extra["shape"] = list(layer.shape)
            if layer.multi_spike:
                extra["multi_spike"] = need_bool(layer.multi_spike, owner, "multi_spike")
            if layer.v_min is not None:
                extra["v_min"] = put(f"{p}.v_min", layer.v_min)
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
                **extra,
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


def _plain(value):
    return tuple(value) if isinstance(value, list) else value


def _decode_projection(p: dict, tensors: dict[str, torch.Tensor]) -> Projection:
    pool = p.get("pool")
    conv = p.get("conv")
    return Projection(
        source=p["source"], weight=tensors[p["weight"]], recurrent=p["recurrent"],
        in_shape=_plain(p.get("in_shape")),
        pool=None if pool is None else Pool(tuple(pool["kernel"]), _plain(pool["stride"]),
                                            _plain(pool["padding"])),
        conv=None if conv is None else Conv(_plain(conv["stride"]), _plain(conv["padding"]),
                                            _plain(conv["dilation"]), conv["groups"]))


def uses_version_2(doc: dict) -> bool:
    """Whether a network document needs format_version 2 (feature maps, current-based)."""
    return any(set(layer) & set(_LIF_OPTIONAL)
               or any(set(p) & set(_PROJ_OPTIONAL) for p in layer.get("inputs", ()))
               for layer in doc["layers"])


def decode_network(doc: dict, tensors: dict[str, torch.Tensor]) -> Network:
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
                inputs=[_decode_projection(p, tensors) for p in entry["inputs"]],
                reset=entry["reset"],
                v_reset=entry["v_reset"],
                spiking=entry["spiking"],
                alpha_syn=tensors[entry["alpha_syn"]] if "alpha_syn" in entry else None,
                shape=tuple(entry["shape"]) if "shape" in entry else None,
                multi_spike=entry.get("multi_spike", False),
                v_min=tensors[entry["v_min"]] if "v_min" in entry else None,
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
    doc, tensors = encode_network(net)
    h = hashlib.sha256(_NETWORK_PREFIX)
    h.update(canonical_json(doc))
    _hash_tensors(h, tensors)
    return h.hexdigest()[:16]

"""The model file format: round trips, and every way a file is rejected."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from spikeforge.golden import modelfile
from spikeforge.golden.integer import (
    Format,
    LIFLayer,
    Network,
    NetworkError,
    Operand,
    Projection,
    SSMLayer,
    signed_range,
)
from spikeforge.golden.modelfile import ModelFileError, load_model, model_digest, save_model

I64 = torch.int64


# ------------------------------------------------------------- small networks
def _ints(gen: torch.Generator, shape, lo: int, hi: int) -> torch.Tensor:
    return torch.randint(lo, hi + 1, tuple(shape), generator=gen, dtype=I64)


def _lif(gen, fmt: Format, name: str, size: int, inputs, *, reset="subtract", v_reset=0,
         spiking=True) -> LIFLayer:
    """``inputs``: ``(source, source_size, recurrent)`` triples."""
    return LIFLayer(
        name=name,
        size=size,
        alpha=_ints(gen, (size,), 0, fmt.one),
        theta=_ints(gen, (size,), 10, 60),
        bias=_ints(gen, (size,), -5, 5),
        inputs=[Projection(source=src, weight=_ints(gen, (size, n), -30, 30), recurrent=rec)
                for src, n, rec in inputs],
        reset=reset,
        v_reset=v_reset,
        spiking=spiking,
    )


def lif_net(seed: int = 0) -> Network:
    """Spike input; every reset mode, an LI readout, recurrent, backward and skip edges."""
    gen = torch.Generator().manual_seed(seed)
    fmt = Format()
    layers = [
        _lif(gen, fmt, "h1", 5, [("input", 6, False), ("h1", 5, True)], reset="subtract"),
        _lif(gen, fmt, "h2", 4, [("h1", 5, False), ("input", 6, False), ("h3", 3, True)],
             reset="zero", v_reset=-5),
        _lif(gen, fmt, "h3", 3, [("h2", 4, False)], reset="none"),
        _lif(gen, fmt, "out", 2, [("h3", 3, False), ("h1", 5, False)], reset="none",
             spiking=False),
    ]
    return Network(input_size=6, input_kind="spike", layers=layers, output="out", fmt=fmt)


def int_net(seed: int = 1) -> Network:
    """Signed integer input and a non-default format."""
    gen = torch.Generator().manual_seed(seed)
    fmt = Format(w_bits=7, u_bits=20, frac_bits=6, in_bits=10, s_bits=18, y_bits=9, acc_bits=30)
    layers = [
        _lif(gen, fmt, "h", 4, [("input", 5, False), ("h", 4, True)], reset="zero", v_reset=3),
        _lif(gen, fmt, "readout", 3, [("h", 4, False), ("input", 5, False)], reset="none",
             spiking=False),
    ]
    return Network(input_size=5, input_kind="int", layers=layers, output="readout", fmt=fmt)


def ssm_net(seed: int = 2) -> Network:
    """Selective and fixed SSM layers with const, source and recurrent operands.

    Layer indices (used by the corruption tests): 0 g, 1 h, 2 mem, 3 mem2, 4 r, 5 out.
    """
    gen = torch.Generator().manual_seed(seed)
    fmt = Format()
    in_lo, in_hi = signed_range(fmt.in_bits)
    g = _lif(gen, fmt, "g", 2, [("input", 4, False)])
    h = _lif(gen, fmt, "h", 3, [("input", 4, False)])
    mem = SSMLayer(
        name="mem", n=3, m=4,
        k=Operand(source="h"),
        v=Operand(source="input"),
        q=Operand(const=_ints(gen, (3,), in_lo, in_hi)),
        decay=_ints(gen, (4, 3), 0, fmt.one),
        mode="selective", gate="g", gate_recurrent=True, y_shift=2,
    )
    mem2 = SSMLayer(
        name="mem2", n=4, m=2,
        k=Operand(const=_ints(gen, (4,), in_lo, in_hi)),
        v=Operand(const=_ints(gen, (2,), in_lo, in_hi)),
        q=Operand(source="r", recurrent=True),
        decay=_ints(gen, (4,), 0, fmt.one),
        mode="fixed", y_shift=5,
    )
    r = _lif(gen, fmt, "r", 4, [("mem2", 2, False), ("mem", 4, False), ("r", 4, True)])
    out = _lif(gen, fmt, "out", 2, [("r", 4, False), ("mem2", 2, False)], reset="none",
               spiking=False)
    return Network(input_size=4, input_kind="int", layers=[g, h, mem, mem2, r, out],
                   output="out", fmt=fmt)


NETWORKS = {"lif": lif_net, "int": int_net, "ssm": ssm_net}
META = {"task": "unit-test", "encoder": {"kind": "rate", "steps": 16}, "readout": "max-membrane",
        "training": {"epochs": 3, "accuracy": 0.875, "seeds": [1, 2, 3], "note": None,
                     "ok": True, "unicode": "µ-ẞ"}}


def random_input(net: Network, steps: int = 12, batch: int = 3, seed: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if net.input_kind == "spike":
        return _ints(gen, (steps, batch, net.input_size), 0, 1)
    return _ints(gen, (steps, batch, net.input_size), *signed_range(net.fmt.in_bits))


def assert_same_tensor(a: torch.Tensor, b: torch.Tensor) -> None:
    assert b.dtype == I64
    assert torch.equal(a, b)


def assert_same_network(a: Network, b: Network) -> None:
    assert (a.input_size, a.input_kind, a.output, a.fmt) == \
        (b.input_size, b.input_kind, b.output, b.fmt)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert type(la) is type(lb)
        if la.kind == "lif":
            assert (la.size, la.reset, la.v_reset, la.spiking) == \
                (lb.size, lb.reset, lb.v_reset, lb.spiking)
            for what in ("alpha", "theta", "bias"):
                assert_same_tensor(getattr(la, what), getattr(lb, what))
            assert len(la.inputs) == len(lb.inputs)
            for pa, pb in zip(la.inputs, lb.inputs, strict=True):
                assert (pa.source, pa.recurrent) == (pb.source, pb.recurrent)
                assert_same_tensor(pa.weight, pb.weight)
        else:
            assert (la.n, la.m, la.mode, la.gate, la.gate_recurrent, la.y_shift) == \
                (lb.n, lb.m, lb.mode, lb.gate, lb.gate_recurrent, lb.y_shift)
            assert_same_tensor(la.decay, lb.decay)
            for what in ("k", "v", "q"):
                oa, ob = getattr(la, what), getattr(lb, what)
                assert (oa.source, oa.recurrent, oa.is_const) == \
                    (ob.source, ob.recurrent, ob.is_const)
                if oa.is_const:
                    assert_same_tensor(oa.const, ob.const)
                else:
                    assert ob.const is None


def assert_same_run(a: Network, b: Network, x: torch.Tensor) -> None:
    ta, tb = a.run(x), b.run(x)
    for field in ("outputs", "spikes", "membranes", "state"):
        da, db = getattr(ta, field), getattr(tb, field)
        assert da.keys() == db.keys()
        for key in da:
            assert torch.equal(da[key], db[key]), (field, key)
    assert torch.equal(ta.synops, tb.synops)
    assert torch.equal(ta.ssm_ops, tb.ssm_ops)


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_round_trip(tmp_path, kind):
    net = NETWORKS[kind]()
    path = tmp_path / f"{kind}.safetensors"
    save_model(path, net, META)
    loaded, meta = load_model(path)
    assert meta == META
    assert_same_network(net, loaded)
    x = random_input(net)
    assert_same_run(net, loaded, x)
    assert loaded.run(x).outputs[net.output].abs().sum() > 0  # the run does something
    assert model_digest(loaded) == model_digest(net)
    assert sorted(os.listdir(tmp_path)) == [f"{kind}.safetensors"]  # no temp file left


def test_round_trip_str_path_and_overwrite(tmp_path):
    path = str(tmp_path / "m.safetensors")
    save_model(path, lif_net(), {"v": 1})
    save_model(path, ssm_net(), {"v": 2})
    loaded, meta = load_model(path)
    assert meta == {"v": 2}
    assert_same_network(ssm_net(), loaded)


def test_file_layout(tmp_path):
    """Plain safetensors: I64 tensors and exactly one metadata entry, the JSON document."""
    path = tmp_path / "m.safetensors"
    net = ssm_net()
    save_model(path, net, META)
    header, _ = split_file(path.read_bytes())
    assert set(header["__metadata__"]) == {"spikeforge"}
    assert {spec["dtype"] for k, spec in header.items() if k != "__metadata__"} == {"I64"}
    doc = json.loads(header["__metadata__"]["spikeforge"])
    assert set(doc) == {"format_version", "format", "input_size", "input_kind", "output",
                        "layers", "meta", "digest"}
    assert doc["format_version"] == 1
    assert doc["format"] == net.fmt.to_dict()
    assert [layer["kind"] for layer in doc["layers"]] == ["lif", "lif", "ssm", "ssm", "lif", "lif"]
    assert doc["layers"][2]["k"] == {"source": "h", "recurrent": False}
    assert doc["layers"][2]["q"] == {"const": "layers.2.q"}
    assert doc["layers"][3]["q"] == {"source": "r", "recurrent": True}
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == header["__metadata__"]
        assert torch.equal(f.get_tensor("layers.4.inputs.2.weight"), net.layers[4].inputs[2].weight)


def test_const_operand_recurrent_flag_is_refused(tmp_path):
    net = ssm_net()
    net.layers[3].k.recurrent = True  # meaningless on a constant
    with pytest.raises(ModelFileError, match="constant operand k cannot be recurrent"):
        save_model(tmp_path / "m.safetensors", net, {})
    assert not (tmp_path / "m.safetensors").exists()


def test_shared_tensors_are_saved(tmp_path):
    """Tensors may share memory (safetensors itself refuses to save shared storage)."""
    gen = torch.Generator().manual_seed(0)
    fmt = Format()
    a = _lif(gen, fmt, "a", 3, [("input", 3, False)])
    b = _lif(gen, fmt, "b", 3, [("a", 3, False)])
    b.alpha = a.alpha  # one tensor object in two layers
    b.inputs[0].weight = a.inputs[0].weight
    base = torch.tensor([1, -2, 3, 20, 30, 40], dtype=I64)
    a.bias, a.theta = base[:3], base[3:]  # two views of one storage
    net = Network(input_size=3, input_kind="spike", layers=[a, b], output="b")
    save_model(tmp_path / "m.safetensors", net, {})
    assert_same_network(net, load_model(tmp_path / "m.safetensors")[0])


# --------------------------------------------------------------- model_digest
def test_model_digest():
    net = ssm_net()
    d = model_digest(net)
    assert re.fullmatch(r"[0-9a-f]{16}", d)
    assert model_digest(ssm_net()) == d
    assert model_digest(lif_net()) != d
    net.layers[4].inputs[0].weight[0, 0] += 1
    assert model_digest(net) != d
    net.layers[4].inputs[0].weight[0, 0] -= 1
    assert model_digest(net) == d
    net.layers[3].y_shift += 1
    assert model_digest(net) != d


def test_model_digest_independent_of_meta(tmp_path):
    net = lif_net()
    save_model(tmp_path / "a.safetensors", net, {"task": "a"})
    save_model(tmp_path / "b.safetensors", net, {"task": "b"})
    da = model_digest(load_model(tmp_path / "a.safetensors")[0])
    db = model_digest(load_model(tmp_path / "b.safetensors")[0])
    assert da == db == model_digest(net)


def test_model_digest_rejects_invalid_network():
    net = lif_net()
    net.layers[0].theta[0] = 0
    with pytest.raises(NetworkError, match=r"^layer 'h1': theta has values in \[0, "):
        model_digest(net)


# ----------------------------------------------------------- file surgery kit
def split_file(data: bytes) -> tuple[dict, bytes]:
    """The safetensors header (as JSON) and the tensor data that follows it."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), data[8 + size:]


def join_file(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def edit_json(path, edit) -> None:
    """Byte surgery: rewrite the 8-byte header length and the header JSON, after
    ``edit(doc)`` changed the spikeforge document; the tensor bytes stay as they are."""
    header, body = split_file(path.read_bytes())
    doc = json.loads(header["__metadata__"]["spikeforge"])
    edit(doc)
    header["__metadata__"]["spikeforge"] = json.dumps(doc)
    path.write_bytes(join_file(header, body))


def edit_text(path, edit) -> None:
    """Like edit_json, on the raw JSON text of the document."""
    header, body = split_file(path.read_bytes())
    header["__metadata__"]["spikeforge"] = edit(header["__metadata__"]["spikeforge"])
    path.write_bytes(join_file(header, body))


def read_parts(path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        names = f.keys()  # a safe_open handle is not iterable
        return {k: f.get_tensor(k) for k in names}, f.metadata()


def rewrite(path, edit_tensors=None, edit_doc=None, *, redigest=False) -> None:
    """Rewrite the file with safetensors' own save_file after editing its parts.

    ``redigest`` recomputes the digest so that checks after it are reached.
    """
    tensors, metadata = read_parts(path)
    doc = json.loads(metadata["spikeforge"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_doc:
        edit_doc(doc)
    if redigest:
        doc["digest"] = modelfile._content_digest(doc, tensors)
    save_file(tensors, str(path), metadata={"spikeforge": json.dumps(doc)})


def exact(path, text: str) -> str:
    return "^" + re.escape(f"{path}: {text}") + "$"


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, ssm_net(), META)
    return path


def test_untouched_fixture_loads(saved):
    load_model(saved)  # the corruption tests below start from a good file


# -------------------------------------------------------- not a model file
def test_missing_file(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(ModelFileError, match=exact(path, "no such model file")):
        load_model(path)


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match=exact(tmp_path, "is a directory, not a model file")):
        load_model(tmp_path)


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


NOT_SAFETENSORS = "not a valid safetensors file (truncated or corrupt?): "


@pytest.mark.parametrize("case", ["garbage", "empty", "tiny", "truncated-data",
                                  "truncated-header", "trailing-bytes", "bad-header-json"])
def test_not_a_safetensors_file(saved, case):
    data = saved.read_bytes()
    header, body = split_file(data)
    raw = {
        "garbage": b"this is not a model file, just some text\n" * 4,
        "empty": b"",
        "tiny": b"\x01\x02\x03",
        "truncated-data": data[:-5],
        "truncated-header": data[:40],
        "trailing-bytes": data + b"\x00" * 8,
        "bad-header-json": join_file(header, body).replace(b'"__metadata__"', b"__metadata__!"),
    }[case]
    saved.write_bytes(raw)
    # The part after the colon is safetensors' own explanation (e.g. "header too large").
    with pytest.raises(ModelFileError,
                       match="^" + re.escape(f"{saved}: {NOT_SAFETENSORS}") + r"\S.*$"):
        load_model(saved)


def test_duplicate_key_in_safetensors_header(saved):
    header, body = split_file(saved.read_bytes())
    raw = json.dumps(header)
    key = "layers.0.alpha"
    raw = raw[:-1] + f', "{key}": {json.dumps(header[key])}}}'
    raw_b = raw.encode() + b" " * (-len(raw.encode()) % 8)
    saved.write_bytes(len(raw_b).to_bytes(8, "little") + raw_b + body)
    with pytest.raises(ModelFileError, match=exact(
            saved, f"not a valid safetensors file: header: duplicate key {key!r}")):
        load_model(saved)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_missing_spikeforge_metadata(saved, metadata):
    tensors, _ = read_parts(saved)
    save_file(tensors, str(saved), metadata=metadata)
    with pytest.raises(ModelFileError, match=exact(
            saved, "no 'spikeforge' entry in the safetensors metadata "
                   "(not a spikeforge model file)")):
        load_model(saved)


def test_extra_safetensors_metadata_entry(saved):
    tensors, metadata = read_parts(saved)
    save_file(tensors, str(saved), metadata={**metadata, "format": "pt"})
    with pytest.raises(ModelFileError, match=exact(
            saved, "unexpected safetensors metadata entries ['format']; only 'spikeforge' "
                   "is allowed")):
        load_model(saved)


# ------------------------------------------------------------------ bad JSON
def test_json_not_parseable(saved):
    edit_text(saved, lambda text: text[:-1])  # drop the closing brace
    text = read_parts(saved)[1]["spikeforge"]
    with pytest.raises(ValueError) as info:
        json.loads(text)
    with pytest.raises(ModelFileError, match=exact(
            saved, f"the 'spikeforge' metadata is not valid JSON: {info.value}")):
        load_model(saved)


@pytest.mark.parametrize("old, new, problem", [
    ('"meta":{', '"meta":{"x":NaN,', "NaN is not allowed"),
    ('"meta":{', '"meta":{"x":-Infinity,', "-Infinity is not allowed"),
    ('"output":', '"output":"x","output":', "duplicate key 'output'"),
    ('"layers":[{', '"layers":[{"size":1,', "duplicate key 'size'"),
])
def test_json_not_strict(saved, old, new, problem):
    edit_text(saved, lambda text: text.replace(old, new, 1))
    with pytest.raises(ModelFileError, match=exact(
            saved, f"the 'spikeforge' metadata is not valid JSON: {problem}")):
        load_model(saved)


def test_json_not_an_object(saved):
    edit_text(saved, lambda text: "[1, 2]")
    with pytest.raises(ModelFileError, match=exact(
            saved, "the 'spikeforge' metadata must be a JSON object, not list")):
        load_model(saved)


# ------------------------------------------------------------ format_version
@pytest.mark.parametrize("value, problem", [
    (2, "unsupported format_version 2 (this reader supports 1)"),
    (0, "unsupported format_version 0 (this reader supports 1)"),
    ("1", "format_version must be an integer, not str ('1')"),
    (True, "format_version must be an integer, not bool (True)"),
    (1.0, "format_version must be an integer, not float (1.0)"),
])
def test_wrong_format_version(saved, value, problem):
    edit_json(saved, lambda doc: doc.update(format_version=value))
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


def test_missing_format_version(saved):
    edit_json(saved, lambda doc: doc.pop("format_version"))
    with pytest.raises(ModelFileError, match=exact(saved, "missing field 'format_version'")):
        load_model(saved)


# ------------------------------------------------------ missing / extra fields
def _del(*keys):
    def edit(doc):
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return edit


def _set(*keys, value):
    def edit(doc):
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit, problem", [
    (_del("meta"), "document: missing field 'meta'"),
    (_del("digest"), "document: missing field 'digest'"),
    (_del("layers"), "document: missing field 'layers'"),
    (_del("format", "acc_bits"), "format: missing field 'acc_bits'"),
    (_del("layers", 0, "reset"), "layers[0]: missing field 'reset'"),
    (_del("layers", 0, "kind"), "layers[0]: missing field 'kind'"),
    (_del("layers", 2, "gate_recurrent"), "layers[2]: missing field 'gate_recurrent'"),
    (_del("layers", 4, "inputs", 1, "weight"), "layers[4].inputs[1]: missing field 'weight'"),
    (_del("layers", 2, "k", "recurrent"), "layers[2].k: missing field 'recurrent'"),
    (_set("layers", 3, "v", value={}), "layers[3].v: missing fields 'source', 'recurrent'"),
])
def test_missing_field(saved, edit, problem):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


@pytest.mark.parametrize("edit, problem", [
    (_set("extra", value=1), "document: unknown field 'extra'"),
    (_set("format", "z_bits", value=8), "format: unknown field 'z_bits'"),
    (_set("layers", 0, "colour", value="red"), "layers[0]: unknown field 'colour'"),
    (_set("layers", 0, "n", value=3), "layers[0]: unknown field 'n'"),  # an SSM field on LIF
    (_set("layers", 2, "size", value=3), "layers[2]: unknown field 'size'"),
    (_set("layers", 0, "inputs", 0, "delay", value=1),
     "layers[0].inputs[0]: unknown field 'delay'"),
    (_set("layers", 2, "q", "recurrent", value=False), "layers[2].q: unknown field 'recurrent'"),
    (_set("layers", 2, "k", "const", value="layers.2.k"), "layers[2].k: unknown fields "
                                                          "'recurrent', 'source'"),
])
def test_extra_field(saved, edit, problem):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


# -------------------------------------------------------------- wrong types
@pytest.mark.parametrize("edit, problem", [
    (_set("format", "w_bits", value="8"), "format.w_bits must be an integer, not str ('8')"),
    (_set("format", value=[8]), "document.format must be an object, not list ([8])"),
    (_set("input_size", value=4.0), "document.input_size must be an integer, not float (4.0)"),
    (_set("input_kind", value=None), "document.input_kind must be a string, not null (None)"),
    (_set("output", value=5), "document.output must be a string, not int (5)"),
    (_set("layers", value={}), "document.layers must be a list, not dict ({})"),
    (_set("meta", value=["task"]), "document.meta must be an object, not list (['task'])"),
    (_set("digest", value=12), "document.digest must be a string, not int (12)"),
    (_set("digest", value="abc"), "digest must be 64 lowercase hex digits, not 'abc'"),
    (_set("digest", value="A" * 64), f"digest must be 64 lowercase hex digits, not {'A' * 64!r}"),
    (_set("layers", 0, value="g"), "layers[0] must be an object, not str"),
    (_set("layers", 0, "kind", value="gru"), "layers[0].kind must be 'lif' or 'ssm', not 'gru'"),
    (_set("layers", 0, "size", value="2"), "layers[0].size must be an integer, not str ('2')"),
    (_set("layers", 0, "size", value=True), "layers[0].size must be an integer, not bool (True)"),
    (_set("layers", 0, "v_reset", value=0.0),
     "layers[0].v_reset must be an integer, not float (0.0)"),
    (_set("layers", 0, "spiking", value=1), "layers[0].spiking must be a boolean, not int (1)"),
    (_set("layers", 0, "reset", value=0), "layers[0].reset must be a string, not int (0)"),
    (_set("layers", 0, "alpha", value=7),
     "layers[0].alpha must be a tensor key (a non-empty string), not int (7)"),
    (_set("layers", 0, "alpha", value=""),
     "layers[0].alpha must be a tensor key (a non-empty string), not str ('')"),
    (_set("layers", 0, "inputs", value="input"),
     "layers[0].inputs must be a list, not str ('input')"),
    (_set("layers", 0, "inputs", 0, value=["input"]),
     "layers[0].inputs[0] must be an object, not list"),
    (_set("layers", 0, "inputs", 0, "recurrent", value="no"),
     "layers[0].inputs[0].recurrent must be a boolean, not str ('no')"),
    (_set("layers", 2, "gate", value=5), "layers[2].gate must be a string or null, not int (5)"),
    (_set("layers", 2, "y_shift", value=None),
     "layers[2].y_shift must be an integer, not null (None)"),
    (_set("layers", 2, "k", value="h"), "layers[2].k must be an object, not str"),
    (_set("layers", 2, "k", "source", value=None),
     "layers[2].k.source must be a string, not null (None)"),
    (_set("layers", 2, "q", "const", value=None),
     "layers[2].q.const must be a tensor key (a non-empty string), not null (None)"),
])
def test_wrong_field_type(saved, edit, problem):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


# ----------------------------------------------------------------- tensors
def test_tensor_missing(saved):
    rewrite(saved, lambda t: t.pop("layers.1.bias"))
    with pytest.raises(ModelFileError, match=exact(
            saved, "tensor 'layers.1.bias' (layers[1].bias) is not in the file")):
        load_model(saved)


def test_tensor_named_in_json_missing(saved):
    edit_json(saved, _set("layers", 3, "v", "const", value="no.such.tensor"))
    with pytest.raises(ModelFileError, match=exact(
            saved, "tensor 'no.such.tensor' (layers[3].v.const) is not in the file")):
        load_model(saved)


def test_extra_tensor(saved):
    rewrite(saved, lambda t: t.update(junk=torch.zeros(3, dtype=I64)))
    with pytest.raises(ModelFileError, match=exact(
            saved, "tensor 'junk' in the file is not referenced by the metadata")):
        load_model(saved)


def test_extra_tensors(saved):
    rewrite(saved, lambda t: t.update(junk=torch.zeros(3, dtype=I64), aaa=torch.ones(1)))
    with pytest.raises(ModelFileError, match=exact(
            saved, "tensors 'aaa', 'junk' in the file are not referenced by the metadata")):
        load_model(saved)


def test_tensor_referenced_twice(saved):
    edit_json(saved, _set("layers", 1, "theta", value="layers.1.alpha"))
    with pytest.raises(ModelFileError, match=exact(
            saved, "tensor 'layers.1.alpha' is referenced twice (layers[1].alpha and "
                   "layers[1].theta)")):
        load_model(saved)


@pytest.mark.parametrize("dtype, name", [(torch.float32, "float32"), (torch.float64, "float64"),
                                         (torch.int32, "int32"), (torch.uint8, "uint8")])
def test_wrong_dtype(saved, dtype, name):
    def edit(t):
        t["layers.1.alpha"] = t["layers.1.alpha"].to(dtype)
    rewrite(saved, edit, redigest=False)
    with pytest.raises(ModelFileError, match=exact(
            saved, f"tensor 'layers.1.alpha' has dtype {name}; model tensors must be int64")):
        load_model(saved)


# ------------------------------------------------------------------ digest
def _digest_message(path) -> str:
    """The exact mismatch message for the (corrupted) file at ``path``."""
    tensors, metadata = read_parts(path)
    doc = json.loads(metadata["spikeforge"])
    computed = modelfile._content_digest(doc, tensors)
    assert computed != doc["digest"]
    return exact(path, f"digest mismatch (stored {doc['digest']}, computed {computed}): "
                       f"the file is corrupt or was edited")


def test_flipped_byte_in_tensor_data(saved):
    data = bytearray(saved.read_bytes())
    header, _ = split_file(bytes(data))
    start = 8 + int.from_bytes(data[:8], "little")
    begin, end = header["layers.4.inputs.1.weight"]["data_offsets"]
    data[start + (begin + end) // 2] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=_digest_message(saved)):
        load_model(saved)


def test_flipped_bit_in_every_tensor(tmp_path):
    """Whichever tensor is hit, the corruption is caught."""
    good = tmp_path / "good.safetensors"
    save_model(good, ssm_net(), META)
    data = good.read_bytes()
    header, _ = split_file(data)
    start = 8 + int.from_bytes(data[:8], "little")
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        bad = bytearray(data)
        bad[start + spec["data_offsets"][0]] ^= 0x01
        path = tmp_path / "bad.safetensors"
        path.write_bytes(bytes(bad))
        with pytest.raises(ModelFileError, match=_digest_message(path)):
            load_model(path)


@pytest.mark.parametrize("edit", [
    _set("meta", "task", value="other"),
    _set("layers", 0, "v_reset", value=1),
    _set("layers", 2, "y_shift", value=3),
    _set("layers", 4, "inputs", 2, "recurrent", value=False),
    _set("format", "frac_bits", value=7),
])
def test_edited_json_value(saved, edit):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=_digest_message(saved)):
        load_model(saved)


def test_edited_digest(saved):
    edit_json(saved, _set("digest", value="0" * 64))
    with pytest.raises(ModelFileError, match=_digest_message(saved)):
        load_model(saved)


def test_swapped_tensors(saved):
    """Two same-shaped tensors swapped: every value is legal, the digest catches it."""
    def tensors(t):
        t["layers.0.alpha"], t["layers.0.bias"] = t["layers.0.bias"], t["layers.0.alpha"]
    rewrite(saved, tensors)
    with pytest.raises(ModelFileError, match=_digest_message(saved)):
        load_model(saved)


def test_reformatted_json_is_not_a_change(saved):
    edit_text(saved, lambda text: json.dumps(json.loads(text), indent=3, sort_keys=False))
    net, meta = load_model(saved)
    assert meta == META
    assert_same_network(ssm_net(), net)


# ---------------------------------------------- inconsistencies the Network catches
def _tensor(key, value):
    def edit(t):
        t[key] = value(t[key])
    return edit


def test_network_error_wrong_shape(saved):
    rewrite(saved, _tensor("layers.1.alpha", lambda a: a[:2].clone()), redigest=True)
    with pytest.raises(ModelFileError, match=exact(
            saved, "invalid network: layer 'h': alpha has shape (2,), expected (3,)")):
        load_model(saved)


def test_network_error_weight_shape(saved):
    rewrite(saved, _tensor("layers.4.inputs.0.weight", lambda w: w.T.contiguous()),
            redigest=True)
    with pytest.raises(ModelFileError, match=exact(
            saved, "invalid network: layer 'r': weight from 'mem2' has shape (2, 4), "
                   "expected (4, 2)")):
        load_model(saved)


def test_network_error_weight_out_of_range(saved):
    def edit(t):
        w = t["layers.0.inputs.0.weight"].clone()
        w[1, 2] = 1000
        t["layers.0.inputs.0.weight"] = w
    rewrite(saved, edit, redigest=True)
    low = int(read_parts(saved)[0]["layers.0.inputs.0.weight"].min())
    with pytest.raises(ModelFileError, match=exact(
            saved, f"invalid network: layer 'g': weight from 'input' has values in "
                   f"[{low}, 1000], outside [-128, 127]")):
        load_model(saved)


@pytest.mark.parametrize("edit, problem", [
    (_set("layers", 4, "inputs", 0, "source", value="nowhere"),
     "layer 'r': input source 'nowhere' does not exist"),
    (_set("layers", 3, "q", "recurrent", value=False),
     "layer 'mem2': feed-forward operand q source 'r' does not come earlier in the layer "
     "order; mark the edge recurrent or reorder the layers"),
    (_set("layers", 0, "reset", value="sometimes"),
     "layer 'g': reset must be one of ('subtract', 'zero', 'none'), not 'sometimes'"),
    (_set("layers", 2, "mode", value="fixed"), "layer 'mem': a gate needs mode 'selective'"),
    (_set("layers", 1, "size", value=4), "layer 'h': alpha has shape (3,), expected (4,)"),
    (_set("layers", 1, "name", value="input"), "layer name 'input' is not allowed"),
    (_set("output", value="missing"),
     "output 'missing' is not a layer (layers: ['g', 'h', 'mem', 'mem2', 'r', 'out'])"),
    (_set("input_kind", value="float"), "input_kind must be 'spike' or 'int', not 'float'"),
    (_set("format", "w_bits", value=99), "Format.w_bits must be an integer in 2..48, not 99"),
])
def test_network_error_from_json(saved, edit, problem):
    rewrite(saved, edit_doc=edit, redigest=True)
    with pytest.raises(ModelFileError, match=exact(saved, f"invalid network: {problem}")):
        load_model(saved)


def test_network_error_narrower_format(saved):
    """A narrower w_bits in the JSON makes the stored weights out of range."""
    rewrite(saved, edit_doc=_set("format", "w_bits", value=4), redigest=True)
    w = read_parts(saved)[0]["layers.0.inputs.0.weight"]
    with pytest.raises(ModelFileError, match=exact(
            saved, f"invalid network: layer 'g': weight from 'input' has values in "
                   f"[{int(w.min())}, {int(w.max())}], outside [-8, 7]")):
        load_model(saved)


def test_network_error_is_chained(saved):
    rewrite(saved, edit_doc=_set("output", value="missing"), redigest=True)
    with pytest.raises(ModelFileError) as info:
        load_model(saved)
    assert isinstance(info.value.__cause__, NetworkError)


# -------------------------------------------------------------------- saving
def _dir_state(directory) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


class _Opaque:
    def __repr__(self):
        return "<opaque>"


@pytest.mark.parametrize("meta, problem", [
    (["task"], "meta must be a dict, not list"),
    ({"x": {1, 2}}, "cannot save: meta['x'] is a set ({1, 2}), which is not JSON "
                    "(use dict, list, str, int, float, bool or None)"),
    ({"shape": (8, 8)}, "cannot save: meta['shape'] is a tuple ((8, 8)), which is not JSON "
                        "(use dict, list, str, int, float, bool or None)"),
    ({"a": [1, _Opaque()]}, "cannot save: meta['a'][1] is a _Opaque (<opaque>), which is not "
                            "JSON (use dict, list, str, int, float, bool or None)"),
    ({"t": {"x": b"raw"}}, "cannot save: meta['t']['x'] is a bytes (b'raw'), which is not JSON "
                           "(use dict, list, str, int, float, bool or None)"),
    ({"loss": float("nan")}, "cannot save: meta['loss'] is nan; JSON has no NaN or Infinity"),
    ({"lr": float("inf")}, "cannot save: meta['lr'] is inf; JSON has no NaN or Infinity"),
    ({1: "one"}, "cannot save: meta has a non-string key 1; JSON keys are strings"),
    ({"t": torch.tensor(1)}, "cannot save: meta['t'] is a Tensor (tensor(1)), which is not JSON "
                             "(use dict, list, str, int, float, bool or None)"),
])
def test_save_refuses_non_json_meta(saved, meta, problem):
    before = _dir_state(saved.parent)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        save_model(saved, lif_net(), meta)
    assert _dir_state(saved.parent) == before  # untouched, and no temp file


def test_save_refuses_non_json_meta_new_path(tmp_path):
    path = tmp_path / "new.safetensors"
    with pytest.raises(ModelFileError):
        save_model(path, lif_net(), {"x": object()})
    assert os.listdir(tmp_path) == []


def _break_theta(net):
    net.layers[1].theta[0] = 0
    return f"layer 'h2': theta has values in [0, {int(net.layers[1].theta.max())}], " \
        f"outside [1, 32767]"


def _float_v_reset(net):
    net.layers[1].v_reset = 0.5
    return "layer 'h2': v_reset must be an integer, not 0.5"


def _int_recurrent(net):
    net.layers[0].inputs[0].recurrent = 0
    return ("layer 'h1': the recurrent flag of input source 'input' must be True or False, "
            "not 0")


@pytest.mark.parametrize("breaker", [_break_theta, _float_v_reset, _int_recurrent])
def test_save_refuses_invalid_network(saved, breaker):
    net = lif_net()
    problem = breaker(net)
    before = _dir_state(saved.parent)
    with pytest.raises(ModelFileError, match=exact(
            saved, f"cannot save an invalid network: {problem}")):
        save_model(saved, net, {})
    assert _dir_state(saved.parent) == before


def test_save_refuses_non_network(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(ModelFileError, match=exact(
            path, "cannot save an invalid network: expected a Network, not dict")):
        save_model(path, {"layers": []}, {})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_failed_save_leaves_old_file_and_no_temp(saved, monkeypatch, where):
    before = _dir_state(saved.parent)
    real_write = os.write

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def short_write(fd, data):  # write part, then fail: a half-written temp file
        real_write(fd, bytes(data[:100]))
        fail()

    monkeypatch.setattr(modelfile.os, where, short_write if where == "write" else fail)
    with pytest.raises(OSError, match="No space left on device"):
        save_model(saved, lif_net(), {"task": "new"})
    monkeypatch.undo()
    assert _dir_state(saved.parent) == before
    _, meta = load_model(saved)
    assert meta == META


def test_failed_save_to_missing_directory(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "m.safetensors"
    with pytest.raises(FileNotFoundError):
        save_model(path, lif_net(), {})
    assert os.listdir(tmp_path) == []


def test_save_onto_directory_fails_cleanly(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(OSError):
        save_model(target, lif_net(), {})
    assert os.listdir(tmp_path) == ["taken"]
    assert os.listdir(target) == []


def test_overwrite_keeps_file_mode(saved):
    os.chmod(saved, 0o640)
    save_model(saved, lif_net(), {})
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o640


def test_save_does_not_mutate_meta(tmp_path):
    meta = {"a": [1, 2, {"b": 3.5}]}
    copy = json.loads(json.dumps(meta))
    save_model(tmp_path / "m.safetensors", lif_net(), meta)
    assert meta == copy
    assert load_model(tmp_path / "m.safetensors")[1] == copy

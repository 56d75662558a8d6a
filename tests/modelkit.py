"""Model-file test helpers: small networks of every layer kind and edge kind, their
comparison, and the file surgery kit (byte and JSON edits of a saved file)."""

from __future__ import annotations

import json
import re

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from spikeforge.golden.integer import (
    Format,
    LIFLayer,
    Network,
    Operand,
    Projection,
    SSMLayer,
    signed_range,
)
from spikeforge.golden.modeldoc import content_digest

I64 = torch.int64


# ------------------------------------------------------------- small networks
def ints(gen: torch.Generator, shape, lo: int, hi: int) -> torch.Tensor:
    return torch.randint(lo, hi + 1, tuple(shape), generator=gen, dtype=I64)


def lif_layer(gen, fmt: Format, name: str, size: int, inputs, *, reset="subtract", v_reset=0,
         spiking=True) -> LIFLayer:
    """``inputs``: ``(source, source_size, recurrent)`` triples."""
    return LIFLayer(
        name=name,
        size=size,
        alpha=ints(gen, (size,), 0, fmt.one),
        theta=ints(gen, (size,), 10, 60),
        bias=ints(gen, (size,), -5, 5),
        inputs=[Projection(source=src, weight=ints(gen, (size, n), -30, 30), recurrent=rec)
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
        lif_layer(gen, fmt, "h1", 5, [("input", 6, False), ("h1", 5, True)], reset="subtract"),
        lif_layer(gen, fmt, "h2", 4, [("h1", 5, False), ("input", 6, False), ("h3", 3, True)],
             reset="zero", v_reset=-5),
        lif_layer(gen, fmt, "h3", 3, [("h2", 4, False)], reset="none"),
        lif_layer(gen, fmt, "out", 2, [("h3", 3, False), ("h1", 5, False)], reset="none",
             spiking=False),
    ]
    return Network(input_size=6, input_kind="spike", layers=layers, output="out", fmt=fmt)


def int_net(seed: int = 1) -> Network:
    """Signed integer input and a non-default format."""
    gen = torch.Generator().manual_seed(seed)
    fmt = Format(w_bits=7, u_bits=20, frac_bits=6, in_bits=10, s_bits=18, y_bits=9, acc_bits=30)
    layers = [
        lif_layer(gen, fmt, "h", 4, [("input", 5, False), ("h", 4, True)], reset="zero", v_reset=3),
        lif_layer(gen, fmt, "readout", 3, [("h", 4, False), ("input", 5, False)], reset="none",
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
    g = lif_layer(gen, fmt, "g", 2, [("input", 4, False)])
    h = lif_layer(gen, fmt, "h", 3, [("input", 4, False)])
    mem = SSMLayer(
        name="mem", n=3, m=4,
        k=Operand(source="h"),
        v=Operand(source="input"),
        q=Operand(const=ints(gen, (3,), in_lo, in_hi)),
        decay=ints(gen, (4, 3), 0, fmt.one),
        mode="selective", gate="g", gate_recurrent=True, y_shift=2,
    )
    mem2 = SSMLayer(
        name="mem2", n=4, m=2,
        k=Operand(const=ints(gen, (4,), in_lo, in_hi)),
        v=Operand(const=ints(gen, (2,), in_lo, in_hi)),
        q=Operand(source="r", recurrent=True),
        decay=ints(gen, (4,), 0, fmt.one),
        mode="fixed", y_shift=5,
    )
    r = lif_layer(gen, fmt, "r", 4, [("mem2", 2, False), ("mem", 4, False), ("r", 4, True)])
    out = lif_layer(gen, fmt, "out", 2, [("r", 4, False), ("mem2", 2, False)], reset="none",
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
        return ints(gen, (steps, batch, net.input_size), 0, 1)
    return ints(gen, (steps, batch, net.input_size), *signed_range(net.fmt.in_bits))


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
        doc["digest"] = content_digest(doc, tensors)
    save_file(tensors, str(path), metadata={"spikeforge": json.dumps(doc)})


def exact(path, text: str) -> str:
    return "^" + re.escape(f"{path}: {text}") + "$"


def del_at(*keys):
    def edit(doc):
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return edit


def set_at(*keys, value):
    def edit(doc):
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return edit

"""The model file's JSON document (``spikeforge.golden.modeldoc``): model_digest, and
every way a document is rejected (structure, types, format_version, values the
Network refuses), through the file."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from featgen import random_feature_network
from modelkit import (
    META,
    del_at,
    edit_json,
    edit_text,
    exact,
    lif_net,
    read_parts,
    rewrite,
    set_at,
    ssm_net,
)
from spikeforge.golden.integer import NetworkError
from spikeforge.golden.modeldoc import model_digest
from spikeforge.golden.modelfile import ModelFileError, load_model, save_model


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, ssm_net(), META)
    return path


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


# -------------------------------------------------------------- the document
def test_json_not_an_object(saved):
    edit_text(saved, lambda text: "[1, 2]")
    with pytest.raises(ModelFileError, match=exact(
            saved, "the 'spikeforge' metadata must be a JSON object, not list")):
        load_model(saved)


# ------------------------------------------------------------ format_version
@pytest.mark.parametrize("value, problem", [
    (3, "unsupported format_version 3 (this reader supports 1, 2)"),
    (0, "unsupported format_version 0 (this reader supports 1, 2)"),
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
@pytest.mark.parametrize("edit, problem", [
    (del_at("meta"), "document: missing field 'meta'"),
    (del_at("digest"), "document: missing field 'digest'"),
    (del_at("layers"), "document: missing field 'layers'"),
    (del_at("format", "acc_bits"), "format: missing field 'acc_bits'"),
    (del_at("layers", 0, "reset"), "layers[0]: missing field 'reset'"),
    (del_at("layers", 0, "kind"), "layers[0]: missing field 'kind'"),
    (del_at("layers", 2, "gate_recurrent"), "layers[2]: missing field 'gate_recurrent'"),
    (del_at("layers", 4, "inputs", 1, "weight"), "layers[4].inputs[1]: missing field 'weight'"),
    (del_at("layers", 2, "k", "recurrent"), "layers[2].k: missing field 'recurrent'"),
    (set_at("layers", 3, "v", value={}), "layers[3].v: missing fields 'source', 'recurrent'"),
])
def test_missing_field(saved, edit, problem):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


@pytest.mark.parametrize("edit, problem", [
    (set_at("extra", value=1), "document: unknown field 'extra'"),
    (set_at("format", "z_bits", value=8), "format: unknown field 'z_bits'"),
    (set_at("layers", 0, "colour", value="red"), "layers[0]: unknown field 'colour'"),
    (set_at("layers", 0, "n", value=3), "layers[0]: unknown field 'n'"),  # an SSM field on LIF
    (set_at("layers", 2, "size", value=3), "layers[2]: unknown field 'size'"),
    (set_at("layers", 0, "inputs", 0, "delay", value=1),
     "layers[0].inputs[0]: unknown field 'delay'"),
    (set_at("layers", 2, "q", "recurrent", value=False), "layers[2].q: unknown field 'recurrent'"),
    (set_at("layers", 2, "k", "const", value="layers.2.k"), "layers[2].k: unknown fields "
                                                          "'recurrent', 'source'"),
])
def test_extra_field(saved, edit, problem):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


# -------------------------------------------------------------- wrong types
@pytest.mark.parametrize("edit, problem", [
    (set_at("format", "w_bits", value="8"), "format.w_bits must be an integer, not str ('8')"),
    (set_at("format", value=[8]), "document.format must be an object, not list ([8])"),
    (set_at("input_size", value=4.0), "document.input_size must be an integer, not float (4.0)"),
    (set_at("input_kind", value=None), "document.input_kind must be a string, not null (None)"),
    (set_at("output", value=5), "document.output must be a string, not int (5)"),
    (set_at("layers", value={}), "document.layers must be a list, not dict ({})"),
    (set_at("meta", value=["task"]), "document.meta must be an object, not list (['task'])"),
    (set_at("digest", value=12), "document.digest must be a string, not int (12)"),
    (set_at("digest", value="abc"), "digest must be 64 lowercase hex digits, not 'abc'"),
    (set_at("digest", value="A" * 64), f"digest must be 64 lowercase hex digits, not {'A' * 64!r}"),
    (set_at("layers", 0, value="g"), "layers[0] must be an object, not str"),
    (set_at("layers", 0, "kind", value="gru"), "layers[0].kind must be 'lif' or 'ssm', not 'gru'"),
    (set_at("layers", 0, "size", value="2"), "layers[0].size must be an integer, not str ('2')"),
    (set_at("layers", 0, "size", value=True), "layers[0].size must be an integer, not bool (True)"),
    (set_at("layers", 0, "v_reset", value=0.0),
     "layers[0].v_reset must be an integer, not float (0.0)"),
    (set_at("layers", 0, "spiking", value=1), "layers[0].spiking must be a boolean, not int (1)"),
    (set_at("layers", 0, "reset", value=0), "layers[0].reset must be a string, not int (0)"),
    (set_at("layers", 0, "alpha", value=7),
     "layers[0].alpha must be a tensor key (a non-empty string), not int (7)"),
    (set_at("layers", 0, "alpha", value=""),
     "layers[0].alpha must be a tensor key (a non-empty string), not str ('')"),
    (set_at("layers", 0, "inputs", value="input"),
     "layers[0].inputs must be a list, not str ('input')"),
    (set_at("layers", 0, "inputs", 0, value=["input"]),
     "layers[0].inputs[0] must be an object, not list"),
    (set_at("layers", 0, "inputs", 0, "recurrent", value="no"),
     "layers[0].inputs[0].recurrent must be a boolean, not str ('no')"),
    (set_at("layers", 2, "gate", value=5), "layers[2].gate must be a string or null, not int (5)"),
    (set_at("layers", 2, "y_shift", value=None),
     "layers[2].y_shift must be an integer, not null (None)"),
    (set_at("layers", 2, "k", value="h"), "layers[2].k must be an object, not str"),
    (set_at("layers", 2, "k", "source", value=None),
     "layers[2].k.source must be a string, not null (None)"),
    (set_at("layers", 2, "q", "const", value=None),
     "layers[2].q.const must be a tensor key (a non-empty string), not null (None)"),
])
def test_wrong_field_type(saved, edit, problem):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


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
    (set_at("layers", 4, "inputs", 0, "source", value="nowhere"),
     "layer 'r': input source 'nowhere' does not exist"),
    (set_at("layers", 3, "q", "recurrent", value=False),
     "layer 'mem2': feed-forward operand q source 'r' does not come earlier in the layer "
     "order; mark the edge recurrent or reorder the layers"),
    (set_at("layers", 0, "reset", value="sometimes"),
     "layer 'g': reset must be one of ('subtract', 'zero', 'none'), not 'sometimes'"),
    (set_at("layers", 2, "mode", value="fixed"), "layer 'mem': a gate needs mode 'selective'"),
    (set_at("layers", 1, "size", value=4), "layer 'h': alpha has shape (3,), expected (4,)"),
    (set_at("layers", 1, "name", value="input"), "layer name 'input' is not allowed"),
    (set_at("output", value="missing"),
     "output 'missing' is not a layer (layers: ['g', 'h', 'mem', 'mem2', 'r', 'out'])"),
    (set_at("input_kind", value="float"), "input_kind must be 'spike' or 'int', not 'float'"),
    (set_at("format", "w_bits", value=99), "Format.w_bits must be an integer in 2..48, not 99"),
])
def test_network_error_from_json(saved, edit, problem):
    rewrite(saved, edit_doc=edit, redigest=True)
    with pytest.raises(ModelFileError, match=exact(saved, f"invalid network: {problem}")):
        load_model(saved)


def test_network_error_narrower_format(saved):
    """A narrower w_bits in the JSON makes the stored weights out of range."""
    rewrite(saved, edit_doc=set_at("format", "w_bits", value=4), redigest=True)
    w = read_parts(saved)[0]["layers.0.inputs.0.weight"]
    with pytest.raises(ModelFileError, match=exact(
            saved, f"invalid network: layer 'g': weight from 'input' has values in "
                   f"[{int(w.min())}, {int(w.max())}], outside [-8, 7]")):
        load_model(saved)


def test_network_error_is_chained(saved):
    rewrite(saved, edit_doc=set_at("output", value="missing"), redigest=True)
    with pytest.raises(ModelFileError) as info:
        load_model(saved)
    assert isinstance(info.value.__cause__, NetworkError)


# ------------------------------------------------- feature maps, current-based (v2)
def _feature_net():
    for seed in range(100):  # a network with a pool, a convolution and a current
        net = random_feature_network(random.Random(seed))
        projections = [p for layer in net.layers for p in layer.inputs]
        if any(p.pool for p in projections) and any(p.conv for p in projections) and \
                any(layer.current_based for layer in net.layers):
            return net
    raise AssertionError("no such network among the seeds")


def test_feature_network_round_trip(tmp_path):
    net = _feature_net()
    path = tmp_path / "f.safetensors"
    save_model(path, net, META)
    back, meta = load_model(path)
    assert model_digest(back) == model_digest(net) and meta == META
    assert _version(path) == 2
    x = torch.randint(0, 2, (5, 2, net.input_size))
    if net.input_kind == "int":
        x = x * 3 - 1
    a, b = net.run(x), back.run(x)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    for layer, again in zip(net.layers, back.layers, strict=True):
        assert layer.shape == again.shape
        assert [p.to_dict() for p in layer.inputs] == [q.to_dict() for q in again.inputs]


def _version(path) -> int:
    return json.loads(read_parts(path)[1]["spikeforge"])["format_version"]


def test_plain_network_stays_version_1(saved):
    assert _version(saved) == 1


def test_version_1_has_no_feature_fields(tmp_path):
    path = tmp_path / "f.safetensors"
    save_model(path, _feature_net(), META)
    edit_json(path, lambda doc: doc.update(format_version=1))
    with pytest.raises(ModelFileError, match=r"unknown field"):
        load_model(path)


@pytest.mark.parametrize("edit, problem", [
    (lambda p: p.update(in_shape=[2, "a"]), "in_shape must be a list of integers"),
    (lambda p: p.update(pool={"kernel": [2]}), "pool: missing fields 'stride', 'padding'"),
    (lambda p: p.update(conv={"stride": 1.5, "padding": 0, "dilation": 1, "groups": 1}),
     "conv.stride must be an integer or a list of integers, not float (1.5)"),
])
def test_feature_field_errors(tmp_path, edit, problem):
    path = tmp_path / "f.safetensors"
    save_model(path, _feature_net(), META)
    edit_json(path, lambda doc: edit(doc["layers"][0]["inputs"][0]))
    with pytest.raises(ModelFileError, match=re.escape(problem)):
        load_model(path)

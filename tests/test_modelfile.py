"""The model file format: round trips, and every way a file is rejected."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import torch
from modelkit import (
    I64,
    META,
    NETWORKS,
    assert_same_network,
    assert_same_run,
    edit_json,
    edit_text,
    exact,
    join_file,
    lif_layer,
    lif_net,
    random_input,
    read_parts,
    rewrite,
    set_at,
    split_file,
    ssm_net,
)
from safetensors import safe_open
from safetensors.torch import save_file
from spikeforge.golden import modelfile
from spikeforge.golden.integer import Format, Network
from spikeforge.golden.modeldoc import content_digest, model_digest
from spikeforge.golden.modelfile import ModelFileError, load_model, save_model


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
    a = lif_layer(gen, fmt, "a", 3, [("input", 3, False)])
    b = lif_layer(gen, fmt, "b", 3, [("a", 3, False)])
    b.alpha = a.alpha  # one tensor object in two layers
    b.inputs[0].weight = a.inputs[0].weight
    base = torch.tensor([1, -2, 3, 20, 30, 40], dtype=I64)
    a.bias, a.theta = base[:3], base[3:]  # two views of one storage
    net = Network(input_size=3, input_kind="spike", layers=[a, b], output="b")
    save_model(tmp_path / "m.safetensors", net, {})
    assert_same_network(net, load_model(tmp_path / "m.safetensors")[0])


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


def test_not_a_regular_file_is_never_read(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # reading would hang until a writer comes
    with pytest.raises(ModelFileError, match=exact(fifo, "not a regular file (a device, a "
                                                         "pipe, ...)")):
        load_model(fifo)
    zero = tmp_path / "zero.safetensors"
    zero.symlink_to("/dev/zero")  # reading would never end
    with pytest.raises(ModelFileError, match=exact(zero, "not a regular file (a device, a "
                                                         "pipe, ...)")):
        load_model(zero)


def test_a_file_over_the_size_limit_is_not_read(saved, monkeypatch):
    monkeypatch.setattr(modelfile, "MAX_FILE_BYTES", 100)
    size = saved.stat().st_size
    with pytest.raises(ModelFileError, match=exact(
            saved, f"{size} bytes, more than the 100 a model file may have")):
        load_model(saved)


@pytest.mark.parametrize("depth, problem", [
    (100_000, "the 'spikeforge' metadata is nested too deeply"),
    (200, "the 'spikeforge' metadata is nested more than 64 deep"),
])
def test_deeply_nested_metadata_is_refused(saved, depth, problem):
    nested = '"meta":{"x":' + "[" * depth + "]" * depth + ","
    edit_text(saved, lambda text: text.replace('"meta":{', nested, 1))
    with pytest.raises(ModelFileError, match=exact(saved, problem)):
        load_model(saved)


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


# ----------------------------------------------------------------- tensors
def test_tensor_missing(saved):
    rewrite(saved, lambda t: t.pop("layers.1.bias"))
    with pytest.raises(ModelFileError, match=exact(
            saved, "tensor 'layers.1.bias' (layers[1].bias) is not in the file")):
        load_model(saved)


def test_tensor_named_in_json_missing(saved):
    edit_json(saved, set_at("layers", 3, "v", "const", value="no.such.tensor"))
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
    edit_json(saved, set_at("layers", 1, "theta", value="layers.1.alpha"))
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
    computed = content_digest(doc, tensors)
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
    set_at("meta", "task", value="other"),
    set_at("layers", 0, "v_reset", value=1),
    set_at("layers", 2, "y_shift", value=3),
    set_at("layers", 4, "inputs", 2, "recurrent", value=False),
    set_at("format", "frac_bits", value=7),
])
def test_edited_json_value(saved, edit):
    edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=_digest_message(saved)):
        load_model(saved)


def test_edited_digest(saved):
    edit_json(saved, set_at("digest", value="0" * 64))
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

"""The malicious model files of the catalogue (tests/test_malicious_files.py): each case
writes its file(s) into a folder of its own and returns the command line that reads
them and a fragment of the one error line it must give."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from modelkit import edit_json, edit_text, join_file, rewrite, split_file
from netgen import small_model_file
from safetensors.torch import save_file
from spikeforge.golden.modeldoc import content_digest

Case = Callable[[Path], tuple[list[str], str]]


def registry() -> tuple[dict[str, Case], Callable[[Case], Case]]:
    """A catalogue's cases (name -> a function that writes the bad file(s) into a
    folder and returns the command line that reads them and a fragment the error line
    must hold) and the decorator that adds ``case_<name>`` functions to it."""
    cases: dict[str, Case] = {}

    def case(fn: Case) -> Case:
        name = fn.__name__.removeprefix("case_").replace("_", "-")
        assert name not in cases, name
        cases[name] = fn
        return fn

    return cases, case


CASES, case = registry()


def model(d: Path, name: str = "m.safetensors", **kw) -> Path:
    """A valid digits model file (untrained: no training needed)."""
    return small_model_file(d / name, hidden=kw.pop("hidden", 8), timesteps=2, **kw)


def export(path: Path) -> list[str]:
    """``export-nir MODEL OUT``: reads the model, writes a NIR file (it must not)."""
    return ["export-nir", str(path), str(path.parent / "out.nir")]


def evaluate(path: Path) -> list[str]:
    """``eval MODEL --plot DIR``: the task's split; the plots folder must not appear."""
    return ["eval", str(path), "--plot", str(path.parent / "plots")]


def raw(path: Path, header, body: bytes = b"", length: int | None = None) -> Path:
    """A safetensors-framed file: an 8-byte little-endian header length (``length``
    if given), the header (JSON of a dict, or bytes as they are) and ``body``."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes((len(head) if length is None else length).to_bytes(8, "little")
                     + head + body)
    return path


def sparse(path: Path, header: dict, size: int) -> Path:
    """A safetensors header followed by a hole: the file is ``size`` bytes long but
    holds no data blocks (a sparse file)."""
    raw(path, header)
    with open(path, "r+b") as f:
        f.truncate(size)
    return path


def with_doc(path: Path, doc: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """A model file with this document (its digest computed) and these tensors."""
    doc = {**doc, "digest": "0" * 64}
    doc["digest"] = content_digest(doc, tensors)
    save_file(tensors, str(path), metadata={"spikeforge": json.dumps(doc)})
    return path


FORMAT = {"w_bits": 8, "u_bits": 16, "frac_bits": 8, "in_bits": 8, "s_bits": 16, "y_bits": 8,
          "acc_bits": 48}


def lif_doc(size: int, inputs: list[dict], *, input_size: int, shape=None) -> tuple[dict, dict]:
    """A one-layer document (format_version 2) and its tensors but the weights."""
    layer = {"kind": "lif", "name": "h", "size": size, "reset": "subtract", "v_reset": 0,
             "spiking": True, "alpha": "a", "theta": "t", "bias": "b", "inputs": inputs}
    if shape is not None:
        layer["shape"] = shape
    doc = {"format_version": 2, "format": FORMAT, "input_size": input_size,
           "input_kind": "spike", "output": "h", "layers": [layer], "meta": {}}
    tensors = {"a": torch.zeros(size, dtype=torch.int64),
               "t": torch.ones(size, dtype=torch.int64),
               "b": torch.zeros(size, dtype=torch.int64)}
    return doc, tensors


# ----------------------------------------------------------- the file itself
@case
def case_model_missing(d):
    return export(d / "none.safetensors"), "no such model file"


@case
def case_model_directory(d):
    (d / "m.safetensors").mkdir()
    return export(d / "m.safetensors"), "is a directory, not a model file"


@case
def case_model_empty(d):
    (d / "m.safetensors").write_bytes(b"")
    return export(d / "m.safetensors"), "not a valid safetensors file"


@case
def case_model_fifo(d):
    os.mkfifo(d / "m.safetensors")  # no writer: opening it would wait forever
    return export(d / "m.safetensors"), "not a regular file"


@case
def case_model_dev_zero(d):
    (d / "m.safetensors").symlink_to("/dev/zero")
    return export(d / "m.safetensors"), "not a regular file"


@case
def case_model_dev_urandom(d):
    (d / "m.safetensors").symlink_to("/dev/urandom")
    return export(d / "m.safetensors"), "not a regular file"


@case
def case_model_sparse_2gib_tensor(d):
    size = 2 << 30
    header = {"w": {"dtype": "I64", "shape": [size // 8 - 64], "data_offsets": [0, size - 512]}}
    return export(sparse(d / "m.safetensors", header, size)), "bytes, more than the"


@case
def case_model_sparse_900mib_tensor(d):
    size = 900 << 20
    header = {"w": {"dtype": "I64", "shape": [size // 8 - 64], "data_offsets": [0, size - 512]}}
    return export(sparse(d / "m.safetensors", header, size)), "bytes, more than the"


@case
def case_model_sparse_tensor_under_the_cap(d):
    """Under the size cap: the header is refused before the 200 MB are read."""
    size = 200 << 20
    header = {"__metadata__": {"x": "y"},
              "w": {"dtype": "I64", "shape": [size // 8 - 64], "data_offsets": [0, size - 512]}}
    head = json.dumps(header).encode()
    header["w"]["data_offsets"][1] = size - 8 - len(head)
    header["w"]["shape"] = [(size - 8 - len(head)) // 8]
    return export(sparse(d / "m.safetensors", header, size)), "no 'spikeforge' entry"


@case
def case_model_extra_huge_tensor(d):
    """A valid model plus a 100 MB tensor nothing references (a hole on disk)."""
    path = model(d)
    header, body = split_file(path.read_bytes())
    extra = 100 << 20
    end = len(body)
    header["zzz"] = {"dtype": "I64", "shape": [extra // 8], "data_offsets": [end, end + extra]}
    path.write_bytes(join_file(header, body))
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, 2) + extra)
    return export(path), "'zzz' in the file is not referenced by the metadata"


@case
def case_model_header_length_huge(d):
    return export(raw(d / "m.safetensors", {"a": 1}, length=2**63 - 1)), "header"


@case
def case_model_header_length_past_the_end(d):
    return export(raw(d / "m.safetensors", {}, length=4096)), "header"


@case
def case_model_shorter_than_the_length_field(d):
    (d / "m.safetensors").write_bytes(b"\x10\x00\x00")
    return export(d / "m.safetensors"), "not a valid safetensors file"


@case
def case_model_truncated(d):
    path = model(d)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return export(path), "not a valid safetensors file"


@case
def case_model_header_not_utf8(d):
    return export(raw(d / "m.safetensors", b'{"\xff\xfe": 1}    ')), "not a valid safetensors"


@case
def case_model_header_not_an_object(d):
    return export(raw(d / "m.safetensors", b"[1, 2, 3]")), "not a valid safetensors file"


@case
def case_model_header_nested_100000_deep(d):
    deep = b'{"__metadata__": {"a": "b"}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return export(raw(d / "m.safetensors", deep)), "not a valid safetensors file"


@case
def case_model_header_duplicate_keys(d):
    path = model(d)
    header, body = split_file(path.read_bytes())
    text = json.dumps(header)
    key = next(k for k in header if k != "__metadata__")
    spec = json.dumps(header[key])
    text = text[:-1] + f", {json.dumps(key)}: {spec}" + "}"
    raw(path, text.encode(), body)
    return export(path), "duplicate key"


@case
def case_model_data_offsets_out_of_bounds(d):
    path = model(d)
    header, body = split_file(path.read_bytes())
    key = next(k for k in header if k != "__metadata__")
    start, end = header[key]["data_offsets"]
    header[key]["data_offsets"] = [start, end + 10**9]
    path.write_bytes(join_file(header, body))
    return export(path), "not a valid safetensors file"


@case
def case_model_data_offsets_overlapping(d):
    path = model(d)
    header, body = split_file(path.read_bytes())
    keys = sorted((k for k in header if k != "__metadata__"),
                  key=lambda k: header[k]["data_offsets"][0])
    a, b = keys[0], keys[1]
    header[b]["data_offsets"] = header[a]["data_offsets"]
    header[b]["shape"] = header[a]["shape"]
    path.write_bytes(join_file(header, body))
    return export(path), "not a valid safetensors file"


def _edit_entry(path: Path, **entry) -> Path:
    """The header entry of the file's first tensor changed (its data left as they are)."""
    header, body = split_file(path.read_bytes())
    key = min((k for k in header if k != "__metadata__"),
              key=lambda k: header[k]["data_offsets"][0])
    header[key].update(entry)
    path.write_bytes(join_file(header, body))
    return path


@case
def case_model_shape_overflows(d):
    return export(_edit_entry(model(d), shape=[2**62, 2**62])), "not a valid safetensors file"


@case
def case_model_shape_disagrees_with_offsets(d):
    return export(_edit_entry(model(d), shape=[1000])), "not a valid safetensors file"


@case
def case_model_unknown_dtype(d):
    return export(_edit_entry(model(d), dtype="Q99")), "has dtype Q99; model tensors must be int64"


@case
def case_model_header_entry_not_an_object(d):
    path = model(d)
    header, body = split_file(path.read_bytes())
    header["layers.0.alpha"] = [1, 2, 3]
    path.write_bytes(join_file(header, body))
    return export(path), "not a valid safetensors file"


@case
def case_model_float_tensor(d):
    path = model(d)
    rewrite(path, edit_tensors=lambda t: t.update(
        {"layers.0.alpha": t["layers.0.alpha"].to(torch.float32)}))
    return export(path), "tensor 'layers.0.alpha' has dtype float32; model tensors must be int64"


@case
def case_model_nan_tensor(d):
    path = model(d)
    rewrite(path, edit_tensors=lambda t: t.update(
        {"layers.0.bias": torch.full(t["layers.0.bias"].shape, math.nan)}))
    return export(path), "tensor 'layers.0.bias' has dtype float32"


@case
def case_model_header_50mb_of_floats(d):
    """Under safetensors' 100 MB header limit, but 12 M floats once parsed."""
    path = model(d)
    edit_text(path, lambda text: text.replace('"meta":{', '"meta":{"x":['
                                              + "0.5," * 12_500_000 + '0.5],', 1))
    return export(path), "header"


# -------------------------------------------------------- the JSON document
@case
def case_model_no_spikeforge_entry(d):
    header = {"w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}
    return export(raw(d / "m.safetensors", header, bytes(8))), "no 'spikeforge' entry"


@case
def case_model_extra_metadata_entry(d):
    path = model(d)
    header, body = split_file(path.read_bytes())
    header["__metadata__"]["other"] = "x"
    path.write_bytes(join_file(header, body))
    return export(path), "unexpected safetensors metadata entries ['other']"


@case
def case_model_document_not_json(d):
    path = model(d)
    edit_text(path, lambda text: text[:-5])
    return export(path), "the 'spikeforge' metadata is not valid JSON"


@case
def case_model_document_nested_100000_deep(d):
    path = model(d)
    edit_text(path, lambda text: text.replace(
        '"meta":{', '"meta":{"x":' + "[" * 100_000 + "]" * 100_000 + ",", 1))
    return export(path), "nested too deeply"


@case
def case_model_document_nested_200_deep(d):
    path = model(d)
    edit_text(path, lambda text: text.replace(
        '"meta":{', '"meta":{"x":' + "[" * 200 + "]" * 200 + ",", 1))
    return export(path), "nested more than 64 deep"


@case
def case_model_document_duplicate_keys(d):
    path = model(d)
    edit_text(path, lambda text: text.replace('"meta":{', '"meta":{"a":1,"a":2,', 1))
    return export(path), "duplicate key 'a'"


@case
def case_model_nan_input_size(d):
    path = model(d)
    edit_text(path, lambda text: _replace_field(text, "input_size", "NaN"))
    return export(path), "NaN is not allowed"


@case
def case_model_infinite_input_size(d):
    path = model(d)
    edit_text(path, lambda text: _replace_field(text, "input_size", "1e999"))
    return export(path), "input_size must be an integer, not float (inf)"


@case
def case_model_infinity_in_meta(d):
    path = model(d)
    edit_text(path, lambda text: text.replace('"meta":{', '"meta":{"x":1e999,', 1))
    return export(path), "meta"


@case
def case_model_huge_input_size(d):
    path = model(d)
    rewrite(path, edit_doc=lambda doc: doc.update(input_size=10**12), redigest=True)
    return export(path), "invalid network"


@case
def case_model_size_as_string(d):
    path = model(d)
    edit_json(path, lambda doc: doc["layers"][0].update(size="8"))
    return export(path), "layers[0].size must be an integer, not str ('8')"


@case
def case_model_format_version_unknown(d):
    path = model(d)
    edit_json(path, lambda doc: doc.update(format_version=99))
    return export(path), "unsupported format_version 99"


@case
def case_model_missing_tensor(d):
    path = model(d)
    rewrite(path, edit_tensors=lambda t: t.pop("layers.0.theta"))
    return export(path), "tensor 'layers.0.theta' (layers[0].theta) is not in the file"


@case
def case_model_extra_tensor(d):
    path = model(d)
    rewrite(path, edit_tensors=lambda t: t.update(spare=torch.zeros(3, dtype=torch.int64)))
    return export(path), "tensor 'spare' in the file is not referenced by the metadata"


@case
def case_model_tensor_referenced_twice(d):
    path = model(d)
    edit_json(path, lambda doc: doc["layers"][0].update(theta=doc["layers"][0]["alpha"]))
    return export(path), "is referenced twice"


@case
def case_model_weight_of_the_wrong_shape(d):
    path = model(d)
    rewrite(path, edit_tensors=lambda t: t.update(
        {"layers.0.inputs.0.weight": torch.zeros(3, 5, dtype=torch.int64)}), redigest=True)
    return export(path), "invalid network: layer 'hidden': weight from 'input' has shape (3, 5)"


@case
def case_model_layer_size_huge(d):
    path = model(d)
    rewrite(path, edit_doc=lambda doc: doc["layers"][0].update(size=10**12), redigest=True)
    return export(path), "invalid network: layer 'hidden': alpha has shape (8,), expected"


@case
def case_model_value_out_of_range(d):
    path = model(d)
    rewrite(path, edit_tensors=lambda t: t.update(
        {"layers.0.alpha": torch.full_like(t["layers.0.alpha"], 2**62)}), redigest=True)
    return export(path), "invalid network: layer 'hidden': alpha has values"


@case
def case_model_digest_mismatch(d):
    path = model(d)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    return export(path), "digest mismatch"


@case
def case_model_source_missing(d):
    path = model(d)
    rewrite(path, edit_doc=lambda doc: doc["layers"][1]["inputs"][0].update(source="ghost"),
            redigest=True)
    return export(path), "source 'ghost' does not exist"


@case
def case_model_conv_gathering_1e9_values(d):
    """A 2.5 MB file whose convolution would unfold its input into 10**9 values."""
    size, kernel = 100_000, 10_000
    proj = {"source": "input", "recurrent": False, "weight": "w",
            "in_shape": [1, size + kernel - 1],
            "conv": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}}
    doc, tensors = lif_doc(size, [proj], input_size=size + kernel - 1, shape=[1, size])
    tensors["w"] = torch.zeros(1, 1, kernel, dtype=torch.int64)
    return export(with_doc(d / "m.safetensors", doc, tensors)), "invalid network"


@case
def case_model_pool_gathering_1e9_values(d):
    """A 1 MB file whose pool would unfold its input into 10**9 values."""
    pooled, kernel = 100_000, 10_000
    proj = {"source": "input", "recurrent": False, "weight": "w",
            "in_shape": [1, pooled + kernel - 1],
            "pool": {"kernel": [kernel], "stride": [1], "padding": [0]}}
    doc, tensors = lif_doc(1, [proj], input_size=pooled + kernel - 1)
    tensors["w"] = torch.zeros(1, pooled, dtype=torch.int64)
    return export(with_doc(d / "m.safetensors", doc, tensors)), "invalid network"


def _replace_field(text: str, field: str, value: str) -> str:
    doc = json.loads(text)
    old = f'"{field}":{json.dumps(doc[field])}'
    assert old in text, (old, text[:200])
    return text.replace(old, f'"{field}":{value}', 1)


# ------------------------------------------------------------ task metadata
def task_model(d: Path, **meta) -> Path:
    path = model(d)
    rewrite(path, edit_doc=lambda doc: doc["meta"].update(meta), redigest=True)
    return path


def recall_model(d: Path, **meta) -> Path:
    """A valid recall model file (untrained) with its metadata changed by ``meta``."""
    from spikeforge.golden.modelfile import save_model
    from spikeforge.golden.quantize import to_integer
    from spikeforge.golden.train import build_twin, config_for

    torch.manual_seed(0)
    cfg = config_for("recall", n_keys=4, n_values=4, n_pairs=2, length=8)
    net = to_integer(build_twin(cfg))
    base = {"task": "recall", "length": 8, "n_pairs": 2, "n_keys": 4, "n_values": 4,
            "train_size": 16, "test_size": 16, "seed": 0, "readout": "last", "mode": "fixed"}
    path = d / "m.safetensors"
    save_model(path, net, {**base, **meta})
    return path


@case
def case_model_task_timesteps_huge(d):
    return evaluate(task_model(d, timesteps=1e7)), "metadata timesteps=10000000.0 is not"


@case
def case_model_task_timesteps_negative(d):
    return evaluate(task_model(d, timesteps=-1)), "metadata timesteps=-1 is not an integer"


@case
def case_model_task_timesteps_string(d):
    return evaluate(task_model(d, timesteps="8")), "metadata timesteps='8' is not an integer"


@case
def case_model_task_timesteps_1024(d):
    """In the field's range, but the split would be 359 x 1024 x 64 values."""
    return evaluate(task_model(d, timesteps=1024)), "timesteps"


@case
def case_model_task_unknown(d):
    return evaluate(task_model(d, task="imagenet")), "the metadata names no known task"


@case
def case_model_task_encoding_unknown(d):
    return evaluate(task_model(d, encoding="pcm")), "metadata encoding='pcm' is not one of"


@case
def case_model_task_input_does_not_match(d):
    """A digits model whose network takes 5 inputs, not the 64 pixels."""
    path = model(d)

    def edit_tensors(t):
        t["layers.0.inputs.0.weight"] = t["layers.0.inputs.0.weight"][:, :5].contiguous()

    rewrite(path, edit_tensors=edit_tensors,
            edit_doc=lambda doc: doc.update(input_size=5), redigest=True)
    return evaluate(path), "input"


@case
def case_model_task_recall_test_size_1e8(d):
    return evaluate(recall_model(d, test_size=1e8)), "metadata test_size=100000000.0 is not"


@case
def case_model_task_recall_split_too_large(d):
    """Every field in its range, but the split would be 100,000 x 1,024 x 9 values."""
    return evaluate(recall_model(d, test_size=100_000, length=1024)), "test_size"


@case
def case_model_task_recall_more_pairs_than_keys(d):
    return evaluate(recall_model(d, n_pairs=20)), "n_pairs"


@case
def case_model_task_recall_too_short(d):
    return evaluate(recall_model(d, length=2)), "length"


@case
def case_model_task_run_checks_the_file_first(d):
    """``run``: the model is refused before the device is opened."""
    path = task_model(d, timesteps=-1)
    return (["run", str(path), "--device", "socket://127.0.0.1:9", "--timeout", "0.5"],
            "metadata timesteps=-1 is not an integer")

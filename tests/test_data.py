"""``spikeforge.golden.data``: integer values from floats, the ``.npz`` data file,
model inputs, the readout rule and evaluation; and the device's input path (the
event readers and binning: ``test_events.py``)."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
import torch
from datakit import exactly
from fakedevice import FakeDevice
from spikeforge.device import Device
from spikeforge.errors import DeviceError
from spikeforge.golden.data import (
    DataError,
    as_integer_tensor,
    evaluate,
    load_npz,
    model_inputs,
    readout_rule,
    save_npz,
)
from spikeforge.golden.energy import counts_from_trace, estimate
from spikeforge.golden.integer import Format, LIFLayer, Network, NetworkError, Projection
from spikeforge.golden.modelfile import ModelFileError
from spikeforge.golden.quantize import predict


# ------------------------------------------------------------------ helpers
def tiny_net(*, input_size=18, input_kind="spike", spiking_out=True, seed=0) -> Network:
    gen = torch.Generator().manual_seed(seed)

    def ints(shape, lo, hi):
        return torch.randint(lo, hi + 1, shape, generator=gen, dtype=torch.int64)

    hidden = LIFLayer("hidden", 6, alpha=ints((6,), 128, 256), theta=ints((6,), 20, 40),
                      bias=ints((6,), 0, 3), inputs=[Projection("input", ints((6, input_size),
                                                                                -10, 40))])
    out = LIFLayer("out", 3, alpha=ints((3,), 128, 256), theta=ints((3,), 20, 40),
                   bias=torch.zeros(3, dtype=torch.int64),
                   inputs=[Projection("hidden", ints((3, 6), -10, 40))],
                   reset="subtract" if spiking_out else "none", spiking=spiking_out)
    return Network(input_size=input_size, input_kind=input_kind, layers=[hidden, out],
                   output="out", fmt=Format())


# -------------------------------------------------------- as_integer_tensor
@pytest.mark.parametrize("x", [
    [[0, 1], [1, 0]],
    np.array([[0, 1], [1, 0]], dtype=np.uint8),
    np.array([[False, True], [True, False]]),
    np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32),
    torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True),
    torch.tensor([[False, True], [True, False]]),
    torch.tensor([[0, 1], [1, 0]], dtype=torch.float16),
    torch.tensor([[0, 1], [1, 0]], dtype=torch.bfloat16),
])
def test_integer_values_of_any_dtype_become_int64(x):
    got = as_integer_tensor(x)
    assert got.dtype == torch.int64 and got.tolist() == [[0, 1], [1, 0]]


def test_signed_and_large_integer_floats_are_exact():
    x = np.array([-128.0, 127.0, -(2.0 ** 52), 2.0 ** 62])
    assert as_integer_tensor(x).tolist() == [-128, 127, -(2 ** 52), 2 ** 62]


@pytest.mark.parametrize("value, shown", [(0.5, "0.5"), (-2.25, "-2.25"),
                                          (float("nan"), "nan"), (float("inf"), "inf"),
                                          (float("-inf"), "-inf")])
def test_a_non_integer_float_is_named_by_its_index(value, shown):
    x = torch.zeros(4, 2, 20)
    x[3, 0, 17] = value
    x[3, 1, 0] = 0.25  # later in row-major order: not the one reported
    with pytest.raises(ValueError, match=exactly(f"inputs[3, 0, 17] = {shown} is not an "
                                                 f"integer")):
        as_integer_tensor(x)


def test_the_first_non_integer_in_row_major_order_is_reported():
    x = np.zeros((2, 3))
    x[1, 0], x[0, 2] = 0.5, 1.5
    with pytest.raises(ValueError, match=exactly("x[0, 2] = 1.5 is not an integer")):
        as_integer_tensor(x, "x")


def test_what_and_the_error_class_are_the_callers():
    with pytest.raises(NetworkError, match=exactly("input[1] = 0.5 is not an integer")):
        as_integer_tensor([0.0, 0.5], "input", error=NetworkError)
    with pytest.raises(ValueError, match=exactly("inputs = 0.5 is not an integer")):
        as_integer_tensor(torch.tensor(0.5))


@pytest.mark.parametrize("x, message", [
    (np.array([0.0, 1e30]), "inputs[1] = 1e+30 does not fit int64"),
    (np.array([1, 2 ** 63], dtype=np.uint64), "inputs[1] = 9223372036854775808 does not fit "
                                              "int64"),
    (torch.zeros(2, dtype=torch.complex64), "inputs must be real numbers, not torch.complex64"),
    (np.array(["a", "b"]), "inputs must be integers (or floats / bools holding integers), not "
                           "<U1"),
    (np.array([1, None], dtype=object), "inputs must be integers (or floats / bools holding "
                                        "integers), not object"),
])
def test_other_values_are_refused(x, message):
    with pytest.raises(ValueError, match=exactly(message)):
        as_integer_tensor(x)


def test_a_ragged_list_is_refused():
    with pytest.raises(ValueError, match=r"^inputs is not a rectangular array of numbers \("):
        as_integer_tensor([[0, 1], [1]])


# ------------------------------------------------------------ the device path
def test_device_run_names_the_first_non_integer_input():
    fake = FakeDevice()
    dev = Device(fake)
    x = torch.zeros(5, 2, 20)
    x[3, 0, 17] = 0.5
    with pytest.raises(ValueError, match=exactly("inputs[3, 0, 17] = 0.5 is not an integer")):
        dev.run(x)
    with pytest.raises(ValueError, match=exactly("inputs[4, 1] = nan is not an integer")):
        dev.run(np.array([[0.0, 0.0]] * 4 + [[0.0, float("nan")]]))
    assert sum(fake.executed.values()) == 0  # refused before anything was sent


def test_device_stream_names_the_sample(monkeypatch):
    dev, _ = _device_with(monkeypatch, tiny_net(input_size=4))
    ran = []
    monkeypatch.setattr(dev, "_sample", lambda x, reset, membranes: ran.append(x) or x)
    samples = [torch.ones(3, 4), torch.zeros(3, 4)]
    samples[1][2, 3] = 1.5
    with pytest.raises(ValueError, match=exactly("samples[1][2, 3] = 1.5 is not an integer")):
        list(dev.stream(samples))
    assert len(ran) == 1 and ran[0].dtype == torch.int64 and ran[0].sum() == 12


@pytest.mark.parametrize("x", [torch.ones(4, 3), np.ones((4, 3), dtype=bool),
                               torch.zeros(4, 2, 3, dtype=torch.float64)])
def test_device_run_accepts_integer_floats_and_bools(x):
    # The conversion passes; the run itself then needs a loaded model.
    with pytest.raises(DeviceError, match=exactly("no model is loaded on this device (call "
                                                  "load() first)")):
        Device(FakeDevice()).run(x)


# ---------------------------------------------------------------- .npz files
def test_npz_round_trip(tmp_path):
    gen = np.random.default_rng(0)
    inputs = gen.integers(0, 3, (5, 4, 2, 3, 3))
    labels = np.array([0, 2, 1, 1, 0])
    path = tmp_path / "d.npz"
    save_npz(path, inputs, labels)
    x, y = load_npz(path)
    assert x.dtype == y.dtype == torch.int64
    assert x.tolist() == inputs.tolist() and y.tolist() == labels.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]  # no temporary file left


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool, np.int8, np.uint16])
def test_npz_inputs_of_integer_values_load_as_int64(tmp_path, dtype):
    inputs = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype)
    np.savez(tmp_path / "d.npz", inputs=inputs)
    x, y = load_npz(tmp_path / "d.npz")
    assert y is None and x.dtype == torch.int64
    assert x.tolist() == (np.arange(24).reshape(2, 3, 4) % 2).tolist()


def test_npz_labels_may_be_integer_floats(tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.zeros((2, 1, 3)), labels=np.array([1.0, 0.0]))
    assert load_npz(tmp_path / "d.npz")[1].tolist() == [1, 0]


def bad_npz(tmp_path, case):
    path = tmp_path / "bad.npz"
    ok = np.zeros((2, 3, 4))
    if case == "missing":
        return tmp_path / "none.npz", f"{tmp_path / 'none.npz'}: no such data file"
    if case == "directory":
        return tmp_path, f"{tmp_path}: is a directory, not an .npz file"
    if case == "garbage":
        path.write_bytes(b"this is not an archive")
        return path, f"{path}: not an .npz file (no zip archive signature)"
    if case == "npy":
        with open(path, "wb") as f:
            np.save(f, ok)
        return path, (f"{path}: a single .npy array, not an .npz archive (write "
                      f"numpy.savez(path, inputs=..., labels=...))")
    if case == "pickled":
        np.savez(path, inputs=np.array([[{"a": 1}]], dtype=object))
        return path, (f"{path}: 'inputs' holds pickled Python objects, which are not loaded; "
                      f"store a numeric array")
    if case == "no inputs":
        np.savez(path, x=ok, y=np.zeros(2))
        return path, (f"{path}: no 'inputs' array (found 'x', 'y'); a data file holds "
                      f"'inputs' [N, T, ...] and optionally 'labels' [N]")
    if case == "empty archive":
        with zipfile.ZipFile(path, "w"):
            pass
        return path, (f"{path}: no 'inputs' array (found nothing); a data file holds "
                      f"'inputs' [N, T, ...] and optionally 'labels' [N]")
    if case == "extra":
        np.savez(path, inputs=ok, label=np.zeros(2))
        return path, (f"{path}: unexpected array 'label'; a data file holds only 'inputs' and "
                      f"optionally 'labels'")
    if case == "1-d":
        np.savez(path, inputs=np.zeros(5))
        return path, (f"{path}: 'inputs' has shape [5]; expected [N, T, ...] with N >= 1 "
                      f"samples and T >= 1 steps")
    if case == "no samples":
        np.savez(path, inputs=np.zeros((0, 3, 4)))
        return path, (f"{path}: 'inputs' has shape [0, 3, 4]; expected [N, T, ...] with "
                      f"N >= 1 samples and T >= 1 steps")
    if case == "non-integer":
        bad = ok.copy()
        bad[1, 2, 0] = 0.5
        np.savez(path, inputs=bad)
        return path, f"{path}: inputs[1, 2, 0] = 0.5 is not an integer"
    if case == "complex":
        np.savez(path, inputs=ok.astype(np.complex64))
        return path, (f"{path}: inputs must be integers (or floats / bools holding integers), "
                      f"not complex64")
    if case == "labels length":
        np.savez(path, inputs=ok, labels=np.zeros(3, dtype=int))
        return path, f"{path}: 'labels' has shape [3]; expected [2] (one per sample of 'inputs')"
    if case == "labels 2-d":
        np.savez(path, inputs=ok, labels=np.zeros((2, 1), dtype=int))
        return path, (f"{path}: 'labels' has shape [2, 1]; expected [2] (one per sample of "
                      f"'inputs')")
    if case == "labels negative":
        np.savez(path, inputs=ok, labels=np.array([0, -1]))
        return path, f"{path}: labels[1] = -1 is not a class index (0, 1, ...)"
    if case == "labels non-integer":
        np.savez(path, inputs=ok, labels=np.array([0.0, 2.5]))
        return path, f"{path}: labels[1] = 2.5 is not an integer"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "directory", "garbage", "npy", "pickled",
                                  "no inputs", "empty archive", "extra", "1-d", "no samples",
                                  "non-integer", "complex", "labels length", "labels 2-d",
                                  "labels negative", "labels non-integer"])
def test_bad_npz_files_are_refused_naming_the_file(tmp_path, case):
    path, message = bad_npz(tmp_path, case)
    with pytest.raises(DataError, match=exactly(message)):
        load_npz(path)


def test_a_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, inputs=np.zeros((2, 3, 4)))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: not a readable .npz file (")):
        load_npz(path)


def test_save_npz_checks_before_writing(tmp_path):
    path = tmp_path / "d.npz"
    save_npz(path, np.zeros((1, 2, 3)))
    before = path.read_bytes()
    with pytest.raises(DataError, match=exactly(f"{path}: 'labels' has shape [2]; expected [1] "
                                                f"(one per sample of 'inputs')")):
        save_npz(path, np.ones((1, 2, 3)), labels=[0, 1])
    with pytest.raises(DataError, match=exactly(f"{path}: inputs[0, 0, 0] = 0.5 is not an "
                                                f"integer")):
        save_npz(path, np.full((1, 2, 3), 0.5))
    with pytest.raises(FileNotFoundError):
        save_npz(tmp_path / "no" / "d.npz", np.zeros((1, 2, 3)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


# ------------------------------------------------------------- model inputs
def test_model_inputs_flatten_in_c_order_and_transpose():
    rng = np.random.default_rng(1)
    inputs = torch.from_numpy(rng.integers(0, 2, (3, 4, 2, 3, 3)))
    x = model_inputs(tiny_net(), inputs)
    assert x.shape == (4, 3, 18) and x.dtype == torch.int64
    for n in range(3):
        for t in range(4):
            for c, yy, xx in np.ndindex(2, 3, 3):
                assert x[t, n, (c * 3 + yy) * 3 + xx] == inputs[n, t, c, yy, xx]


def test_model_inputs_refuse_a_shape_that_does_not_flatten_to_the_input():
    with pytest.raises(NetworkError, match=exactly(
            "d.npz: inputs of shape [3, 4, 2, 5] have 10 values per step ([2, 5] flattened), "
            "but the model takes 18 (input_size)")):
        model_inputs(tiny_net(), torch.zeros(3, 4, 2, 5, dtype=torch.int64), source="d.npz")
    with pytest.raises(NetworkError, match=exactly("inputs: inputs of shape [18] are not "
                                                   "[N, T, ...]")):
        model_inputs(tiny_net(), torch.zeros(18, dtype=torch.int64))


def test_counts_into_a_spike_model_are_refused_or_clipped():
    counts = torch.zeros(2, 3, 18, dtype=torch.int64)
    counts[1, 2, 5] = 3
    with pytest.raises(NetworkError, match=exactly(
            "d.npz: input values lie in [0, 3] (largest 3), but the model takes 0/1 spikes "
            "(input_kind 'spike') in [0, 1]: clip (--clip) presents any nonzero count as one "
            "spike, or use a model with int inputs")):
        model_inputs(tiny_net(), counts, source="d.npz")
    clipped = model_inputs(tiny_net(), counts, clip=True)
    assert clipped[2, 1, 5] == 1 and clipped.sum() == 1


def test_int_models_take_signed_in_bits_values():
    net = tiny_net(input_kind="int")
    values = torch.tensor([[[-128] * 18, [127] * 18]])
    assert model_inputs(net, values).tolist() == values.transpose(0, 1).tolist()
    with pytest.raises(NetworkError, match=exactly(
            "inputs: input values lie in [-128, 200] (largest 200), but the model takes signed "
            "8-bit integers (input_kind 'int') in [-128, 127]: clip (--clip) clamps them into "
            "range")):
        model_inputs(net, torch.full((1, 1, 18), 200).index_fill_(2, torch.tensor([0]), -128))
    assert int(model_inputs(net, torch.full((1, 1, 18), 200), clip=True).max()) == 127


def test_model_inputs_take_float_frames():
    x = model_inputs(tiny_net(), np.ones((1, 2, 18), dtype=np.float32))
    assert x.dtype == torch.int64 and x.sum() == 36
    with pytest.raises(NetworkError, match=exactly("inputs[0, 1, 4] = 0.5 is not an integer")):
        model_inputs(tiny_net(), np.eye(1, 36, 22).reshape(1, 2, 18) * 0.5)


# ------------------------------------------------------------ readout, eval
def test_readout_rule():
    spiking, li = tiny_net(), tiny_net(spiking_out=False)
    assert readout_rule(spiking, {}) == "sum"
    assert readout_rule(li, {"task": "x"}) == "last"
    assert readout_rule(spiking, {"readout": "last"}) == "last"
    assert readout_rule(li, {"readout": "max"}) == "max"
    with pytest.raises(ModelFileError, match=exactly("the meta's readout 'spikes' is not one of "
                                                     "last, sum, max")):
        readout_rule(li, {"readout": "spikes"})


@pytest.mark.parametrize("readout", ["sum", "last", "max"])
def test_evaluate_in_batches_equals_one_run(readout):
    net = tiny_net(spiking_out=readout == "sum")
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 2, (5, 7, 18), generator=gen)
    labels = torch.randint(0, 3, (7,), generator=gen)
    report = evaluate(net, x, labels, readout=readout, batch=3)
    trace = net.run(x)
    pred = predict(trace.outputs["out"], readout)
    assert report["accuracy"] == float((pred == labels).double().mean())
    assert report["predictions"] == torch.bincount(pred, minlength=3).tolist()
    assert report["samples"] == 7 and report["timesteps"] == 5 and report["readout"] == readout
    assert report["synops_per_sample"] == int(trace.synops.sum()) / 7
    assert report["energy"] == estimate(net, counts_from_trace(net, x, trace))
    spiking = ["hidden", "out"] if readout == "sum" else ["hidden"]
    assert list(report["spikes"]) == spiking
    for name in spiking:
        total = int(trace.spikes[name].sum())
        assert report["spikes"][name] == {"total": total, "per_sample": total / 7}
    assert trace.spikes["hidden"].sum() > 0  # the check is not vacuous
    assert "accuracy" not in evaluate(net, x, readout=readout)


def _device_with(monkeypatch, net):
    """A device that holds ``net`` as its loaded model (nothing is ever sent)."""
    fake = FakeDevice()
    dev = Device(fake)
    monkeypatch.setattr(dev, "_loaded", lambda: (net, None))
    return dev, fake


def test_device_refuses_values_outside_the_models_input_range(monkeypatch):
    dev, fake = _device_with(monkeypatch, tiny_net(input_size=4))
    x = torch.zeros(3, 2, 4, dtype=torch.int64)
    x[1, 1, 2] = 16  # raw pixels into a spike input
    with pytest.raises(ValueError, match=exactly(
            "inputs[1, 1, 2] = 16 is outside the model's spike input range [0, 1]")):
        dev.run(x)
    with pytest.raises(ValueError, match=exactly(
            "samples[0][2, 3] = -1 is outside the model's spike input range [0, 1]")):
        list(dev.stream([torch.tensor([[0, 0, 0, 0]] * 2 + [[0, 0, 0, -1]])]))
    dev, fake = _device_with(monkeypatch, tiny_net(input_size=4, input_kind="int"))
    x = torch.zeros(2, 4, dtype=torch.int64)
    x[0, 1] = 200
    with pytest.raises(ValueError, match=exactly(
            "inputs[0, 1] = 200 is outside the model's int input range [-128, 127]")):
        dev.run(x)
    assert sum(fake.executed.values()) == 0  # refused before anything was sent


@pytest.mark.parametrize(("shape", "message"), [
    ((3, 2, 5), "inputs must be [T, 4] or [T, B, 4] (time first), not [3, 2, 5]"),
    ((3,), "inputs must be [T, 4] or [T, B, 4] (time first), not [3]"),
    ((2, 3, 2, 4), "inputs must be [T, 4] or [T, B, 4] (time first), not [2, 3, 2, 4]"),
    ((3, 0, 4), "inputs of shape [3, 0, 4] hold no step or no sample"),
    ((0, 4), "inputs of shape [0, 4] hold no step or no sample"),
])
def test_device_refuses_a_shape_naming_the_one_it_takes(monkeypatch, shape, message):
    dev, fake = _device_with(monkeypatch, tiny_net(input_size=4))
    with pytest.raises(ValueError, match=exactly(message)):
        dev.run(torch.zeros(shape, dtype=torch.int64))
    with pytest.raises(ValueError, match=exactly(
            "samples[0] must be [T, 4] (time first), not [3, 2, 4]")):
        list(dev.stream([torch.zeros(3, 2, 4, dtype=torch.int64)]))
    assert sum(fake.executed.values()) == 0

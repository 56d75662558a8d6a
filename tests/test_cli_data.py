"""``spikeforge eval|run MODEL --data FILE`` for any model file (docs/data.md): the
``.npz`` data file and the event formats with ``--bins``, the readout rule from
the model's meta, the refusals with their exit codes and exact messages, and
``run`` on the simulated board (the ``demo`` build ``tests/test_demo.py`` uses)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from spikeforge.cli import main
from spikeforge.commands import EXIT_DEVICE, EXIT_MODEL_FILE, EXIT_NETWORK, EXIT_OK, EXIT_USAGE
from spikeforge.golden.data import load_data
from spikeforge.golden.energy import counts_from_trace, estimate
from spikeforge.golden.integer import Format, LIFLayer, Network, Projection
from spikeforge.golden.modelfile import save_model
from spikeforge.golden.quantize import predict
from spikeforge.sim.verilator import have_verilator

SHAPE = (2, 3, 3)  # one step's frame [C, H, W]: 18 inputs
N, T = 9, 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny runs on a loaded 2-core machine (see test_cli.py)
    yield
    torch.set_num_threads(threads)


def build_net(*, input_size=18, input_kind="spike", spiking_out=True, seed=0) -> Network:
    """input -> 6 LIF -> 3 LIF (or an LI readout), random integer parameters."""
    gen = torch.Generator().manual_seed(seed)

    def ints(shape, lo, hi):
        return torch.randint(lo, hi + 1, shape, generator=gen, dtype=torch.int64)

    w_hi = 40 if input_kind == "spike" else 3
    hidden = LIFLayer("hidden", 6, alpha=ints((6,), 128, 256), theta=ints((6,), 20, 40),
                      bias=ints((6,), 0, 3),
                      inputs=[Projection("input", ints((6, input_size), -w_hi // 4, w_hi))])
    out = LIFLayer("out", 3, alpha=ints((3,), 128, 256), theta=ints((3,), 20, 40),
                   bias=torch.zeros(3, dtype=torch.int64),
                   inputs=[Projection("hidden", ints((3, 6), -10, 40))],
                   reset="subtract" if spiking_out else "none", spiking=spiking_out)
    return Network(input_size=input_size, input_kind=input_kind, layers=[hidden, out],
                   output="out", fmt=Format())


def model(tmp_path, meta=None, **kwargs) -> tuple[Path, Network]:
    net = build_net(**kwargs)
    path = tmp_path / "model.safetensors"
    save_model(path, net, {} if meta is None else meta)
    return path, net


def npz(tmp_path, inputs, labels=None, name="data.npz") -> Path:
    path = tmp_path / name
    arrays = {"inputs": inputs} if labels is None else {"inputs": inputs, "labels": labels}
    np.savez(path, **arrays)
    return path


def spikes_and_labels(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (N, T, *SHAPE)), rng.integers(0, 3, N)


def golden_report(net, inputs, labels, readout):
    """The numbers ``eval --data`` must report, computed here from the network's run."""
    x = torch.from_numpy(np.asarray(inputs).reshape(len(inputs), inputs.shape[1], -1)
                         .transpose(1, 0, 2).astype(np.int64))
    trace = net.run(x)
    pred = predict(trace.outputs[net.output], readout)
    return x, trace, float((pred == torch.as_tensor(labels)).double().mean())


def run_json(argv, capsys) -> dict:
    assert main([*argv, "--json", "--quiet"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def fails(argv, code, message, capsys) -> None:
    assert main([*argv, "--quiet"]) == code
    out, err = capsys.readouterr()
    assert out == "" and err == f"spikeforge: error: {message}\n", err


# ------------------------------------------------------------------ eval
def test_eval_data_reports_accuracy_spikes_and_energy(tmp_path, capsys):
    path, net = model(tmp_path)
    inputs, labels = spikes_and_labels()
    data = npz(tmp_path, inputs, labels)
    report = run_json(["eval", str(path), "--data", str(data)], capsys)
    x, trace, accuracy = golden_report(net, inputs, labels, "sum")
    assert report["accuracy"] == accuracy
    assert report["readout"] == "sum"  # the output layer spikes and the meta names none
    assert report["samples"] == N and report["timesteps"] == T
    assert report["model"] == str(path) and report["data"] == str(data)
    assert report["data_info"] == {"format": "npz", "samples": N}
    assert report["spikes"] == {name: {"total": int(trace.spikes[name].sum()),
                                       "per_sample": int(trace.spikes[name].sum()) / N}
                                for name in ("hidden", "out")}
    assert report["spikes"]["out"]["total"] > 0
    assert report["synops_per_sample"] == int(trace.synops.sum()) / N
    assert report["energy"] == json.loads(json.dumps(
        estimate(net, counts_from_trace(net, x, trace))))
    assert report["energy"]["estimate"] is True and report["energy"]["ratio"] > 0


def test_eval_data_text(tmp_path, capsys):
    path, _ = model(tmp_path)
    inputs, labels = spikes_and_labels()
    assert main(["eval", str(path), "--data", str(npz(tmp_path, inputs, labels))]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf".*data\.npz: accuracy \d\.\d{{4}} on {N} samples, T={T}, readout "
                        r"sum, \d+ synaptic ops per sample", lines[0]), lines[0]
    assert lines[1].startswith("spikes per sample: hidden ") and ", out " in lines[1]
    assert lines[2].startswith("energy ESTIMATE (45 nm")


def test_float_and_bool_inputs_give_the_same_report(tmp_path, capsys):
    path, _ = model(tmp_path)
    inputs, labels = spikes_and_labels()
    reports = []
    for i, as_type in enumerate((np.int64, np.float32, bool)):
        data = npz(tmp_path, inputs.astype(as_type), labels.astype(np.float64), f"d{i}.npz")
        report = run_json(["eval", str(path), "--data", str(data)], capsys)
        reports.append({k: v for k, v in report.items() if k != "data"})
    assert reports[0] == reports[1] == reports[2]


def test_without_labels_there_is_no_accuracy(tmp_path, capsys):
    path, _ = model(tmp_path)
    data = npz(tmp_path, spikes_and_labels()[0])
    report = run_json(["eval", str(path), "--data", str(data)], capsys)
    assert "accuracy" not in report and sum(report["predictions"]) == N
    assert main(["eval", str(path), "--data", str(data)]) == EXIT_OK
    assert ": no labels on 9 samples" in capsys.readouterr().out


@pytest.mark.parametrize("meta, spiking_out, readout", [
    ({}, False, "last"),                       # an LI readout: its final membrane
    ({"readout": "max"}, False, "max"),
    ({"readout": "last"}, True, "last"),
    ({"task": "mine", "readout": "sum"}, True, "sum"),
])
def test_the_readout_comes_from_the_model_file(tmp_path, capsys, meta, spiking_out, readout):
    path, net = model(tmp_path, meta, spiking_out=spiking_out)
    inputs, labels = spikes_and_labels(1)
    report = run_json(["eval", str(path), "--data", str(npz(tmp_path, inputs, labels))], capsys)
    assert report["readout"] == readout
    assert report["accuracy"] == golden_report(net, inputs, labels, readout)[2]


def test_limit_takes_the_first_samples(tmp_path, capsys):
    path, net = model(tmp_path)
    inputs, labels = spikes_and_labels()
    report = run_json(["eval", str(path), "--data", str(npz(tmp_path, inputs, labels)),
                       "--limit", "4"], capsys)
    assert report["samples"] == 4 and report["data_info"]["samples"] == 4
    assert report["accuracy"] == golden_report(net, inputs[:4], labels[:4], "sum")[2]


def test_clip_turns_counts_into_spikes(tmp_path, capsys):
    path, _ = model(tmp_path)
    inputs, labels = spikes_and_labels()
    counts = inputs * np.random.default_rng(3).integers(1, 5, inputs.shape)
    clipped = run_json(["eval", str(path), "--data", str(npz(tmp_path, counts, labels)),
                        "--clip"], capsys)
    plain = run_json(["eval", str(path), "--data", str(npz(tmp_path, inputs, labels, "s.npz"))],
                     capsys)
    assert {k: v for k, v in clipped.items() if k != "data"} == \
        {k: v for k, v in plain.items() if k != "data"}


def test_an_int_input_model_takes_signed_values(tmp_path, capsys):
    path, net = model(tmp_path, input_kind="int")
    rng = np.random.default_rng(4)
    inputs, labels = rng.integers(-128, 128, (N, T, *SHAPE)), rng.integers(0, 3, N)
    report = run_json(["eval", str(path), "--data", str(npz(tmp_path, inputs, labels))], capsys)
    x, trace, accuracy = golden_report(net, inputs, labels, "sum")
    assert report["accuracy"] == accuracy
    assert report["energy"]["snn"]["per_sample"]["synaptic_macs"] > 0


def test_eval_plot_writes_the_report(tmp_path, capsys):
    path, _ = model(tmp_path)
    inputs, labels = spikes_and_labels()
    out = tmp_path / "report"
    report = run_json(["eval", str(path), "--data", str(npz(tmp_path, inputs, labels)),
                       "--plot", str(out)], capsys)
    assert report["report"] == str(out / "report.md")
    text = (out / "report.md").read_text()
    assert "data.npz" in text and "estimate" in text.lower()
    assert sorted(p.suffix for p in out.iterdir()).count(".png") >= 2


# --------------------------------------------------------- event data files
def nmnist_record(x, y, t, p) -> bytes:
    return bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])


def test_eval_an_nmnist_folder_with_bins(tmp_path, capsys):
    rng = np.random.default_rng(6)
    root = tmp_path / "Test"
    for label in (0, 1, 2):
        (root / str(label)).mkdir(parents=True)
        for k in range(2):
            events = sorted(((int(rng.integers(0, 34)), int(rng.integers(0, 34)),
                              int(rng.integers(0, 300_000)), int(rng.integers(0, 2)))
                             for _ in range(400)), key=lambda e: e[2])
            (root / str(label) / f"{k:05d}.bin").write_bytes(
                b"".join(nmnist_record(*e) for e in events))
    path, net = model(tmp_path, input_size=2 * 34 * 34)
    report = run_json(["eval", str(path), "--data", str(root), "--bins", "6", "--clip"],
                      capsys)
    data = load_data(root, bins=6)
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    x = data.inputs.clamp(max=1).reshape(6, 6, -1).transpose(0, 1)
    pred = predict(net.run(x).outputs["out"], "sum")
    assert report["accuracy"] == float((pred == data.labels).double().mean())
    assert report["samples"] == 6 and report["timesteps"] == 6
    assert report["data_info"] == {"format": "n-mnist", "samples": 6, "bins": 6,
                                   "duration_us": "span", "t0_us": "first event",
                                   "events": 2400, "events_outside_window": 0}
    assert report["spikes"]["hidden"]["total"] > 0


def test_eval_an_shd_file_with_a_window(tmp_path, capsys):
    rng = np.random.default_rng(7)
    path = tmp_path / "shd_test.h5"
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (4,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (4,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(4):
            times[i] = np.sort(rng.uniform(0, 1.2, 300)).astype(np.float16)
            units[i] = rng.integers(0, 700, 300).astype(np.uint16)
        f["labels"] = np.array([0, 1, 2, 1], dtype=np.uint16)
    model_path, net = model(tmp_path, input_size=700)
    report = run_json(["eval", str(model_path), "--data", str(path), "--bins", "10",
                       "--duration", "1000000", "--t0", "0", "--clip"], capsys)
    info = report["data_info"]
    assert info["format"] == "shd" and info["duration_us"] == 1_000_000 and info["t0_us"] == 0
    assert 0 < info["events_outside_window"] < 1200 and info["events"] == 1200
    data = load_data(path, bins=10, duration=1_000_000, t0=0)
    x = data.inputs.clamp(max=1).transpose(0, 1)
    pred = predict(net.run(x).outputs["out"], "sum")
    assert report["accuracy"] == float((pred == data.labels).double().mean())


# --------------------------------------------------------------- refusals
def refusal(tmp_path, case):
    """``(argv, exit code, message)`` of one refusal."""
    path, _ = model(tmp_path, {"readout": "spikes"} if case == "bad readout" else None)
    inputs, labels = spikes_and_labels()
    data = npz(tmp_path, inputs, labels)
    eval_ = ["eval", str(path), "--data", str(data)]
    if case == "non-integer":
        bad = inputs.astype(np.float64)
        bad[1, 2, 0, 1, 1] = 0.5
        data = npz(tmp_path, bad, labels, "bad.npz")
        return (["eval", str(path), "--data", str(data)], EXIT_USAGE,
                f"{data}: inputs[1, 2, 0, 1, 1] = 0.5 is not an integer")
    if case == "counts":
        counts = inputs.copy()
        counts[4, 1, 1, 2, 0] = 7
        data = npz(tmp_path, counts, labels, "counts.npz")
        return (["eval", str(path), "--data", str(data)], EXIT_NETWORK,
                f"{data}: input values lie in [0, 7] (largest 7), but the model takes 0/1 spikes "
                f"(input_kind 'spike') in [0, 1]: clip (--clip) presents any nonzero count as "
                f"one spike, or use a model with int inputs")
    if case == "shape":
        data = npz(tmp_path, np.zeros((N, T, 4, 4)), labels, "shape.npz")
        return (["eval", str(path), "--data", str(data)], EXIT_NETWORK,
                f"{data}: inputs of shape [{N}, {T}, 4, 4] have 16 values per step ([4, 4] "
                f"flattened), but the model takes 18 (input_size)")
    if case == "labels":
        data = npz(tmp_path, inputs, labels[:3], "labels.npz")
        return (["eval", str(path), "--data", str(data)], EXIT_USAGE,
                f"{data}: 'labels' has shape [3]; expected [{N}] (one per sample of 'inputs')")
    if case == "missing data":
        return (["eval", str(path), "--data", str(tmp_path / "none.npz")], EXIT_USAGE,
                f"{tmp_path / 'none.npz'}: no such data file")
    if case == "bad readout":
        return (eval_, EXIT_MODEL_FILE,
                f"{path}: the meta's readout 'spikes' is not one of last, sum, max")
    if case == "bins on npz":
        return ([*eval_, "--bins", "4"], EXIT_USAGE,
                f"--bins is for event data; --data {data} is not (an .npz data file holds "
                f"frames already)")
    if case == "t0 on npz":
        return ([*eval_, "--t0", "0"], EXIT_USAGE,
                f"--t0 is for event data; --data {data} is not (an .npz data file holds "
                f"frames already)")
    if case == "events without bins":
        (tmp_path / "s.bin").write_bytes(nmnist_record(1, 1, 5, 0))
        return (["eval", str(path), "--data", str(tmp_path / "s.bin")], EXIT_USAGE,
                f"--data {tmp_path / 's.bin'}: event data needs --bins T (time bins per "
                f"sample)")
    if case == "bins without data":
        return (["eval", str(path), "--bins", "4"], EXIT_USAGE, "--bins goes with --data")
    if case == "clip without data":
        return (["run", str(path), "--device", "sim://demo", "--clip"], EXIT_USAGE,
                "--clip goes with --data")
    if case == "split with data":
        return ([*eval_, "--split", "test"], EXIT_USAGE,
                "--split chooses a task's split; it does not go with --data")
    if case == "rtl with data":
        return ([*eval_, "--rtl", "demo"], EXIT_USAGE,
                "--rtl runs a task's split on the RTL; it does not take --data")
    if case == "run checks before the device":
        counts = inputs.copy()
        counts[0, 0, 0, 0, 0] = 2
        data = npz(tmp_path, counts, labels, "counts.npz")
        return (["run", str(path), "--data", str(data), "--device", "socket://127.0.0.1:1"],
                EXIT_NETWORK,
                f"{data}: input values lie in [0, 2] (largest 2), but the model takes 0/1 spikes "
                f"(input_kind 'spike') in [0, 1]: clip (--clip) presents any nonzero count as "
                f"one spike, or use a model with int inputs")
    if case == "task model without data":
        return (["eval", str(path)], EXIT_MODEL_FILE,
                f"{path}: the metadata names no known task (task=None; expected one of "
                f"('digits', 'recall', 'event-digits')); give it data with --data FILE")
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "non-integer", "counts", "shape", "labels", "missing data", "bad readout", "bins on npz",
    "t0 on npz", "events without bins", "bins without data", "clip without data",
    "split with data", "rtl with data", "run checks before the device",
    "task model without data"])
def test_refusals_name_the_problem(tmp_path, capsys, case):
    argv, code, message = refusal(tmp_path, case)
    fails(argv, code, message, capsys)


# -------------------------------------------------- run on the simulated board
needs_verilator = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")


@needs_verilator
def test_run_data_through_the_simulated_board(tmp_path, capsys):
    path, net = model(tmp_path)
    inputs, labels = spikes_and_labels()
    data = npz(tmp_path, inputs.astype(np.float32), labels)
    golden = run_json(["eval", str(path), "--data", str(data)], capsys)
    report = run_json(["run", str(path), "--data", str(data), "--device", "sim://demo"],
                      capsys)
    assert report["bit_exact"] is True and report["agreement"] == 1.0
    assert report["samples"] == N and report["timesteps"] == T and report["readout"] == "sum"
    assert report["accuracy_device"] == report["accuracy_golden"] == golden["accuracy"]
    assert report["data"] == str(data) and report["device"] == "sim://demo"
    assert report["counters"]["steps"] == N * T
    assert report["counters"]["layers"]["out"]["spikes"] == golden["spikes"]["out"]["total"]
    assert main(["run", str(path), "--data", str(data), "--device", "sim://demo", "--limit",
                 "2", "--quiet"]) == EXIT_OK
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{data} on sim://demo: accuracy ") and "over 2 samples, " \
        "decisions agree on 1.0000, bit-exact: True" in line, line


@needs_verilator
def test_device_run_takes_float_and_bool_spikes(tmp_path):
    from spikeforge.device import open as open_device

    net = build_net(seed=3)
    x = torch.from_numpy(spikes_and_labels(5)[0].reshape(N, T, -1).transpose(1, 0, 2).copy())
    with open_device("sim://demo") as dev:
        dev.load(net)
        want = dev.run(x, membranes=True)
        floats = dev.run(x.to(torch.float32), membranes=True)
        bools = dev.run(x.bool().numpy(), membranes=True)
    assert torch.equal(want.outputs, net.run(x).outputs["out"])
    for got in (floats, bools):
        assert torch.equal(got.outputs, want.outputs) and got.membranes == want.membranes


def test_a_dead_device_is_still_a_device_error(tmp_path, capsys):
    path, _ = model(tmp_path)
    data = npz(tmp_path, *spikes_and_labels())
    assert main(["run", str(path), "--data", str(data), "--device", "socket://127.0.0.1:1",
                 "--quiet"]) == EXIT_DEVICE
    assert capsys.readouterr().err.startswith("spikeforge: error: cannot open "
                                              "'socket://127.0.0.1:1': ")

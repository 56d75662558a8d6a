"""The README's main job (`spikeforge demo`) and `spikeforge run` end to end on
the simulated board, with the CLI's error families."""

from __future__ import annotations

import json

import pytest
from spikeforge.cli import main
from spikeforge.commands import EXIT_DEVICE, EXIT_NETWORK, EXIT_OK
from spikeforge.demo import bench, shipped_model
from spikeforge.sim.verilator import have_verilator

pytestmark = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")


def test_demo_json_is_bit_exact_on_every_task(capsys):
    assert main(["demo", "--limit", "12", "--json", "--quiet"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "sim://demo"
    assert set(report["tasks"]) == {"digits", "recall"}
    for task in report["tasks"].values():
        assert task["bit_exact"] is True
        assert task["samples"] == 12
        assert task["accuracy_device"] == task["accuracy_golden"]
        assert task["counters"]["steps"] == 12 * task["timesteps"]
        assert task["energy"]["estimate"] is True and task["energy"]["ratio"] > 0
    assert report["steps_per_second"] > 0
    # Every step that ran was asked for once: nothing applied twice.
    assert report["link"]["steps"] == sum(t["counters"]["steps"]
                                          for t in report["tasks"].values())


def test_run_a_model_file_through_the_device(capsys):
    path = shipped_model("digits")
    assert main(["run", str(path), "--device", "sim://demo", "--limit", "5", "--json",
                 "--quiet"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["bit_exact"] is True and report["samples"] == 5
    assert report["device"] == "sim://demo" and report["model"] == str(path)
    link = report["link_stats"]  # the client's counts
    assert link["requests"] > 0 and {"retries", "stray_replies", "frame_budget"} <= set(link)


def test_a_model_that_does_not_fit_the_device_is_refused(capsys):
    path = shipped_model("digits")
    assert main(["run", str(path), "--device", "sim://tiny", "--quiet"]) == EXIT_NETWORK
    assert capsys.readouterr().err == (
        "spikeforge: error: the model does not fit the core: input size 64 exceeds "
        "max_inputs=16\n")


def test_a_dead_link_is_a_device_error(capsys):
    assert main(["run", str(shipped_model("digits")), "--device", "socket://127.0.0.1:1",
                 "--quiet"]) == EXIT_DEVICE
    err = capsys.readouterr().err
    assert err.startswith("spikeforge: error: cannot open 'socket://127.0.0.1:1': ")


def test_device_bench_reports_end_to_end_throughput():
    result = bench(samples=3)
    for task in ("digits", "recall"):
        assert result[task]["bit_exact"] is True
        assert result[task]["samples_per_second"] > 0
        assert result[task]["clocks_per_step"] > 0


def test_run_plot_writes_a_report_with_the_energy_estimate(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["run", str(shipped_model("digits")), "--device", "sim://demo", "--limit", "3",
                 "--plot", str(out), "--json", "--quiet"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["report"] == str(out / "report.md")
    text = (out / "report.md").read_text()
    assert "bit for bit" in text and "estimate" in text.lower()
    assert report["energy"]["source"] and report["energy"]["ratio"] > 0
    assert sorted(p.suffix for p in out.iterdir()).count(".png") >= 2


def test_an_snntorch_nir_network_runs_on_the_simulated_board():
    """The checked-in snnTorch export (Linear + Leaky) imported into the integer
    model runs on the device bit for bit like the golden model."""
    from pathlib import Path

    import numpy as np
    import torch
    from spikeforge.device import open as open_device
    from spikeforge.golden.nir import import_nir

    data = Path(__file__).with_name("data")
    net = import_nir(data / "snntorch_leaky.nir").net
    with np.load(data / "snntorch_leaky.npz") as arrays:
        x = torch.from_numpy(np.asarray(arrays["input"])).to(torch.int64)[:, :6]
    with open_device("sim://demo") as dev:
        dev.load(net)
        got = dev.run(x, membranes=True)
    trace = net.run(x)
    assert torch.equal(got.outputs, trace.outputs[net.output])
    assert got.spikes.sum() > 0  # the check is not vacuous

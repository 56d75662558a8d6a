"""The energy estimate (golden/energy.py), its counts from the golden model and from
the core's counters, and the plots / report (golden/report.py, --plot DIR)."""

from __future__ import annotations

import json

import pytest
import torch
from netgen import small_model_file
from spikeforge.cli import main
from spikeforge.golden import experiments
from spikeforge.golden.energy import (
    TABLE,
    counts_from_counters,
    counts_from_trace,
    estimate,
    estimate_run,
)
from spikeforge.golden.integer import Conv, Format, LIFLayer, Network, Projection
from spikeforge.golden.modelfile import load_model
from spikeforge.golden.report import write_report
from spikeforge.golden.train import task_data
from spikeforge.sim.verilator import have_verilator


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def t(values):
    return torch.tensor(values, dtype=torch.int64)


def tiny(input_kind="spike", recurrent=False) -> Network:
    inputs = [Projection("input", t([[1, 2, 3], [-1, 0, 4]]))]
    if recurrent:
        inputs.append(Projection("h", t([[1, 0], [0, 1]]), recurrent=True))
    return Network(input_size=3, input_kind=input_kind, output="h", fmt=Format(), layers=[
        LIFLayer(name="h", size=2, alpha=t([128, 128]), theta=t([3, 3]), bias=t([0, 0]),
                 inputs=inputs, reset="zero")])


def test_counts_from_a_golden_run():
    net = tiny()
    x = t([[[1, 0, 1]], [[0, 1, 0]], [[1, 1, 1]]])  # T=3, B=1
    trace = net.run(x)
    counts = counts_from_trace(net, x, trace)
    s = trace.spikes["h"][:, 0]
    assert counts == {"source": "golden", "samples": 1, "timesteps": 3, "input_nonzero": 6,
                      "input_active": 3, "layers": {
                          "h": {"events": 6, "input_events": 0, "spikes": int(s.sum()),
                                "synops": 6 * 2, "input_synops": 0, "window_synops": 3 * 2,
                                "active": int((s != 0).any(dim=0).sum())}}}
    # A recurrent edge delivers step t-1: the last step's spikes are never events.
    net = tiny(recurrent=True)
    trace = net.run(x)
    s = trace.spikes["h"][:, 0]
    assert counts_from_trace(net, x, trace)["layers"]["h"]["events"] == 6 + int(s[:-1].sum())


def test_estimate_by_hand():
    """Every number from the cited table, worked out by hand for a 3 -> 2 layer
    (defaults: w_bits 8, u_bits 16, F 8, acc_bits 24; all memories in the 8 KB class)."""
    net = tiny()
    counts = {"source": "test", "samples": 2, "timesteps": 5,
              "layers": {"h": {"events": 7, "input_events": 0, "spikes": 3}}}
    e = estimate(net, counts)
    assert TABLE["int_add"][32] == 0.1 and TABLE["sram_read_64b"][8192] == 10.0
    bit = 10.0 / 64                                   # one bit of an 8 KB SRAM read
    neuron = 3.1 + 3 * 0.05 + (16 + 9 + 16 + 16 + 16) * bit   # leak mult, 3 adds, 73 bits
    snn = {"synaptic": 7 * 2 * 0.1 / 2, "weights": 7 * 2 * 8 * bit / 2,
           "neurons": 2 * 5 * 2 * neuron / 2, "routing": 3 * 32 * bit / 2}
    assert e["snn"]["energy_pj"] == pytest.approx(snn)
    assert e["snn"]["total_pj"] == pytest.approx(sum(snn.values()))
    assert e["snn"]["per_sample"] == pytest.approx({
        "synaptic_accumulates": 7.0, "synaptic_macs": 0.0, "weight_reads": 7.0,
        "neuron_updates": 10.0, "spikes": 1.5})
    ann = {"macs": 6 * (0.2 + 0.1), "weights": 6 * 8 * bit, "activations": 2 * (0.05 + 16 * bit)}
    assert e["ann"]["passes"] == 1 and e["ann"]["macs"] == 6
    assert e["ann"]["energy_pj"] == pytest.approx(ann)
    assert e["ratio"] == pytest.approx(sum(snn.values()) / sum(ann.values()))
    fp32 = 6 * (3.7 + 0.9 + 32 * bit)  # 6 float32 MACs, 24 bytes of weights: 8 KB class
    assert e["ann"]["fp32_total_pj"] == pytest.approx(fp32)
    assert e["ratio_fp32"] == pytest.approx(sum(snn.values()) / fp32)
    assert e["estimate"] is True and "ESTIMATE" in e["label"]
    assert e["source"]["process"] == "45 nm CMOS, 0.9 V"
    assert "Horowitz" in e["source"]["citation"] and "ISSCC 2014" in e["source"]["citation"]
    assert e["counts_source"] == "test"
    # The baselines: T = 5 steps -> ceil(log2(6)) = 3-bit activations; an 8 x 3-bit
    # multiply costs the 8-bit entry.  Without window counts the zero-skipping
    # ANN assumes spikes / T nonzero activations and synops / T nonzero MACs.
    low = {"macs": 6 * 0.3, "weights": 6 * 8 * bit, "activations": 2 * (0.05 + 2 * 3 * bit)}
    skip = {"macs": 14 / 5 / 2 * 0.3, "weights": 14 / 5 / 2 * 8 * bit,
            "activations": 2 * 0.05 + 2 * (2 + 3 / 5 / 2 * 3) * bit}
    b = e["baselines"]
    assert b["ann_int8"]["energy_pj"] == pytest.approx(ann)
    assert b["ann_lowbit"]["energy_pj"] == pytest.approx(low)
    assert b["ann_lowbit"]["activation_bits"] == b["ann_zero_skip"]["activation_bits"] == 3
    assert b["ann_zero_skip"]["energy_pj"] == pytest.approx(skip)
    assert b["ann_zero_skip"]["macs"] == pytest.approx(1.4)
    assert b["ann_zero_skip"]["zeros_from"].startswith("assumed")
    assert b["ann_zero_skip"]["zero_fraction"] == {"input": None, "h": pytest.approx(0.85)}
    for key, parts in (("ann_int8", ann), ("ann_lowbit", low), ("ann_zero_skip", skip)):
        assert b[key]["ratio"] == pytest.approx(sum(snn.values()) / sum(parts.values()))
    # A spike input without input_nonzero: no firing rate, no break-even rate.
    assert e["firing_rate"] is None and e["firing_rates"] == {"input": None, "h": 0.15}
    assert e["break_even_firing_rate"] == dict.fromkeys(b)
    assert "Yan" in e["source"]["baselines"] and "2409.08290" in e["source"]["baselines"]
    json.dumps(e)  # JSON-able


def test_zero_skipping_counts_the_zeros_of_the_window():
    """One pass over the window skips the input channels silent at every step and the
    neurons that never spike (the spike count is the quantized ANN's activation)."""
    net = tiny()
    x = t([[[0, 0, 1]], [[0, 0, 0]], [[0, 0, 1]]])  # channel 2 only: h0 += 3, h1 += 4
    trace = net.run(x)
    assert trace.spikes["h"][:, 0].tolist() == [[1, 1], [0, 0], [1, 1]]
    counts = counts_from_trace(net, x, trace)
    assert (counts["input_nonzero"], counts["input_active"]) == (2, 1)
    assert counts["layers"]["h"]["window_synops"] == 2 and counts["layers"]["h"]["active"] == 2
    e = estimate(net, counts)
    bit = 10.0 / 64
    skip = e["baselines"]["ann_zero_skip"]
    assert skip["zeros_from"].startswith("measured")
    assert skip["macs"] == 2 and skip["macs_skipped"] == pytest.approx(2 / 3)
    assert skip["zero_fraction"] == {"input": pytest.approx(2 / 3), "h": 0.0}
    a = 2  # ceil(log2(3 + 1))
    assert skip["energy_pj"] == pytest.approx({
        "macs": 2 * 0.3, "weights": 2 * 8 * bit,
        "activations": 2 * 0.05 + 2 * (2 + 2 * a) * bit})
    # Firing rate: 2 input spikes and 4 of h over (3 + 2) neurons x 3 steps.
    assert e["firing_rate"] == pytest.approx(6 / 15)
    assert e["firing_rates"] == {"input": pytest.approx(2 / 9), "h": pytest.approx(4 / 6)}
    # Here the neuron updates alone cost more than any baseline: no rate breaks even.
    assert e["snn"]["fixed_pj"] == pytest.approx(e["snn"]["energy_pj"]["neurons"])
    assert all(b["total_pj"] < e["snn"]["fixed_pj"] for b in e["baselines"].values())
    assert e["break_even_firing_rate"] == dict.fromkeys(e["baselines"], 0.0)


@pytest.mark.parametrize("kind", ["spike", "int"])
def test_the_break_even_model_is_the_estimate_itself(kind):
    """Doubling every spike train (events, spikes, input spikes) doubles the firing
    rate and adds exactly ``spike_driven_pj`` to the SNN's estimate: the line the
    break-even rates are read from."""
    net = tiny(kind)
    ie = 4 if kind == "int" else 0
    one = {"samples": 1, "timesteps": 5, "input_nonzero": 4,
           "layers": {"h": {"events": 7, "input_events": ie, "spikes": 3}}}
    two = {"samples": 1, "timesteps": 5, "input_nonzero": 8 if kind == "spike" else 4,
           "layers": {"h": {"events": 7 + (7 - ie), "input_events": ie, "spikes": 6}}}
    e1, e2 = estimate(net, one), estimate(net, two)
    assert e2["snn"]["total_pj"] == pytest.approx(e1["snn"]["fixed_pj"]
                                                  + 2 * e1["snn"]["spike_driven_pj"])
    assert e2["firing_rate"] == pytest.approx(2 * e1["firing_rate"])
    assert e1["firing_rate"] == pytest.approx((4 + 3) / (5 * 5) if kind == "spike" else 3 / 10)


def test_break_even_rates_of_a_model(model_file):
    """At each baseline's break-even rate the SNN's line meets the baseline (or, at 0,
    its fixed cost alone exceeds it)."""
    net, meta = load_model(model_file)
    x, _ = task_data(meta, "test")
    e = estimate(net, counts_from_trace(net, x, net.run(x)))
    snn, r0 = e["snn"], e["firing_rate"]
    assert 0 < r0 < 1 and snn["spike_driven_pj"] > 0
    assert snn["fixed_pj"] + snn["spike_driven_pj"] == pytest.approx(snn["total_pj"])
    for key, b in e["baselines"].items():
        r = e["break_even_firing_rate"][key]
        assert r == b["break_even_firing_rate"] and r >= 0
        if r > 0:
            assert snn["fixed_pj"] + snn["spike_driven_pj"] * r / r0 == \
                pytest.approx(b["total_pj"])
        else:
            assert snn["fixed_pj"] >= b["total_pj"]
    assert e["baselines"]["ann_int8"]["total_pj"] == e["ann"]["total_pj"]
    assert e["baselines"]["ann_zero_skip"]["total_pj"] < e["baselines"]["ann_lowbit"]["total_pj"]


def test_int_input_events_are_macs_and_recurrence_needs_t_dense_passes():
    counts = {"samples": 1, "timesteps": 4,
              "layers": {"h": {"events": 5, "input_events": 3, "spikes": 0}}}
    e = estimate(tiny("int"), counts)
    assert e["snn"]["energy_pj"]["synaptic"] == pytest.approx(2 * 2 * 0.1 + 3 * 2 * 0.3)
    assert e["ann"]["passes"] == 1
    recurrent = estimate(tiny(recurrent=True), counts)
    assert recurrent["ann"]["passes"] == 4
    # One pass per step: the zero-skipping ANN skips each step's zeros, the SNN's events.
    skip = recurrent["baselines"]["ann_zero_skip"]
    assert skip["macs"] == 5 * 2 and skip["zeros_from"].startswith("measured: each step")
    assert skip["zero_fraction"] == {"input": None, "h": 1.0}
    assert estimate(tiny(), counts, ann_passes=3)["ann"]["macs"] == 18


def test_counter_counts_split_int_input_events():
    net = tiny("int")
    x = t([[[5, 0, -3]], [[0, 0, 1]]])
    counts = counts_from_counters(net, {"h": {"events": 3, "spikes": 1, "syn_cycles": 9,
                                              "neuron_cycles": 4}}, x)
    assert counts == {"source": "rtl-counters", "samples": 1, "timesteps": 2,
                      "input_nonzero": 3, "input_active": 2,
                      "layers": {"h": {"events": 3, "input_events": 3, "spikes": 1}}}
    golden = counts_from_trace(net, x, net.run(x))
    merged = counts_from_counters(net, {"h": {"events": 3, "spikes": 1}}, x, golden=golden)
    assert merged["layers"]["h"]["window_synops"] == golden["layers"]["h"]["window_synops"]
    with pytest.raises(ValueError) as err:
        counts_from_counters(net, {}, x)
    assert str(err.value) == "the counters have no entry for layer 'h'"
    with pytest.raises(ValueError) as err:
        estimate(net, {"samples": 1, "timesteps": 1, "layers": {}})
    assert str(err.value) == "the counts have no entry for layer 'h'"


@pytest.fixture
def model_file(tmp_path):
    return small_model_file(tmp_path / "small.safetensors", hidden=12, timesteps=3)


def test_eval_json_has_energy_and_plot_writes_a_report(model_file, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert main(["eval", str(model_file), "--json", "--plot", str(plots)]) == 0
    report = json.loads(capsys.readouterr().out)
    net, meta = load_model(model_file)
    x, _ = task_data(meta, "test")
    want = estimate(net, counts_from_trace(net, x, net.run(x)))
    assert report["energy"] == json.loads(json.dumps(want))
    assert report["energy"]["snn"]["per_sample"]["synaptic_accumulates"] == \
        pytest.approx(report["synops_per_sample"])
    assert report["report"] == str(plots / "report.md")
    for name in ("raster.png", "membranes.png", "energy.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (plots / "report.md").read_text()
    assert "## Energy (estimate)" in text and "Horowitz" in text and "45 nm" in text
    assert "| per sample | SNN (event-driven) | ann_int8 | ann_lowbit | ann_zero_skip |" in text
    rates = report["energy"]["break_even_firing_rate"]
    assert "| break-even firing rate | " + f"{report['energy']['firing_rate']:.6g} (measured) | " \
        + " | ".join(f"{r:.6g}" for r in rates.values()) + " |" in text
    assert f"| accuracy | {report['accuracy']:.6g} |" in text
    assert "![Spike raster](raster.png)" in text


def test_plot_dir_that_is_a_file_is_refused(model_file, tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["eval", str(model_file), "--plot", str(afile)]) == 2
    assert capsys.readouterr().err == f"spikeforge: error: --plot {afile}: exists and is not " \
        f"a directory\n"


@pytest.mark.skipif(not have_verilator(), reason="needs Verilator")
def test_rtl_counters_give_the_golden_counts(model_file, capsys):
    """The core's hardware counters, read after each sample, count exactly the events
    and spikes of the golden run, so both estimates are equal."""
    assert main(["eval", str(model_file), "--rtl", "digits", "--limit", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rtl"]["bit_exact"] is True
    net, meta = load_model(model_file)
    x, _ = task_data(meta, "test")
    x = x[:, :3]
    golden = counts_from_trace(net, x, net.run(x))
    rtl = report["rtl"]["counters"]
    assert {k: {"events": v["events"], "spikes": v["spikes"]} for k, v in rtl.items()} == \
        {k: {"events": v["events"], "spikes": v["spikes"]} for k, v in golden["layers"].items()}
    assert all(v["syn_cycles"] > 0 and v["neuron_cycles"] > 0 for v in rtl.values())
    rtl_energy = report["rtl"]["energy"]
    assert rtl_energy["counts_source"] == "rtl-counters"
    assert rtl_energy["snn"] == json.loads(json.dumps(estimate(net, golden)["snn"]))


def test_experiment_report_with_energy_vs_accuracy(tmp_path):
    rows = [{"timesteps": t_, "accuracy": 0.5 + 0.1 * i, "synops_per_sample": 100.0 * t_,
             "energy": {"snn_pj_per_sample": 10.0 * t_, "ann_pj_per_sample": 50.0,
                        "ratio": t_ / 5, "source": "Horowitz ISSCC 2014",
                        "process": "45 nm CMOS, 0.9 V", "label": "ESTIMATE"}}
            for i, t_ in enumerate([1, 2, 4])]
    result = {"experiment": "timesteps", "task": "digits", "encoding": "rate", "results": rows}
    path = experiments.report(result, tmp_path / "exp")
    assert path == tmp_path / "exp" / "report.md"
    for name in ("timesteps.png", "accuracy_vs_t.png", "energy_vs_accuracy.png"):
        assert (tmp_path / "exp" / name).is_file()
    text = path.read_text()
    assert "| T=4 | accuracy 0.7000, 400 synops/sample, 40 pJ/sample (SNN/ANN 0.8) |" in text
    assert "![Energy vs accuracy](energy_vs_accuracy.png)" in text


def test_write_report_without_energy(tmp_path):
    path = write_report(tmp_path / "r", title="run", summary={"a": 1, "b": 0.5},
                        notes=["hello"])
    assert path.read_text() == "# run\n\n| quantity | value |\n|---|---|\n| a | 1 |\n" \
        "| b | 0.5 |\n\n## Notes\n\n- hello\n"


def test_estimate_run_and_the_experiment_summary(model_file):
    net, meta = load_model(model_file)
    x, _ = task_data(meta, "test")
    trace = net.run(x)
    golden = estimate(net, counts_from_trace(net, x, trace))
    assert estimate_run(net, x) == golden
    counters = {k: {"events": v["events"], "spikes": v["spikes"]}
                for k, v in counts_from_trace(net, x, trace)["layers"].items()}
    from_counters = estimate_run(net, x, counters=counters)
    assert from_counters["counts_source"] == "rtl-counters"
    assert from_counters["snn"] == golden["snn"] and from_counters["ratio"] == golden["ratio"]
    # The counters carry no per-neuron window activity: assumed, unless the golden
    # trace of the same run supplies it.
    skip = from_counters["baselines"]["ann_zero_skip"]
    assert skip["zeros_from"].startswith("assumed")
    with_trace = estimate_run(net, x, counters=counters, trace=trace)
    assert with_trace["baselines"] == golden["baselines"]
    assert with_trace["break_even_firing_rate"] == golden["break_even_firing_rate"]
    summary = experiments._energy(net, meta)
    assert summary["snn_pj_per_sample"] == golden["snn"]["total_pj"]
    assert summary["ratio"] == golden["ratio"] and summary["process"] == "45 nm CMOS, 0.9 V"


def test_ssm_layers_count_writes_reads_and_every_decay():
    import random

    from netgen import random_input, random_network

    rng = random.Random(11)
    net = next(n for n in (random_network(rng) for _ in range(100))
               if any(la.kind == "ssm" for la in n.layers))
    x = random_input(rng, net, steps=5, batch=3)
    trace = net.run(x)
    e = estimate(net, counts_from_trace(net, x, trace))
    cells = sum(la.n * la.m for la in net.layers if la.kind == "ssm")
    fmt = net.fmt
    add_s = TABLE["int_add"][8 if fmt.s_bits <= 8 else 16 if fmt.s_bits <= 16 else 32]
    mult_s = TABLE["int_mult"][8 if fmt.s_bits <= 8 else 32]
    mult_in = TABLE["int_mult"][8 if max(fmt.w_bits, fmt.in_bits) <= 8 else 32]
    assert e["snn"]["per_sample"]["ssm_decays"] == cells * 5
    assert e["snn"]["per_sample"]["ssm_ops"] == pytest.approx(int(trace.ssm_ops.sum()) / 3)
    assert e["snn"]["energy_pj"]["ssm"] == pytest.approx(
        (int(trace.ssm_ops.sum()) * (mult_in + add_s) + cells * 5 * 3 * (mult_s + add_s)) / 3)
    assert e["ann"]["passes"] == 5


def test_experiment_plot_dir_through_the_cli(tmp_path, monkeypatch, capsys):
    """``experiment NAME --plot DIR`` writes the plot and the report; ``--plot X.png``
    still writes the single plot (the experiment itself is stubbed: training is slow)."""
    result = {"experiment": "surrogate", "task": "digits", "chance": 0.1,
              "results": {"none": 0.1, "fast-sigmoid": 0.9}}
    monkeypatch.setattr(experiments, "run", lambda name, **kw: dict(result))
    out_dir = tmp_path / "exp"
    assert main(["experiment", "surrogate", "--plot", str(out_dir), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["report"] == str(out_dir / "report.md") and got["plot"] == str(out_dir)
    assert (out_dir / "surrogate.png").is_file()
    text = (out_dir / "report.md").read_text()
    assert "![Experiment surrogate](surrogate.png)" in text
    assert '| results | `{"none": 0.1, "fast-sigmoid": 0.9}` |' in text
    png = tmp_path / "one.png"
    assert main(["experiment", "surrogate", "--plot", str(png), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["plot"] == str(png) and "report" not in got and png.is_file()


def test_convolution_counts_its_taps():
    """A convolution's event does one synaptic operation per kernel tap it reaches (not
    one per neuron), and the dense equivalent does each connection once, not each
    shared weight."""
    conv = Projection("input", t([[[1, 1, 1]]]), in_shape=(1, 5), conv=Conv(padding=1))
    layer = LIFLayer("c", 5, t([0] * 5), t([9] * 5), t([0] * 5), [conv])
    net = Network(input_size=5, input_kind="spike", layers=[layer], output="c")
    x = t([[[1, 0, 0, 0, 1]], [[0, 0, 1, 0, 0]]])
    counts = counts_from_trace(net, x, net.run(x))["layers"]["c"]
    # Edge positions reach 2 taps, the middle one 3.
    assert (counts["events"], counts["synops"]) == (3, 2 + 2 + 3)
    e = estimate(net, counts_from_trace(net, x, net.run(x)))
    assert e["snn"]["per_sample"]["weight_reads"] == 7 and e["ann"]["macs"] == 13

"""Training for sparsity (issue 29 item 3): the activity penalty, the delta and
event-digits encodings, the config checks and ``experiment sparsity``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from spikeforge.cli import main
from spikeforge.golden import dvs, experiments, sparsity, tasks
from spikeforge.golden.train import (
    DigitsConfig,
    EventDigitsConfig,
    RecallConfig,
    activity_penalty,
    check_task_meta,
    config_for,
    task_data,
    train,
)
from spikeforge.sim.verilator import have_verilator


# ------------------------------------------------------------ the penalty
def test_penalty_is_the_documented_rule_value_and_gradient():
    torch.manual_seed(0)
    s = (torch.rand(5, 3, 8) < 0.4).double().requires_grad_()     # [T, B, n]
    cfg = DigitsConfig(activity_weight=3.0, target_rate=0.1)
    p = activity_penalty({"hidden": s}, torch.ones(5, 3, 64), cfg)
    r = float(s.detach().sum()) / (5 * 3 * 8)
    assert float(p.detach()) == pytest.approx(3.0 * (r - 0.1) ** 2, rel=1e-12)
    p.backward()
    # dP/ds = 2 lambda (r - rho) / (n |M|) for every spike.
    assert torch.allclose(s.grad, torch.full_like(s, 2 * 3.0 * (r - 0.1) / (8 * 15)))


def test_penalty_is_off_at_weight_zero_and_pushes_up_below_the_target():
    s = torch.zeros(2, 2, 4, requires_grad=True)
    assert float(activity_penalty({"hidden": s}, torch.ones(2, 2, 1), DigitsConfig())) == 0.0
    p = activity_penalty({"hidden": s}, torch.ones(2, 2, 1),
                         DigitsConfig(activity_weight=1.0, target_rate=0.5))
    p.backward()
    assert float(p) == 0.25 and bool((s.grad < 0).all())   # descent raises the rate


def test_recall_default_is_the_old_spike_count_rule_exactly():
    """Recall's default (rho = 1/16, lambda = 256, 16-neuron layers) is the former
    rule: the squared distance of each layer's spike count per non-blank token from
    one, bit for bit."""
    torch.manual_seed(1)
    x = (torch.rand(7, 4, 33) < 0.1).double()
    x[2] = 0                                                         # a blank token
    out = {name: (torch.rand(7, 4, 16) < 0.2).double() for name in ("key", "value")}
    active = (x.sum(dim=2) > 0).double()
    old = sum(((out[n].sum(dim=2) * active).sum() / active.sum() - 1.0) ** 2
              for n in ("key", "value"))
    assert float(activity_penalty(out, x, RecallConfig())) == float(old)


def test_penalty_lowers_the_spike_count_of_a_tiny_run():
    rates = []
    for weight in (0.0, 20.0):
        net, meta = train(DigitsConfig(encoding="direct", timesteps=2, hidden=16, epochs=1,
                                       qat_epochs=0, activity_weight=weight, target_rate=0.0),
                          progress=False)
        x, _ = task_data(meta, "test")
        rates.append(float(net.run(x).spikes["hidden"].double().mean()))
    assert rates[1] < 0.5 * rates[0], rates


@pytest.mark.parametrize("cfg, message", [
    (DigitsConfig(activity_weight=-1.0), "activity_weight must be a finite number >= 0, not -1.0"),
    (DigitsConfig(activity_weight=float("nan")),
     "activity_weight must be a finite number >= 0, not nan"),
    (DigitsConfig(target_rate=1.5),
     "target_rate must be a firing rate in [0, 1] (spikes per neuron per step), not 1.5"),
    (RecallConfig(target_rate="0.1"),
     "target_rate must be a firing rate in [0, 1] (spikes per neuron per step), not '0.1'"),
    (EventDigitsConfig(event_step=0),
     "event_step must be an integer in 1..1048576 (events per input level), not 0"),
    (EventDigitsConfig(encoding="rate"),
     "unknown encoding 'rate' for the event-digits task; choose one of ('counts', 'spikes')"),
    (DigitsConfig(hidden2=-1), "hidden2 must be an integer in 0..4096, not -1"),
    (DigitsConfig(hidden=0), "hidden must be an integer in 1..4096, not 0"),
    (DigitsConfig(encoding="counts"),
     "unknown encoding 'counts' for the digits task; choose one of ('rate', 'direct', 'delta')"),
])
def test_config_errors_name_the_bad_value(cfg, message):
    with pytest.raises(ValueError) as info:
        train(cfg, progress=False)
    assert str(info.value) == message


# ------------------------------------------------------------ encodings
def test_delta_coding_of_a_static_image_is_its_onset():
    data = tasks.digits("test")
    x = data.encode("delta", 5, index=np.arange(6))
    assert x.shape == (5, 6, 64) and x.dtype == torch.int64
    assert torch.equal(x[0], torch.from_numpy(data.x[:6]))          # the values at onset
    assert not x[1:].any()                                          # nothing after
    # The definition: the running sum of the changes is the presented image.
    assert torch.equal(x.cumsum(dim=0), data.encode("direct", 5, index=np.arange(6)))
    with pytest.raises(ValueError, match="steps must be a positive integer, not 0"):
        tasks.delta_encode(data.x[:2], 0)


def test_delta_digits_model_metadata_is_an_int_input_task():
    meta = {"task": "digits", "timesteps": 3, "encoding_seed": 0, "encoding": "delta",
            "readout": "last"}
    check_task_meta(meta)
    x, y = task_data(meta, "test")
    assert x.shape == (3, len(y), 64) and not x[1:].any()


def test_pool_events_is_the_frames_cropped_and_block_summed():
    events, _ = dvs.event_digits("test", limit=3)
    frames = np.stack([dvs.event_digits_frames("test", 4, limit=3)[0][i] for i in range(3)])
    want = frames[:, :, :, 1:33, 1:33].sum(axis=2).reshape(3, 4, 8, 4, 8, 4).sum(axis=(3, 5))
    assert np.array_equal(tasks.pool_events(events, 4), want.reshape(3, 4, 64))
    # The dropped border is the frames' outer ring only.
    assert tasks.pool_events(events, 4).sum() < frames.sum()
    with pytest.raises(ValueError, match="bins must be a positive integer, not 0"):
        tasks.pool_events(events, 0)


@pytest.fixture
def fake_events(monkeypatch):
    """Small deterministic event counts in place of the emulated recordings."""
    def counts(split, bins):
        rng = np.random.default_rng(bins + (split == "train"))
        n = 60 if split == "train" else 30
        y = np.arange(n) % 10
        c = rng.poisson(3.0, size=(n, bins, 64)) * (np.arange(64)[None, None] % 10 ==
                                                   y[:, None, None]) * 40
        return c.astype(np.int64), y.astype(np.int64)

    monkeypatch.setattr(tasks, "_event_counts", counts)


def test_event_encodings_quantize_and_clip(fake_events):
    counts, labels = tasks._event_counts("test", 3)
    x, y = tasks.event_digits("test", 3, step=40)
    assert x.shape == (3, 30, 64) and torch.equal(y, torch.from_numpy(labels))
    assert torch.equal(x, torch.from_numpy(np.minimum(counts // 40, 127).transpose(1, 0, 2)))
    s, _ = tasks.event_digits("test", 3, step=80, encoding="spikes")
    assert set(s.unique().tolist()) <= {0, 1}
    assert torch.equal(s.bool(), torch.from_numpy(counts >= 80).permute(1, 0, 2))
    assert int(tasks.event_digits("test", 3, step=1)[0].max()) == 127     # clipped
    for kwargs, message in (({"step": 0}, "step must be a positive integer number of events, "
                                          "not 0"),
                            ({"encoding": "rate"}, "unknown event encoding 'rate'")):
        with pytest.raises(ValueError, match=message):
            tasks.event_digits("test", 3, **kwargs)


def test_event_digits_is_a_task_with_int_or_spike_inputs(fake_events):
    meta = {"task": "event-digits", "timesteps": 2, "event_step": 40, "encoding": "spikes",
            "readout": "last"}
    check_task_meta(meta)
    with pytest.raises(ValueError, match="metadata event_step=0 is not an integer"):
        check_task_meta(dict(meta, event_step=0))
    net, meta = train(config_for("event-digits", timesteps=2, event_step=40, hidden=8,
                                 epochs=1, qat_epochs=0), progress=False)
    assert (net.input_size, net.input_kind) == (64, "int")
    assert [la.name for la in net.layers] == ["hidden", "out"]
    assert meta["task"] == "event-digits" and meta["event_step"] == 40
    check_task_meta(meta, "test", net)


# ------------------------------------------------------------ the experiment
TINY = [{"task": "digits", "encoding": "delta", "timesteps": 2, "hidden": 8, "qat_epochs": 0},
        {"task": "digits", "encoding": "direct", "timesteps": 1, "hidden": 8, "qat_epochs": 0,
         "activity_weight": 5.0, "target_rate": 0.02},
        {"task": "event-digits", "encoding": "counts", "timesteps": 2, "event_step": 40,
         "hidden": 8, "hidden2": 4, "qat_epochs": 0}]


@pytest.fixture
def tiny_grid(monkeypatch, fake_events):
    monkeypatch.setitem(sparsity.GRIDS, "default", TINY)
    monkeypatch.setattr(sparsity, "DEFAULT_EPOCHS", 1)


def test_sparsity_result_structure(tiny_grid):
    result = experiments.run("sparsity", epochs=None, seed=0, timesteps=[1], lengths=[2])
    json.dumps(result)
    assert result["experiment"] == "sparsity" and result["epochs"] == 1
    rows = result["results"]
    assert [r["label"] for r in rows] == ["digits/delta T=2", "digits/direct T=1 lambda=5 "
                                          "rho=0.02", "event-digits/counts T=2 q=40 h2=4"]
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and r["fits_demo"] and r["fit_error"] is None
        assert set(r["baselines"]) == {"ann_int8", "ann_lowbit", "ann_zero_skip"}
        assert r["spikes_per_synapse"] == pytest.approx(r["synops_per_sample"] / r["synapses"])
    assert [r["synapses"] for r in rows] == [64 * 8 + 8 * 10] * 2 + [64 * 8 + 8 * 4 + 4 * 10]
    assert [r["ann_passes"] for r in rows] == [1, 1, 2]
    assert "ann_lowbit_one_pass_ratio" in rows[2] and "ann_lowbit_one_pass_ratio" not in rows[0]
    assert set(result["frontier"]) == {"digits", "event-digits"}
    assert set(result["frontier"]["event-digits"]) == {2}
    best = result["best"]["event-digits"]["ann_lowbit"]
    assert best["index"] == 2 and {"meets_accuracy", "meets_energy", "fits_demo"} <= set(best)
    lines = list(experiments.describe(result))
    assert lines[1].startswith("| task | encoding | T | q | hidden | lambda | rho | accuracy")
    assert any(line.startswith("event-digits goal") for line in lines)


def test_pareto_and_best():
    def row(acc, ratio):
        return {"accuracy": acc, "baselines": {"ann_lowbit": {"ratio": ratio}}}

    rows = [row(0.9, 0.5), row(0.96, 0.8), row(0.95, 0.4), row(0.97, 2.0), row(0.8, 0.45)]
    assert sparsity.pareto(rows) == [2, 1, 3]
    assert sparsity.best(rows, "ann_lowbit") == 2
    assert sparsity.best([row(0.9, 0.5), row(0.91, 3.0)], "ann_lowbit") == 1   # most accurate


def test_unknown_grid_and_bad_points():
    with pytest.raises(ValueError, match="unknown grid 'huge'; choose one of"):
        sparsity.points("huge")
    with pytest.raises(ValueError, match="task must be 'digits' or 'event-digits', not 'recall'"):
        sparsity.points([{"task": "recall"}])


def test_cli_plot_writes_table_plot_and_report(tiny_grid, tmp_path, capsys):
    out = tmp_path / "sp"
    assert main(["experiment", "sparsity", "--plot", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["report"] == str(out / "report.md")
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "sparsity.csv",
                                                      "sparsity.png"]
    with open(out / "sparsity.csv") as f:
        table = list(csv.reader(f))
    assert table[0][:3] == ["task", "encoding", "T"] and len(table) == 1 + len(TINY)
    text = (out / "report.md").read_text()
    for part in ("ESTIMATE", "## Best trade-off per baseline", "![accuracy vs energy ratio]"
                 "(sparsity.png)", "## Why", "event-digits goal"):
        assert part in text


def test_cli_text_output_and_options(tiny_grid, capsys):
    assert main(["experiment", "sparsity", "--grid", "default", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| digits | delta | 2 |" in out and "digits vs ann_lowbit:" in out
    for argv, message in ((["--grid", "huge"], "invalid choice: 'huge'"),
                          (["--device-samples", "0"], "must be")):
        with pytest.raises(SystemExit):
            main(["experiment", "sparsity", *argv])
        assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="needs Verilator")
def test_device_check_on_the_simulated_board(fake_events):
    net, meta = train(config_for("event-digits", timesteps=2, event_step=40, hidden=16,
                                 epochs=1, qat_epochs=0), progress=False)
    d = sparsity.device_check("sim://", net, meta, samples=5)
    assert d["bit_exact"] and d["samples"] == 5 and d["counts_source"] == "device-counters"
    assert d["ann_passes"] == 2 and set(d["baselines"]) == {"ann_int8", "ann_lowbit",
                                                              "ann_zero_skip"}

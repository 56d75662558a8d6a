"""Tasks that need a selective state (``golden/seqtasks.py``) and the ``selectivity``
experiment (``golden/selectivity.py``).

The generators are checked by decoding each sequence token by token, independently
of how they were drawn: the latest value of a key wins, every MQAR query asks for a
key written before it, the copy targets are the data tokens in order.  The
experiment is run on a tiny budget (its structure, files, and a device run of the
selective models on the simulated board, compared bit for bit with the golden model).
"""

from __future__ import annotations

import json

import pytest
import torch
from spikeforge.golden import selectivity, seqtasks
from spikeforge.golden.seqtasks import IGNORE


def _pairs(x: torch.Tensor, b: int, n_keys: int):
    """Decode sample ``b``: its tokens as ``("key", k)``, ``("value", v)`` or None."""
    out = []
    for t in range(x.shape[0]):
        hot = torch.nonzero(x[t, b]).flatten().tolist()
        assert len(hot) <= 1, f"step {t}: more than one symbol {hot}"
        if not hot:
            out.append(None)
        elif hot[0] < n_keys:
            out.append(("key", hot[0]))
        else:
            out.append(("value", hot[0] - n_keys))
    return out


# ------------------------------------------------------------------ overwrite
def test_overwrite_latest_value_wins():
    task = seqtasks.overwrite(200, length=40, n_writes=6, n_keys=4, n_values=5, seed=3)
    assert task.x.shape == (40, 200, 9) and task.classes == 5
    for b in range(200):
        tokens = _pairs(task.x, b, 4)
        memory, writes = {}, {}
        for t, tok in enumerate(tokens[:-1]):
            if tok and tok[0] == "value":
                prev = tokens[t - 1]
                assert prev and prev[0] == "key", f"sample {b} step {t}: value without key"
                memory[prev[1]] = tok[1]
                writes.setdefault(prev[1], []).append(tok[1])
            elif tok and tok[0] == "key":
                assert tokens[t + 1] and tokens[t + 1][0] == "value"
        kind, key = tokens[-1]
        assert kind == "key"
        assert int(task.y[-1, b]) == memory[key]          # the latest value wins
        assert len(writes[key]) == 2 and writes[key][0] != writes[key][1]
        assert (task.y[:-1, b] == IGNORE).all()
        assert sum(len(v) for v in writes.values()) == 6


def test_overwrite_no_forget_ceiling_is_about_half():
    task = seqtasks.overwrite(2000, length=64, seed=1)
    assert task.chance == pytest.approx(1 / 8)
    assert 0.4 < seqtasks.no_forget_accuracy(task) < 0.6


# ------------------------------------------------------------------ mqar
def test_mqar_queries_are_answerable():
    task = seqtasks.mqar(100, length=32, n_pairs=6, n_queries=4, n_keys=10, n_values=7,
                         seed=5)
    assert task.x.shape == (32, 100, 17) and task.chance == pytest.approx(1 / 7)
    for b in range(100):
        tokens = _pairs(task.x, b, 10)
        memory = {}
        for i in range(6):   # the pairs come first, contiguous
            assert tokens[2 * i][0] == "key" and tokens[2 * i + 1][0] == "value"
            memory[tokens[2 * i][1]] = tokens[2 * i + 1][1]
        assert len(memory) == 6                  # distinct keys
        asked = [t for t in range(32) if task.y[t, b] != IGNORE]
        assert len(asked) == 4 and min(asked) >= 12
        assert len({tokens[t][1] for t in asked}) == 4
        for t in range(12, 32):
            if t in asked:
                assert tokens[t][0] == "key" and int(task.y[t, b]) == memory[tokens[t][1]]
            else:
                assert tokens[t] is None
    assert seqtasks.no_forget_accuracy(task) == 1.0


# ------------------------------------------------------------------ selective copy
def test_selective_copy_targets_are_the_data_in_order():
    task = seqtasks.selective_copy(50, length=24, n_data=3, vocab=5, seed=2)
    assert task.x.shape == (24, 50, 6) and task.chance == pytest.approx(1 / 5)
    for b in range(50):
        data = [int(torch.nonzero(task.x[t, b, :5])[0]) for t in range(21)
                if task.x[t, b, :5].any()]
        assert len(data) == 3
        assert task.y[21:, b].tolist() == data
        assert (task.x[21:, b, 5] == 1).all() and (task.y[:21, b] == IGNORE).all()


# ------------------------------------------------------------------ common
@pytest.mark.parametrize("name", seqtasks.TASKS)
def test_tasks_are_deterministic(name):
    a, b = seqtasks.make(name, 20, length=32, seed=9), seqtasks.make(name, 20, length=32, seed=9)
    c = seqtasks.make(name, 20, length=32, seed=10)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert a.x.dtype == torch.int64 and set(a.x.unique().tolist()) <= {0, 1}


def test_accuracy_counts_asked_steps_only():
    task = seqtasks.mqar(10, length=20, seed=0)
    pred = task.y.clone()
    pred[task.y == IGNORE] = 3
    assert task.accuracy(pred) == 1.0
    with pytest.raises(ValueError, match=r"pred has shape \(2, 2\)"):
        task.accuracy(torch.zeros(2, 2, dtype=torch.int64))


@pytest.mark.parametrize("call, match", [
    (lambda: seqtasks.overwrite(4, length=10, n_writes=6), "length must be an integer >= 13"),
    (lambda: seqtasks.mqar(4, n_pairs=9, n_keys=8), "n_pairs=9 distinct keys"),
    (lambda: seqtasks.mqar(4, n_pairs=3, n_queries=4), "n_queries=4"),
    (lambda: seqtasks.selective_copy(4, length=7, n_data=4), "length must be an integer >= 8"),
    (lambda: seqtasks.make("copy", 4), "unknown task 'copy'"),
    (lambda: seqtasks.no_forget_accuracy(seqtasks.selective_copy(2)), "'selective-copy'"),
    (lambda: selectivity.Config(mode="gated"), "'gated'"),
    (lambda: selectivity.Config(gate_bits=9), "gate_bits must be in 1..8, not 9"),
])
def test_bad_values_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ experiment
@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return selectivity.run(lengths=[16, 64], state_sizes=[4], epochs=1, train_size=64,
                               tasks=["overwrite"], sweep_modes=selectivity.MODES)
    finally:
        torch.set_num_threads(threads)


def test_run_structure(tiny):
    json.dumps(tiny)  # JSON-ready
    assert tiny["experiment"] == "selectivity" and tiny["trained_length"] == 64
    assert {(r["mode"], r["length"]) for r in tiny["results"]} == {
        (m, n) for m in selectivity.MODES for n in (16, 64)}
    assert {(r["mode"], r["n"]) for r in tiny["state_size"]} == {
        (m, n) for m in selectivity.MODES for n in (4, 16)}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in tiny["results"] + tiny["state_size"])
    assert tiny["tasks"]["overwrite"]["chance"] == pytest.approx(1 / 8)
    assert set(tiny["acceptance"]) == {"overwrite"} and tiny["device"] is None
    for model in tiny["models"]:
        assert model["fits_demo"] is True, model
    lines = list(selectivity.describe(tiny))
    assert any(line.startswith("overwrite") and "selective" in line for line in lines)


def test_plot_and_report_files(tiny, tmp_path):
    path = selectivity.report(tiny, tmp_path / "out")
    text = path.read_text()
    assert path.name == "report.md" and "| overwrite | selective |" in text
    for name in ("selectivity-length.png", "selectivity-state.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in text


def test_cli_runs_it_with_the_options_it_takes(tiny, tmp_path, capsys, monkeypatch):
    """``spikeforge experiment selectivity``: --lengths, --epochs, --seed, --device and
    --device-samples reach :func:`selectivity.run` (nothing else does; unset ones keep
    its defaults); --json and --plot FILE.png / DIR as for every experiment."""
    from spikeforge.cli import main

    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        return tiny

    monkeypatch.setattr(selectivity, "run", fake_run)
    assert main(["experiment", "selectivity", "--lengths", "16,64", "--epochs", "2",
                 "--device", "sim://", "--json", "--plot", str(tmp_path / "a.png")]) == 0
    assert calls[-1] == {"lengths": [16, 64], "epochs": 2, "seed": 0, "device": "sim://",
                         "progress": False}
    out = json.loads(capsys.readouterr().out)
    assert out["experiment"] == "selectivity" and out["plot"] == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["experiment", "selectivity", "--device-samples", "3", "--quiet",
                 "--plot", str(tmp_path / "d")]) == 0
    assert calls[-1] == {"epochs": None, "seed": 0, "device_samples": 3, "progress": False}
    assert (tmp_path / "d" / "report.md").exists()
    assert "overwrite" in capsys.readouterr().out


def test_selective_models_are_bit_exact_on_the_simulated_board():
    """About 15 s once the simulated board is built (the first build about a minute)."""
    from spikeforge.sim.verilator import have_verilator

    if not have_verilator():
        pytest.skip("Verilator is not installed")
    torch.set_num_threads(1)
    result = selectivity.run(lengths=[64], state_sizes=[], epochs=1, train_size=64,
                             tasks=["overwrite", "selective-copy"], device="sim://",
                             device_samples=3)
    models = result["device"]["models"]
    assert set(models) == {"overwrite", "selective-copy"}
    for task, r in models.items():
        assert r["bit_exact"] is True, (task, r)
        assert r["steps"] == 3 * 64

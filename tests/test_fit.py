"""``spikeforge fit``: the shipped models on every board (fits, limiting capacity,
estimates, clocks), a model too large for every board, the JSON report, the clock
model against the core's own counters (Amaranth simulation, both timing
profiles), and ``build``'s checks before anything is built (the fit check and
``--program``'s openFPGALoader)."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from netgen import random_input, random_network
from spikeforge.boards import build as bbuild
from spikeforge.boards.defs import BOARDS, board_named
from spikeforge.boards.estimate import RECORDED, estimate_resources
from spikeforge.boards.fit import (
    _limit_of,
    check_fit,
    sample_clocks,
    step_clocks,
    task_inputs,
    usage,
)
from spikeforge.cli import main
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import COUNTERS, CoreConfig, FitError
from spikeforge.contract.timing import COMPACT, PIPELINED
from spikeforge.demo import shipped_model
from spikeforge.golden.integer import Format, LIFLayer, Network, Operand, Projection, SSMLayer
from spikeforge.golden.modelfile import load_model, save_model

I64 = torch.int64
DIGITS_FITS = {"icebreaker", "ulx3s-85f", "ulx3s-85f-ssm", "ulx3s-25f", "orangecrab-25f",
               "icesugar-pro", "litefury"}
"""The boards the digits network is known to fit (docs/boards.md)."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (tiny runs on a loaded 2-core machine)
    yield
    torch.set_num_threads(threads)


def _fit_json(capsys, *argv) -> tuple[int, dict, str]:
    code = main(["fit", *argv, "--json"])
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1, captured.out[:300]
    return code, json.loads(captured.out), captured.err


def _check_schema(report: dict, boards: list[str]) -> None:
    assert set(report) == {"model", "task", "boards"}
    assert [b["board"] for b in report["boards"]] == boards
    for b in report["boards"]:
        board = BOARDS[b["board"]]
        assert set(b) == {"board", "device", "family", "lanes", "clock_mhz", "timing", "fits",
                          "error", "limiting", "usage", "resources", "clocks"}
        assert (b["device"], b["family"], b["lanes"], b["clock_mhz"], b["timing"]) == (
            board.device, board.family, board.config.lanes, board.target_mhz,
            board.timing.value)
        assert isinstance(b["fits"], bool) and (b["error"] is None) == b["fits"]
        lim = b["limiting"]
        assert isinstance(lim["resource"], str) and isinstance(lim["also"], list)
        for name, u in b["usage"].items():
            assert set(u) == {"used", "available", "ratio", "limit"}, name
            assert u["ratio"] == (round(u["used"] / u["available"], 4) if u["available"]
                                  else None)
        res = b["resources"]
        assert set(res) == {"kind", "basis", "fmax_mhz", "resources"}
        assert res["kind"] in ("recorded", "synthesis", "per-lane model", "none")
        for name, u in res["resources"].items():
            assert u["available"] == board.budget[name] and 0 < u["used"] <= u["available"]
        if b["clocks"] is not None:
            c = b["clocks"]
            assert b["fits"] and c["kind"] == "estimate"
            assert c["per_sample"] > 0 and c["max_per_sample"] >= c["per_sample"]
            assert c["seconds_per_sample"] == pytest.approx(
                c["per_sample"] / (board.target_mhz * 1e6), rel=1e-3)
            assert c["per_step"] == pytest.approx(c["per_sample"] / c["timesteps"], abs=0.1)


# --------------------------------------------------------------- shipped models
def test_digits_fits_the_boards_it_is_known_to_fit(capsys):
    code, r, err = _fit_json(capsys, str(shipped_model("digits")))
    assert code == 0 and err == ""
    _check_schema(r, list(BOARDS))
    assert r["task"] == "digits"
    net, _ = load_model(shipped_model("digits"))
    for b in r["boards"]:
        assert b["fits"] == (b["board"] in DIGITS_FITS), b["board"]
        assert b["clocks"]["samples"] == 359 and b["clocks"]["timesteps"] == 8
        tight = max(u["ratio"] for u in b["usage"].values() if u["ratio"] is not None)
        assert b["limiting"]["ratio"] == tight <= 1
    ice = r["boards"][0]
    assert ice["board"] == "icebreaker"
    # 128 hidden neurons fill max_neurons=128, two layers max_layers=2
    assert {ice["limiting"]["resource"], *ice["limiting"]["also"]} == {"layers",
                                                                        "neurons per layer"}
    assert ice["usage"]["neurons per layer"] == {"used": 128, "available": 128, "ratio": 1.0,
                                                 "limit": "max_neurons"}
    # (rows of P lanes: 128/4 + ceil(10/4) rows, each 64 or 128 weights per lane)
    assert ice["usage"]["neuron slots"]["used"] == 4 * (32 + 3)
    assert ice["usage"]["synapses"]["used"] == 4 * (32 * 64 + 3 * 128)


def test_clocks_do_not_depend_on_the_batch():
    from spikeforge.boards.fit import fit_report

    boards = [board_named("icebreaker"), board_named("ulx3s-85f")]
    one = fit_report(shipped_model("digits"), boards, limit=12, values=1)  # a sample a run
    assert one == fit_report(shipped_model("digits"), boards, limit=12)
    assert [b["clocks"]["samples"] for b in one["boards"]] == [12, 12]


def test_digits_text_table(capsys):
    assert main(["fit", str(shipped_model("digits")), "--board", "icebreaker"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^icebreaker +yes +\d+ +[\d.]+ us at 30 MHz +5245  99% +2173  41% +29  97%"
                     r" +8 100% 4 100% r  layers 2 / 2 \(100%\); also neurons per layer$",
                     out, re.M), out
    assert "r: recorded build: icebreaker" in out


def test_recall_fits_only_boards_with_an_ssm_unit(capsys):
    code, r, err = _fit_json(capsys, str(shipped_model("recall")))
    _check_schema(r, list(BOARDS))
    with_ssm = {name for name, b in BOARDS.items() if b.config.has_ssm}
    for b in r["boards"]:
        assert b["fits"] == (b["board"] in with_ssm), b["board"]
        if not b["fits"]:
            assert b["limiting"]["resource"] == "SSM state"
            assert b["limiting"]["available"] == 0 and b["limiting"]["used"] > 0
            assert b["error"] == ("layer 'mem' is an SSM layer and this core has no SSM unit "
                                  "(ssm_max_n=0)")
    if with_ssm:
        assert code == 0 and err == ""
    else:
        assert code == 4
        assert err.startswith("spikeforge: error: the model fits no board: ")
        assert "(SSM state): layer 'mem' is an SSM layer" in err and err.count("\n") == 1


def test_build_preflight_counts_lif_and_ssm_layers_apart():
    """``build --model``'s fit step on a model with an SSM layer (it has no ``size``
    or ``inputs``): neurons and synapses of the LIF layers, state cells of the SSM."""
    net, _ = load_model(shipped_model("recall"))
    board = next(b for b in BOARDS.values() if b.config.has_ssm)
    used = bbuild.fit_model(shipped_model("recall"), board.config)
    lif = [la for la in net.layers if la.kind == "lif"]
    (mem,) = [la for la in net.layers if la.kind == "ssm"]
    assert used["neurons"] == sum(la.size for la in lif) == 16 + 16
    assert used["synapses"] == sum(p.weight.numel() for la in lif for p in la.inputs)
    assert used["ssm_state"] == mem.n * mem.m == 256
    assert bbuild.fit_model(shipped_model("digits"), board.config)["ssm_state"] == 0


def test_one_board_that_does_not_fit(capsys):
    board = next((n for n, b in BOARDS.items() if not b.config.has_ssm), None)
    if board is None:
        pytest.skip("every board has an SSM unit")
    code = main(["fit", str(shipped_model("recall")), "--board", board])
    captured = capsys.readouterr()
    assert code == 4
    assert captured.err == (f"spikeforge: error: the model does not fit {board} (SSM state): "
                            f"layer 'mem' is an SSM layer and this core has no SSM unit "
                            f"(ssm_max_n=0)\n")
    assert re.search(rf"^{board} +NO +- +.* SSM state \d+ / 0$", captured.out, re.M)


# ------------------------------------------------------------ too large, errors
def _wide_net(size: int, inputs: int = 16) -> Network:
    gen = torch.Generator().manual_seed(size)
    layer = LIFLayer("wide", size, alpha=torch.zeros(size, dtype=I64),
                     theta=torch.ones(size, dtype=I64), bias=torch.zeros(size, dtype=I64),
                     inputs=[Projection("input", torch.randint(-3, 4, (size, inputs),
                                                               generator=gen))])
    return Network(input_size=inputs, input_kind="spike", layers=[layer], output="wide",
                   fmt=Format())


def test_a_model_too_large_for_every_board(tmp_path, capsys):
    model = tmp_path / "wide.safetensors"
    save_model(model, _wide_net(600), {})
    code, r, err = _fit_json(capsys, str(model))
    assert code == 4
    _check_schema(r, list(BOARDS))
    assert r["task"] is None
    for b in r["boards"]:
        limit = BOARDS[b["board"]].config.max_neurons
        assert not b["fits"] and b["clocks"] is None
        assert b["limiting"] == {"resource": "neurons per layer", "used": 600,
                                 "available": limit, "ratio": round(600 / limit, 4),
                                 "limit": "max_neurons", "also": []}
        assert b["error"] == f"layer 'wide' has 600 neurons, more than max_neurons={limit}"
    assert err.startswith("spikeforge: error: the model fits no board: ")
    assert "(neurons per layer): layer 'wide' has 600 neurons, more than max_neurons=512" in err
    code = main(["fit", str(model), "--board", "ulx3s-85f"])
    assert code == 4
    assert capsys.readouterr().err == (
        "spikeforge: error: the model does not fit ulx3s-85f (neurons per layer): layer "
        "'wide' has 600 neurons, more than max_neurons=512\n")


def test_a_model_without_task_data_gets_a_bound(tmp_path, capsys):
    model = tmp_path / "small.safetensors"
    save_model(model, _wide_net(20), {})
    code, r, _ = _fit_json(capsys, str(model), "--board", "ulx3s-25f")
    assert code == 0 and r["task"] is None
    c = r["boards"][0]["clocks"]
    assert c["kind"] == "bound" and 0 < c["per_step"]["min"] < c["per_step"]["max"]
    assert c["seconds_per_step"]["max"] == pytest.approx(c["per_step"]["max"] / 100e6)


def test_fit_refuses_bad_arguments(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "none.safetensors")]) == 3
    assert "no such model file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(shipped_model("digits")), "--board", "nope"])
    assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("message", "resource", "limit"), [
    ("layer 'h' has 200 neurons, more than max_neurons=128", "neurons per layer",
     "max_neurons"),
    ("3 layers exceed max_layers=2", "layers", "max_layers"),
    ("the layers need more than neuron_depth=48 neuron slots per lane", "neuron slots",
     "neuron_depth"),
    ("the weights need more than weight_depth=16 words per lane", "synapses", "weight_depth"),
    ("the network's w_bits=6 differs from the core's w_bits=8", "number format", "w_bits"),
    ("layer 'h' is current-based (a synaptic current state); the core has no current state",
     "neuron model", None),
])
def test_a_fit_error_names_its_capacity(message, resource, limit):
    used = usage(_wide_net(8), board_named("icebreaker").config)
    got = _limit_of(message, used)
    assert (got["resource"], got["limit"]) == (resource, limit)


def test_usage_agrees_with_the_compiler():
    """A capacity over its limit is a FitError naming it, one under every limit fits."""
    config = CoreConfig(lanes=4, max_layers=2, max_edges=2, max_neurons=16, max_inputs=16,
                        max_fanin=32, neuron_depth=6, weight_depth=64)
    for size, fits in ((16, True), (20, False)):
        net = _wide_net(size)
        got = check_fit(net, config)
        assert got["fits"] == fits
        if fits:
            compile_network(net, config)
            assert all(u["used"] <= u["available"] for u in got["usage"].values())
        else:
            with pytest.raises(FitError):
                compile_network(net, config)
            assert got["limiting"]["used"] > got["limiting"]["available"]


# -------------------------------------------------------------------- estimates
def test_resource_estimates():
    for name, board in BOARDS.items():
        e = estimate_resources(board)
        if board.family == "xilinx":
            assert e["kind"] == "none" and e["resources"] == {}
            continue
        assert e["kind"] in ("recorded", "synthesis"), name
        lanes, dsp = board.config.lanes, e["resources"]["DSP"]["used"]
        if board.config.has_ssm:  # the SSM unit's three multipliers per lane on top
            assert 2 * lanes + 3 * lanes <= dsp <= 2 * lanes + 3 * lanes + 2, name
        else:
            assert dsp == 2 * lanes, name  # two per lane
    for rec in RECORDED:  # a recorded build's figures as recorded
        board = next(b for b in BOARDS.values() if b.family == rec["family"]
                     and b.config == rec["config"])
        e = estimate_resources(board)
        assert e["kind"] == "recorded" and e["fmax_mhz"] == rec["fmax_mhz"]
        assert {k: v["used"] for k, v in e["resources"].items()} == {
            k: rec[k] for k in ("LUT", "FF", "BRAM", "DSP", "SPRAM") if k in rec}
    b = board_named("ulx3s-25f")
    e = estimate_resources(b, bbuild.parse_config("lanes=16", b))
    assert e["kind"] == "per-lane model" and e["resources"]["DSP"]["used"] == 32


# ------------------------------------------------------------------ clock model
@pytest.mark.parametrize("seed", [8, 39])
def test_clock_model_equals_the_core_counters(seed):
    """The clock model's steps against the core's busy clocks (its ``step_cycles``
    counter, one clock less per step: the clock that starts a step) on random
    networks with SSM layers, on the Amaranth simulation of both profiles."""
    rng = random.Random(seed)
    net = random_network(rng, max_lif=3, max_ssm=1, max_size=10)
    lanes = rng.choice([1, 2, 3, 4, 5, 8])
    config = CoreConfig(lanes=lanes, fmt=Format(**{**net.fmt.to_dict(), "acc_bits": 48}),
                        max_layers=6, max_edges=12, max_neurons=16, max_inputs=16,
                        max_fanin=64, neuron_depth=64, weight_depth=1024, ssm_max_n=12,
                        ssm_max_m=12, ssm_depth=64, ssm_param_depth=512)
    x = random_input(rng, net, 5, 1)[:, 0, :]
    assert any(layer.kind == "ssm" for layer in net.layers)
    for busy, model in _busy_and_model(net, config, x):
        assert busy == model


def _busy_and_model(net, config, x) -> list[tuple[int, int]]:
    """Per timing profile, the core's busy clocks and the clock model's, less one
    clock per step."""
    from spikeforge.sim.pysim import run_core

    trace = net.run(x[:, None, :])
    out = []
    for timing in (COMPACT, PIPELINED):
        run = run_core(net, config, x, timing=timing)
        out.append((run.counters[len(COUNTERS) * config.max_layers],
                    int(step_clocks(net, x[:, None, :], trace, config, timing).sum()) - len(x)))
    return out


def test_clock_model_with_router_waits():
    """Rows of 16 spikes with few events: NEURON waits for the spike router; an SSM
    pass of 2 rows over chunks of 8 columns waits for the router too."""
    gen = torch.Generator().manual_seed(1)
    hidden = LIFLayer("h", 40, alpha=torch.zeros(40, dtype=I64),
                      theta=torch.full((40,), 2, dtype=I64), bias=torch.full((40,), 2, dtype=I64),
                      inputs=[Projection("input", torch.randint(-2, 3, (40, 32), generator=gen))],
                      reset="zero")
    out = LIFLayer("o", 20, alpha=torch.zeros(20, dtype=I64), theta=torch.ones(20, dtype=I64),
                   bias=torch.zeros(20, dtype=I64), spiking=False, reset="none",
                   inputs=[Projection("h", torch.randint(-2, 3, (20, 40), generator=gen))])
    net = Network(input_size=32, input_kind="spike", fmt=Format(), output="o",
                  layers=[hidden, out])
    config = CoreConfig(lanes=16, max_layers=4, max_edges=4, max_neurons=64, max_inputs=64,
                        max_fanin=128, neuron_depth=8, weight_depth=512)
    x = (torch.rand(3, 32, generator=gen) < 0.05).to(I64)
    for busy, model in _busy_and_model(net, config, x):
        assert busy == model

    def copy(name, n, offset):
        w = torch.zeros(n, 18, dtype=I64)
        w[torch.arange(n), offset + torch.arange(n)] = 1
        return LIFLayer(name, n, alpha=torch.zeros(n, dtype=I64), theta=torch.ones(n, dtype=I64),
                        bias=torch.zeros(n, dtype=I64), inputs=[Projection("input", w)],
                        reset="zero")

    one = Format().one
    mem = SSMLayer("mem", 2, 16, Operand(source="k"), Operand(source="v"), Operand(source="k"),
                   torch.full((2,), one, dtype=I64))
    net = Network(input_size=18, input_kind="spike", fmt=Format(), output="mem",
                  layers=[copy("k", 2, 0), copy("v", 16, 2), mem])
    config = CoreConfig(lanes=8, max_layers=4, max_edges=4, max_neurons=16, max_inputs=32,
                        max_fanin=32, neuron_depth=8, weight_depth=64, ssm_max_n=4,
                        ssm_max_m=16, ssm_depth=8, ssm_param_depth=64)
    x = (torch.rand(3, 18, generator=gen) < 0.5).to(I64)
    for busy, model in _busy_and_model(net, config, x):
        assert busy == model


@pytest.mark.parametrize(("task", "config", "samples"), [("digits", "digits", 40),
                                                       ("recall", "demo", 10)])
def test_clock_model_equals_the_rtl_on_the_shipped_models(task, config, samples):
    """Every sample's clocks on Verilator (from the end of the previous sample to its
    last step's end record) equal the clock model's."""
    from spikeforge.sim.rtl import REFERENCE_CONFIGS
    from spikeforge.sim.verilator import have_verilator
    from spikeforge.sim.vsim import VerilatedCore

    if not have_verilator():
        pytest.skip("Verilator is not installed")
    net, meta = load_model(shipped_model(task))
    x = task_inputs(net, meta, limit=samples)
    core = REFERENCE_CONFIGS[config]
    program = []
    for b in range(samples):
        program += [None, *x[:, b].tolist()]
    result = VerilatedCore(core).run(compile_network(net, core), program, read_counters=False)
    got = torch.tensor(result.step_clocks).reshape(samples, -1).sum(1)
    assert got.tolist() == sample_clocks(net, x, net.run(x), core, COMPACT).tolist()


# ------------------------------------------------------------------------ build
def _no_build(monkeypatch):
    """Fail the test if anything is built or a folder made."""
    import tempfile

    def refuse(*a, **k):
        raise AssertionError("a build or a build folder was started")

    monkeypatch.setattr(bbuild, "build", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)


def test_build_program_needs_openfpgaloader_first(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _no_build(monkeypatch)
    out = tmp_path / "out"
    for extra in (["--out", str(out)], []):
        code = main(["build", "--board", "icebreaker", "--model", str(shipped_model("digits")),
                     "--program", *extra])
        assert code == 5
        err = capsys.readouterr().err
        assert err.startswith("spikeforge: error: --program needs openFPGALoader, which is "
                              "not on PATH (checked before building): it is not a pip "
                              "package; install it from your OS packages (apt install "
                              "openfpgaloader"), err
        assert "https://github.com/trabucayre/openFPGALoader/releases" in err
    assert not out.exists()


def test_build_refuses_a_model_that_does_not_fit_before_any_folder(monkeypatch, capsys):
    if board_named("ulx3s-85f").config.has_ssm:
        pytest.skip("the board has an SSM unit")
    _no_build(monkeypatch)
    code = main(["build", "--board", "ulx3s-85f", "--model", str(shipped_model("recall"))])
    assert code == 4
    assert capsys.readouterr().err == (
        "spikeforge: error: the model does not fit the core: layer 'mem' is an SSM layer and "
        "this core has no SSM unit (ssm_max_n=0)\n")


def test_build_program_on_a_board_without_a_bitstream(monkeypatch, capsys):
    _no_build(monkeypatch)
    assert main(["build", "--board", "litefury", "--program"]) == 2
    assert capsys.readouterr().err == ("spikeforge: error: --program: litefury builds vendor "
                                       "project files only\n")

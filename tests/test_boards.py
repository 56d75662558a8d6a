"""Boards: definitions and capacity, PLL settings (against icepll / ecppll), the
board tops (the SoC top, the core-only scan chain, every board's top elaborated),
the SPRAM weight memory bit-exact in the core, the neuron fire stage exhaustively
and the ``boards`` command.  Builds are ``test_board_build.py``."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import subprocess

import pytest
import torch
from netgen import random_input, random_network
from spikeforge.boards import build as bbuild
from spikeforge.boards.defs import BOARDS, board_named, capacity
from spikeforge.boards.mem import SinglePortWeights, SPRAMWeights
from spikeforge.boards.pll import ecp5_pll, ice40_pll, pll_settings, xilinx_mmcm
from spikeforge.boards.top import CoreScan, make_soc
from spikeforge.cli import main
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import CoreConfig
from spikeforge.golden.integer import Format
from spikeforge.sim.pysim import check_run, run_core

I64 = torch.int64


# ------------------------------------------------------------ definitions
def test_every_board_is_complete():
    for name, b in BOARDS.items():
        cls = b.platform_class()
        platform = cls()
        assert platform.device == b.device, name
        clock = platform.lookup(b.clock, 0).clock.frequency
        assert clock > 0
        if b.transport == "uart" and b.uart is None:
            platform.lookup("uart", 0)  # raises if the board has no UART
        c = b.config
        assert b.budget["BRAM"] > 0 and b.budget["LUT"] > 0
        assert capacity(b) == {
            "board": name, "lanes": c.lanes, "neurons": c.lanes * c.neuron_depth,
            "neurons_per_layer": c.max_neurons, "inputs": c.max_inputs,
            "synapses": c.lanes * c.weight_depth, "layers": c.max_layers,
            "ssm_state": c.lanes * c.ssm_depth,
            "target_mhz": b.target_mhz, "family": b.family, "device": b.device}
    families = {b.family for b in BOARDS.values()}
    assert families == {"ice40", "ecp5", "xilinx"}
    assert {"icebreaker", "ulx3s-85f", "ulx3s-25f", "orangecrab-25f"} <= set(BOARDS)
    assert board_named("icebreaker").spram_weights
    assert board_named("icebreaker").config.lanes >= 4
    assert board_named("ulx3s-85f").config.lanes >= 32


def test_capacity_counts_the_ssm_state():
    from spikeforge.sim.rtl import config_named

    demo = config_named("demo")
    assert demo.has_ssm
    got = capacity(board_named("ulx3s-85f"), demo)
    assert got["ssm_state"] == demo.lanes * demo.ssm_depth == 8 * 64
    assert got["lanes"] == 8 and got["synapses"] == 8 * 2048


def test_unknown_board_names_the_choices():
    with pytest.raises(ValueError, match=re.escape(
            f"unknown board 'nope'; choose one of {sorted(BOARDS)}") + "$"):
        board_named("nope")


def test_the_digits_network_fits_the_icebreaker():
    from spikeforge.golden.quantize import to_integer
    from spikeforge.golden.train import build_twin, config_for

    torch.manual_seed(0)
    net = to_integer(build_twin(config_for("digits")))
    image = compile_network(net, board_named("icebreaker").config)
    assert image.num_layers == 2 and [layer.size for layer in net.layers] == [128, 10]


# -------------------------------------------------------------------- PLLs
def _tool(name, *args):
    path = bbuild._bin(name)  # the venv's entry point, else the one on PATH
    assert path is not None, name
    result = subprocess.run([path, *args], capture_output=True, text=True,
                            timeout=300)
    return result.stdout + result.stderr


@pytest.mark.parametrize(("fin", "fout"), [(12, 36), (12, 48), (12, 30)])
def test_ice40_pll_equals_icepll(fin, fout):
    got = ice40_pll(fin * 1e6, fout * 1e6)
    text = _tool("yowasp-icepll", "-i", str(fin), "-o", str(fout))
    want = {k: int(v) for k, v in re.findall(r"^(DIVR|DIVF|DIVQ|FILTER_RANGE):\s+(\d+)", text,
                                              re.M)}
    achieved = float(re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", text).group(1))
    assert len(want) == 4
    assert got.params == want
    assert got.fout / 1e6 == pytest.approx(achieved, abs=1e-3)


@pytest.mark.parametrize(("fin", "fout"), [(25, 100), (48, 100), (25, 66)])
def test_ecp5_pll_meets_ecppll(fin, fout):
    got = ecp5_pll(fin * 1e6, fout * 1e6)
    p = got.params
    f = fin * 1e6 * p["CLKFB_DIV"] / p["CLKI_DIV"]
    assert f == got.fout and 400e6 <= f * p["CLKOP_DIV"] <= 800e6
    text = _tool("yowasp-ecppll", "-i", str(fin), "-o", str(fout), "-f", "/dev/null")
    want = float(re.search(r"clkout0 frequency: ([\d.]+) MHz", text).group(1))
    assert got.fout / 1e6 == pytest.approx(want, abs=1e-3)


def test_pll_errors():
    with pytest.raises(ValueError, match=re.escape(
            "fout must be a positive frequency in Hz, not -1") + "$"):
        ice40_pll(12e6, -1)
    with pytest.raises(ValueError, match=re.escape(
            "no iCE40 PLL setting reaches 5.000 MHz from 12.000 MHz") + "$"):
        ice40_pll(12e6, 5e6)


def test_pll_settings_per_family():
    assert pll_settings("ice40", 12e6, 36e6) == ice40_pll(12e6, 36e6)
    assert pll_settings("ecp5", 25e6, 100e6) == ecp5_pll(25e6, 100e6)
    got = pll_settings("xilinx", 200e6, 125e6)
    assert got == xilinx_mmcm(200e6, 125e6) and got.family == "xilinx"
    p = got.params
    vco = 200e6 * p["M"] / p["D"]
    assert 600e6 <= vco <= 1440e6 and got.fout == vco / p["O"] == 125e6
    with pytest.raises(ValueError, match=re.escape(
            "no clock generator for the 'gowin' family") + "$"):
        pll_settings("gowin", 27e6, 50e6)


# ------------------------------------------------------------- the tops
def test_soc_top_is_the_default_and_takes_the_weight_memory():
    """``make_soc``: the UART SoC, or the AXI-Stream wrapper for ``link="stream"``,
    with the board's weight memory passed down to the core."""
    from spikeforge.boards.mem import SPRAMWeights
    from spikeforge.boards.top import DEFAULT_TOP
    from spikeforge.gateware.link import AXIStreamLink, SoC

    assert DEFAULT_TOP == "soc"
    config = board_named("icebreaker").config
    soc = make_soc(config, 36e6, 115200, SPRAMWeights)
    assert type(soc) is SoC and soc.link == "uart" and soc.weight_memory is SPRAMWeights
    axis = make_soc(config, 125e6, 115200, None, link="stream")
    assert type(axis) is AXIStreamLink and axis.weight_memory is None
    for cls, kwargs in ((SoC, {"link": "stream"}), (AXIStreamLink, {})):
        with pytest.raises(TypeError, match=re.escape(
                "weight_memory must be None or a callable, not 3") + "$"):
            cls(config=config, weight_memory=3, **kwargs)


# -------------------------------------------------- SPRAM weights, bit-exact
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("memory", [SPRAMWeights, SinglePortWeights])
def test_core_with_single_port_weights_matches_golden(seed, memory):
    """The SPRAM build's weight memory (one address for reads and writes) keeps the
    core bit-exact: every record and every membrane of every step."""
    rng = random.Random(7000 + seed)
    net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=3, max_size=8,
                         fmt=Format(u_bits=rng.randint(4, 12), w_bits=rng.randint(2, 8),
                                    frac_bits=rng.randint(0, 8), in_bits=rng.randint(2, 8)))
    f = net.fmt
    config = CoreConfig(lanes=rng.choice([1, 2, 4]),
                        fmt=dataclasses.replace(f, acc_bits=48),
                        max_layers=len(net.layers), max_edges=16, max_neurons=8, max_inputs=8,
                        max_fanin=128, neuron_depth=32, weight_depth=512)
    x = random_input(rng, net, 4, 1)[:, 0, :]
    check_run(net, x, run_core(net, config, x, stall=0.3, seed=seed, observe=True,
                               weight_memory=memory))


def test_weight_memory_errors():
    for memory, depth in ((SPRAMWeights, 0), (SinglePortWeights, True)):
        with pytest.raises(ValueError, match=re.escape(
                f"depth must be a positive integer, not {depth!r}") + "$"):
            memory(shape=8, depth=depth)
    with pytest.raises(ValueError, match=re.escape(
            "depth 20000 exceeds one SPRAM block (16384 words)") + "$"):
        SPRAMWeights(shape=8, depth=20000)
    with pytest.raises(ValueError, match=re.escape(
            "shape unsigned(17) is wider than one SPRAM block (16 bits)") + "$"):
        SPRAMWeights(shape=17, depth=16)
    with pytest.raises(TypeError, match=re.escape(
            "weight_memory must be None or a callable, not 3") + "$"):
        from spikeforge.gateware.core import NPUCore

        NPUCore(config=CoreConfig(), weight_memory=3)
    with pytest.raises(TypeError, match=re.escape("config must be a CoreConfig, not 1") + "$"):
        CoreScan(config=1)


# ------------------------------------------------------- timing pass, exact
@pytest.mark.parametrize("ahead", [False, True], ids=["NeuronFire", "NeuronFireAhead"])
def test_neuron_fire_is_exact_exhaustively(ahead):
    """The neuron fire stage (saturation, one subtraction for compare and reset;
    ``NeuronFireAhead``: ``total - theta`` and ``theta == u_min`` given, no
    subtraction) equals the direct equations for every total, theta and reset mode
    (4-bit u)."""
    from amaranth.sim import Simulator
    from spikeforge.gateware.lane import NeuronFire, NeuronFireAhead

    u_bits, t_bits, v_reset = 4, 7, -3
    dut = (NeuronFireAhead if ahead else NeuronFire)(u_bits=u_bits, total_bits=t_bits)
    u_min, u_max = -(1 << (u_bits - 1)), (1 << (u_bits - 1)) - 1
    got, want = [], []

    async def bench(ctx):
        for total in range(-(1 << (t_bits - 1)), 1 << (t_bits - 1)):
            for theta in range(u_min, u_max + 1):
                for reset in range(3):
                    for spiking in (0, 1):
                        ctx.set(dut.total, total)
                        ctx.set(dut.theta, theta)
                        ctx.set(dut.reset, reset)
                        ctx.set(dut.v_reset, v_reset)
                        ctx.set(dut.spiking, spiking)
                        if ahead:
                            ctx.set(dut.over, total - theta)
                            ctx.set(dut.theta_min, theta == u_min)
                        await ctx.delay(1e-9)
                        got.append((ctx.get(dut.v), ctx.get(dut.spike), ctx.get(dut.u_new)))
                        v = max(u_min, min(u_max, total))
                        s = spiking & int(v >= theta)
                        u = {0: v - theta if s else v, 1: v_reset if s else v, 2: v}[reset]
                        want.append((v, s, (u - u_min) % (1 << u_bits) + u_min))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == 128 * 16 * 3 * 2
    assert got == want


# ------------------------------------------------------ the core-only top
def test_core_scan_drives_every_core_input_and_shows_every_output():
    """The scan chain's input frame reaches the core's ports and the core's outputs
    come back on ``uart_tx``: write the layer count through the host port in one
    frame, read it back in the next, and decode the output frame."""
    from amaranth import Shape
    from amaranth.hdl import Fragment
    from amaranth.lib.wiring import In
    from amaranth.sim import Simulator
    from spikeforge.contract.config import Region
    from spikeforge.gateware.core import NPUCore
    from spikeforge.sim.rtl import config_named

    config = config_named("tiny")
    ref = NPUCore(config=config)  # the port order of the core CoreScan builds
    Fragment.get(ref, None)  # elaborated, so Amaranth does not report it unused
    ins, outs = [], []
    for path, member, _ in ref.signature.flatten(ref):
        (ins if member.flow == In else outs).append(
            ("/".join(map(str, path)), Shape.cast(member.shape).width))
    n_in, n_out = sum(w for _, w in ins), sum(w for _, w in outs)
    period = max(n_in, n_out)

    def word(**fields):
        value, at = 0, 0
        for name, width in ins:
            value |= fields.pop(name.replace("/", "_"), 0) << at
            at += width
        assert not fields
        return value

    control = config.address(Region.CONTROL, 0, 0)
    frames = {1: word(host_addr=control, host_wdata=1, host_we=1),
              2: word(host_addr=control, host_re=1)}
    dut = CoreScan(config=config)
    tx = []

    async def bench(ctx):
        for cycle in range(5 * period):
            f, pos = divmod(cycle - (period - 1 - n_in), period)
            bit = (frames.get(f, 0) >> pos) & 1 if 0 <= pos < n_in else 0
            ctx.set(dut.uart_rx, bit)
            tx.append(ctx.get(dut.uart_tx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert (dut.n_in, dut.n_out) == (n_in, n_out)
    frame = sum(b << i for i, b in enumerate(tx[4 * period:4 * period + n_out]))
    got, at = {}, 0
    for name, width in outs:
        got[name] = (frame >> at) & ((1 << width) - 1)
        at += width
    assert got["host_rdata"] == 1 and got["host_rvalid"] == 1  # the layer count, read back
    assert got["busy"] == 0 and got["input/ready"] == 1 and got["output/valid"] == 0


def test_boards_command_lists_capacity(capsys):
    assert main(["boards", "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)["boards"]
    assert [r["board"] for r in rows] == list(BOARDS)
    for r in rows:
        b = BOARDS[r["board"]]
        assert {k: r[k] for k in capacity(b)} == capacity(b)
        assert r["baud"] == 115200 and r["transport"] in ("uart", "pcie")
    assert main(["boards"]) == 0
    text = capsys.readouterr().out
    assert "icebreaker      iCE40UP5K    4      192     65536         0    30 MHz" in text


def test_every_board_top_elaborates(tmp_path):
    """Every board's top (PLL, reset, LEDs, UART or XDMA) with the tiny core alone
    and with the tiny SoC (UART, or the AXI-Stream wrapper on PCIe) makes a
    complete build plan; nothing runs."""
    from spikeforge.boards.top import BoardTop, make_core, make_soc
    from spikeforge.sim.rtl import config_named

    for name, b in BOARDS.items():
        for make_top in (make_core, make_soc):
            platform = b.platform_class()()
            bbuild._string_attrs(platform)
            top = BoardTop(board=b, make_top=make_top, config=config_named("tiny"))
            plan = platform.prepare(top, name="top")
            assert any(f.endswith((".il", ".v")) for f in plan.files), name
        if b.target_mhz is not None:
            assert top.clk_freq == b.target_mhz * 1e6, name


def test_build_progress_reports_stages_and_the_running_tool(tmp_path):
    """The build's watcher: a line when each stage's file appears, and while a tool
    runs a heartbeat with its log's latest line (nextpnr's iterations)."""
    import threading
    import time

    from spikeforge.boards.build import _watch

    lines = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(tmp_path, "top", lines.append, stop,
                                                    time.monotonic()),
                               kwargs={"poll": 0.01, "heartbeat": 0.05}, daemon=True)
    watcher.start()
    (tmp_path / "top.rpt").write_text("yosys starting\n")
    time.sleep(0.2)
    (tmp_path / "top.tim").write_text("Info: placing\nInfo:   at iteration #5: wirelen = 1234\n\n")
    time.sleep(0.2)
    stop.set()
    watcher.join()
    text = "\n".join(lines)
    assert "synthesis (Yosys): top.rpt" in text and "place and route (nextpnr): top.tim" in text
    assert "synthesis running: yosys starting" in text
    assert "place and route running: Info:   at iteration #5: wirelen = 1234" in text

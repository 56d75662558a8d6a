"""boards.outreg: flip-flops after ECP5 block RAM reads move into the RAMs' output
registers; a rewritten netlist is proved equal to Yosys' own (``miter`` + ``sat``
over every input sequence), and the cases it must refuse are refused."""

from __future__ import annotations

import json
import re

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.back import rtlil
from amaranth.lib import memory
from spikeforge.boards import outreg
from spikeforge.gateware.memports import NO_RW_CHECK, nrw_read_port
from yosysutil import yosys

DEPTH = 16


class _Rams(Elaboratable):
    """Four block RAMs, each written from the shared write inputs and read at
    ``raddr``, and four ways to use the read data:

    * ``wide`` (36 bits, the RAM's 36-bit mode) into a plain register: taken;
    * ``gated`` (8 bits) into a register with a clock enable (``en``): taken,
      with ``OCE`` = ``en``;
    * ``shared`` (8 bits) into a register and also to an output: refused;
    * ``reset`` (8 bits) into a register the domain's reset clears: refused.
    """

    def __init__(self):
        self.waddr = Signal(4)
        self.raddr = Signal(4)
        self.wdata = Signal(36)
        self.we = Signal(4)
        self.en = Signal()
        self.o_wide = Signal(36)
        self.o_gated = Signal(8)
        self.o_shared = Signal(8)
        self.o_shared_now = Signal(8)
        self.o_reset = Signal(8)

    def ports(self):
        return [self.waddr, self.raddr, self.wdata, self.we, self.en, self.o_wide,
                self.o_gated, self.o_shared, self.o_shared_now, self.o_reset]

    def elaborate(self, platform):
        m = Module()
        reads = {}
        for i, (name, width) in enumerate((("wide", 36), ("gated", 8), ("shared", 8),
                                           ("reset", 8))):
            mem = memory.Memory(shape=width, depth=DEPTH, init=[],
                                attrs={"ram_style": "block", **NO_RW_CHECK})
            m.submodules[name] = mem
            wr = mem.write_port()
            rd = nrw_read_port(m, mem, name)  # as the core reads its block RAMs
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata[:width]),
                         wr.en.eq(self.we[i]), rd.addr.eq(self.raddr)]
            reads[name] = rd.data
        wide = Signal(36, reset_less=True)
        gated = Signal(8, reset_less=True)
        shared = Signal(8, reset_less=True)
        reset = Signal(8)
        m.d.sync += [wide.eq(reads["wide"]), shared.eq(reads["shared"]),
                     reset.eq(reads["reset"])]
        with m.If(self.en):
            m.d.sync += gated.eq(reads["gated"])
        m.d.comb += [self.o_wide.eq(wide), self.o_gated.eq(gated), self.o_shared.eq(shared),
                     self.o_shared_now.eq(reads["shared"]), self.o_reset.eq(reset)]
        return m


def _bus(name: str, port: str, n: int) -> str:
    """``{NAME<port>n-1, ..., NAME<port>0}``: a port's pins as one Verilog vector."""
    return "{" + ", ".join(f"{name}{port}{i}" for i in reversed(range(n))) + "}"


def _model() -> str:
    """A ``DP16KD`` for the proof.  Its output stage is the block's own definition
    (``REGMODE_x`` = ``OUTREG``: the read latch through a register loaded when
    ``OCEx`` is high; ``NOREG``: the latch itself).  Its array is a stand-in, not
    the real RAM's addressing: 16 words of 36 bits indexed by a fold of each
    port's address bits, each output bit a different word bit.  The rewrite does
    not touch the array's inputs, so any deterministic array serves, as long as
    a wrongly wired output bit shows (the test's RAMs are written from port A)."""
    names = ["ASYNC_RESET_RELEASE", "CLKAMUX", "CLKBMUX", "CSDECODE_A", "CSDECODE_B",
             "DATA_WIDTH_A", "DATA_WIDTH_B", "GSR", "REGMODE_A", "REGMODE_B", "RESETMODE",
             "WRITEMODE_A", "WRITEMODE_B", "INIT_DATA", "WID"]
    names += [f"INITVAL_{i:02X}" for i in range(64)]
    params = "\n".join(f"  parameter {n} = 0;" for n in names)
    ports, body = [], []
    for p in "AB":
        ports += [f"input DI{p}{i}" for i in range(18)]
        ports += [f"input AD{p}{i}" for i in range(14)]
        ports += [f"input {s}{p}" for s in ("CE", "OCE", "CLK", "WE", "RST")]
        ports += [f"input CS{p}{i}" for i in range(3)]
        ports += [f"output DO{p}{i}" for i in range(18)]
        # Port B's bits differ from port A's also when only port A's data are
        # written (the upper half is 0 then).
        read = (f"mem[i{p}][17:0]" if p == "A" else
                f"mem[i{p}][35:18] ^ {{mem[i{p}][16:0], mem[i{p}][17]}}")
        body.append(f"""
  wire [17:0] di{p} = {_bus("DI", p, 18)};
  wire [13:0] ad{p} = {_bus("AD", p, 14)};
  wire [3:0] i{p} = ad{p}[3:0] ^ ad{p}[7:4] ^ ad{p}[11:8] ^ {{2'b0, ad{p}[13:12]}};
  reg [17:0] latch{p} = 0, out{p} = 0;
  always @(posedge CLK{p}) begin
    if (RST{p}) latch{p} <= 0; else if (CE{p}) latch{p} <= {read};
    if (OCE{p}) out{p} <= latch{p};
  end
  wire [17:0] do{p} = REGMODE_{p} == "OUTREG" ? out{p} : latch{p};
  assign {_bus("DO", p, 18)} = do{p};""")
    return ("module DP16KD(" + ", ".join(ports) + ");\n" + params +
            "\n  reg [35:0] mem [0:15];" + "".join(body) +
            "\n  always @(posedge CLKA) if (CEA && WEA) mem[iA] <= {diB, diA};\nendmodule\n")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """The test design through Yosys' ECP5 synthesis (``pre.json``)."""
    path = tmp_path_factory.mktemp("outreg")
    dut = _Rams()
    (path / "top.il").write_text(rtlil.convert(dut, name="top", ports=dut.ports()))
    # (As the board build does: the read ports' registers have no power-up value.)
    result = yosys("read_rtlil top.il; setattr -unset init w:*_nrw; synth_ecp5 -top top; "
                   "write_json pre.json", path,
                   timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return path


_top = outreg._top_module


def _pre(path) -> dict:
    """Yosys' netlist of the test design, as the rewrite would find it."""
    return json.loads((path / "pre.json").read_text())


def _rams(netlist):
    return {name: cell for name, cell in _top(netlist)["cells"].items()
            if cell["type"] == "DP16KD"}


def _prove(path, post: dict):
    pre = _pre(path)
    for name, netlist in (("gold", pre), ("gate", post)):  # the top modules alone
        module = dict(_top(netlist), attributes={})
        (path / f"{name}.json").write_text(json.dumps({"modules": {name: module}}))
    (path / "model.v").write_text(_model())
    # Both start with every register at 0; from then on the outputs must agree in
    # every clock, for every input sequence (6 clocks: a write, then the read's
    # two register stages).
    # (cells_sim_ecp5.v includes cells_ff.vh twice; its parts are read one by one.)
    return yosys("read_verilog +/lattice/common_sim.vh; read_verilog +/lattice/ccu2c_sim.vh; "
                 "read_verilog model.v; read_json gold.json; read_json gate.json; "
                 "miter -equiv -make_outputs gold gate miter; hierarchy -check -top miter; "
                 "proc; flatten; memory; opt_clean; "
                 "sat -verify -prove trigger 0 -set-init-zero -seq 6 -show-outputs miter",
                 path, timeout=600)


def test_rewrite_takes_the_plain_and_gated_registers_only(mapped):
    pre = _pre(mapped)
    post = _pre(mapped)
    counts = outreg.absorb_output_registers(post)
    assert counts == {"rams": 2, "sides": 2, "registers": 36 + 8}
    modes = {name: (c["parameters"]["REGMODE_A"], c["parameters"]["REGMODE_B"])
             for name, c in _rams(post).items()}
    assert len(modes) == 4, modes
    taken = {name for name, m in modes.items() if "OUTREG" in m}
    assert {re.match(r"[a-z]+", name)[0] for name in taken} == {"wide", "gated"}, modes
    assert modes[next(n for n in taken if n.startswith("wide"))] == ("OUTREG", "OUTREG")
    ffs = lambda n: sum(c["type"] == "TRELLIS_FF" for c in _top(n)["cells"].values())  # noqa: E731
    assert ffs(pre) - ffs(post) == 44


def test_rewritten_netlist_equals_the_original(mapped):
    post = _pre(mapped)
    outreg.absorb_output_registers(post)
    result = _prove(mapped, post)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "SAT proof finished - no model found: SUCCESS!" in result.stdout


def _wrong_enable(post):
    """The gated RAM's output register loading in every clock, not with ``en``."""
    for name, cell in _rams(post).items():
        if name.startswith("gated"):
            for port in "AB":
                if cell["parameters"][f"REGMODE_{port}"] == "OUTREG":
                    cell["connections"][f"OCE{port}"] = ["1"]


def _crossed(post):
    """The wide RAM's first output bits of port A and port B swapped."""
    for name, cell in _rams(post).items():
        if name.startswith("wide"):
            conns = cell["connections"]
            conns["DOA0"], conns["DOB0"] = conns["DOB0"], conns["DOA0"]


@pytest.mark.parametrize("wrong", ["enable", "reset", "shared", "crossed"])
def test_the_proof_fails_on_a_wrong_rewrite(mapped, monkeypatch, wrong):
    """The proof can fail, and each refusal matters: taking the reset register or
    the shared one, the gated one without its enable, or two output bits crossed
    make it find a counterexample."""
    post = _pre(mapped)
    if wrong == "reset":
        monkeypatch.setattr(outreg, "_plain_ff", lambda ff, clock, gsr: True)
    if wrong == "shared":
        real = outreg._side_plan

        def shared_ok(ram, ports, cells, sinks):
            narrowed = {bit: [u for u in users if u[1] == "DI"] or users
                        for bit, users in sinks.items()}
            return real(ram, ports, cells, narrowed)
        monkeypatch.setattr(outreg, "_side_plan", shared_ok)
    counts = outreg.absorb_output_registers(post)
    if wrong in ("enable", "crossed"):
        (_wrong_enable if wrong == "enable" else _crossed)(post)
    else:
        assert counts["sides"] == 3, counts
    result = _prove(mapped, post)
    assert result.returncode != 0
    assert "SAT proof finished - model found: FAIL!" in result.stdout


@pytest.mark.parametrize(("param", "value"), [
    ("GSR", "ENABLED"), ("CLKMUX", "INV"), ("REGSET", "SET"), ("CEMUX", "INV")])
def test_a_flip_flop_unlike_the_output_register_keeps_its_side(mapped, param, value):
    """One of the gated RAM's flip-flops set differently from what the output
    register can do (following the global set/reset where the RAM does not, an
    inverted clock or enable, powering up at 1): that side is left as it is."""
    post = _pre(mapped)
    cells = _top(post)["cells"]
    ff = next(c for n, c in cells.items() if c["type"] == "TRELLIS_FF" and "o_gated" in n)
    ff["parameters"][param] = value
    assert outreg.absorb_output_registers(post) == {"rams": 1, "sides": 1, "registers": 36}


def test_command_line(mapped, tmp_path, capsys):
    path = tmp_path / "top.json"
    path.write_text((mapped / "pre.json").read_text())
    assert outreg.main([str(path), str(tmp_path / "counts.json")]) == 0
    assert capsys.readouterr().out == (
        "outreg: 44 flip-flops into the output registers of 2 read sides of 2 block RAMs\n")
    assert json.loads((tmp_path / "counts.json").read_text()) == {
        "rams": 2, "sides": 2, "registers": 44}
    # Rewritten in place: a second pass finds nothing left to take.
    assert outreg.absorb_output_registers(json.loads(path.read_text()))["registers"] == 0
    assert outreg.main([]) == 2
    assert "usage: python -m spikeforge.boards.outreg" in capsys.readouterr().err


def test_needs_one_top_module():
    netlist = {"modules": {"a": {"attributes": {}}, "b": {"attributes": {}}}}
    with pytest.raises(ValueError, match="^" + re.escape(
            "the netlist has 0 top modules, not one") + "$"):
        outreg.absorb_output_registers(netlist)

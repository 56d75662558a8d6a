"""Move the flip-flop after an ECP5 block RAM read into the RAM's output register.

Yosys maps an Amaranth memory to ``DP16KD`` block RAM without its output
register (``REGMODE_A``/``REGMODE_B`` = ``NOREG``: its ``memory_libmap`` rules
for the ECP5 have no output-register option), so a register that takes a read
port's data, such as the core's ``prm_q``, is a fabric flip-flop: the RAM's
clock-to-out (5.8 ns in nextpnr's model of an ECP5-6) and a net to that
flip-flop share one clock.  In the RAM's own output register (``OUTREG``) the
clock-to-out is 0.96 ns.

:func:`absorb_output_registers` rewrites the JSON netlist Yosys writes, before
nextpnr reads it.  Per read side of each ``DP16KD`` (port A, port B, or both
together in the 36-bit mode, where the read data come out on ``DOA`` and
``DOB``), when every data output bit in use drives exactly one ``TRELLIS_FF``,
at its ``DI``, and nothing else, and those flip-flops

* are clocked on the rising edge of the net that clocks the RAM (in the 36-bit
  mode both ports' clocks must be that net),
* have no reset in use (``LSR`` tied to 0), power up at 0 (``REGSET`` =
  ``RESET``, the output register's value after configuration) and follow the
  global set/reset as the RAM does (the same ``GSR`` setting),
* share one clock enable (a net, or none),

while the RAM's reset inputs on that side are tied to 0, each flip-flop is
removed, its output net is driven by the RAM's output bit instead, the side's
``REGMODE`` becomes ``OUTREG`` and its ``OCE`` takes the shared enable.  By the
block's definition the output register loads the read latch when ``OCE`` is
high, exactly what the flip-flops did; nothing else in the RAM changes (its
address, data, clock enables and write modes are untouched).  ``tests/test_outreg.py``
proves a rewritten netlist equal to the original with Yosys (``miter`` + ``sat``).

Run as ``python -m spikeforge.boards.outreg top.json [counts.json]``: the board
build calls it between Yosys and nextpnr (``boards.build``) for every ECP5
board; it prints one line with the counts and writes them to ``counts.json``
(the build report's ``ram_output_registers``).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb_output_registers", "main"]

_DATA_BITS = 18


def _width(value) -> int:
    """A Yosys JSON integer parameter (a binary string) or an int."""
    return value if isinstance(value, int) else int(str(value), 2)


def _is_zero(bits) -> bool:
    return bits == ["0"]


def _side_clock(ram, ports) -> object | None:
    """The net clocking the read side made of ``ports``, or None if it cannot take
    the flip-flops (an inverted clock, or the 36-bit mode's two clocks apart)."""
    nets = set()
    for port in ports:
        if ram["parameters"].get(f"CLK{port}MUX", f"CLK{port}") != f"CLK{port}":
            return None
        clock = ram["connections"].get(f"CLK{port}")
        if clock is None or not isinstance(clock[0], int):
            return None
        nets.add(clock[0])
    return nets.pop() if len(nets) == 1 else None


def _top_module(netlist: dict) -> dict:
    """The module Yosys marked ``top`` (its ``top`` attribute is a nonzero binary string)."""
    tops = [m for m in netlist["modules"].values()
            if str(m.get("attributes", {}).get("top", "0")).strip("0") != ""]
    if len(tops) != 1:
        raise ValueError(f"the netlist has {len(tops)} top modules, not one")
    return tops[0]


def absorb_output_registers(netlist: dict) -> dict:
    """Rewrite ``netlist`` (Yosys ``write_json``, flattened) in place (module docs).

    Returns ``{"rams": n, "sides": n, "registers": n}``: the RAMs that took any
    flip-flops, the read sides that did, and the flip-flops removed.
    """
    top = _top_module(netlist)
    cells = top["cells"]
    sinks: dict[int, list] = defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "output":
                for bit in bits:
                    sinks[bit].append((name, port))
    for port in top["ports"].values():
        if port["direction"] != "input":
            for bit in port["bits"]:
                sinks[bit].append((None, "port"))

    counts = {"rams": 0, "sides": 0, "registers": 0}
    freed = set()  # the RAMs' old output bits
    for ram in [c for c in cells.values() if c["type"] == "DP16KD"]:
        params = ram["parameters"]
        wide = 36 in (_width(params.get("DATA_WIDTH_A", 18)),
                      _width(params.get("DATA_WIDTH_B", 18)))
        taken = 0
        for ports in (("A", "B"),) if wide else (("A",), ("B",)):
            plan = _side_plan(ram, ports, cells, sinks)
            if plan is None:
                continue
            enable, moves = plan
            for port in ports:
                params[f"REGMODE_{port}"] = "OUTREG"
                ram["connections"][f"OCE{port}"] = enable
            for out_port, ff_name in moves:
                ff = cells[ff_name]
                freed.add(ram["connections"][out_port][0])
                ram["connections"][out_port] = ff["connections"]["Q"]
                del cells[ff_name]
            counts["sides"] += 1
            counts["registers"] += len(moves)
            taken += 1
        counts["rams"] += bool(taken)
    # The RAM's old output bits now drive nothing: names that held them name nothing.
    for net in top["netnames"].values():
        net["bits"] = ["x" if bit in freed else bit for bit in net["bits"]]
    return counts


def _side_plan(ram, ports, cells, sinks):
    """``(enable, [(ram output port, flip-flop name), ...])`` for one read side, or
    None if the side cannot take its flip-flops (module docs)."""
    params, conns = ram["parameters"], ram["connections"]
    if any(params.get(f"REGMODE_{p}", "NOREG") != "NOREG" for p in ports):
        return None
    if any(not _is_zero(conns.get(f"RST{p}", ["0"])) for p in ports):
        return None
    clock = _side_clock(ram, ports)
    if clock is None:
        return None
    enables, moves = set(), []
    for port in ports:
        for i in range(_DATA_BITS):
            out = conns.get(f"DO{port}{i}")
            users = sinks.get(out[0]) if out is not None else None
            if not users:  # unconnected, a constant, or used by nothing
                continue
            if len(users) != 1 or users[0][1] != "DI" or users[0][0] is None:
                return None
            ff = cells[users[0][0]]
            if ff["type"] != "TRELLIS_FF" or not _plain_ff(ff, clock, params.get("GSR")):
                return None
            enables.add(_enable(ff))
            moves.append((f"DO{port}{i}", users[0][0]))
    if not moves or len(enables) != 1 or None in enables:
        return None
    return [enables.pop()], moves


def _plain_ff(ff, clock, ram_gsr) -> bool:
    params, conns = ff["parameters"], ff["connections"]
    if params.get("CLKMUX", "CLK").strip() != "CLK" or conns.get("CLK") != [clock]:
        return False
    # The global set/reset (a GSR cell, if the design has one) must reach the
    # output register exactly when it reached the flip-flop (both default to it).
    if params.get("GSR", "ENABLED").strip() != str(ram_gsr or "ENABLED").strip():
        return False
    if params.get("REGSET", "RESET").strip() != "RESET":
        return False
    lsr_mux = params.get("LSRMUX", "LSR").strip()
    return lsr_mux == "0" or (lsr_mux == "LSR" and _is_zero(conns.get("LSR", ["0"])))


def _enable(ff):
    """The flip-flop's clock enable: "1" (always), the enable's net bit, or None
    (an inverted or constant-0 enable, which the side does not take)."""
    mux = ff["parameters"].get("CEMUX", "1").strip()
    if mux == "1":
        return "1"
    ce = ff["connections"].get("CE", ["1"])
    if mux == "CE" and isinstance(ce[0], int):
        return ce[0]
    if mux == "CE" and ce == ["1"]:
        return "1"
    return None


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m spikeforge.boards.outreg NETLIST.json [COUNTS.json]",
              file=sys.stderr)
        return 2
    path = Path(args[0])
    netlist = json.loads(path.read_text())
    counts = absorb_output_registers(netlist)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(netlist))
    tmp.replace(path)
    if len(args) == 2:
        Path(args[1]).write_text(json.dumps(counts) + "\n")
    print(f"outreg: {counts['registers']} flip-flops into the output registers of "
          f"{counts['sides']} read sides of {counts['rams']} block RAMs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

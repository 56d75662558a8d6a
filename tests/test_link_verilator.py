"""cocotb + Verilator tests of the link: the UART PHY at several baud rates with
+-2 % clock mismatch both ways (``tests/cocotb_uart.py``), and the AXI-Stream
wrapper of the SoC under idle and backpressure (``tests/cocotb_axis.py``).  Each
hardware build has its own folder under ``build/verilator/`` (reused while its
Verilog is unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from spikeforge.gateware.link import UARTPHY, AXIStreamLink, uart_divisor
from spikeforge.sim.rtl import config_named
from spikeforge.sim.verilator import build_module, missing_tools, run_cocotb

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "verilator"

_missing = missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason="Verilator tests need "
                                + ", ".join(_missing) if _missing else "")

# (clock, baud): 104, 26 and 8 clocks per bit.
BAUDS = [(12_000_000, 115_200), (12_000_000, 460_800), (12_000_000, 1_500_000)]


def _run(top, name: str, module: str, env: dict) -> None:
    build_dir = BUILD / name
    build_module(verilog.convert(top, name=name, emit_src=False), name, build_dir)
    log = build_dir / "sim.log"
    ok = run_cocotb(build_dir, module, extra_env=env, log_file=log, toplevel=name)
    if not ok:
        tail = log.read_text(errors="replace")[-4000:] if log.is_file() else ""
        pytest.fail(f"{module} failed on {name} (log {log}):\n{tail}", pytrace=False)


class UARTBank(wiring.Component):
    """One UART PHY per divisor in one build (one Verilator build for all the baud
    rates): ports ``d<divisor>_<port>``."""

    def __init__(self, divisors):
        self.phys = {d: UARTPHY(divisor=d) for d in divisors}
        super().__init__({f"d{d}_{'__'.join(path)}": _flat(member)
                          for d, phy in self.phys.items()
                          for path, member in phy.signature.members.flatten()
                          if member.is_port})

    def elaborate(self, platform):
        m = Module()
        for d, phy in self.phys.items():
            m.submodules[f"phy{d}"] = phy
            for path, member in phy.signature.members.flatten():
                if not member.is_port:
                    continue
                inner = _port(phy, path)
                outer = getattr(self, f"d{d}_{'__'.join(path)}")
                if member.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m


def _flat(member):
    """The same direction and shape as a plain port of this component."""
    return (wiring.In if member.flow == wiring.In else wiring.Out)(member.shape,
                                                                  init=member.init)


def _port(obj, path):
    for part in path:
        obj = getattr(obj, part)
    return obj


def test_uart_phy_clock_mismatch():
    """Three baud rates (104, 26 and 8 clocks per bit), +-2 % both ways."""
    divisors = [uart_divisor(clk_freq=f, baud=b) for f, b in BAUDS]
    assert divisors == [104, 26, 8]
    _run(UARTBank(divisors), "uart_phys", "cocotb_uart",
         {"SPIKEFORGE_UART": json.dumps({"divisors": divisors, "bytes": 40, "seed": 3})})


def test_axi_stream_wrapper_backpressure():
    config = config_named("tiny")
    _run(AXIStreamLink(config=config), "axis_link_tiny", "cocotb_axis",
         {"SPIKEFORGE_AXIS": json.dumps({"config": config.to_dict(), "seed": 1})})


def test_uart_divisor_validation():
    assert uart_divisor(clk_freq=12_000_000, baud=115_200) == 104
    with pytest.raises(ValueError, match=r"baud 4000000 is too fast for clk_freq 12000000: "
                                         r"3 clocks per bit, at least 4 needed"):
        uart_divisor(clk_freq=12_000_000, baud=4_000_000)
    with pytest.raises(ValueError, match=r"baud 2200000 is 9\.1% off with clk_freq 10000000 "
                                         r"\(divisor 5\); at most 1% allowed"):
        uart_divisor(clk_freq=10_000_000, baud=2_200_000)
    with pytest.raises(ValueError, match=r"baud must be a positive integer, not 0"):
        uart_divisor(clk_freq=10_000_000, baud=0)
    with pytest.raises(ValueError, match=r"divisor must be an integer >= 4, not 3"):
        UARTPHY(divisor=3)


@pytest.mark.parametrize("uart", [False, True])
def test_soc_verilog_lints_clean(uart, tmp_path):
    """``verilator --lint-only -Wall`` (with the project's waivers) on the SoC top."""
    from spikeforge.sim.rtl import lint
    from spikeforge.sim.simboard import simboard_verilog

    path = tmp_path / "soc.v"
    path.write_text(simboard_verilog(config_named("tiny"), uart=uart))
    result = lint(path)
    assert result.returncode == 0, result.stderr[-3000:]

"""The board clocks: PLL settings (pure Python) and the PLL instances.

``ice40_pll(fin, fout)``, ``ecp5_pll(fin, fout)`` and ``xilinx_mmcm(fin, fout)``
search the dividers for the output frequency closest to ``fout`` (never above
it, so a clock constraint met at the returned frequency is met at the requested
one) within the VCO and phase-detector ranges of the data sheets; the iCE40 and
ECP5 searches are those of the ``icepll`` and ``ecppll`` tools.
``pll_settings(family, fin, fout)`` picks the search of an FPGA family;
``add_pll`` instantiates the settings' primitive in a module.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Const, Instance, Signal

__all__ = ["PLLSettings", "ice40_pll", "ecp5_pll", "xilinx_mmcm", "pll_settings", "add_pll"]


@dataclass(frozen=True)
class PLLSettings:
    """Divider settings: ``params`` are the primitive's parameters; ``fout`` in Hz."""

    family: str
    fin: float
    fout: float
    params: dict


def _check(fin, fout):
    for name, value in (("fin", fin), ("fout", fout)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive frequency in Hz, not {value!r}")


def ice40_pll(fin: float, fout: float) -> PLLSettings:
    """SB_PLL40 dividers: ``fout = fin * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``,
    PFD ``fin / (DIVR + 1)`` in 10..133 MHz, VCO in 533..1066 MHz."""
    _check(fin, fout)
    best = None
    for divr in range(16):
        fpfd = fin / (divr + 1)
        if not 10e6 <= fpfd <= 133e6:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if not 533e6 <= fvco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = fvco / (1 << divq)
                if f <= fout and (best is None or f > best[0]):
                    best = (f, divr, divf, divq, fpfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting reaches {fout / 1e6:.3f} MHz from "
                         f"{fin / 1e6:.3f} MHz")
    f, divr, divf, divq, fpfd = best
    # FILTER_RANGE by the PFD frequency (iCE40 sysCLOCK PLL guide, as icepll).
    ranges = (17e6, 26e6, 44e6, 66e6, 101e6)
    filter_range = next((i + 1 for i, hi in enumerate(ranges) if fpfd < hi), 6)
    return PLLSettings("ice40", fin, f, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                         "FILTER_RANGE": filter_range})


def ecp5_pll(fin: float, fout: float) -> PLLSettings:
    """EHXPLLL dividers with CLKOP feedback: ``fout = fin * CLKFB_DIV / CLKI_DIV``,
    VCO ``fout * CLKOP_DIV`` in 400..800 MHz, PFD ``fin / CLKI_DIV`` in 3.125..400 MHz."""
    _check(fin, fout)
    best = None
    for clki in range(1, 129):
        fpfd = fin / clki
        if not 3.125e6 <= fpfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f = fpfd * clkfb
            if f > fout or not 3.125e6 <= f <= 400e6:
                continue
            for clkop in range(1, 129):
                if 400e6 <= f * clkop <= 800e6:
                    if best is None or f > best[0]:
                        best = (f, clki, clkfb, clkop)
                    break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches {fout / 1e6:.3f} MHz from "
                         f"{fin / 1e6:.3f} MHz")
    f, clki, clkfb, clkop = best
    return PLLSettings("ecp5", fin, f, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb,
                                        "CLKOP_DIV": clkop})


def xilinx_mmcm(fin: float, fout: float) -> PLLSettings:
    """MMCME2 (speed grade -2): VCO = fin * M / D in 600..1440 MHz, out = VCO / O."""
    best = None
    for d in range(1, 11):
        for mult in range(2, 65):
            vco = fin * mult / d
            if not 600e6 <= vco <= 1440e6:
                continue
            for o in range(1, 129):
                f = vco / o
                if f <= fout and (best is None or f > best[0]):
                    best = (f, d, mult, o)
    if best is None:
        raise ValueError(f"no MMCM setting reaches {fout / 1e6:.3f} MHz")
    f, d, mult, o = best
    return PLLSettings("xilinx", fin, f, {"D": d, "M": mult, "O": o})


_SEARCHES = {"ice40": ice40_pll, "ecp5": ecp5_pll, "xilinx": xilinx_mmcm}


def pll_settings(family: str, fin: float, fout: float) -> PLLSettings:
    """The clock generator settings of an FPGA ``family`` (``ice40``, ``ecp5``, ``xilinx``)."""
    if family not in _SEARCHES:
        raise ValueError(f"no clock generator for the {family!r} family")
    return _SEARCHES[family](fin, fout)


def add_pll(m, pll: PLLSettings, clk_in, clk, locked) -> None:
    """Add the clock generator of ``pll`` to module ``m`` as submodule ``pll`` (and, on
    Xilinx, ``bufg``): ``clk_in`` in (on iCE40 the clock pin itself, SB_PLL40_PAD; else
    the buffered input clock), ``clk`` and ``locked`` out."""
    if pll.family == "ice40":
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=pll.params["DIVR"], p_DIVF=pll.params["DIVF"],
            p_DIVQ=pll.params["DIVQ"], p_FILTER_RANGE=pll.params["FILTER_RANGE"],
            io_PACKAGEPIN=clk_in, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk, o_LOCK=locked)
    elif pll.family == "ecp5":
        p = pll.params
        m.submodules.pll = Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            a_FREQUENCY_PIN_CLKI=f"{pll.fin / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{pll.fout / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            i_CLKI=clk_in, i_CLKFB=clk, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0), o_CLKOP=clk, o_LOCK=locked)
    else:  # xilinx 7-series: MMCME2_BASE + BUFG
        p = pll.params
        fb, raw = Signal(), Signal()
        m.submodules.pll = Instance(
            "MMCME2_BASE", p_CLKIN1_PERIOD=1e9 / pll.fin, p_DIVCLK_DIVIDE=p["D"],
            p_CLKFBOUT_MULT_F=p["M"], p_CLKOUT0_DIVIDE_F=p["O"],
            i_CLKIN1=clk_in, i_CLKFBIN=fb, o_CLKFBOUT=fb, i_RST=Const(0),
            i_PWRDWN=Const(0), o_CLKOUT0=raw, o_LOCKED=locked)
        m.submodules.bufg = Instance("BUFG", i_I=raw, o_O=clk)

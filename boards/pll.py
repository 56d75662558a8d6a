"""PLL settings for the board clocks (pure Python) and the PLL instances.

``ice40_pll(fin, fout)`` and ``ecp5_pll(fin, fout)`` search the PLL dividers for
the output frequency closest to ``fout`` (never above it, so a clock
constraint met at the returned frequency is met at the requested one) within
the VCO and phase-detector ranges of the data sheets, the same search as the
``icepll`` and ``ecppll`` tools.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PLLSettings", "ice40_pll", "ecp5_pll"]


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

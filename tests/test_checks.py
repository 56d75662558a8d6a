"""``gateware.checks.CheckedComponent``: rejected constructor arguments raise before
the component exists, so Amaranth has no unused Elaboratable to warn about; a
component made and never used is still reported, at the line that made it."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import re
import warnings

import pytest
from amaranth.hdl import Fragment, Module, UnusedElaboratable
from amaranth.lib import data
from spikeforge.boards.defs import BOARDS
from spikeforge.boards.mem import SinglePortWeights, SPRAMWeights
from spikeforge.boards.top import BoardTop, CoreScan, make_core
from spikeforge.contract.config import CoreConfig
from spikeforge.gateware.counters import CounterBank
from spikeforge.gateware.dsp import RegisteredProduct
from spikeforge.gateware.lane import NeuronFire, NeuronFireAhead, NeuronLeak, NeuronUpdate
from spikeforge.gateware.link import AXIStreamLink, SoC
from spikeforge.gateware.link.uart import UARTPHY, UARTRx, UARTTx
from spikeforge.gateware.router import PipelinedSpikeRouter, SendFlags, SpikeRouter

_RECORD = data.StructLayout({"a": 4})
_ROUTER = dict(index_bits=4, layer_bits=2, u_bits=8, record_layout=_RECORD)
_ICE = BOARDS["icebreaker"]

REJECTED = [
    (NeuronLeak, dict(u_bits=1, frac_bits=8), ValueError),
    (NeuronFire, dict(u_bits=8, total_bits=4), ValueError),
    (NeuronFireAhead, dict(u_bits=1, total_bits=4), ValueError),
    (NeuronUpdate, dict(u_bits=8, frac_bits=-1, acc_bits=24), ValueError),
    (RegisteredProduct, dict(a_bits=0, b_bits=8), ValueError),
    (CounterBank, dict(n=4, registered=1), TypeError),
    (SendFlags, dict(lanes=0), ValueError),
    (SpikeRouter, dict(lanes=0, **_ROUTER), ValueError),
    (PipelinedSpikeRouter, dict(lanes=2, given_flags=1, **_ROUTER), TypeError),
    (UARTRx, dict(divisor=3), ValueError),
    (UARTTx, dict(divisor=True), ValueError),
    (UARTPHY, dict(divisor=2), ValueError),
    (SoC, dict(config=1), TypeError),
    (SoC, dict(config=CoreConfig(), link="uart", clk_freq=1000, baud=9600), ValueError),
    (AXIStreamLink, dict(config=CoreConfig(), timing="x"), TypeError),
    (SinglePortWeights, dict(shape="x", depth=4), TypeError),
    (SPRAMWeights, dict(shape=8, depth=20000), ValueError),
    (CoreScan, dict(config=1), TypeError),
    (BoardTop, dict(board=_ICE, make_top=3), TypeError),
    (BoardTop, dict(board=dataclasses.replace(_ICE, target_mhz=5.0), make_top=make_core),
     ValueError),
]


def _unused(make) -> list:
    """The UnusedElaboratable warnings left after ``make()`` (Amaranth reports unused
    Elaboratables once any design has been elaborated)."""
    Fragment.get(Module(), None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
        gc.collect()
    return [w for w in caught if issubclass(w.category, UnusedElaboratable)]


@pytest.mark.parametrize(("cls", "kwargs", "error"), REJECTED,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(REJECTED)])
def test_rejected_arguments_leave_no_component(cls, kwargs, error):
    def make():
        with pytest.raises(error):
            cls(**kwargs)

    assert _unused(make) == []


def test_an_unused_component_is_reported_where_it_was_made():
    made = []

    def make():
        made.append(inspect.currentframe().f_lineno + 1)
        CounterBank(n=4)

    unused = _unused(make)
    assert len(unused) == 1
    assert re.search(r"CounterBank object .* created but never used", str(unused[0].message))
    assert (unused[0].filename, unused[0].lineno) == (__file__, made[0])

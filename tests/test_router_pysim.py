"""The spike router on Amaranth's simulator, against a naive model: every row's
lanes leave lowest first, one per clock when the output is ready, events only
for spikes, no bubbles between rows, nothing left over; idle and backpressure;
both forms (the pipelined one's ``can_load`` / ``free`` do not depend on the
output's ``ready``)."""

from __future__ import annotations

import random
import re

import pytest
from amaranth.sim import Simulator
from spikeforge.contract.config import RECORD_FIELDS, CoreConfig, unpack
from spikeforge.gateware.layouts import struct_layout
from spikeforge.gateware.router import PipelinedSpikeRouter, SendFlags, SpikeRouter
from spikeforge.golden.integer import Format


def _expected(rows, lanes):
    """What the router must send: per row, per lane to send, lowest lane first."""
    records, events = [], []
    for row in rows:
        for p in range(lanes):
            if row["send"] >> p & 1:
                spike = row["spikes"] >> p & 1
                records.append({"kind": int(row["emit_values"]), "layer": row["layer"],
                                "index": row["base"] + p, "spike": spike,
                                "value": row["values"][p]})
                if spike:
                    events.append((row["base"] + p, row["layer"]))
    return records, events


@pytest.mark.parametrize(("pipelined", "given"), [(False, False), (True, False), (True, True)],
                         ids=["SpikeRouter", "PipelinedSpikeRouter", "given_flags"])
@pytest.mark.parametrize(("lanes", "stall", "seed"),
                         [(1, 0.0, 0), (3, 0.0, 1), (4, 0.5, 2), (8, 0.3, 3), (8, 0.0, 4),
                          (32, 0.6, 5), (13, 0.4, 6), (32, 0.0, 7)])
def test_router_matches_the_naive_model(lanes, stall, seed, pipelined, given):
    """``PipelinedSpikeRouter``: an event comes as its record leaves the middle
    register, before the record itself; ``free`` means every loaded row's events are
    out, ``empty`` that every record is out too.  ``given``: ``send``'s flags come
    from the testbench (random while ``load`` is low)."""
    rng = random.Random(seed)
    config = CoreConfig(lanes=lanes, fmt=Format(u_bits=10), neuron_depth=256,
                        max_neurons=max(256, 12 * lanes))
    layout = struct_layout(RECORD_FIELDS(config))
    args = dict(lanes=lanes, index_bits=config.idx_bits + 1, layer_bits=config.layer_bits,
                u_bits=10, record_layout=layout)
    dut = PipelinedSpikeRouter(**args, given_flags=given) if pipelined else SpikeRouter(**args)
    fast = staged = pipelined
    rows = []
    for k in range(12):
        emit = rng.random() < 0.3
        spikes = rng.getrandbits(lanes)
        valid = (1 << lanes) - 1 if rng.random() < 0.7 else rng.getrandbits(lanes)
        rows.append({"send": valid if emit else spikes & valid, "spikes": spikes,
                     "values": [rng.randint(-512, 511) for _ in range(lanes)],
                     "base": k * lanes, "layer": rng.randrange(config.max_layers),
                     "emit_values": emit})
    want_records, want_events = _expected(rows, lanes)
    # (records, events) of the first i rows, for the ``free`` / ``empty`` checks
    sent_by = [tuple(map(len, _expected(rows[:i], lanes))) for i in range(len(rows) + 1)]
    got_records, got_events, got_event_values, load_waits = [], [], [], []

    async def bench(ctx):
        # One process sets every input of a clock before sampling anything, so the
        # handshakes are evaluated on this clock's values.
        next_row, waits, idle = 0, 0, 0
        while idle < 20:
            loading = next_row < len(rows)
            ctx.set(dut.load, int(loading))
            if fast:
                ctx.set(dut.group_load, -int(loading))  # every group's copy
            if loading:
                row = rows[next_row]
                for name in ("send", "spikes", "base", "layer", "emit_values"):
                    ctx.set(getattr(dut, name), int(row[name]))
                for p, v in enumerate(row["values"]):
                    ctx.set(dut.values[p], v)
            if given:
                send = row["send"] if loading else rng.getrandbits(lanes)
                ctx.set(dut.send_none, int(send == 0) if loading else rng.getrandbits(1))
                ctx.set(dut.send_one, int(bin(send).count("1") == 1) if loading
                        else rng.getrandbits(1))
                ctx.set(dut.send_lowest, send & -send)
            if fast:  # the lane pick and the flags do not wait for ``ready``
                flags = []
                for r in (0, 1):
                    ctx.set(dut.records.ready, r)
                    flags.append((ctx.get(dut.can_load), ctx.get(dut.free)))
                assert flags[0] == flags[1], "can_load / free depend on records.ready"
            ready = rng.random() >= stall
            ctx.set(dut.records.ready, ready)
            can_load = ctx.get(dut.can_load)
            valid = ctx.get(dut.records.valid)
            word = ctx.get(dut.records.payload.as_value())
            event = (ctx.get(dut.event), ctx.get(dut.event_index), ctx.get(dut.event_layer))
            event_value = ctx.get(dut.event_value) if staged else None
            if ctx.get(dut.free):  # every event of the rows loaded so far is out
                assert len(got_events) == sent_by[next_row][1]
                if not staged:
                    assert len(got_records) == sent_by[next_row][0]
            if staged and ctx.get(dut.empty):
                assert len(got_records) == sent_by[next_row][0]
            await ctx.tick()
            if loading and can_load:
                load_waits.append(waits)
                next_row, waits = next_row + 1, 0
            elif loading:
                waits += 1
            if valid and ready:
                got_records.append(unpack(RECORD_FIELDS(config), word))
                idle = 0
            elif not loading:
                idle += 1
            if event[0]:
                if not staged:
                    assert valid and ready, "an event without its record being taken"
                got_events.append(event[1:])
                if staged:
                    got_event_values.append(event_value)
        assert ctx.get(dut.free) and not ctx.get(dut.records.valid)  # nothing left over
        if staged:
            assert ctx.get(dut.empty)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got_records == want_records
    assert got_events == want_events
    if staged:  # an event's value: its record's
        assert got_event_values == [r["value"] for r in want_records if r["spike"]]
    if stall == 0.0:
        # No bubbles: a row waits exactly as long as the previous row needs to leave.
        sends = [bin(r["send"]).count("1") for r in rows]
        assert load_waits == [0] + [max(0, n - 1) for n in sends[:-1]]


def test_router_rejects_bad_generics():
    layout = struct_layout(RECORD_FIELDS(CoreConfig()))
    with pytest.raises(ValueError, match=re.escape("lanes must be a positive integer, not 0")):
        SpikeRouter(lanes=0, index_bits=8, layer_bits=2, u_bits=16, record_layout=layout)
    with pytest.raises(ValueError, match=re.escape("lanes must be a positive integer, not 0")):
        PipelinedSpikeRouter(lanes=0, index_bits=8, layer_bits=2, u_bits=16,
                             record_layout=layout)
    with pytest.raises(TypeError, match=re.escape("given_flags must be a bool, not 1") + "$"):
        PipelinedSpikeRouter(lanes=4, index_bits=8, layer_bits=2, u_bits=16,
                             record_layout=layout, given_flags=1)


@pytest.mark.parametrize("lanes", [1, 8, 13, 32])
def test_send_flags_are_the_previous_clocks(lanes):
    """``SendFlags``: in each clock, ``none``, ``one`` and ``lowest`` are those of
    the ``send`` of the clock before (every value for 8 lanes or fewer, else 600
    random ones, a third of them with one lane set)."""
    rng = random.Random(lanes)
    if lanes <= 8:
        sends = list(range(1 << lanes))
        rng.shuffle(sends)
    else:
        sends = [rng.getrandbits(lanes) if i % 3 else 1 << rng.randrange(lanes)
                 for i in range(600)]
    sends += [0]
    dut = SendFlags(lanes=lanes)

    async def bench(ctx):
        for before, send in zip(sends, sends[1:], strict=False):
            ctx.set(dut.send, before)
            await ctx.tick()
            ctx.set(dut.send, send)  # (the outputs come from registers only)
            got = (ctx.get(dut.none), ctx.get(dut.one), ctx.get(dut.lowest))
            want = (int(before == 0), int(bin(before).count("1") == 1), before & -before)
            assert got == want, f"send {before:#x}: got {got}, want {want}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_send_flags_reject_bad_lanes():
    with pytest.raises(ValueError, match=re.escape("lanes must be a positive integer, not 0")
                       + "$"):
        SendFlags(lanes=0)
    with pytest.raises(ValueError, match=re.escape("lanes must be a positive integer, not True")
                       + "$"):
        SendFlags(lanes=True)

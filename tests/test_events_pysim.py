"""The core's event lists (``gateware/core/events.py``) on Amaranth's simulator,
against a naive model: lists of events per source and bank, the input's double
buffer, the banks' swap at a step's end, ``clear``; every read and every count
(pipelined: and the not-empty flags a clock later), every clock, in both timing
profiles."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator
from spikeforge.contract.config import CoreConfig
from spikeforge.contract.timing import COMPACT, PIPELINED
from spikeforge.gateware.core.events import EventLists
from spikeforge.golden.integer import Format


class Model:
    """Per (source, bank) a list of ``(index, value)``; the input's two banks."""

    def __init__(self, c: CoreConfig):
        self.c = c
        self.clear()

    def clear(self):
        self.lists = {}
        self.cur = 0
        self.inputs = [[], []]
        self.wbank, self.rbank, self.full = 0, 0, False

    def events(self, src, bank):
        return self.lists.setdefault((src, bank), [])

    def end_step(self):
        for src in range(self.c.max_layers + 1):
            self.lists[(src, 1 - self.cur)] = []
        self.cur ^= 1

    def start_step(self):
        self.rbank, self.wbank = self.wbank, 1 - self.wbank
        self.inputs[self.wbank] = []
        self.full = False


def _schedule(rng: random.Random, c: CoreConfig, clocks: int):
    """Per clock the operations to drive: layers send bursts of events (the layer
    set two clocks before its first event), steps end, the host clears, the input
    streams and steps start, reads of any list."""
    ops = [{} for _ in range(clocks)]
    t = 0
    layer = 0
    while t < clocks - 8:
        kind = rng.random()
        if kind < 0.6:  # a burst of events of one layer
            layer = rng.randrange(c.max_layers)
            for dt in range(2, 2 + rng.randint(1, 6)):
                if t + dt < clocks and rng.random() < 0.8:
                    ops[t + dt]["event"] = (rng.randrange(c.max_neurons),
                                            rng.randint(-4, 3))
            for dt in range(0, 10):
                if t + dt < clocks:
                    ops[t + dt]["layer"] = layer
            t += 10
        elif kind < 0.85:
            ops[t]["end_step"] = True
            t += 3
        elif kind < 0.9:
            ops[t]["clear"] = True
            t += 3
        else:
            t += 1
    for t in range(clocks):
        ops[t].setdefault("layer", layer)
        if rng.random() < 0.5:
            ops[t]["read"] = (rng.randrange(c.max_layers + 1), rng.randrange(2),
                              rng.randrange(6), rng.random() < 0.3)
    return ops


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=lambda t: t.value)
@pytest.mark.parametrize("seed", range(3))
def test_event_lists_match_the_naive_model(timing, seed):
    rng = random.Random(seed)
    c = CoreConfig(lanes=2, fmt=Format(in_bits=4, w_bits=4, acc_bits=24), max_layers=3,
                   max_edges=4, max_neurons=8, max_inputs=8, max_fanin=16, neuron_depth=8,
                   weight_depth=64)
    dut = EventLists(config=c, timing=timing)
    ops = _schedule(rng, c, 400)
    model = Model(c)
    checked = {"reads": 0, "inputs": 0, "steps": 0}

    async def bench(ctx):
        pending_read = nonzero = in_nonzero = None
        src_q = None  # pipelined: the layer an event goes to is the one set a clock ago
        for op in ops:
            # The input: an event or an end marker when the write bank has room.
            if not model.full and rng.random() < 0.3:
                end = rng.random() < 0.3 or len(model.inputs[model.wbank]) == c.max_inputs
                payload = {"index": rng.randrange(c.max_inputs), "value": rng.randint(-8, 7),
                           "end": int(end)}
                ctx.set(dut.input.payload, payload)
                ctx.set(dut.input.valid, 1)
            else:
                payload = None
                ctx.set(dut.input.valid, 0)
            start = model.full and rng.random() < 0.3 and "clear" not in op
            ctx.set(dut.start_step, int(start))
            ctx.set(dut.end_step, int(op.get("end_step", False)))
            ctx.set(dut.clear, int(op.get("clear", False)))
            ctx.set(dut.busy, 0)
            ctx.set(dut.layer_index, op["layer"])
            ctx.set(dut.wr_layer, op["layer"])
            event = op.get("event")
            target = (src_q if timing.pipelined else op["layer"]) + 1 if src_q is not None \
                else None
            if target is None or len(model.events(target, model.cur)) >= 1 << c.idx_bits:
                event = None  # (a layer sends at most one event per neuron and step)
            ctx.set(dut.wr_event, int(event is not None))
            if event:
                ctx.set(dut.wr_index, event[0])
                ctx.set(dut.wr_value, event[1])
            read = op.get("read")
            if read:
                src, bank, n, from_input = read
                ctx.set(dut.rd_src, src)
                ctx.set(dut.rd_bank, bank)
                ctx.set(dut.rd_n, n)
                ctx.set(dut.rd_from_input, int(from_input))
            ready = ctx.get(dut.input.ready)
            assert ready == int(not model.full and not op.get("clear", False))
            # Counts, every clock.
            for src in range(c.max_layers + 1):
                for bank in (0, 1):
                    assert ctx.get(dut.counts[src | bank << c.src_bits]) == \
                        len(model.events(src, bank)), (src, bank)
            assert [ctx.get(dut.in_counts[b]) for b in (0, 1)] == \
                [len(x) for x in model.inputs]
            assert ctx.get(dut.cur) == model.cur and ctx.get(dut.in_full) == model.full
            counts = [len(model.events(i & ((1 << c.src_bits) - 1), i >> c.src_bits))
                      for i in range(2 << c.src_bits)]
            if timing.pipelined and nonzero is not None:  # a clock late
                assert ctx.get(dut.counts_nz) == nonzero
                assert ctx.get(dut.in_nz) == in_nonzero
            nonzero = sum(1 << i for i, n in enumerate(counts) if n)
            in_nonzero = sum(1 << b for b in (0, 1) if model.inputs[b])
            # The read issued last clock.
            if pending_read is not None:
                got = (ctx.get(dut.rd_data.index), ctx.get(dut.rd_data.value))
                assert got == pending_read, (got, pending_read)
                checked["reads"] += 1
            pending_read = None
            if read:
                src, bank, n, from_input = read
                lst = model.inputs[bank] if from_input else model.events(src, bank)
                if n < len(lst) and not event and not payload:
                    pending_read = lst[n]
            await ctx.tick()
            # The model, as the clock edge leaves it.
            if event:
                model.events(target, model.cur).append((event[0] % (1 << c.idx_bits), event[1]))
            src_q = op["layer"]
            if payload and ready:
                if payload["end"]:
                    model.full = True
                else:
                    model.inputs[model.wbank].append((payload["index"], payload["value"]))
                    checked["inputs"] += 1
            if start:
                model.start_step()
                checked["steps"] += 1
            if op.get("end_step"):
                model.end_step()
            if op.get("clear"):
                model.clear()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert checked["reads"] > 20 and checked["inputs"] > 20 and checked["steps"] > 3, checked

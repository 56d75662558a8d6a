"""The RUN states of the command engine (:class:`.engine.CommandEngine`), built
into its state machine on its :class:`.datapath.Datapath`.

Validation (``RV_*``) reads the whole payload once, step by step and event by
event, and checks it before anything reaches the core: the step count not 0,
each step's event count below 256, each event's index below ``max_inputs`` and
its value in the signed ``in_bits`` range, and the payload's length exactly what
the counts need (``bleft``, the payload bytes not yet gathered; ``bleft_lt``
its checks).  A bad payload is BAD_PAYLOAD, with nothing executed.

Execution (``RX_*``) reads the payload again and, per step, pushes its events
and the end marker into the core's input stream, then takes the core's output
records up to the end-of-step record (``kind`` 2): each record kept (``kind`` 0,
hidden-layer spikes, only while ``FLAGS`` bit 0 is set) goes into the reply
after the step's u16 record count, which is written once the step ends.  A reply
that would exceed MAX_PAYLOAD keeps no more records (``overflow``) and, every
step still executed, ends as TOO_LARGE once the core is idle (RX_DRAIN).

Watchdog: the clocks the engine waits for the core in a step (pushing its events,
taking its records, and the final wait for the core to go idle) are counted
(``wd``, from ``2**n - watchdog`` up, so its top bit ``n`` says the bound is
reached; the clocks the engine spends writing a record do not count).  At the
bound RX_ABORT resets the core (``core_reset``, a clock: every flip-flop of the
core back to its power-on value, the tables cleared; memories keep their words)
and the reply is WATCHDOG.

Bad tables: a core that stops a step at a bad table entry (``core_fault``, the
sequencer's Checks) is reset the same way, and the reply is BAD_TABLE with a
three-character message holding the sequencer's ``fault_info`` (the kind of
entry, its index, the checks it failed), five bits per character as ``0x40 |
bits`` (ASCII ``@`` .. ``_``), low bits first; ``contract.config.describe_fault``
spells it out.

Costs: 1 clock per payload byte to validate (one more per check of a gathered
field in the ``fast`` form: 1, and 1 per step and per event), then per step 4,
per event 6, the core's step, and 9 per record kept.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Mux, Signal

from ...contract.protocol import MAX_PAYLOAD, ErrorCode
from .datapath import HEADER, Datapath
from .frame import _lt_const

__all__ = ["run_validation_states", "run_execution_states"]


def _step_done(m, d: Datapath):
    """A step is done: ``i`` up by one, and ``reached`` (``i == steps``) with it."""
    # Timing: ``reached`` (``i == steps``) is a register, set with each change of
    # ``i`` (``steps`` is at least 1 while ``i`` counts) from ``i == steps - 1``
    # (an equality on registers: no carry chain ahead of the compare).
    i = d.i
    inc = i + 1
    m.d.sync += [i.eq(inc),
                 d.reached.eq((i == d.steps_m1[:len(i)]) & d.steps_fit)]


def run_validation_states(m, d: Datapath):
    """The states RV_*: the payload checked, then RX_STEP with ``i`` back at 0."""
    i, reached, bleft_lt, sh = d.i, d.reached, d.bleft_lt, d.sh
    steps_reached = reached
    # Validation: ``bleft`` counts the payload bytes not yet gathered.
    d.gather("RV_COUNT", 2, "RV_COUNT_CHECK", checked=True)
    with m.State("RV_COUNT_CHECK"):
        m1 = Signal(16)
        m.d.comb += m1.eq(sh[48:64] - 1)
        m.d.sync += [d.steps_m1.eq(m1), d.steps_fit.eq(m1[len(i):] == 0),
                     i.eq(0), reached.eq(0)]
        with m.If(d.cnt_zero):
            d.error(ErrorCode.BAD_PAYLOAD)
        with m.Else():
            m.next = "RV_STEP"
    with m.State("RV_STEP"):
        with m.If(steps_reached):
            # Timing: the read address does not wait for the ``bleft`` check
            # (after an error the pointer is not used again).
            m.d.comb += [d.rp_load.eq(1), d.rp_const.eq(HEADER + 2)]
            with m.If(bleft_lt[0]):
                m.d.sync += [i.eq(0), reached.eq(0), d.wp.eq(HEADER)]
                m.next = "RX_STEP"
            with m.Else():
                d.error(ErrorCode.BAD_PAYLOAD)
        with m.Elif(bleft_lt[1]):
            d.error(ErrorCode.BAD_PAYLOAD)
        with m.Else():
            m.next = "RV_NEV"
    d.gather("RV_NEV", 2, "RV_NEV_SET", checked=True)
    with m.State("RV_NEV_SET"):
        # Over 255 events cannot fit the payload: the same BAD_PAYLOAD, sooner.
        m.d.sync += [d.n_ev.eq(sh[48:56]), d.no_ev.eq(sh[48:56] == 0)]
        with m.If(d.hi_set):
            d.error(ErrorCode.BAD_PAYLOAD)
        with m.Else():
            m.next = "RV_EVENT"
    with m.State("RV_EVENT"):
        with m.If(d.no_ev):
            _step_done(m, d)
            m.next = "RV_STEP"
        with m.Elif(bleft_lt[2]):
            d.error(ErrorCode.BAD_PAYLOAD)
        with m.Else():
            m.next = "RV_EV"
    d.gather("RV_EV", 4, "RV_EV_CHECK", checked=True)
    with m.State("RV_EV_CHECK"):
        with m.If(d.ev_ok):
            m.d.sync += [d.n_ev.eq(d.n_ev - 1), d.no_ev.eq(d.n_ev == 1)]
            m.next = "RV_EVENT"
        with m.Else():
            d.error(ErrorCode.BAD_PAYLOAD)


def _fault_states(m, d: Datapath, engine):
    """RX_FAULT (the core reset, the fault latched) and RX_FAULT_MSG (the ERROR
    reply: BAD_TABLE and the entry's three-character name, module docs)."""
    info = Signal(15, name="fault_q")
    with m.State("RX_FAULT"):
        m.d.comb += engine.core_reset.eq(1)
        d.write_reply(HEADER, int(ErrorCode.BAD_TABLE))
        m.d.sync += [info.eq(engine.core_fault_info), d.rcmd.eq(0xFF),
                     d.wp.eq(HEADER + 1), d.errors.eq(d.errors + 1), d.k.eq(0)]
        m.next = "RX_FAULT_MSG"
    with m.State("RX_FAULT_MSG"):
        text = Array([Cat(info[i:i + 5], Const(0b010, 3)) for i in (0, 5, 10)])
        d.write_reply(d.wp, text[d.k[:2]])
        m.d.sync += [d.wp.eq(d.wp + 1), d.k.eq(d.k + 1)]
        with m.If(d.k == 2):
            m.d.sync += d.k.eq(0)
            m.next = "FINISH"


def run_execution_states(m, d: Datapath, engine):
    """The states RX_*: the steps executed on the ``engine``'s core, their records
    into the reply, then FINISH (or ERROR, TOO_LARGE or WATCHDOG)."""
    sh, k, wp, n_ev, no_ev = d.sh, d.k, d.wp, d.n_ev, d.no_ev
    nout, npos, overflow = d.nout, d.npos, d.overflow
    core_input, rec_kind = engine.core_input, d.rec_kind
    wd_restart, wd_count, expired = d.wd_restart, d.wd_count, d.wd_expired
    with m.State("RX_ABORT"):
        m.d.comb += engine.core_reset.eq(1)
        d.error(ErrorCode.WATCHDOG)
    _fault_states(m, d, engine)
    with m.State("RX_STEP"):
        m.d.comb += wd_restart.eq(1)
        with m.If(d.reached):
            m.next = "RX_DRAIN"
        with m.Else():
            m.next = "RX_NEV"
    d.gather("RX_NEV", 2, "RX_NEV_SET")
    with m.State("RX_NEV_SET"):
        m.d.sync += [n_ev.eq(sh[48:56]), no_ev.eq(sh[48:56] == 0)]
        m.next = "RX_EVENT"
    fault = engine.core_fault
    with m.State("RX_EVENT"):
        m.d.comb += wd_count.eq(1)
        with m.If(fault):
            m.next = "RX_FAULT"
        with m.Elif(expired):
            m.next = "RX_ABORT"
        with m.Elif(no_ev):
            m.d.comb += [core_input.valid.eq(1),
                         core_input.payload.end.eq(1)]
            with m.If(core_input.ready):
                m.d.sync += [npos.eq(wp), nout.eq(0)]
                with m.If(~_lt_const(wp, HEADER + MAX_PAYLOAD - 1)):
                    m.d.sync += overflow.eq(1)
                with m.Else():
                    m.d.sync += wp.eq(wp + 2)
                m.next = "RX_OUT"
        with m.Else():
            m.next = "RX_EV"
    d.gather("RX_EV", 4, "RX_PUSH")
    with m.State("RX_PUSH"):
        m.d.comb += [wd_count.eq(1), core_input.valid.eq(1),
                     core_input.payload.index.eq(d.ev_index),
                     core_input.payload.value.eq(d.ev_value)]
        with m.If(core_input.ready):
            m.d.sync += [n_ev.eq(n_ev - 1), no_ev.eq(n_ev == 1)]
            m.next = "RX_EVENT"
        with m.Elif(fault):
            m.next = "RX_FAULT"
        with m.Elif(expired):
            m.next = "RX_ABORT"
    with m.State("RX_OUT"):
        m.d.comb += [wd_count.eq(1), engine.core_output.ready.eq(1)]
        with m.If(fault):
            m.d.comb += engine.core_output.ready.eq(0)
            m.next = "RX_FAULT"
        with m.Elif(expired):
            m.d.comb += engine.core_output.ready.eq(0)
            m.next = "RX_ABORT"
        with m.Elif(engine.core_output.valid):
            keep = (rec_kind != 0) | d.flags[0]
            with m.If(keep):
                m.d.sync += [sh.eq(d.rec), k.eq(0), d.last_rec.eq(rec_kind == 2)]
                with m.If(overflow | ~_lt_const(wp, HEADER + MAX_PAYLOAD - 7)):
                    m.d.sync += overflow.eq(1)
                    with m.If(rec_kind == 2):
                        m.next = "RX_NOUT"
                with m.Else():
                    m.d.sync += nout.eq(nout + 1)
                    m.next = "RX_REC"
    with m.State("RX_REC"):
        d.write_reply(wp, sh[:8])
        m.d.sync += [d.shift, wp.eq(wp + 1), k.eq(k + 1)]
        with m.If(k == 7):
            with m.If(d.last_rec):
                m.next = "RX_NOUT"
            with m.Else():
                m.next = "RX_OUT"
    with m.State("RX_NOUT"):
        # ``npos`` is even (the payload starts at 4, steps add 2, records 8).
        with m.If(~overflow):
            d.write_reply(Cat(k[0], npos[1:]), Mux(k[0], 0, nout))
        m.d.sync += k.eq(k + 1)
        with m.If(k[0]):
            m.d.sync += [k.eq(0), d.steps_done.eq(d.steps_done + 1)]
            _step_done(m, d)
            m.next = "RX_STEP"
    with m.State("RX_DRAIN"):
        m.d.comb += wd_count.eq(1)
        with m.If(fault):
            m.next = "RX_FAULT"
        with m.Elif(expired):
            m.next = "RX_ABORT"
        with m.Elif(~d.core_busy):
            with m.If(overflow):
                d.error(ErrorCode.TOO_LARGE)
            with m.Else():
                m.d.sync += k.eq(0)
                m.next = "FINISH"

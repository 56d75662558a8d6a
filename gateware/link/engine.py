"""The command engine: executes the requests of the wire protocol on the NPU core
(``docs/device.md`` is the contract, ``contract/payloads.py`` the byte layouts).

It takes one good frame at a time from the :class:`.frame.FrameDecoder` (body in
the receive buffer), validates the request completely, executes it through the
core's host port and input/output streams, writes the reply body (header and
payload, without the CRC) into the reply buffer and starts the
:class:`.frame.FrameEncoder`.  The reply buffer doubles as the one-deep reply
cache: a frame with the ``(seq, crc)`` of the last executed request is answered
from it again (``REPLAYS``) without being executed.

Everything is derived from the :class:`...contract.config.CoreConfig` and
``layout.address_map(config)``: a region added to the map is readable and
writable (if ``writable``) and zeroed by RESET (if ``state``) with no change here.

One state machine executes every request: its dispatch (IDLE, REPLAY, WAIT_TX,
ERROR, FINISH) and the states of INFO, WRITE, READ and RESET are built here, the
states of RUN by :mod:`.run`; the registers they share, the registered checks
they act on and their common actions are the :class:`.datapath.Datapath`, built
first into the same module.

Costs (clocks from the decoder's ``frame_valid``, besides waiting for the
encoder to finish the previous reply): WRITE ``18 * count + 14`` (8 per word to
validate, 8 to gather, 2 to write), READ ``13 * count + 14`` (core words, one
more per word for each clock of core read latency past one,
``TimingProfile.host_read_latency``; an engine register costs 3 clocks less), INFO
``len(info) + 7``, RESET the ``state`` words + 8, RUN: 1 per payload byte to
validate, then per step 4, per event 6, the core's step, and 9 per record kept.
The ``fast`` form takes a clock more for each check of a gathered field (WRITE
and READ: 1, RUN: 1, and 1 per step and per event while validating) and one more
for a WRITE's last byte check: WRITE ``18 * count + 16``, READ ``13 * count + 15``.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from ...contract.config import RECORD_FIELDS, CoreConfig
from ...contract.info import MAX_INFO
from ...contract.protocol import Command, ErrorCode
from ...contract.timing import TimingProfile, watchdog_clocks
from ..checks import CheckedComponent
from ..core.sequencer import FAULT_INFO_BITS
from ..layouts import input_layout, struct_layout
from .datapath import HEADER, Datapath
from .frame import BODY_ADDR_BITS, COUNTER_BITS, _lt_const
from .run import run_execution_states, run_validation_states

__all__ = ["CommandEngine"]


class CommandEngine(CheckedComponent):
    """Executes requests (``docs/device.md``).

    Ports: from the decoder ``frame_valid``/``frame_ack``/``cmd``/``seq``/
    ``length``/``crc`` and its counters (``frames_ok``, ``drop_*``); the receive
    buffer's synchronous read port ``rx_addr``/``rx_data`` (the engine drives
    the address one clock ahead); the reply buffer's write port
    ``tx_waddr``/``tx_wdata``/``tx_we``; the encoder's ``send``/``send_length``/
    ``send_busy``; the core's host port (``host_*``, ``clear``, ``core_busy``)
    and streams (``core_input`` out, ``core_output`` in); ``idle`` is high while
    no request is in progress.

    Parameters: ``config`` (CoreConfig), ``info`` (the INFO bytes, at most 1024),
    ``timing`` (the :class:`...contract.timing.TimingProfile`; ``PIPELINED`` gives the
    ``fast`` form, for a big part where a block RAM's clock-to-out is most of a
    clock; the same replies, a few clocks later): the INFO bytes are read
    combinationally from the read address register (LUTs) instead of synchronously
    from the next read address (a block RAM), and no check takes the byte read
    from the receive buffer in the clock it is read: the checks of a gathered
    field take ``sh`` in a clock of their own before the state that acts on them
    (a clock more per check: WRITE and READ headers, RUN's step count, each
    step's event count and each event), and a WRITE's value bytes are checked
    from a register of the byte read (``cur_q``, a clock later; a clock more per
    WRITE).
    """

    @staticmethod
    def check_arguments(*, config, info, timing, watchdog):
        if not isinstance(timing, TimingProfile):
            raise TypeError(f"timing must be a TimingProfile, not {timing!r}")
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if not isinstance(info, bytes) or not 1 <= len(info) <= MAX_INFO:
            raise ValueError(f"info must be 1..{MAX_INFO} bytes, not {info!r}")
        if watchdog is not None and (not isinstance(watchdog, int) or isinstance(watchdog, bool)
                                     or not 1 <= watchdog < 1 << 32):
            raise ValueError(f"watchdog must be None or an integer in 1..2**32-1, "
                             f"not {watchdog!r}")
        if config.host_data_bits > 64:
            raise ValueError(f"host words of {config.host_data_bits} bits do not fit the u64 "
                             f"of the wire protocol")

    def __init__(self, *, config: CoreConfig, info: bytes,
                 timing: TimingProfile = TimingProfile.COMPACT, watchdog: int | None = None):
        self.fast = timing.pipelined
        self.watchdog = watchdog_clocks(config, timing) if watchdog is None else watchdog
        self.config = c = config
        self.info = info
        self.record_layout = record = struct_layout(RECORD_FIELDS(c))
        super().__init__({
            "frame_valid": In(1),
            "frame_ack": Out(1),
            "cmd": In(8),
            "seq": In(8),
            "length": In(16),
            "crc": In(16),
            "open_form": In(1),
            "session": Out(16),
            "frames_ok": In(COUNTER_BITS),
            "drop_bad_crc": In(COUNTER_BITS),
            "drop_bad_length": In(COUNTER_BITS),
            "drop_too_large": In(COUNTER_BITS),
            "rx_addr": Out(BODY_ADDR_BITS),
            "rx_data": In(8),
            "tx_waddr": Out(BODY_ADDR_BITS),
            "tx_wdata": Out(8),
            "tx_we": Out(1),
            "send": Out(1),
            "send_length": Out(BODY_ADDR_BITS),
            "send_session": Out(16),
            "send_busy": In(1),
            "host_addr": Out(c.host_addr_bits),
            "host_wdata": Out(c.host_data_bits),
            "host_we": Out(1),
            "host_re": Out(1),
            "host_rdata": In(c.host_data_bits),
            "host_rvalid": In(1),
            "clear": Out(1),
            "core_reset": Out(1),
            "core_busy": In(1),
            "core_fault": In(1),
            "core_fault_info": In(FAULT_INFO_BITS),
            "core_input": Out(stream.Signature(input_layout(c))),
            "core_output": In(stream.Signature(record)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = Datapath(self, m)
        m.d.comb += self.session.eq(d.session)
        self._fsm(m, d)
        return m

    # ------------------------------------------------------------- dispatch
    def _fsm(self, m, d):
        """The state machine: IDLE (a replay from the reply cache, or a request once
        the previous reply is sent), the checks of the command and length (WAIT_TX),
        ERROR and FINISH (the reply header, then the cache's key), then the states of
        each command."""
        cache_valid, cache_seq, cache_crc = d.cache_valid, d.cache_seq, d.cache_crc
        rcmd, wp, k, errors, replays = d.rcmd, d.wp, d.k, d.errors, d.replays
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(~self.frame_valid)
                with m.If(self.frame_valid):
                    with m.If(cache_valid & (cache_seq == self.seq) & (cache_crc == self.crc)):
                        m.next = "REPLAY"
                    with m.Else():
                        m.next = "WAIT_TX"

            with m.State("REPLAY"):
                with m.If(~self.send_busy):
                    m.d.comb += [self.frame_ack.eq(1), self.send.eq(1),
                                 self.send_length.eq(d.cache_len),
                                 self.send_session.eq(Mux(d.cache_open, 0, d.session))]
                    m.d.sync += replays.eq(replays + 1)
                    m.next = "IDLE"

            with m.State("WAIT_TX"):
                # The reply buffer (the cache) is free once the last reply is sent.
                length = self.length
                m.d.comb += [d.rp_load.eq(1), d.rp_const.eq(HEADER)]
                with m.If(~self.send_busy):
                    m.d.sync += [cache_valid.eq(0), rcmd.eq(self.cmd | 0x80), k.eq(0),
                                 d.reply_open.eq(self.open_form | (self.cmd == Command.OPEN)),
                                 wp.eq(HEADER), d.i.eq(0), d.reached.eq(0), d.overflow.eq(0),
                                 d.bleft.eq(length),
                                 d.bleft_lt.eq(Cat(length == 0, _lt_const(length, 2),
                                                   _lt_const(length, 4)))]
                    empty = length == 0
                    with m.Switch(self.cmd):
                        with m.Case(Command.INFO):
                            with m.If(empty):
                                m.next = "INFO"
                            with m.Else():
                                d.error(ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.WRITE):
                            with m.If(~_lt_const(length, 6)):
                                m.next = "W_HDR"
                            with m.Else():
                                d.error(ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.READ):
                            with m.If(length == 6):
                                m.next = "R_HDR"
                            with m.Else():
                                d.error(ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.RESET):
                            with m.If(empty):
                                m.next = "RS_CLEAR"
                            with m.Else():
                                d.error(ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.OPEN):
                            with m.If(length == 4):
                                m.next = "OP_NONCE"
                            with m.Else():
                                d.error(ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.RUN):
                            with m.If(~_lt_const(length, 2)):
                                m.next = "RV_COUNT"
                            with m.Else():
                                d.error(ErrorCode.BAD_PAYLOAD)
                        with m.Default():
                            d.error(ErrorCode.UNKNOWN_COMMAND)

            with m.State("ERROR"):
                d.write_reply(HEADER, d.err)
                m.d.sync += [rcmd.eq(0xFF), wp.eq(HEADER + 1), errors.eq(errors + 1), k.eq(0)]
                m.next = "FINISH"

            with m.State("FINISH"):
                rlen = d.rlen
                header = Array([rcmd, self.seq, rlen[:8], rlen[8:]])
                d.write_reply(k, header[k[:2]])
                m.d.sync += k.eq(k + 1)
                with m.If(k == 3):
                    m.d.sync += [k.eq(0), cache_valid.eq(1), cache_seq.eq(self.seq),
                                 cache_crc.eq(self.crc), d.cache_len.eq(wp),
                                 d.cache_open.eq(d.reply_open)]
                    m.d.comb += [self.frame_ack.eq(1), self.send.eq(1),
                                 self.send_length.eq(wp),
                                 self.send_session.eq(Mux(d.reply_open, 0, d.session))]
                    m.next = "IDLE"

            self._info_states(m, d)
            self._open_states(m, d)
            self._write_states(m, d)
            self._read_states(m, d)
            self._reset_states(m, d)
            run_validation_states(m, d)
            run_execution_states(m, d, self)

    # ----------------------------------------------------------------- INFO
    def _info_states(self, m, d):
        """INFO: the INFO bytes from the ROM into the reply, one per clock."""
        with m.State("INFO"):
            d.write_reply(d.wp, d.info_rd.data)
            m.d.sync += d.wp.eq(d.wp + 1)
            m.d.comb += d.rp_step.eq(1)
            with m.If(d.rp == HEADER + len(self.info) - 1):
                m.next = "FINISH"

    # ----------------------------------------------------------------- OPEN
    def _open_states(self, m, d):
        """OPEN: the request's nonce copied into the reply as it is read, then the next
        session (1 .. 65535, then 1 again) and its two bytes."""
        k, session = d.k, d.session
        with m.State("OP_NONCE"):
            d.write_reply(d.wp, d.cur)
            m.d.comb += d.rp_step.eq(1)
            m.d.sync += [d.wp.eq(d.wp + 1), k.eq(k + 1)]
            with m.If(k == 3):
                m.d.sync += [k.eq(0), session.eq(Mux(session == 0xFFFF, 1, session + 1))]
                m.next = "OP_SESSION"
        with m.State("OP_SESSION"):
            d.write_reply(d.wp, Mux(k[0], session[8:], session[:8]))
            m.d.sync += [d.wp.eq(d.wp + 1), k.eq(k + 1)]
            with m.If(k[0]):
                m.d.sync += k.eq(0)  # (FINISH counts the header's bytes with it)
                m.next = "FINISH"

    # ---------------------------------------------------------------- WRITE
    def _write_states(self, m, d):
        """WRITE: the header's checks, a pass validating every word (its address
        writable, no bits over its target's width), then a pass writing them."""
        sh, k, bad_q, mask_core = d.sh, d.k, d.bad_q, d.mask_core
        d.gather("W_HDR", 6, "W_CHECK", checked=True)
        with m.State("W_CHECK"):
            # ``length`` is at most MAX_PAYLOAD (the decoder's checks), so is 8 * cnt.
            cnt = sh[48:64]
            d.load_addr(sh[16:48])
            m.d.sync += [d.count.eq(cnt), d.left.eq(cnt), d.count_one.eq(cnt == 1),
                         d.last_word.eq(cnt == 1), k.eq(0), d.vmask.eq(mask_core[0]),
                         bad_q.eq(0)]
            if self.fast:  # (``cur_q`` is byte 0 at k == 0: it allows all bits)
                m.d.sync += d.vmask_q.eq(mask_core[0])
            with m.If(d.w_bad):
                d.error(ErrorCode.BAD_PAYLOAD)
            with m.Else():
                m.next = "W_VALIDATE"
        with m.State("W_VALIDATE"):
            # Every word: its address writable, then no bits over the target's width.
            # A byte's check acts a clock after it is read (``bad_q``), and the word's
            # address check a clock after ``lo`` holds it (at ``k == 1``, when
            # ``bad_q`` is byte 0's, which allows all bits), so the checks run in the
            # same order: the previous word's bytes, this word's address, its bytes;
            # the last byte's in W_VCHECK.  The read pointer and the address counters
            # do not wait for the checks (after an error they are not used again).
            # ``fast``: a byte's check acts two clocks after it is read, so at
            # ``k == 1`` ``bad_q`` is the previous word's last byte's, still ahead of
            # the address check; the last word's last two bytes' act in W_VCHECK and
            # W_VCHECK2.
            m.d.comb += d.rp_step.eq(1)
            m.d.sync += [k.eq(k + 1), d.vmask.eq(d.vmask_next[k]), bad_q.eq(d.byte_bad)]
            with m.If(k == 7):
                d.next_addr()
                with m.If(d.last_word):
                    d.restart_addr()
            with m.If(bad_q):
                d.error(ErrorCode.BAD_PAYLOAD)
            with m.Elif((k == 1) & ~d.write_ok):
                d.error(ErrorCode.ADDRESS_OUT_OF_RANGE)
            with m.Elif((k == 7) & d.last_word):
                m.next = "W_VCHECK"
        with m.State("W_VCHECK"):
            # W_GATHER's first byte (at HEADER + 6) is read meanwhile.  Timing: the
            # read address depends on the state alone (not on ``k``/``last_word``).
            m.d.comb += [d.rp_load.eq(1), d.rp_const.eq(HEADER + 6)]
            if self.fast:
                m.d.sync += bad_q.eq(d.byte_bad)
            with m.If(bad_q):
                d.error(ErrorCode.BAD_PAYLOAD)
            with m.Else():
                m.next = "W_VCHECK2" if self.fast else "W_GATHER"
        if self.fast:
            with m.State("W_VCHECK2"):
                m.d.comb += [d.rp_load.eq(1), d.rp_const.eq(HEADER + 6)]
                with m.If(bad_q):
                    d.error(ErrorCode.BAD_PAYLOAD)
                with m.Else():
                    m.next = "W_GATHER"
        d.gather("W_GATHER", 8, "W_DO")
        with m.State("W_DO"):
            with m.If(d.is_reg):
                m.d.sync += d.flags.eq(sh[:32])
                m.next = "W_NEXT"
            with m.Elif(~d.core_busy):
                m.d.sync += d.host_we_q.eq(1)
                m.next = "W_NEXT"
        with m.State("W_NEXT"):
            d.next_addr()
            with m.If(d.last_word):
                m.next = "FINISH"
            with m.Else():
                m.next = "W_GATHER"

    # ----------------------------------------------------------------- READ
    def _read_states(self, m, d):
        """READ: the header's checks, a pass validating every word's address, then a
        pass reading each word (an engine register, or the core's through the host
        port) into the reply."""
        sh, k = d.sh, d.k
        d.gather("R_HDR", 6, "R_CHECK", checked=True)
        with m.State("R_CHECK"):
            cnt = sh[48:64]
            d.load_addr(sh[16:48])
            m.d.sync += [d.count.eq(cnt), d.left.eq(cnt), d.count_one.eq(cnt == 1),
                         d.last_word.eq(cnt == 1), d.primed.eq(0)]
            with m.If(d.cnt_zero):
                d.error(ErrorCode.BAD_PAYLOAD)
            with m.Elif(d.cnt_big):
                d.error(ErrorCode.TOO_LARGE)
            with m.Else():
                m.next = "R_VALIDATE"
        with m.State("R_VALIDATE"):
            # ``read_ok`` is the check of the previous clock's ``lo``: the first clock
            # only steps to the second word (``primed`` low), the last word is checked
            # in R_VLAST.
            m.d.sync += d.primed.eq(1)
            with m.If(d.primed & ~d.read_ok):
                d.error(ErrorCode.ADDRESS_OUT_OF_RANGE)
            with m.Else():
                d.next_addr()
                with m.If(d.last_word):
                    d.restart_addr()
                    m.next = "R_VLAST"
        with m.State("R_VLAST"):
            with m.If(~d.read_ok):
                d.error(ErrorCode.ADDRESS_OUT_OF_RANGE)
            with m.Else():
                m.next = "R_FETCH"
        with m.State("R_FETCH"):
            m.d.sync += k.eq(0)
            with m.If(d.is_reg):
                m.d.sync += sh.eq(d.regs[d.lo[:3]])
                m.next = "R_PUT"
            with m.Elif(~d.core_busy):
                m.d.sync += d.host_re_q.eq(1)
                m.next = "R_WAIT"
        with m.State("R_WAIT"):
            with m.If(d.rvalid_q):
                m.d.sync += sh.eq(d.rdata_q)
                m.next = "R_PUT"
        with m.State("R_PUT"):
            d.write_reply(d.wp, sh[:8])
            m.d.sync += [d.shift, d.wp.eq(d.wp + 1), k.eq(k + 1)]
            with m.If(k == 7):
                d.next_addr()
                with m.If(d.last_word):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "R_FETCH"

    # ---------------------------------------------------------------- RESET
    def _reset_states(self, m, d):
        """RESET: ``clear`` the core, then zero every word of its ``state`` regions
        through the host port, one per clock."""
        c = self.config
        zl, za, state_entries = d.zl, d.za, d.state_entries
        with m.State("RS_CLEAR"):
            with m.If(~d.core_busy):
                # The core clears the next clock, before the first zeroing write
                # (which follows a clock after it is requested).
                m.d.sync += [d.clear_q.eq(1), zl.eq(0), za.eq(0), d.sh.eq(0)]
                m.next = "RS_ZERO0" if state_entries else "FINISH"
        for j, e in enumerate(state_entries):
            with m.State(f"RS_ZERO{j}"):
                m.d.sync += [d.host_we_q.eq(1),
                             d.lo.eq((int(e.region) << d.region_lo) | (zl << c.addr_bits) | za)]
                m.d.sync += za.eq(za + 1)
                with m.If(za == e.depth - 1):
                    m.d.sync += [za.eq(0), zl.eq(zl + 1)]
                    with m.If(zl == e.lanes - 1):
                        m.d.sync += zl.eq(0)
                        m.next = f"RS_ZERO{j + 1}" if j + 1 < len(state_entries) \
                            else "FINISH"

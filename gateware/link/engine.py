"""The command engine: executes the requests of the wire protocol on the NPU core
(``docs/device.md`` is the contract, ``contract/protocol.py`` the byte layouts).

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

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...contract.config import RECORD_FIELDS, CoreConfig, address_map
from ...contract.info import MAX_INFO
from ...contract.protocol import MAX_PAYLOAD, Command, ErrorCode
from ...contract.timing import TimingProfile
from ..layouts import input_layout, struct_layout
from .frame import BODY_ADDR_BITS, COUNTER_BITS, _lt_const

__all__ = ["CommandEngine"]

HEADER = 4  # cmd, seq, length: the reply payload starts here in the buffer


def _masks(limit: int) -> list[int]:
    """Per byte of a little-endian u64 word, the bits allowed below ``limit`` bits."""
    out = []
    for k in range(8):
        lo = 8 * k
        out.append(0xFF if lo + 8 <= limit else 0 if lo >= limit else (1 << (limit - lo)) - 1)
    return out


class CommandEngine(wiring.Component):
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

    def __init__(self, *, config: CoreConfig, info: bytes,
                 timing: TimingProfile = TimingProfile.COMPACT):
        if not isinstance(timing, TimingProfile):
            self._MustUse__silence = True
            raise TypeError(f"timing must be a TimingProfile, not {timing!r}")
        self.fast = timing.pipelined
        if not isinstance(config, CoreConfig):
            self._MustUse__silence = True
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        if not isinstance(info, bytes) or not 1 <= len(info) <= MAX_INFO:
            self._MustUse__silence = True
            raise ValueError(f"info must be 1..{MAX_INFO} bytes, not {info!r}")
        self.config = c = config
        self.info = info
        self.record_layout = record = struct_layout(RECORD_FIELDS(c))
        if c.host_data_bits > 64:
            self._MustUse__silence = True
            raise ValueError(f"host words of {c.host_data_bits} bits do not fit the u64 of "
                             f"the wire protocol")
        super().__init__({
            "frame_valid": In(1),
            "frame_ack": Out(1),
            "cmd": In(8),
            "seq": In(8),
            "length": In(16),
            "crc": In(16),
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
            "send_busy": In(1),
            "host_addr": Out(c.host_addr_bits),
            "host_wdata": Out(c.host_data_bits),
            "host_we": Out(1),
            "host_re": Out(1),
            "host_rdata": In(c.host_data_bits),
            "host_rvalid": In(1),
            "clear": Out(1),
            "core_busy": In(1),
            "core_input": Out(stream.Signature(input_layout(c))),
            "core_output": In(stream.Signature(record)),
            "idle": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 - one FSM, state by state
        c = self.config
        m = Module()
        amap = address_map(c)
        region_lo = c.lane_bits + c.addr_bits
        hab = c.host_addr_bits

        # --------------------------------------------------------- registers
        flags = Signal(32)
        errors = Signal(COUNTER_BITS)
        replays = Signal(COUNTER_BITS)
        steps_done = Signal(COUNTER_BITS)
        regs = Array([flags, self.frames_ok, self.drop_bad_crc, self.drop_bad_length,
                      self.drop_too_large, errors, replays, steps_done])

        cache_valid = Signal()
        cache_seq = Signal(8)
        cache_crc = Signal(16)
        cache_len = Signal(BODY_ADDR_BITS)

        # ------------------------------------------- the receive buffer reader
        # Timing: the states only raise ``rp_step`` (the next byte) or ``rp_load`` with
        # ``rp_const``; one multiplexer after them makes the next read address.
        rp = Signal(BODY_ADDR_BITS)
        rp_next = Signal(BODY_ADDR_BITS)
        rp_step = Signal()
        rp_load = Signal()
        rp_const = Signal(BODY_ADDR_BITS)
        m.d.comb += [rp_next.eq(Mux(rp_load, rp_const, Mux(rp_step, rp + 1, rp))),
                     self.rx_addr.eq(rp_next)]
        m.d.sync += rp.eq(rp_next)
        cur = self.rx_data  # the byte at ``rp``

        # Timing: the INFO bytes sit at ``HEADER ..`` in the ROM, where every request
        # starts reading, so the read address does not depend on the command.
        m.submodules.info = info_rom = memory.Memory(shape=8, depth=HEADER + len(self.info),
                                                     init=[0] * HEADER + list(self.info))
        if self.fast:  # (the byte at ``rp``, as the block form has it)
            info_rd = info_rom.read_port(domain="comb")
            m.d.comb += info_rd.addr.eq(rp)
        else:
            info_rd = info_rom.read_port()
            m.d.comb += info_rd.addr.eq(rp_next)

        # The word shift register: a gather shifts each byte in at the top (the last
        # ``n`` bytes gathered are ``sh[64 - 8 * n:]``, little-endian); a word is
        # written out from ``sh[:8]`` with the same shift.
        sh = Signal(64)
        shift = sh.eq(Cat(sh[8:], cur))
        k = Signal(3)

        # Word address: the low ``host_addr_bits`` bits, and whether the bits above
        # are zero (the core) or the engine's base (the registers).  A range never
        # wraps past 2**32 - 1 here: its first word is then out of range already.
        lo = Signal(hab)
        hi_zero = Signal()
        hi_reg = Signal()
        lo0 = Signal(hab)          # the first word's, for the pass after validation
        hi_zero0 = Signal()
        hi_reg0 = Signal()
        count = Signal(8)          # words of a WRITE / READ (1 .. 128)
        left = Signal(8)           # words still to go, down to 1
        last_word = Signal()       # left == 1 (timing: a register, set with each change)
        count_one = Signal()       # count == 1
        wp = Signal(BODY_ADDR_BITS)  # reply write pointer; at the end, the reply's length
        rcmd = Signal(8)
        # Timing: ``err`` takes the error code of every clock with no enable (the code an
        # error site sets in ``err_code``, BAD_PAYLOAD by default); ERROR, the state after
        # an error, writes it, so the enable need not wait for every site's condition.
        err_code = Signal(8, init=int(ErrorCode.BAD_PAYLOAD))
        err = Signal(8)
        m.d.sync += err.eq(err_code)
        steps_m1 = Signal(16)       # the steps asked for, minus one
        steps_fit = Signal()        # steps_m1 fits ``i``
        i = Signal(10)             # steps done (at most 511 fit a payload)
        reached = Signal()         # i == steps
        bleft = Signal(BODY_ADDR_BITS)  # payload bytes not yet gathered (RUN checks)
        # Timing: the RUN checks of ``bleft`` (== 0, < 2, < 4) in registers, set with
        # each change of ``bleft``.
        bleft_lt = Signal(3)  # bleft < 1, < 2, < 4
        n_ev = Signal(8)           # events of the step still to go
        no_ev = Signal()           # n_ev == 0 (timing: a register, set with each change)
        nout = Signal(8)           # records of the step in the reply (at most 127)
        npos = Signal(BODY_ADDR_BITS)
        overflow = Signal()
        last_rec = Signal()
        rlen = Signal(BODY_ADDR_BITS)
        m.d.comb += rlen.eq(wp - HEADER)

        # ``fast``: the reply buffer's write port takes registers (the reply
        # multiplexer ends at flip-flops, not at the block RAM's data inputs), so each
        # write lands a clock later.  The encoder reads a body from its start, a clock
        # after ``send`` at the earliest, so it reads a byte written last (the header's
        # length, in FINISH's last clock) two clocks after it landed.
        tx_port = (self.tx_waddr, self.tx_wdata, self.tx_we)
        if self.fast:
            tx_port = (Signal.like(self.tx_waddr), Signal.like(self.tx_wdata), Signal())
            m.d.sync += [self.tx_waddr.eq(tx_port[0]), self.tx_wdata.eq(tx_port[1]),
                         self.tx_we.eq(tx_port[2])]

        def write_reply(pos, value):
            m.d.comb += [tx_port[0].eq(pos), tx_port[1].eq(value), tx_port[2].eq(1)]

        def gather(name, n, then, checked=False):
            """State ``name``: the next ``n`` bytes of the receive buffer into ``sh``;
            ``checked``: ``then`` acts on the checks of ``sh`` (``fast``: a clock of
            their own first, ``{then}_WAIT``)."""
            after = f"{then}_WAIT" if checked and self.fast else then
            with m.State(name):
                m.d.sync += [shift, k.eq(k + 1), bleft.eq(bleft - 1),
                             bleft_lt.eq(Cat(_lt_const(bleft, 2), _lt_const(bleft, 3),
                                             _lt_const(bleft, 5)))]
                m.d.comb += rp_step.eq(1)
                with m.If(k == n - 1):
                    m.d.sync += k.eq(0)
                    m.next = after
            if after != then:
                with m.State(after):
                    m.next = then

        def load_addr(a32):
            m.d.sync += [lo.eq(a32[:hab]), lo0.eq(a32[:hab]),
                         hi_zero.eq(a32[hab:] == 0), hi_zero0.eq(a32[hab:] == 0),
                         hi_reg.eq(a32[hab:] == 1 << (31 - hab)),
                         hi_reg0.eq(a32[hab:] == 1 << (31 - hab))]

        def next_addr():
            inc = Signal(hab + 1)
            m.d.comb += inc.eq(lo + 1)
            m.d.sync += [lo.eq(inc[:hab]), left.eq(left - 1), last_word.eq(left == 2)]
            with m.If(inc[hab]):
                m.d.sync += [hi_zero.eq(0), hi_reg.eq(hi_zero if hab == 31 else 0)]

        def restart_addr():
            m.d.sync += [lo.eq(lo0), hi_zero.eq(hi_zero0), hi_reg.eq(hi_reg0), left.eq(count),
                         last_word.eq(count_one)]

        # ------------------------------------------------- address validation
        is_reg = Signal()
        m.d.comb += is_reg.eq(hi_reg & (lo[3:] == 0))
        region = lo[region_lo:]
        lane = lo[c.addr_bits:region_lo]
        offset = lo[:c.addr_bits]
        hits = [(region == int(e.region)) & _lt_const(lane, e.lanes)
                & _lt_const(offset, e.depth) for e in amap]
        core_r = Cat(*hits).any()
        core_w = Cat(*(h for h, e in zip(hits, amap, strict=True) if e.writable)).any()
        # Timing: the address checks are many LUT levels deep (the region, lane and
        # offset compares), so they go into registers (``read_ok``/``write_ok``: the
        # checks of the address ``lo`` held in the previous clock) that the FSM acts on.
        read_ok = Signal()
        write_ok = Signal()
        m.d.sync += [read_ok.eq(is_reg | (hi_zero & core_r)),
                     write_ok.eq((is_reg & (lo[:3] == 0)) | (hi_zero & core_w))]
        # Timing: ``cur`` comes straight out of a block RAM (slow clock-to-out), so the
        # allowed bits of the byte at ``k`` wait in a register (``vmask``, loaded a clock
        # ahead), ``byte_bad`` is one AND-OR level after the RAM and goes into a
        # register (``bad_q``) that the FSM acts on a clock later.  Byte 0 of a word
        # allows all 8 bits for both targets (``host_data_bits >= 32``), so the value
        # for ``k == 0`` does not depend on the (next) word's target.
        mask_core = _masks(c.host_data_bits)
        mask_reg = _masks(32)
        assert mask_core[0] == mask_reg[0] == 0xFF
        vmask = Signal(8)
        vmask_next = Array(Mux(is_reg, mask_reg[(j + 1) % 8], mask_core[(j + 1) % 8])
                           for j in range(8))
        byte_bad = (cur & ~vmask) != 0
        if self.fast:  # the byte and its mask a clock later: each check a clock later
            cur_q = Signal(8)
            vmask_q = Signal(8)
            m.d.sync += [cur_q.eq(cur), vmask_q.eq(vmask)]
            byte_bad = (cur_q & ~vmask_q) != 0
        bad_q = Signal()    # the byte checked in the previous clock has bits set over the width
        primed = Signal()   # R_VALIDATE: ``read_ok`` is a word's check

        # ------------------------------------------------------------ RUN data
        ev_index = sh[32:48]
        ev_value = sh[48:64]

        # Timing: the checks of a gathered field come from flip-flops.  Every check
        # state directly follows its gather, whose last clock shifts ``cur`` in, so
        # the checks are computed each clock on ``sh_in`` (``sh`` after a shift) and
        # registered: in a check state they are the checks of ``sh``.  ``fast``: they
        # are computed on ``sh`` itself, and a clock of their own (the state
        # ``{check state}_WAIT``, see ``gather``) comes between the gather and the
        # check state.
        cnt_zero = Signal()   # the count field (sh[48:64]) is 0
        cnt_big = Signal()    # READ: over MAX_PAYLOAD // 8 words
        w_bad = Signal()      # WRITE: the count is 0 or disagrees with the payload length
        hi_set = Signal()     # sh[56:64] != 0 (RUN: 256 events or more)
        ev_ok = Signal()      # RUN event: index < max_inputs, value in the signed in_bits range
        sh_in = sh if self.fast else Cat(sh[8:], cur)
        cnt_in = sh_in[48:64]
        top = sh_in[48 + c.in_bits - 1:64]  # the value's bits from its sign bit up
        m.d.sync += [
            cnt_zero.eq(cnt_in == 0),
            cnt_big.eq(~_lt_const(cnt_in, MAX_PAYLOAD // 8 + 1)),
            w_bad.eq((cnt_in == 0) | (self.length[:3] != 6) | (self.length[3:] != cnt_in)),
            hi_set.eq(sh_in[56:64] != 0),
            ev_ok.eq(_lt_const(sh_in[32:48], c.max_inputs)
                     & ((top == 0) | (top == (1 << len(top)) - 1))),
        ]
        rec = self.core_output.payload.as_value()
        rec_kind = self.core_output.payload.kind

        state_entries = [e for e in amap if e.state]
        zl = Signal(range(max([e.lanes for e in state_entries] + [1]) + 1))
        za = Signal(range(max([e.depth for e in state_entries] + [1]) + 1))

        # Timing: the host port comes from flip-flops only (the core decodes the address
        # into the enables of many registers).  A write is requested a clock ahead in
        # ``host_we_q`` and happens the next clock, while ``lo`` and ``sh`` still hold
        # its address and data (W_NEXT changes ``lo`` only at its end; RESET loads the
        # address of each zeroed word into ``lo``).
        host_we_q = Signal()
        host_re_q = Signal()  # the same for a read, requested in R_FETCH, made in R_WAIT
        # Timing: the read data are registered before the FSM takes them (the core's
        # read-back multiplexer, e.g. after its counter bank's adder, ends here).
        rdata_q = Signal.like(self.host_rdata)
        rvalid_q = Signal()
        m.d.sync += [rdata_q.eq(self.host_rdata), rvalid_q.eq(self.host_rvalid)]
        # Timing: the core's ``busy`` is decoded from its sequencer's state; the FSM acts
        # on it a clock late (``core_busy``).  That is safe: the core turns busy only two
        # clocks after the engine pushes an end marker (RX_EVENT, then RX_OUT, which does
        # not look at it) and stays busy until that step's end-of-step record is out,
        # which the engine takes and writes before it looks again (RX_DRAIN); a fall is
        # seen a clock late.
        core_busy = Signal()
        m.d.sync += core_busy.eq(self.core_busy)
        clear_q = Signal()  # the same for ``clear``, which resets many of the core's registers
        m.d.sync += [host_we_q.eq(0), host_re_q.eq(0), clear_q.eq(0)]
        m.d.comb += [self.host_addr.eq(lo), self.host_wdata.eq(sh),  # RESET clears ``sh``
                     self.host_we.eq(host_we_q), self.host_re.eq(host_re_q),
                     self.clear.eq(clear_q)]

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
                                 self.send_length.eq(cache_len)]
                    m.d.sync += replays.eq(replays + 1)
                    m.next = "IDLE"

            with m.State("WAIT_TX"):
                # The reply buffer (the cache) is free once the last reply is sent.
                length = self.length
                m.d.comb += [rp_load.eq(1), rp_const.eq(HEADER)]
                with m.If(~self.send_busy):
                    m.d.sync += [cache_valid.eq(0), rcmd.eq(self.cmd | 0x80), k.eq(0),
                                 wp.eq(HEADER), i.eq(0), reached.eq(0), overflow.eq(0),
                                 bleft.eq(length),
                                 bleft_lt.eq(Cat(length == 0, _lt_const(length, 2),
                                                 _lt_const(length, 4)))]
                    empty = length == 0
                    with m.Switch(self.cmd):
                        with m.Case(Command.INFO):
                            with m.If(empty):
                                m.next = "INFO"
                            with m.Else():
                                self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.WRITE):
                            with m.If(~_lt_const(length, 6)):
                                m.next = "W_HDR"
                            with m.Else():
                                self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.READ):
                            with m.If(length == 6):
                                m.next = "R_HDR"
                            with m.Else():
                                self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.RESET):
                            with m.If(empty):
                                m.next = "RS_CLEAR"
                            with m.Else():
                                self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                        with m.Case(Command.RUN):
                            with m.If(~_lt_const(length, 2)):
                                m.next = "RV_COUNT"
                            with m.Else():
                                self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                        with m.Default():
                            self._error(m, err_code, ErrorCode.UNKNOWN_COMMAND)

            with m.State("ERROR"):
                write_reply(HEADER, err)
                m.d.sync += [rcmd.eq(0xFF), wp.eq(HEADER + 1), errors.eq(errors + 1), k.eq(0)]
                m.next = "FINISH"

            with m.State("FINISH"):
                header = Array([rcmd, self.seq, rlen[:8], rlen[8:]])
                write_reply(k, header[k[:2]])
                m.d.sync += k.eq(k + 1)
                with m.If(k == 3):
                    m.d.sync += [k.eq(0), cache_valid.eq(1), cache_seq.eq(self.seq),
                                 cache_crc.eq(self.crc), cache_len.eq(wp)]
                    m.d.comb += [self.frame_ack.eq(1), self.send.eq(1),
                                 self.send_length.eq(wp)]
                    m.next = "IDLE"

            # --------------------------------------------------------- INFO
            with m.State("INFO"):
                write_reply(wp, info_rd.data)
                m.d.sync += wp.eq(wp + 1)
                m.d.comb += rp_step.eq(1)
                with m.If(rp == HEADER + len(self.info) - 1):
                    m.next = "FINISH"

            # -------------------------------------------------------- WRITE
            gather("W_HDR", 6, "W_CHECK", checked=True)
            with m.State("W_CHECK"):
                # ``length`` is at most MAX_PAYLOAD (the decoder's checks), so is 8 * cnt.
                cnt = sh[48:64]
                load_addr(sh[16:48])
                m.d.sync += [count.eq(cnt), left.eq(cnt), count_one.eq(cnt == 1),
                             last_word.eq(cnt == 1), k.eq(0), vmask.eq(mask_core[0]),
                             bad_q.eq(0)]
                if self.fast:  # (``cur_q`` is byte 0 at k == 0: it allows all bits)
                    m.d.sync += vmask_q.eq(mask_core[0])
                with m.If(w_bad):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
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
                m.d.comb += rp_step.eq(1)
                m.d.sync += [k.eq(k + 1), vmask.eq(vmask_next[k]), bad_q.eq(byte_bad)]
                with m.If(k == 7):
                    next_addr()
                    with m.If(last_word):
                        restart_addr()
                with m.If(bad_q):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Elif((k == 1) & ~write_ok):
                    self._error(m, err_code, ErrorCode.ADDRESS_OUT_OF_RANGE)
                with m.Elif((k == 7) & last_word):
                    m.next = "W_VCHECK"
            with m.State("W_VCHECK"):
                # W_GATHER's first byte (at HEADER + 6) is read meanwhile.  Timing: the
                # read address depends on the state alone (not on ``k``/``last_word``).
                m.d.comb += [rp_load.eq(1), rp_const.eq(HEADER + 6)]
                if self.fast:
                    m.d.sync += bad_q.eq(byte_bad)
                with m.If(bad_q):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Else():
                    m.next = "W_VCHECK2" if self.fast else "W_GATHER"
            if self.fast:
                with m.State("W_VCHECK2"):
                    m.d.comb += [rp_load.eq(1), rp_const.eq(HEADER + 6)]
                    with m.If(bad_q):
                        self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                    with m.Else():
                        m.next = "W_GATHER"
            gather("W_GATHER", 8, "W_DO")
            with m.State("W_DO"):
                with m.If(is_reg):
                    m.d.sync += flags.eq(sh[:32])
                    m.next = "W_NEXT"
                with m.Elif(~core_busy):
                    m.d.sync += host_we_q.eq(1)
                    m.next = "W_NEXT"
            with m.State("W_NEXT"):
                next_addr()
                with m.If(last_word):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "W_GATHER"

            # --------------------------------------------------------- READ
            gather("R_HDR", 6, "R_CHECK", checked=True)
            with m.State("R_CHECK"):
                cnt = sh[48:64]
                load_addr(sh[16:48])
                m.d.sync += [count.eq(cnt), left.eq(cnt), count_one.eq(cnt == 1),
                             last_word.eq(cnt == 1), primed.eq(0)]
                with m.If(cnt_zero):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Elif(cnt_big):
                    self._error(m, err_code, ErrorCode.TOO_LARGE)
                with m.Else():
                    m.next = "R_VALIDATE"
            with m.State("R_VALIDATE"):
                # ``read_ok`` is the check of the previous clock's ``lo``: the first clock
                # only steps to the second word (``primed`` low), the last word is checked
                # in R_VLAST.
                m.d.sync += primed.eq(1)
                with m.If(primed & ~read_ok):
                    self._error(m, err_code, ErrorCode.ADDRESS_OUT_OF_RANGE)
                with m.Else():
                    next_addr()
                    with m.If(last_word):
                        restart_addr()
                        m.next = "R_VLAST"
            with m.State("R_VLAST"):
                with m.If(~read_ok):
                    self._error(m, err_code, ErrorCode.ADDRESS_OUT_OF_RANGE)
                with m.Else():
                    m.next = "R_FETCH"
            with m.State("R_FETCH"):
                m.d.sync += k.eq(0)
                with m.If(is_reg):
                    m.d.sync += sh.eq(regs[lo[:3]])
                    m.next = "R_PUT"
                with m.Elif(~core_busy):
                    m.d.sync += host_re_q.eq(1)
                    m.next = "R_WAIT"
            with m.State("R_WAIT"):
                with m.If(rvalid_q):
                    m.d.sync += sh.eq(rdata_q)
                    m.next = "R_PUT"
            with m.State("R_PUT"):
                write_reply(wp, sh[:8])
                m.d.sync += [shift, wp.eq(wp + 1), k.eq(k + 1)]
                with m.If(k == 7):
                    next_addr()
                    with m.If(last_word):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "R_FETCH"

            # -------------------------------------------------------- RESET
            with m.State("RS_CLEAR"):
                with m.If(~core_busy):
                    # The core clears the next clock, before the first zeroing write
                    # (which follows a clock after it is requested).
                    m.d.sync += [clear_q.eq(1), zl.eq(0), za.eq(0), sh.eq(0)]
                    m.next = "RS_ZERO0" if state_entries else "FINISH"
            for j, e in enumerate(state_entries):
                with m.State(f"RS_ZERO{j}"):
                    m.d.sync += [host_we_q.eq(1),
                                 lo.eq((int(e.region) << region_lo) | (zl << c.addr_bits) | za)]
                    m.d.sync += za.eq(za + 1)
                    with m.If(za == e.depth - 1):
                        m.d.sync += [za.eq(0), zl.eq(zl + 1)]
                        with m.If(zl == e.lanes - 1):
                            m.d.sync += zl.eq(0)
                            m.next = f"RS_ZERO{j + 1}" if j + 1 < len(state_entries) \
                                else "FINISH"

            # ---------------------------------------------------------- RUN
            # Validation: ``bleft`` counts the payload bytes not yet gathered.
            # Timing: ``reached`` (``i == steps``) is a register, set with each change of
            # ``i`` (``steps`` is at least 1 while ``i`` counts) from ``i == steps - 1``
            # (an equality on registers: no carry chain ahead of the compare).
            steps_reached = reached

            def step_done():
                inc = i + 1
                m.d.sync += [i.eq(inc),
                             reached.eq((i == steps_m1[:len(i)]) & steps_fit)]
            gather("RV_COUNT", 2, "RV_COUNT_CHECK", checked=True)
            with m.State("RV_COUNT_CHECK"):
                m1 = Signal(16)
                m.d.comb += m1.eq(sh[48:64] - 1)
                m.d.sync += [steps_m1.eq(m1), steps_fit.eq(m1[len(i):] == 0),
                             i.eq(0), reached.eq(0)]
                with m.If(cnt_zero):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Else():
                    m.next = "RV_STEP"
            with m.State("RV_STEP"):
                with m.If(steps_reached):
                    # Timing: the read address does not wait for the ``bleft`` check
                    # (after an error the pointer is not used again).
                    m.d.comb += [rp_load.eq(1), rp_const.eq(HEADER + 2)]
                    with m.If(bleft_lt[0]):
                        m.d.sync += [i.eq(0), reached.eq(0), wp.eq(HEADER)]
                        m.next = "RX_STEP"
                    with m.Else():
                        self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Elif(bleft_lt[1]):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Else():
                    m.next = "RV_NEV"
            gather("RV_NEV", 2, "RV_NEV_SET", checked=True)
            with m.State("RV_NEV_SET"):
                # Over 255 events cannot fit the payload: the same BAD_PAYLOAD, sooner.
                m.d.sync += [n_ev.eq(sh[48:56]), no_ev.eq(sh[48:56] == 0)]
                with m.If(hi_set):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Else():
                    m.next = "RV_EVENT"
            with m.State("RV_EVENT"):
                with m.If(no_ev):
                    step_done()
                    m.next = "RV_STEP"
                with m.Elif(bleft_lt[2]):
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)
                with m.Else():
                    m.next = "RV_EV"
            gather("RV_EV", 4, "RV_EV_CHECK", checked=True)
            with m.State("RV_EV_CHECK"):
                with m.If(ev_ok):
                    m.d.sync += [n_ev.eq(n_ev - 1), no_ev.eq(n_ev == 1)]
                    m.next = "RV_EVENT"
                with m.Else():
                    self._error(m, err_code, ErrorCode.BAD_PAYLOAD)

            # Execution.
            with m.State("RX_STEP"):
                with m.If(steps_reached):
                    m.next = "RX_DRAIN"
                with m.Else():
                    m.next = "RX_NEV"
            gather("RX_NEV", 2, "RX_NEV_SET")
            with m.State("RX_NEV_SET"):
                m.d.sync += [n_ev.eq(sh[48:56]), no_ev.eq(sh[48:56] == 0)]
                m.next = "RX_EVENT"
            with m.State("RX_EVENT"):
                with m.If(no_ev):
                    m.d.comb += [self.core_input.valid.eq(1),
                                 self.core_input.payload.end.eq(1)]
                    with m.If(self.core_input.ready):
                        m.d.sync += [npos.eq(wp), nout.eq(0)]
                        with m.If(~_lt_const(wp, HEADER + MAX_PAYLOAD - 1)):
                            m.d.sync += overflow.eq(1)
                        with m.Else():
                            m.d.sync += wp.eq(wp + 2)
                        m.next = "RX_OUT"
                with m.Else():
                    m.next = "RX_EV"
            gather("RX_EV", 4, "RX_PUSH")
            with m.State("RX_PUSH"):
                m.d.comb += [self.core_input.valid.eq(1),
                             self.core_input.payload.index.eq(ev_index),
                             self.core_input.payload.value.eq(ev_value)]
                with m.If(self.core_input.ready):
                    m.d.sync += [n_ev.eq(n_ev - 1), no_ev.eq(n_ev == 1)]
                    m.next = "RX_EVENT"
            with m.State("RX_OUT"):
                m.d.comb += self.core_output.ready.eq(1)
                with m.If(self.core_output.valid):
                    keep = (rec_kind != 0) | flags[0]
                    with m.If(keep):
                        m.d.sync += [sh.eq(rec), k.eq(0), last_rec.eq(rec_kind == 2)]
                        with m.If(overflow | ~_lt_const(wp, HEADER + MAX_PAYLOAD - 7)):
                            m.d.sync += overflow.eq(1)
                            with m.If(rec_kind == 2):
                                m.next = "RX_NOUT"
                        with m.Else():
                            m.d.sync += nout.eq(nout + 1)
                            m.next = "RX_REC"
            with m.State("RX_REC"):
                write_reply(wp, sh[:8])
                m.d.sync += [shift, wp.eq(wp + 1), k.eq(k + 1)]
                with m.If(k == 7):
                    with m.If(last_rec):
                        m.next = "RX_NOUT"
                    with m.Else():
                        m.next = "RX_OUT"
            with m.State("RX_NOUT"):
                # ``npos`` is even (the payload starts at 4, steps add 2, records 8).
                with m.If(~overflow):
                    write_reply(Cat(k[0], npos[1:]), Mux(k[0], 0, nout))
                m.d.sync += k.eq(k + 1)
                with m.If(k[0]):
                    m.d.sync += [k.eq(0), steps_done.eq(steps_done + 1)]
                    step_done()
                    m.next = "RX_STEP"
            with m.State("RX_DRAIN"):
                with m.If(~core_busy):
                    with m.If(overflow):
                        self._error(m, err_code, ErrorCode.TOO_LARGE)
                    with m.Else():
                        m.d.sync += k.eq(0)
                        m.next = "FINISH"
        return m

    @staticmethod
    def _error(m, err_code, code):
        m.d.comb += err_code.eq(int(code))
        m.next = "ERROR"

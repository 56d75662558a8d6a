"""The command engine's datapath: the registers its state machine
(:class:`.engine.CommandEngine`) acts on, and the actions the states share.

:class:`Datapath` builds, into the engine's module, the engine registers
(``regs``, read back at ``0x8000_0000``) and the reply cache's key, the reader of
the receive buffer, the INFO ROM, the word shift register ``sh``, the word
address and the counters of WRITE/READ/RUN, the reply buffer's write port, the
registered checks the states act on (a word address readable or writable, a
WRITE byte's bits over the target's width, the fields of a gathered header or
event) and the host port's registers.  Its methods are the actions of a state:
``gather`` (a state that shifts bytes into ``sh``), ``write_reply``,
``load_addr``/``next_addr``/``restart_addr`` (the word address counter) and
``error``.

Timing: the checks the states act on are registers (``is_reg``: one gate after
registers; each check's comment says of what, and how many clocks after its
inputs).  The receive buffer's byte
(``cur``, a block RAM's output) reaches no state's decision in the clock it is
read: it goes into ``sh``, into the registered checks of a gathered field (the
``fast`` form computes these from ``sh`` instead) and, through one AND-OR level,
into ``bad_q`` (``fast``: from a register of the byte).  The host port and
``clear`` come from flip-flops only, and the core's read data and ``busy`` are
registered before the states take them.
"""

from __future__ import annotations

from amaranth import Array, Cat, Mux, Signal
from amaranth.lib import memory

from ...contract.config import address_map
from ...contract.protocol import MAX_PAYLOAD, ErrorCode
from .frame import BODY_ADDR_BITS, COUNTER_BITS, _lt_const

__all__ = ["HEADER", "Datapath"]

HEADER = 4  # cmd, seq, length: the reply payload starts here in the buffer


def _masks(limit: int) -> list[int]:
    """Per byte of a little-endian u64 word, the bits allowed below ``limit`` bits."""
    out = []
    for k in range(8):
        lo = 8 * k
        out.append(0xFF if lo + 8 <= limit else 0 if lo >= limit else (1 << (limit - lo)) - 1)
    return out


class Datapath:
    """The registers and checks of a :class:`.engine.CommandEngine` ``engine``,
    built into its module ``m`` (the engine's ports, its ``config``, ``info`` and
    ``fast`` form); the signals are attributes of the names they have in the
    netlist."""

    def __init__(self, engine, m):
        self.m = m
        self.fast = engine.fast
        self.amap = address_map(engine.config)
        self.region_lo = engine.config.lane_bits + engine.config.addr_bits
        self.hab = engine.config.host_addr_bits
        self._registers(engine)
        self._reader(engine)
        self._counters()
        self._reply_port(engine)
        self._address_checks(engine.config)
        self._byte_checks(engine.config)
        self._field_checks(engine)
        self._reset_counters()
        self._host_port(engine)
        self._watchdog(engine)

    def _watchdog(self, engine):
        """RUN's step watchdog (:mod:`.run`): ``wd_restart`` starts it, ``wd_count``
        counts a clock, ``wd_expired`` says ``watchdog`` clocks (rounded up to a
        multiple of ``2**b``, ``b`` up to 8 for a bound of 2**16 and more) were
        counted.  Timing: the clocks are counted in ``b`` bits whose wrap, registered
        (a clock late), steps the count of blocks (from ``2**n - blocks`` up, its top
        bit ``n`` the flag): no carry chain longer than the blocks'."""
        m = self.m
        b = min(8, max(0, engine.watchdog.bit_length() - 8))
        blocks = -(-engine.watchdog // (1 << b))
        n = blocks.bit_length()
        low, wrap = Signal(b, name="watchdog_low"), Signal(name="watchdog_wrap")
        high = Signal(n + 1, name="watchdog")
        self.wd_restart, self.wd_count = Signal(name="wd_restart"), Signal(name="wd_count")
        self.wd_expired = high[n]
        with m.If(self.wd_restart):
            m.d.sync += [low.eq(0), wrap.eq(0), high.eq((1 << n) - blocks)]
        with m.Else():
            m.d.sync += [low.eq(low + self.wd_count),
                         wrap.eq(self.wd_count & (low == (1 << b) - 1))]
            with m.If(wrap & ~high[n]):
                m.d.sync += high.eq(high + 1)

    # ------------------------------------------------------------- registers
    def _registers(self, engine):
        """The engine registers (``regs``, in address order) and the reply cache's key
        (``cache_*``: the last executed request's ``seq``, ``crc`` and reply length)."""
        self.flags = Signal(32)
        self.errors = Signal(COUNTER_BITS)
        self.replays = Signal(COUNTER_BITS)
        self.steps_done = Signal(COUNTER_BITS)
        self.regs = Array([self.flags, engine.frames_ok, engine.drop_bad_crc,
                           engine.drop_bad_length, engine.drop_too_large, self.errors,
                           self.replays, self.steps_done])

        # Sessions (``contract.protocol``): the current one (0: none), and whether the
        # reply being made and the cached one are in the open form (an OPEN's reply, or
        # a request that came in the open form; any other is in the current session's,
        # which only an OPEN changes, and an OPEN replaces the cache).
        self.session = Signal(16)
        self.reply_open = Signal()
        self.cache_open = Signal()
        self.cache_valid = Signal()
        self.cache_seq = Signal(8)
        self.cache_crc = Signal(16)
        self.cache_len = Signal(BODY_ADDR_BITS)

    # ----------------------------------------------- the receive buffer reader
    def _reader(self, engine):
        """The read pointer ``rp`` of the receive buffer (``cur`` is the byte at it),
        the INFO ROM's read port ``info_rd``, the word shift register ``sh`` and the
        byte counter ``k``."""
        m = self.m
        # Timing: the states only raise ``rp_step`` (the next byte) or ``rp_load`` with
        # ``rp_const``; one multiplexer after them makes the next read address.
        self.rp = rp = Signal(BODY_ADDR_BITS)
        self.rp_next = Signal(BODY_ADDR_BITS)
        self.rp_step = Signal()
        self.rp_load = Signal()
        self.rp_const = Signal(BODY_ADDR_BITS)
        m.d.comb += [self.rp_next.eq(Mux(self.rp_load, self.rp_const,
                                         Mux(self.rp_step, rp + 1, rp))),
                     engine.rx_addr.eq(self.rp_next)]
        m.d.sync += rp.eq(self.rp_next)
        self.cur = engine.rx_data  # the byte at ``rp``

        # Timing: the INFO bytes sit at ``HEADER ..`` in the ROM, where every request
        # starts reading, so the read address does not depend on the command.
        m.submodules.info = info_rom = memory.Memory(shape=8, depth=HEADER + len(engine.info),
                                                     init=[0] * HEADER + list(engine.info))
        if self.fast:  # (the byte at ``rp``, as the block form has it)
            self.info_rd = info_rom.read_port(domain="comb")
            m.d.comb += self.info_rd.addr.eq(rp)
        else:
            self.info_rd = info_rom.read_port()
            m.d.comb += self.info_rd.addr.eq(self.rp_next)

        # The word shift register: a gather shifts each byte in at the top (the last
        # ``n`` bytes gathered are ``sh[64 - 8 * n:]``, little-endian); a word is
        # written out from ``sh[:8]`` with the same shift.
        self.sh = Signal(64)
        self.shift = self.sh.eq(Cat(self.sh[8:], self.cur))
        self.k = Signal(3)

    # -------------------------------------------------------------- counters
    def _counters(self):
        """The word address and count of WRITE/READ, the reply's write pointer, command
        and error code, and the counters of RUN."""
        m = self.m
        hab = self.hab
        # Word address: the low ``host_addr_bits`` bits, and whether the bits above
        # are zero (the core) or the engine's base (the registers).  A range never
        # wraps past 2**32 - 1 here: its first word is then out of range already.
        self.lo = Signal(hab)
        self.hi_zero = Signal()
        self.hi_reg = Signal()
        self.lo0 = Signal(hab)          # the first word's, for the pass after validation
        self.hi_zero0 = Signal()
        self.hi_reg0 = Signal()
        self.count = Signal(8)          # words of a WRITE / READ (1 .. 128)
        self.left = Signal(8)           # words still to go, down to 1
        self.last_word = Signal()       # left == 1 (timing: a register, set with each change)
        self.count_one = Signal()       # count == 1
        self.wp = Signal(BODY_ADDR_BITS)  # reply write pointer; at the end, the reply's length
        self.rcmd = Signal(8)
        # Timing: ``err`` takes the error code of every clock with no enable (the code an
        # error site sets in ``err_code``, BAD_PAYLOAD by default); ERROR, the state after
        # an error, writes it, so the enable need not wait for every site's condition.
        self.err_code = Signal(8, init=int(ErrorCode.BAD_PAYLOAD))
        self.err = Signal(8)
        m.d.sync += self.err.eq(self.err_code)
        self.steps_m1 = Signal(16)       # the steps asked for, minus one
        self.steps_fit = Signal()        # steps_m1 fits ``i``
        self.i = Signal(10)             # steps done (at most 511 fit a payload)
        self.reached = Signal()         # i == steps
        self.bleft = Signal(BODY_ADDR_BITS)  # payload bytes not yet gathered (RUN checks)
        # Timing: the RUN checks of ``bleft`` (== 0, < 2, < 4) in registers, set with
        # each change of ``bleft``.
        self.bleft_lt = Signal(3)  # bleft < 1, < 2, < 4
        self.n_ev = Signal(8)           # events of the step still to go
        self.no_ev = Signal()           # n_ev == 0 (timing: a register, set with each change)
        self.nout = Signal(8)           # records of the step in the reply (at most 127)
        self.npos = Signal(BODY_ADDR_BITS)
        self.overflow = Signal()
        self.last_rec = Signal()
        self.rlen = Signal(BODY_ADDR_BITS)
        m.d.comb += self.rlen.eq(self.wp - HEADER)

    # ------------------------------------------------------ the reply buffer
    def _reply_port(self, engine):
        """``tx_port``: the (address, data, enable) the states write the reply buffer
        through (``write_reply``)."""
        # ``fast``: the reply buffer's write port takes registers (the reply
        # multiplexer ends at flip-flops, not at the block RAM's data inputs), so each
        # write lands a clock later.  The encoder reads a body from its start, a clock
        # after ``send`` at the earliest, so it reads a byte written last (the header's
        # length, in FINISH's last clock) two clocks after it landed.
        self.tx_port = (engine.tx_waddr, engine.tx_wdata, engine.tx_we)
        if self.fast:
            self.tx_port = (Signal.like(engine.tx_waddr), Signal.like(engine.tx_wdata), Signal())
            self.m.d.sync += [engine.tx_waddr.eq(self.tx_port[0]),
                              engine.tx_wdata.eq(self.tx_port[1]),
                              engine.tx_we.eq(self.tx_port[2])]

    # ------------------------------------------------------------- actions
    def write_reply(self, pos, value):
        """Write ``value`` at ``pos`` of the reply buffer in this clock."""
        tx_port = self.tx_port
        self.m.d.comb += [tx_port[0].eq(pos), tx_port[1].eq(value), tx_port[2].eq(1)]

    def gather(self, name, n, then, checked=False):
        """State ``name``: the next ``n`` bytes of the receive buffer into ``sh``;
        ``checked``: ``then`` acts on the checks of ``sh`` (``fast``: a clock of
        their own first, ``{then}_WAIT``)."""
        m, k, bleft = self.m, self.k, self.bleft
        after = f"{then}_WAIT" if checked and self.fast else then
        with m.State(name):
            m.d.sync += [self.shift, k.eq(k + 1), bleft.eq(bleft - 1),
                         self.bleft_lt.eq(Cat(_lt_const(bleft, 2), _lt_const(bleft, 3),
                                              _lt_const(bleft, 5)))]
            m.d.comb += self.rp_step.eq(1)
            with m.If(k == n - 1):
                m.d.sync += k.eq(0)
                m.next = after
        if after != then:
            with m.State(after):
                m.next = then

    def load_addr(self, a32):
        """Start the word address counter at the 32-bit address ``a32``."""
        hab = self.hab
        self.m.d.sync += [self.lo.eq(a32[:hab]), self.lo0.eq(a32[:hab]),
                          self.hi_zero.eq(a32[hab:] == 0), self.hi_zero0.eq(a32[hab:] == 0),
                          self.hi_reg.eq(a32[hab:] == 1 << (31 - hab)),
                          self.hi_reg0.eq(a32[hab:] == 1 << (31 - hab))]

    def next_addr(self):
        """Step the word address counter to the next word (``left`` down by one)."""
        m, hab, lo, left = self.m, self.hab, self.lo, self.left
        inc = Signal(hab + 1)
        m.d.comb += inc.eq(lo + 1)
        m.d.sync += [lo.eq(inc[:hab]), left.eq(left - 1), self.last_word.eq(left == 2)]
        with m.If(inc[hab]):
            m.d.sync += [self.hi_zero.eq(0), self.hi_reg.eq(self.hi_zero if hab == 31 else 0)]

    def restart_addr(self):
        """Set the word address counter back to the first word."""
        self.m.d.sync += [self.lo.eq(self.lo0), self.hi_zero.eq(self.hi_zero0),
                          self.hi_reg.eq(self.hi_reg0), self.left.eq(self.count),
                          self.last_word.eq(self.count_one)]

    def error(self, code):
        """Reply with the error ``code`` (in state ERROR, the next clock)."""
        self.m.d.comb += self.err_code.eq(int(code))
        self.m.next = "ERROR"

    # ---------------------------------------------------- address validation
    def _address_checks(self, c):
        """``read_ok``/``write_ok``: the word address ``lo`` of the previous clock is
        readable/writable; ``is_reg``: ``lo`` is an engine register."""
        m, lo = self.m, self.lo
        self.is_reg = Signal()
        m.d.comb += self.is_reg.eq(self.hi_reg & (lo[3:] == 0))
        region = lo[self.region_lo:]
        lane = lo[c.addr_bits:self.region_lo]
        offset = lo[:c.addr_bits]
        hits = [(region == int(e.region)) & _lt_const(lane, e.lanes)
                & _lt_const(offset, e.depth) for e in self.amap]
        self.core_r = Cat(*hits).any()
        self.core_w = Cat(*(h for h, e in zip(hits, self.amap, strict=True)
                            if e.writable)).any()
        # Timing: the address checks are many LUT levels deep (the region, lane and
        # offset compares), so they go into registers (``read_ok``/``write_ok``: the
        # checks of the address ``lo`` held in the previous clock) that the FSM acts on.
        self.read_ok = Signal()
        self.write_ok = Signal()
        m.d.sync += [self.read_ok.eq(self.is_reg | (self.hi_zero & self.core_r)),
                     self.write_ok.eq((self.is_reg & (lo[:3] == 0))
                                      | (self.hi_zero & self.core_w))]

    # ------------------------------------------------------------ byte checks
    def _byte_checks(self, c):
        """``bad_q``: a WRITE's value byte checked in the previous clock has bits set
        over its target's width (``vmask``: the allowed bits of the byte at ``k``)."""
        m = self.m
        # Timing: ``cur`` comes straight out of a block RAM (slow clock-to-out), so the
        # allowed bits of the byte at ``k`` wait in a register (``vmask``, loaded a clock
        # ahead), ``byte_bad`` is one AND-OR level after the RAM and goes into a
        # register (``bad_q``) that the FSM acts on a clock later.  Byte 0 of a word
        # allows all 8 bits for both targets (``host_data_bits >= 32``), so the value
        # for ``k == 0`` does not depend on the (next) word's target.
        self.mask_core = mask_core = _masks(c.host_data_bits)
        mask_reg = _masks(32)
        assert mask_core[0] == mask_reg[0] == 0xFF
        self.vmask = Signal(8)
        self.vmask_next = Array(Mux(self.is_reg, mask_reg[(j + 1) % 8], mask_core[(j + 1) % 8])
                                for j in range(8))
        self.byte_bad = (self.cur & ~self.vmask) != 0
        if self.fast:  # the byte and its mask a clock later: each check a clock later
            self.cur_q = Signal(8)
            self.vmask_q = Signal(8)
            m.d.sync += [self.cur_q.eq(self.cur), self.vmask_q.eq(self.vmask)]
            self.byte_bad = (self.cur_q & ~self.vmask_q) != 0
        # the byte checked in the previous clock has bits set over the width
        self.bad_q = Signal()
        self.primed = Signal()   # R_VALIDATE: ``read_ok`` is a word's check

    # ------------------------------------------------- gathered field checks
    def _field_checks(self, engine):
        """The checks of the fields of a gathered header or event (``cnt_zero``,
        ``cnt_big``, ``w_bad``, ``hi_set``, ``ev_ok``) and the fields of an event and
        of the core's output record."""
        m, c, sh = self.m, engine.config, self.sh
        self.ev_index = sh[32:48]
        self.ev_value = sh[48:64]

        # Timing: the checks of a gathered field come from flip-flops.  Every check
        # state directly follows its gather, whose last clock shifts ``cur`` in, so
        # the checks are computed each clock on ``sh_in`` (``sh`` after a shift) and
        # registered: in a check state they are the checks of ``sh``.  ``fast``: they
        # are computed on ``sh`` itself, and a clock of their own (the state
        # ``{check state}_WAIT``, see ``gather``) comes between the gather and the
        # check state.
        self.cnt_zero = Signal()   # the count field (sh[48:64]) is 0
        self.cnt_big = Signal()    # READ: over MAX_PAYLOAD // 8 words
        self.w_bad = Signal()      # WRITE: the count is 0 or disagrees with the payload length
        self.hi_set = Signal()     # sh[56:64] != 0 (RUN: 256 events or more)
        # RUN event: index < max_inputs, value in the signed in_bits range
        self.ev_ok = Signal()
        sh_in = sh if self.fast else Cat(sh[8:], self.cur)
        cnt_in = sh_in[48:64]
        top = sh_in[48 + c.in_bits - 1:64]  # the value's bits from its sign bit up
        m.d.sync += [
            self.cnt_zero.eq(cnt_in == 0),
            self.cnt_big.eq(~_lt_const(cnt_in, MAX_PAYLOAD // 8 + 1)),
            self.w_bad.eq((cnt_in == 0) | (engine.length[:3] != 6)
                          | (engine.length[3:] != cnt_in)),
            self.hi_set.eq(sh_in[56:64] != 0),
            self.ev_ok.eq(_lt_const(sh_in[32:48], c.max_inputs)
                          & ((top == 0) | (top == (1 << len(top)) - 1))),
        ]
        self.rec = engine.core_output.payload.as_value()
        self.rec_kind = engine.core_output.payload.kind

    # ---------------------------------------------------------------- RESET
    def _reset_counters(self):
        """``state_entries``: the regions RESET zeroes; ``zl``/``za``: the lane and
        word it zeroes next."""
        self.state_entries = state_entries = [e for e in self.amap if e.state]
        self.zl = Signal(range(max([e.lanes for e in state_entries] + [1]) + 1))
        self.za = Signal(range(max([e.depth for e in state_entries] + [1]) + 1))

    # ------------------------------------------------------------ host port
    def _host_port(self, engine):
        """The registers behind the core's host port and ``clear``, and the registered
        read data and ``busy`` of the core."""
        m = self.m
        # Timing: the host port comes from flip-flops only (the core decodes the address
        # into the enables of many registers).  A write is requested a clock ahead in
        # ``host_we_q`` and happens the next clock, while ``lo`` and ``sh`` still hold
        # its address and data (W_NEXT changes ``lo`` only at its end; RESET loads the
        # address of each zeroed word into ``lo``).
        self.host_we_q = Signal()
        self.host_re_q = Signal()  # the same for a read, requested in R_FETCH, made in R_WAIT
        # Timing: the read data are registered before the FSM takes them (the core's
        # read-back multiplexer, e.g. after its counter bank's adder, ends here).
        self.rdata_q = Signal.like(engine.host_rdata)
        self.rvalid_q = Signal()
        m.d.sync += [self.rdata_q.eq(engine.host_rdata), self.rvalid_q.eq(engine.host_rvalid)]
        # Timing: the core's ``busy`` is decoded from its sequencer's state; the FSM acts
        # on it a clock late (``core_busy``).  That is safe: the core turns busy only two
        # clocks after the engine pushes an end marker (RX_EVENT, then RX_OUT, which does
        # not look at it) and stays busy until that step's end-of-step record is out,
        # which the engine takes and writes before it looks again (RX_DRAIN); a fall is
        # seen a clock late.
        self.core_busy = Signal()
        m.d.sync += self.core_busy.eq(engine.core_busy)
        self.clear_q = Signal()  # the same for ``clear``, which resets many of the core's registers
        m.d.sync += [self.host_we_q.eq(0), self.host_re_q.eq(0), self.clear_q.eq(0)]
        m.d.comb += [engine.host_addr.eq(self.lo),
                     engine.host_wdata.eq(self.sh),  # RESET clears ``sh``
                     engine.host_we.eq(self.host_we_q), engine.host_re.eq(self.host_re_q),
                     engine.clear.eq(self.clear_q)]

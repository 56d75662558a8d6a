"""Frame decoder and encoder of the wire protocol (:mod:`spikeforge.contract.framing`): COBS,
CRC-16/CCITT-FALSE and the receive checks, one byte per clock.

:class:`FrameDecoder` takes the received byte stream, undoes COBS on the fly,
writes the frame body into a buffer memory (a write port owned by the parent)
and checks each frame at its 0x00 delimiter in the order of ``framing.py``::

    1. more than MAX_ENCODED_FRAME bytes before the delimiter   TOO_LARGE
       (counted once, then everything up to the next 0x00 is skipped)
    2. malformed COBS (a code byte pointing past the end)       BAD_LENGTH
    3. body shorter than MIN_BODY                               BAD_LENGTH
    4. body longer than MAX_BODY                                TOO_LARGE
    5. the length field disagrees with the bytes received       BAD_LENGTH
    6. the CRC does not match                                   BAD_CRC

A bad frame is dropped and counted; an empty frame (two adjacent delimiters) is
ignored.  A good frame raises ``frame_valid`` (with ``cmd``, ``seq``,
``length`` and ``crc``) and holds it, with ``rx.ready`` low, until the consumer
pulses ``frame_ack``: the body sits at buffer addresses ``0 .. length + 5``.
Received bytes pass one input register (``busy`` high while it holds one), so
a block-RAM FIFO can feed ``rx`` directly.

:class:`FrameEncoder` sends the frame whose body (without the CRC) sits in a
buffer memory at ``0 .. length - 1``: one pass computes the CRC, then COBS
scans each run (up to 254 non-zero bytes) and sends its code byte and its
bytes, then the 0x00 delimiter.  Reads go through a synchronous read port whose
address the encoder drives one clock ahead (``mem_addr``), ``mem_data`` being
the byte at the previous clock's address.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...contract.framing import MAX_BODY, MAX_ENCODED_FRAME, MIN_BODY
from ...contract.protocol import Command

__all__ = ["crc16_update", "FrameDecoder", "FrameEncoder", "BODY_ADDR_BITS"]

BODY_ADDR_BITS = (MAX_BODY + 2).bit_length()
"""Address width of a frame body buffer (MAX_BODY bytes plus room)."""

COUNTER_BITS = 32


def _crc16_matrix():
    """Per output bit of one CRC-16/CCITT-FALSE byte step, the input bits XORed into it:
    ``("c", i)`` for bit i of the CRC, ``("b", i)`` for bit i of the byte (the step is linear)."""
    value = [{("c", i)} for i in range(16)]
    for i in range(8):
        value[8 + i] = value[8 + i] ^ {("b", i)}
    for _ in range(8):
        top = value[15]
        value = [set()] + value[:15]
        for i in (0, 5, 12):  # 0x1021
            value[i] = value[i] ^ top
    return [sorted(bits) for bits in value]


_CRC16_MATRIX = _crc16_matrix()


def _lt_const(x, limit: int):
    """``x < limit`` for an unsigned ``x`` and a constant, as plain logic (no carry chain)."""
    if limit <= 0:
        return Const(0)
    if limit >= 1 << len(x):
        return Const(1)
    result = Const(0)  # equal so far: not less
    for b in range(len(x)):  # from the LSB up; the higher bits decide
        result = (~x[b] | result) if (limit >> b) & 1 else (~x[b] & result)
    return result


def crc16_update(crc, byte):
    """CRC-16/CCITT-FALSE (poly 0x1021, MSB first) of ``crc`` after one more ``byte``:
    an Amaranth expression, one XOR tree per bit."""
    out = []
    for bits in _CRC16_MATRIX:
        terms = [crc[i] if kind == "c" else byte[i] for kind, i in bits]
        x = terms[0]
        for t in terms[1:]:
            x = x ^ t
        out.append(x)
    return Cat(*out)


class FrameDecoder(wiring.Component):
    """Receive side of the framing layer (see the module docstring).

    Ports: ``rx`` (8-bit stream in, ``ready`` low while a good frame is
    pending); ``wr_addr``/``wr_data``/``wr_en`` drive the body buffer's write
    port; ``frame_valid`` (a good frame is in the buffer), ``frame_ack`` (one
    clock: the consumer is done with it), ``cmd``, ``seq``, ``length`` (payload
    bytes) and ``crc`` of the pending frame; the counters ``frames_ok``,
    ``drop_bad_crc``, ``drop_bad_length``, ``drop_too_large`` (32 bits, wrap);
    ``busy``: a received byte waits in the input register.
    Latency: a byte taken from ``rx`` is decoded the next clock (from the input
    register); ``frame_valid`` rises 2 clocks after the delimiter is taken.
    """

    def __init__(self):
        super().__init__({
            "rx": In(stream.Signature(8)),
            "wr_addr": Out(BODY_ADDR_BITS),
            "wr_data": Out(8),
            "wr_en": Out(1),
            "frame_valid": Out(1),
            "frame_ack": In(1),
            "cmd": Out(8),
            "seq": Out(8),
            "length": Out(16),
            "crc": Out(16),
            "session": In(16),
            "open_form": Out(1),
            "frames_ok": Out(COUNTER_BITS),
            "drop_bad_crc": Out(COUNTER_BITS),
            "drop_bad_length": Out(COUNTER_BITS),
            "drop_too_large": Out(COUNTER_BITS),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # Timing: the input register.  ``rx`` may come straight out of a block RAM
        # (the UART FIFO) whose clock-to-out leaves no time for the frame checks and
        # the counter enables; with the byte (and whether it is 0x00) in flip-flops
        # the decoder's logic starts at a register.
        in_valid = Signal()
        in_byte = Signal(8)
        in_zero = Signal()
        in_one = Signal()
        take = Signal()     # the byte in the input register is decoded this clock
        m.d.comb += [take.eq(in_valid & ~self.frame_valid), self.busy.eq(in_valid),
                     self.rx.ready.eq(~in_valid | ~self.frame_valid)]
        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += [in_valid.eq(1), in_byte.eq(self.rx.payload),
                         in_zero.eq(self.rx.payload == 0), in_one.eq(self.rx.payload == 1)]
        with m.Elif(take):
            m.d.sync += in_valid.eq(0)

        enc_count = Signal(range(MAX_ENCODED_FRAME + 1))
        code_left = Signal(8, init=1)   # 1 + the data bytes left in the COBS run
        # Timing: ``enc_count == MAX_ENCODED_FRAME`` and ``code_left == 1`` kept in
        # flip-flops, updated with the counters (they decide ``emit``, which enables
        # the body registers and the end-of-frame checks).
        enc_max = Signal()
        code_one = Signal(init=1)
        last_full = Signal()            # the last code byte was 0xFF: no zero after its run
        first = Signal(init=1)
        discarding = Signal()
        body_len = Signal(range(MAX_ENCODED_FRAME + 1))
        # Timing: the compares of ``body_len`` kept in flip-flops, set with it.
        lt2 = Signal(init=1)        # body_len < 2
        short = Signal(init=1)      # body_len < MIN_BODY
        fits = Signal(init=1)       # body_len < MAX_BODY
        over = Signal()             # body_len > MAX_BODY
        enc_zero = Signal(init=1)   # enc_count == 0
        crc = Signal(16, init=0xFFFF)
        older = Signal(8)   # the last two body bytes: the received CRC at the end
        newer = Signal(8)
        len_field = Signal(16)

        with m.If(self.frame_ack):
            m.d.sync += self.frame_valid.eq(0)

        emit = Signal()
        emit_byte = Signal(8)
        m.d.comb += [
            self.wr_addr.eq(body_len),
            self.wr_data.eq(emit_byte),
            self.wr_en.eq(emit & fits),
        ]
        # Timing: the end-of-frame checks of the length field and the CRC come from
        # registers, computed with each body byte for the body so far: ``len_eq`` is
        # "the length field agrees" (the field is complete once 4 bytes are in, and the
        # check only counts for bodies of MIN_BODY bytes or more), ``crc_eq`` "the CRC
        # matches the last two bytes".
        # ``crc`` is the CRC of the body but its last two bytes, and ``upd`` (timing: a
        # register, so the CRC check is a compare only) is ``crc`` updated with
        # ``older``, once two bytes are in.
        len_eq = Signal()
        crc_eq = Signal()       # the open form's CRC (session 0) matches
        crc_eq_s = Signal()     # the current session's form matches
        is_open = Signal()      # the frame is an OPEN
        upd = Signal(16)
        crc_diff = Signal(16)   # computed XOR received: 0 in the open form, s in session s
        m.d.comb += crc_diff.eq(upd ^ Cat(newer, emit_byte))
        with m.If(emit):
            m.d.sync += [body_len.eq(body_len + 1), older.eq(newer), newer.eq(emit_byte),
                         lt2.eq(body_len == 0), short.eq(_lt_const(body_len, MIN_BODY - 1)),
                         fits.eq(_lt_const(body_len, MAX_BODY - 1)),
                         over.eq(~_lt_const(body_len, MAX_BODY)),
                         len_eq.eq(len_field == body_len - (MIN_BODY - 1)),
                         crc_eq.eq(crc_diff == 0),
                         crc_eq_s.eq(crc_diff == self.session),
                         upd.eq(crc16_update(Mux(lt2, 0xFFFF, upd), newer))]
            with m.If(~lt2):
                m.d.sync += crc.eq(upd)
            with m.Switch(body_len):
                with m.Case(0):
                    m.d.sync += [self.cmd.eq(emit_byte), is_open.eq(emit_byte == Command.OPEN)]
                with m.Case(1):
                    m.d.sync += self.seq.eq(emit_byte)
                with m.Case(2):
                    m.d.sync += len_field[:8].eq(emit_byte)
                with m.Case(3):
                    m.d.sync += len_field[8:].eq(emit_byte)

        def restart():
            m.d.sync += [enc_count.eq(0), enc_max.eq(0), code_left.eq(1), code_one.eq(1),
                         first.eq(1), body_len.eq(0), crc.eq(0xFFFF), lt2.eq(1), short.eq(1),
                         fits.eq(1), over.eq(0), enc_zero.eq(1)]

        byte = in_byte
        with m.If(take):
            with m.If(in_zero):
                restart()
                m.d.sync += discarding.eq(0)
                with m.If(discarding | enc_zero):
                    pass
                with m.Elif(~code_one):
                    m.d.sync += self.drop_bad_length.eq(self.drop_bad_length + 1)
                with m.Elif(short):
                    m.d.sync += self.drop_bad_length.eq(self.drop_bad_length + 1)
                with m.Elif(over):
                    m.d.sync += self.drop_too_large.eq(self.drop_too_large + 1)
                with m.Elif(~len_eq):
                    m.d.sync += self.drop_bad_length.eq(self.drop_bad_length + 1)
                with m.Elif(~crc_eq_s & ~(crc_eq & is_open)):
                    m.d.sync += self.drop_bad_crc.eq(self.drop_bad_crc + 1)
                with m.Else():
                    m.d.sync += [self.frames_ok.eq(self.frames_ok + 1),
                                 self.frame_valid.eq(1), self.length.eq(len_field),
                                 self.crc.eq(crc), self.open_form.eq(~crc_eq_s)]
            with m.Elif(discarding):
                pass
            with m.Elif(enc_max):
                restart()
                m.d.sync += [discarding.eq(1),
                             self.drop_too_large.eq(self.drop_too_large + 1)]
            with m.Else():
                m.d.sync += [enc_count.eq(enc_count + 1), enc_zero.eq(0),
                             enc_max.eq(enc_count == MAX_ENCODED_FRAME - 1)]
                with m.If(code_one):
                    m.d.sync += [first.eq(0), last_full.eq(byte == 0xFF), code_left.eq(byte),
                                 code_one.eq(in_one)]
                    with m.If(~first & ~last_full):
                        m.d.comb += [emit.eq(1), emit_byte.eq(0)]
                with m.Else():
                    m.d.sync += [code_left.eq(code_left - 1), code_one.eq(code_left == 2)]
                    m.d.comb += [emit.eq(1), emit_byte.eq(byte)]
        return m


class FrameEncoder(wiring.Component):
    """Send side of the framing layer (see the module docstring).

    Ports: ``start`` (one clock, while ``busy`` is low) with ``length`` (body
    bytes without the CRC, 4 .. MAX_BODY - 2) sends the body held in the
    buffer; ``busy`` is high from the clock after ``start`` until the delimiter
    has been taken; ``mem_addr`` (out) / ``mem_data`` (in) read the buffer
    through a synchronous read port; ``tx`` is the 8-bit output stream.
    Cost: ``length + 2`` clocks of CRC, then per COBS run about twice its bytes
    plus 4 clocks (scan, then send one byte per clock while ``tx.ready``).
    ``tx`` comes from a one-byte output register (a byte is offered the clock
    after the encoder reaches it; ``busy`` stays high until the register is empty).
    """

    def __init__(self):
        super().__init__({
            "start": In(1),
            "length": In(BODY_ADDR_BITS),
            "session": In(16),
            "busy": Out(1),
            "mem_addr": Out(BODY_ADDR_BITS),
            "mem_data": In(8),
            "tx": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        n = Signal(BODY_ADDR_BITS)          # body bytes without the CRC
        n1 = Signal(BODY_ADDR_BITS)         # n + 1
        total = Signal(BODY_ADDR_BITS)      # n + 2: with the CRC
        ptr = Signal(BODY_ADDR_BITS)        # the byte ``cur`` is read from
        ptr_next = Signal(BODY_ADDR_BITS)
        run_start = Signal(BODY_ADDR_BITS)
        code = Signal(8)                    # the run's COBS code: 1 + its non-zero bytes
        full = Signal()                     # the run is 254 bytes (code 0xFF): no zero after it
        crc = Signal(16)
        session = Signal(16)                # the reply's form: its CRC is XOR this
        m.d.comb += [ptr_next.eq(ptr), self.mem_addr.eq(ptr_next)]
        m.d.sync += ptr.eq(ptr_next)
        inc = ptr + 1
        at_end = ptr == total
        # The byte at ``ptr``: the buffer, then the CRC (little-endian).
        cur = Signal(8)
        m.d.comb += cur.eq(Mux(ptr == n, crc[:8], Mux(ptr == n1, crc[8:], self.mem_data)))
        # Timing: the run scan tests bytes one clock late, from registers: ``zq`` is
        # "the byte at the previous ``ptr`` is 0x00", ``endq`` "the previous ``ptr`` was
        # the end"; ``primed`` says the scan has read one byte of the run already.
        zq = Signal()
        endq = Signal()
        primed = Signal()
        m.d.sync += [zq.eq(cur == 0), endq.eq(at_end)]

        # Timing: the output byte register.  ``tx`` comes from flip-flops, and the FSM
        # loads the next byte whenever the register is empty or being taken
        # (``space``), so the sender's ``ready`` reaches only the load enables and the
        # read pointer.
        out_valid = Signal()
        out_byte = Signal(8)
        space = Signal()
        m.d.comb += [self.tx.valid.eq(out_valid), self.tx.payload.eq(out_byte),
                     space.eq(~out_valid | self.tx.ready), self.busy.eq(out_valid)]
        with m.If(self.tx.ready):
            m.d.sync += out_valid.eq(0)

        def put(byte):
            m.d.sync += [out_valid.eq(1), out_byte.eq(byte)]

        with m.FSM():
            with m.State("IDLE"):
                # Timing: the pointer rests at 0, so ``start`` (decoded from the
                # engine's state) does not reach the read address.
                m.d.comb += ptr_next.eq(0)
                with m.If(self.start):
                    m.d.sync += [n.eq(self.length), crc.eq(0xFFFF), session.eq(self.session)]
                    m.next = "CRC"
            with m.State("CRC"):
                # One pass over the body; then ``n1`` and ``total`` from the pointer.
                m.d.comb += [self.busy.eq(1), ptr_next.eq(inc)]
                with m.If(ptr == n):
                    m.d.sync += n1.eq(inc)
                    m.next = "CRC_END"
                with m.Else():
                    m.d.sync += crc.eq(crc16_update(crc, self.mem_data))
            with m.State("CRC_END"):
                m.d.comb += [self.busy.eq(1), ptr_next.eq(0)]
                m.d.sync += [total.eq(inc), run_start.eq(0), code.eq(1),
                             crc.eq(crc ^ session)]
                m.next = "SCAN"
            with m.State("SCAN"):
                # The pointer runs one byte ahead of the test (CODE reloads it from
                # ``run_start``); the first clock of a run only reads its first byte.
                m.d.comb += [self.busy.eq(1), ptr_next.eq(inc)]
                m.d.sync += primed.eq(1)
                with m.If(primed):
                    with m.If(endq | zq | (code == 0xFF)):
                        m.d.sync += primed.eq(0)
                        m.next = "CODE"
                    with m.Else():
                        m.d.sync += code.eq(code + 1)
            with m.State("CODE"):
                m.d.comb += self.busy.eq(1)
                with m.If(space):
                    put(code)
                    m.d.sync += full.eq(code == 0xFF)
                    m.d.comb += ptr_next.eq(run_start)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(code == 1):
                    m.next = "RUN_END"
                with m.Else():
                    with m.If(space):
                        put(cur)
                        m.d.sync += code.eq(code - 1)
                        m.d.comb += ptr_next.eq(inc)
            with m.State("RUN_END"):
                # The run is sent: the end, or skip its zero (none after a full run).
                # Timing: a clock after DATA, where ``ptr`` held still, so the end
                # test is ``endq`` (a register) and not a compare on the way to the
                # buffer's read address.
                m.d.comb += self.busy.eq(1)
                with m.If(endq):
                    m.next = "DELIM"
                with m.Else():
                    with m.If(~full):
                        m.d.comb += ptr_next.eq(inc)
                    m.d.sync += run_start.eq(ptr_next)
                    m.next = "SCAN"
            with m.State("DELIM"):
                m.d.comb += self.busy.eq(1)
                with m.If(space):
                    put(0)
                    m.next = "IDLE"
        return m

"""The NPU core's generics and register map: the contract between the gateware,
the network compiler, the test harnesses and the host.  Pure Python (no
Amaranth), so the host and the tests can talk to a core without building one.

Memory layout (``P`` lanes; lane ``p`` owns neurons ``i = p, p + P, ...`` of
every layer, so row ``k`` of a layer is neurons ``k*P .. k*P + P - 1``):

* layer table, one entry per layer in execution order (fields: ``LAYER_FIELDS``)
* edge table, one entry per edge; a layer's edges are contiguous from ``ebase``
* per lane, neuron parameters and membranes at ``sbase + k`` (layer's row k)
* per lane, weights: edge ``e`` from a source of ``nsrc`` outputs into a layer
  with ``rows`` rows keeps ``W[k*P + p, j]`` at ``wbase + k*nsrc + j``, so an
  input event ``j`` reads one weight per lane at the same address
  (one "weight row" across the lanes per row ``k``).

Host address space: ``(region << (LANE_BITS + ADDR_BITS)) | (lane << ADDR_BITS) | addr``
with the regions in :class:`Region`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

from ..golden.integer import Format, bits_for

__all__ = ["CoreConfig", "Region", "LAYER_FIELDS", "EDGE_FIELDS", "PARAM_FIELDS",
           "LAYER_CHECKS", "EDGE_CHECKS", "describe_fault",
           "RECORD_FIELDS", "SSM_FIELDS", "SIGNED_FIELDS", "OPERANDS", "pack", "unpack",
           "RESET_CODES", "COUNTERS", "input_word", "MapEntry", "address_map", "FitError"]

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
COUNTERS = ("syn_cycles", "neuron_cycles", "events", "spikes")
"""Per-layer counters, in address order; then the global ``step_cycles`` and ``steps``.

``syn_cycles``: clocks in the synaptic phase (row setup, edge setup, events,
pipeline drain); ``neuron_cycles``: clocks in the neuron phase, including waits
for the spike router; ``events``: events delivered to the layer (each counted
once, so synaptic operations = events x layer size); ``spikes``: spikes routed.
``step_cycles``: busy clocks; ``steps``: completed steps."""


class FitError(ValueError):
    """A network that does not fit the core's generics (names the exceeded limit)."""


class Region(enum.IntEnum):
    LAYERS = 0
    EDGES = 1
    PARAMS = 2
    MEMBRANES = 3
    WEIGHTS = 4
    COUNTERS = 5
    CONTROL = 6
    # Only in a core with an SSM unit (``CoreConfig.has_ssm``; 4 region bits):
    SSM_LAYERS = 7
    SSM_STATE = 8
    SSM_PARAMS = 9


WIDTH_LIMITS = {"w_bits": (2, 16), "u_bits": (4, 32), "frac_bits": (0, 16),
                "in_bits": (2, 16), "acc_bits": (4, 48), "s_bits": (2, 32), "y_bits": (2, 32)}
"""The widths of a :class:`~spikeforge.golden.integer.Format` the core takes."""


def _ubits(n: int) -> int:
    return max(1, (n - 1).bit_length()) if n > 1 else 1


@dataclass(frozen=True)
class CoreConfig:
    """Generics of the NPU core.  Validated on construction.

    ``fmt``: the integer model's widths the core computes in (a
    :class:`~spikeforge.golden.integer.Format`; ``fmt.acc_bits`` is the core's
    synaptic accumulator, checked against ``max_fanin``), within what the
    hardware takes: ``w_bits`` 2..16, ``u_bits`` 4..32, ``frac_bits`` 0..16,
    ``in_bits`` 2..16, ``acc_bits`` 4..48, ``s_bits`` and ``y_bits`` 2..32; the
    widths are also readable as attributes of the config (``config.w_bits``).
    ``lanes``: P.  ``max_layers``, ``max_edges``: table sizes.  ``max_neurons``:
    neurons per layer; ``max_inputs``: input vector size; ``max_fanin``: the
    largest number of events one row can accumulate (sum over a layer's edges
    of their source sizes), used to check ``acc_bits``.  ``neuron_depth``: neuron
    slots per lane (all layers).  ``weight_depth``: weights per lane.
    ``input_kind``: ``spike`` (events carry 1) or ``int`` (events carry signed
    ``in_bits`` values).

    SSM unit (all four sizes 0, the default: no SSM unit, and the core is
    exactly the LIF-only core): ``ssm_max_n`` / ``ssm_max_m``: the largest
    state ``n x m``; ``ssm_depth``: state cells per lane (lane ``p`` holds the
    columns ``p, p + P, ...``; a layer needs ``n * ceil(m / P)``);
    ``ssm_param_depth``: words of the SSM parameter memory (constant ``k``,
    ``v``, ``q`` and the decay table; a layer needs ``2n + m + rows * n``).
    ``fmt.y_bits`` (the SSM outputs) is at most ``in_bits`` and ``u_bits``: a
    ``y`` travels as an event value and in a record.
    """

    lanes: int = 8
    fmt: Format = Format()
    max_layers: int = 4
    max_edges: int = 8
    max_neurons: int = 256
    max_inputs: int = 256
    max_fanin: int = 256
    neuron_depth: int = 128
    weight_depth: int = 4096
    event_fifo_depth: int = 4
    ssm_max_n: int = 0
    ssm_max_m: int = 0
    ssm_depth: int = 0
    ssm_param_depth: int = 0

    def __post_init__(self):
        def check(name, lo, hi, owner=self, prefix=""):
            value = getattr(owner, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"CoreConfig.{prefix}{name} must be an integer in {lo}..{hi}, "
                                 f"not {value!r}")
        check("lanes", 1, 64)
        if not isinstance(self.fmt, Format):
            raise ValueError(f"CoreConfig.fmt must be a Format, not {self.fmt!r}")
        for name, (lo, hi) in WIDTH_LIMITS.items():
            check(name, lo, hi, owner=self.fmt, prefix="fmt.")
        check("max_layers", 1, 64)
        check("max_edges", 1, 256)
        check("max_neurons", 1, 1 << 16)
        check("max_inputs", 1, 1 << 16)
        check("max_fanin", 1, 1 << 20)
        check("neuron_depth", 1, 1 << 20)
        check("weight_depth", 1, 1 << 24)
        check("event_fifo_depth", 2, 1024)
        worst = self.max_fanin * (1 << (self.w_bits - 1)) * (1 << (self.in_bits - 1))
        need = bits_for(-worst, worst)
        if need > self.acc_bits:
            raise ValueError(
                f"CoreConfig.fmt.acc_bits={self.acc_bits} is too narrow: a fan-in of "
                f"{self.max_fanin} events of {self.in_bits}-bit values times {self.w_bits}-bit "
                f"weights needs {need} bits")
        if self.max_neurons > self.neuron_depth * self.lanes:
            raise ValueError(f"CoreConfig.max_neurons={self.max_neurons} exceeds the "
                             f"{self.neuron_depth * self.lanes} neuron slots "
                             f"(neuron_depth x lanes)")
        check("ssm_max_n", 0, 1 << 10)
        check("ssm_max_m", 0, 1 << 10)
        check("ssm_depth", 0, 1 << 20)
        check("ssm_param_depth", 0, 1 << 20)
        sizes = ("ssm_max_n", "ssm_max_m", "ssm_depth", "ssm_param_depth")
        if any(getattr(self, name) for name in sizes):
            for name in sizes:
                if getattr(self, name) == 0:
                    raise ValueError(f"CoreConfig.{name} must be positive in a core with an "
                                     f"SSM unit, not 0")
            for name in ("ssm_max_n", "ssm_max_m"):
                if getattr(self, name) > self.max_neurons:
                    raise ValueError(f"CoreConfig.{name}={getattr(self, name)} exceeds "
                                     f"max_neurons={self.max_neurons}")
            if self.y_bits > min(self.in_bits, self.u_bits):
                raise ValueError(f"CoreConfig.fmt.y_bits={self.y_bits} exceeds in_bits="
                                 f"{self.in_bits} or u_bits={self.u_bits} (a y travels as an "
                                 f"event value and in an output record)")
            cells = self.ssm_max_n * -(-self.ssm_max_m // self.lanes)
            if self.ssm_depth < cells:
                raise ValueError(f"CoreConfig.ssm_depth={self.ssm_depth} cannot hold a "
                                 f"{self.ssm_max_n} x {self.ssm_max_m} state ({cells} cells "
                                 f"per lane)")
            words = 3 * self.ssm_max_n + self.ssm_max_m
            if self.ssm_param_depth < words:
                raise ValueError(f"CoreConfig.ssm_param_depth={self.ssm_param_depth} cannot "
                                 f"hold the parameters of a {self.ssm_max_n} x "
                                 f"{self.ssm_max_m} layer ({words} words)")
            if self.host_data_bits > 64:
                raise ValueError(f"CoreConfig: a table entry needs {self.host_data_bits} "
                                 f"bits, more than the 64 of the host port")
        if self.host_addr_bits > 31:
            raise ValueError(f"CoreConfig: host addresses need {self.host_addr_bits} bits, "
                             f"more than 31")

    @property
    def has_ssm(self) -> bool:
        """Whether the core has an SSM unit."""
        return self.ssm_max_n > 0

    @property
    def region_bits(self) -> int:
        return 4 if self.has_ssm else 3

    @property
    def param_bits(self) -> int:
        """Width of an SSM parameter word: a signed ``in_bits`` constant or a Q0.F decay."""
        return max(self.in_bits, self.frac_bits + 1)

    @property
    def ssm_acc_bits(self) -> int:
        """The readout accumulator: ``ssm_max_n`` products of a state and a ``q``."""
        worst = max(1, self.ssm_max_n) * (1 << (self.s_bits - 1)) * (1 << (self.in_bits - 1))
        return bits_for(-worst, worst)

    # Derived widths.
    @property
    def idx_bits(self) -> int:
        return _ubits(max(self.max_neurons, self.max_inputs))

    @property
    def count_bits(self) -> int:
        return (max(self.max_neurons, self.max_inputs)).bit_length()

    @property
    def rows_bits(self) -> int:
        return (math.ceil(self.max_neurons / self.lanes)).bit_length()

    @property
    def layer_bits(self) -> int:
        return _ubits(self.max_layers)

    @property
    def src_bits(self) -> int:
        return _ubits(self.max_layers + 1)

    @property
    def edge_bits(self) -> int:
        return _ubits(self.max_edges)

    @property
    def sbase_bits(self) -> int:
        return _ubits(self.neuron_depth)

    @property
    def wbase_bits(self) -> int:
        return _ubits(self.weight_depth)

    @property
    def lane_bits(self) -> int:
        return _ubits(self.lanes)

    @property
    def addr_bits(self) -> int:
        bits = max(self.sbase_bits, self.wbase_bits, self.layer_bits, self.edge_bits,
                   _ubits(len(COUNTERS) * self.max_layers + 2))
        if self.has_ssm:
            bits = max(bits, _ubits(self.ssm_depth), _ubits(self.ssm_param_depth))
        return bits

    @property
    def host_addr_bits(self) -> int:
        return self.region_bits + self.lane_bits + self.addr_bits

    @property
    def host_data_bits(self) -> int:
        tables = [LAYER_FIELDS, EDGE_FIELDS, PARAM_FIELDS]
        if self.has_ssm:
            tables.append(SSM_FIELDS)
        widths = [sum(w for _, w in fields(self)) for fields in tables]
        return max(32, *widths)

    def address(self, region: Region, lane: int = 0, addr: int = 0) -> int:
        return (int(region) << (self.lane_bits + self.addr_bits)) | (lane << self.addr_bits) \
            | addr

    def to_dict(self) -> dict:
        """The config as one flat dict, the widths beside the other generics: the form
        of the device's INFO reply and of its configuration hash."""
        fields = dataclasses.asdict(self)
        return {**fields.pop("fmt"), **fields}

    @classmethod
    def from_dict(cls, fields: dict) -> CoreConfig:
        """The config of a :meth:`to_dict` dict (e.g. from JSON)."""
        widths = {k: v for k, v in fields.items() if k in WIDTH_LIMITS}
        return cls(fmt=Format(**widths), **{k: v for k, v in fields.items() if k not in widths})

    # The integer model's widths, as attributes of the config.
    w_bits = property(lambda self: self.fmt.w_bits)
    u_bits = property(lambda self: self.fmt.u_bits)
    frac_bits = property(lambda self: self.fmt.frac_bits)
    in_bits = property(lambda self: self.fmt.in_bits)
    acc_bits = property(lambda self: self.fmt.acc_bits)
    s_bits = property(lambda self: self.fmt.s_bits)
    y_bits = property(lambda self: self.fmt.y_bits)


@dataclass(frozen=True)
class MapEntry:
    """One region of the host address space: ``lanes`` x ``depth`` words.

    Valid addresses are ``config.address(region, lane, addr)`` for
    ``lane < lanes`` and ``addr < depth``; ``writable`` is False for read-only
    regions; ``state`` marks the regions a device RESET zeroes (neuron and SSM
    state)."""

    region: Region
    lanes: int
    depth: int
    writable: bool = True
    state: bool = False


def address_map(c: CoreConfig) -> list[MapEntry]:
    """The core's host address space, region by region (the device's memory map:
    the command engine refuses any other address, see ``docs/device.md``)."""
    return [
        MapEntry(Region.LAYERS, 1, c.max_layers),
        MapEntry(Region.EDGES, 1, c.max_edges),
        MapEntry(Region.PARAMS, c.lanes, c.neuron_depth),
        MapEntry(Region.MEMBRANES, c.lanes, c.neuron_depth, state=True),
        MapEntry(Region.WEIGHTS, c.lanes, c.weight_depth),
        MapEntry(Region.COUNTERS, 1, len(COUNTERS) * c.max_layers + 2, writable=False),
        MapEntry(Region.CONTROL, 1, 1),
    ] + ([
        MapEntry(Region.SSM_LAYERS, 1, c.max_layers),
        MapEntry(Region.SSM_STATE, c.lanes, c.ssm_depth, state=True),
        MapEntry(Region.SSM_PARAMS, 1, c.ssm_param_depth),
    ] if c.has_ssm else [])


def LAYER_FIELDS(c: CoreConfig):  # noqa: N802 - a table, named like one
    return [("size", c.count_bits), ("rows", c.rows_bits), ("sbase", c.sbase_bits),
            ("ebase", c.edge_bits), ("ecount", c.edge_bits + 1), ("spiking", 1),
            ("reset", 2), ("v_reset", c.u_bits), ("emit_values", 1)] \
        + ([("ssm", 1)] if c.has_ssm else [])


LAYER_CHECKS = (("rows", "rows is 0"), ("rows_max", "rows is over ceil(max_neurons / lanes)"),
                ("size", "size is over rows x lanes"),
                ("sbase", "sbase is not below neuron_depth"),
                ("edges", "ecount is over max_edges"))
"""The checks of a LIF layer's entry a RUN makes as it reaches it (the sequencer's
``fault_info`` bits, in this order), each with what its failure means."""
EDGE_CHECKS = (("src", "src is over max_layers"),
               ("nsrc", "nsrc is over max(max_inputs, max_neurons)"),
               ("wbase", "wbase is not below weight_depth"))
"""The checks of an edge entry, likewise."""


def describe_fault(message: str) -> str | None:
    """The device's BAD_TABLE message in words (``layer 0: rows is 0``), or None if it
    is not one: three characters ``0x40 | bits`` holding five bits each, low first,
    of the sequencer's ``fault_info`` (bit 0 the kind, 0 a layer and 1 an edge, bits
    1 .. 8 the entry's index, then one bit per failed check)."""
    if len(message) != 3 or any(not 0x40 <= ord(ch) < 0x60 for ch in message):
        return None
    info = sum((ord(ch) & 0x1F) << 5 * i for i, ch in enumerate(message))
    index, failed = info >> 1 & 0xFF, info >> 9
    kind, checks = ("edge", EDGE_CHECKS) if info & 1 else ("layer", LAYER_CHECKS)
    what = [text for i, (_, text) in enumerate(checks) if failed >> i & 1]
    return f"{kind} {index}: {', '.join(what) or 'no check named'}"


OPERANDS = ("k", "v", "q")


def SSM_FIELDS(c: CoreConfig):  # noqa: N802
    """An SSM layer's entry (region ``SSM_LAYERS``, at the layer's index).

    ``n``; ``ssbase``: its first state word per lane (row ``i``, column ``j`` at
    ``ssbase + i * cols + j // P`` in lane ``j % P``); ``pbase``: its parameters
    (constant ``k`` at ``pbase``, ``v`` at ``pbase + n``, ``q`` at
    ``pbase + n + m``, the decay table at ``pbase + 2n + m``, row ``g`` of it at
    ``+ g * n``); per operand its source (0 = input, ``1 + l`` = layer ``l``),
    recurrent flag and ``const`` flag; the gate source and flag, ``selective``,
    ``y_shift``; ``skip``: every decay is 1.0, so the pass visits only the rows
    with a nonzero ``k_i`` or ``q_i`` (the others keep their state and add 0)."""
    fields = [("n", c.ssm_max_n.bit_length()), ("ssbase", _ubits(c.ssm_depth)),
              ("pbase", _ubits(c.ssm_param_depth))]
    for op in OPERANDS:
        fields += [(f"{op}_src", c.src_bits), (f"{op}_rec", 1), (f"{op}_const", 1)]
    return fields + [("g_src", c.src_bits), ("g_rec", 1), ("selective", 1), ("y_shift", 6),
                     ("skip", 1)]


def EDGE_FIELDS(c: CoreConfig):  # noqa: N802
    return [("src", c.src_bits), ("recurrent", 1), ("wbase", c.wbase_bits),
            ("nsrc", c.count_bits)]


def PARAM_FIELDS(c: CoreConfig):  # noqa: N802
    return [("alpha", c.frac_bits + 1), ("theta", c.u_bits), ("bias", c.u_bits)]


def RECORD_FIELDS(c: CoreConfig):  # noqa: N802
    """An output record: ``kind`` 0 = spike event, 1 = neuron value, 2 = end of step."""
    return [("kind", 2), ("layer", c.layer_bits), ("index", c.idx_bits), ("spike", 1),
            ("value", c.u_bits)]


SIGNED_FIELDS = {"v_reset", "bias", "value"}


def input_word(c: CoreConfig, index: int, value: int, end: int) -> int:
    """One input-stream payload word: ``index | value << idx_bits | end << (idx + in)``."""
    if not 0 <= index < (1 << c.idx_bits):
        raise ValueError(f"input index {index} does not fit {c.idx_bits} bits")
    lo, hi = -(1 << (c.in_bits - 1)), (1 << (c.in_bits - 1)) - 1
    if not lo <= value <= hi:
        raise ValueError(f"input value {value} does not fit signed {c.in_bits} bits")
    return index | (value & ((1 << c.in_bits) - 1)) << c.idx_bits \
        | end << (c.idx_bits + c.in_bits)


def pack(fields, values: dict) -> int:
    """Pack field values (LSB first, signed fields two's complement) into an int."""
    word, shift = 0, 0
    for name, width in fields:
        v = int(values[name])
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if name in SIGNED_FIELDS \
            else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            raise FitError(f"field {name}={v} does not fit {width} bits")
        word |= (v & ((1 << width) - 1)) << shift
        shift += width
    return word


def unpack(fields, word: int) -> dict:
    out, shift = {}, 0
    for name, width in fields:
        v = (word >> shift) & ((1 << width) - 1)
        if name in SIGNED_FIELDS and v >> (width - 1):
            v -= 1 << width
        out[name] = v
        shift += width
    return out

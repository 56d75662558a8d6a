"""The NPU core's generics and memory image: the contract between the gateware,
its test harnesses and the host.  Pure Python (no Amaranth), so the host and
the tests can compile a network without building hardware.

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

import enum
import math
from dataclasses import dataclass

from ..golden.integer import INPUT, Format, Network, bits_for

__all__ = ["CoreConfig", "Region", "LAYER_FIELDS", "EDGE_FIELDS", "PARAM_FIELDS",
           "RECORD_FIELDS", "Image", "compile_network", "FitError", "pack", "unpack",
           "RESET_CODES", "COUNTERS", "input_word", "MapEntry", "address_map"]

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


def _ubits(n: int) -> int:
    return max(1, (n - 1).bit_length()) if n > 1 else 1


@dataclass(frozen=True)
class CoreConfig:
    """Generics of the NPU core.  Validated on construction.

    ``lanes``: P.  ``max_layers``, ``max_edges``: table sizes.  ``max_neurons``:
    neurons per layer; ``max_inputs``: input vector size; ``max_fanin``: the
    largest number of events one row can accumulate (sum over a layer's edges
    of their source sizes), used to check ``acc_bits``.  ``neuron_depth``: neuron
    slots per lane (all layers).  ``weight_depth``: weights per lane.
    ``input_kind``: ``spike`` (events carry 1) or ``int`` (events carry signed
    ``in_bits`` values).
    """

    lanes: int = 8
    w_bits: int = 8
    u_bits: int = 16
    frac_bits: int = 8
    in_bits: int = 8
    acc_bits: int = 24
    max_layers: int = 4
    max_edges: int = 8
    max_neurons: int = 256
    max_inputs: int = 256
    max_fanin: int = 256
    neuron_depth: int = 128
    weight_depth: int = 4096
    event_fifo_depth: int = 4

    def __post_init__(self):
        def check(name, lo, hi):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"CoreConfig.{name} must be an integer in {lo}..{hi}, "
                                 f"not {value!r}")
        check("lanes", 1, 64)
        check("w_bits", 2, 16)
        check("u_bits", 4, 32)
        check("frac_bits", 0, 16)
        check("in_bits", 2, 16)
        check("acc_bits", 4, 48)
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
                f"CoreConfig.acc_bits={self.acc_bits} is too narrow: a fan-in of "
                f"{self.max_fanin} events of {self.in_bits}-bit values times {self.w_bits}-bit "
                f"weights needs {need} bits")
        if self.max_neurons > self.neuron_depth * self.lanes:
            raise ValueError(f"CoreConfig.max_neurons={self.max_neurons} exceeds the "
                             f"{self.neuron_depth * self.lanes} neuron slots "
                             f"(neuron_depth x lanes)")

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
        return max(self.sbase_bits, self.wbase_bits, self.layer_bits, self.edge_bits,
                   _ubits(len(COUNTERS) * self.max_layers + 2))

    @property
    def host_addr_bits(self) -> int:
        return 3 + self.lane_bits + self.addr_bits

    @property
    def host_data_bits(self) -> int:
        widths = [sum(w for _, w in fields(self)) for fields in
                  (LAYER_FIELDS, EDGE_FIELDS, PARAM_FIELDS)]
        return max(32, *widths)

    def address(self, region: Region, lane: int = 0, addr: int = 0) -> int:
        return (int(region) << (self.lane_bits + self.addr_bits)) | (lane << self.addr_bits) \
            | addr

    def fmt(self) -> Format:
        return Format(w_bits=self.w_bits, u_bits=self.u_bits, frac_bits=self.frac_bits,
                      in_bits=self.in_bits, acc_bits=self.acc_bits)


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
    ]


def LAYER_FIELDS(c: CoreConfig):  # noqa: N802 - a table, named like one
    return [("size", c.count_bits), ("rows", c.rows_bits), ("sbase", c.sbase_bits),
            ("ebase", c.edge_bits), ("ecount", c.edge_bits + 1), ("spiking", 1),
            ("reset", 2), ("v_reset", c.u_bits), ("emit_values", 1)]


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


@dataclass
class Image:
    """What to write into the core for one network: ``writes`` is a list of
    ``(host address, data)``; ``layer_index`` maps layer names to table indices."""

    config: CoreConfig
    writes: list[tuple[int, int]]
    num_layers: int
    layer_index: dict[str, int]
    sbase: dict[str, int]

    @property
    def reset_writes(self) -> list[tuple[int, int]]:
        """The writes that zero every membrane (with a clear: a fresh state)."""
        shift = self.config.lane_bits + self.config.addr_bits
        return [(addr, 0) for addr, _ in self.writes if addr >> shift == Region.MEMBRANES]


def compile_network(net: Network, config: CoreConfig) -> Image:
    """Map an integer network onto the core's memories, or raise :class:`FitError`."""
    c = config
    fmt = net.fmt
    for name in ("w_bits", "u_bits", "frac_bits", "in_bits"):
        if getattr(fmt, name) != getattr(c, name):
            raise FitError(f"the network's {name}={getattr(fmt, name)} differs from the "
                           f"core's {name}={getattr(c, name)}")
    if any(layer.kind != "lif" for layer in net.layers):
        raise FitError("this core runs LIF layers only (the SSM unit is not built yet)")
    if len(net.layers) > c.max_layers:
        raise FitError(f"{len(net.layers)} layers exceed max_layers={c.max_layers}")
    if net.input_size > c.max_inputs:
        raise FitError(f"input size {net.input_size} exceeds max_inputs={c.max_inputs}")
    edges = sum(len(layer.inputs) for layer in net.layers)
    if edges > c.max_edges:
        raise FitError(f"{edges} edges exceed max_edges={c.max_edges}")
    index = {layer.name: i for i, layer in enumerate(net.layers)}
    writes, sbase, ebase, wbase = [], {}, 0, 0
    next_sbase = 0
    P = c.lanes
    for i, layer in enumerate(net.layers):
        if layer.size > c.max_neurons:
            raise FitError(f"layer {layer.name!r} has {layer.size} neurons, more than "
                           f"max_neurons={c.max_neurons}")
        fanin = sum(net.source_size(p.source) for p in layer.inputs)
        if fanin > c.max_fanin:
            raise FitError(f"layer {layer.name!r} has a fan-in of {fanin}, more than "
                           f"max_fanin={c.max_fanin}")
        need = net.required_acc_bits(layer)
        if need > c.acc_bits:
            raise FitError(f"layer {layer.name!r} needs {need} accumulator bits, more than "
                           f"acc_bits={c.acc_bits}")
        rows = -(-layer.size // P)
        if next_sbase + rows > c.neuron_depth:
            raise FitError(f"the layers need more than neuron_depth={c.neuron_depth} "
                           f"neuron slots per lane")
        sbase[layer.name] = next_sbase
        for k in range(rows):
            for p in range(P):
                n = k * P + p
                if n < layer.size:
                    params = {"alpha": int(layer.alpha[n]), "theta": int(layer.theta[n]),
                              "bias": int(layer.bias[n])}
                else:  # padding neuron: never spikes, never read
                    params = {"alpha": 0, "theta": (1 << (c.u_bits - 1)) - 1, "bias": 0}
                writes.append((c.address(Region.PARAMS, p, next_sbase + k),
                               pack(PARAM_FIELDS(c), params)))
                writes.append((c.address(Region.MEMBRANES, p, next_sbase + k), 0))
        for proj in layer.inputs:
            nsrc = net.source_size(proj.source)
            if wbase + rows * nsrc > c.weight_depth:
                raise FitError(f"the weights need more than weight_depth={c.weight_depth} "
                               f"words per lane")
            src = 0 if proj.source == INPUT else 1 + index[proj.source]
            writes.append((c.address(Region.EDGES, 0, ebase),
                           pack(EDGE_FIELDS(c), {"src": src, "recurrent": int(proj.recurrent),
                                                 "wbase": wbase, "nsrc": nsrc})))
            w = proj.weight.tolist()
            for k in range(rows):
                for p in range(P):
                    n = k * P + p
                    for j in range(nsrc):
                        value = w[n][j] if n < layer.size else 0
                        writes.append((c.address(Region.WEIGHTS, p, wbase + k * nsrc + j),
                                       value & ((1 << c.w_bits) - 1)))
            wbase += rows * nsrc
            ebase += 1
        writes.append((c.address(Region.LAYERS, 0, i), pack(LAYER_FIELDS(c), {
            "size": layer.size, "rows": rows, "sbase": next_sbase,
            "ebase": ebase - len(layer.inputs), "ecount": len(layer.inputs),
            "spiking": int(layer.spiking), "reset": RESET_CODES[layer.reset],
            "v_reset": layer.v_reset, "emit_values": int(layer.name == net.output)})))
        next_sbase += rows
    writes.append((c.address(Region.CONTROL, 0, 0), len(net.layers)))
    return Image(config=c, writes=writes, num_layers=len(net.layers), layer_index=index,
                 sbase=sbase)

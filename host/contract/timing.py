"""The timing profiles: how the core and the link are pipelined, one per kind of
part.  Pure Python; every gateware component that has two forms reads the
profile, and each board names its own (``boards.defs.Board.timing``)."""

from __future__ import annotations

import enum

__all__ = ["TimingProfile", "COMPACT", "PIPELINED", "watchdog_clocks"]


class TimingProfile(enum.Enum):
    """How the core and the link are pipelined: a profile per kind of part, read
    by every component.  No profile changes what the core computes, the records
    it sends or their order, so the profile is not part of :class:`CoreConfig`
    (nor of the device's configuration hash); the pipelined core's synaptic
    phase takes three clocks more per row (the counters show them) and its host
    reads take six clocks instead of one.

    ``COMPACT`` (iCE40-class parts, the simulated board): the fewest flip-flops.
    Memory reads are used in the clock they arrive, host reads take one clock,
    a row costs ``events + 2 * edges + 5`` synaptic clocks.

    ``PIPELINED`` (big ECP5 parts, where a block RAM's clock-to-out is more than
    half of a 100 MHz clock and a lane's logic can sit far from its memories):
    every memory read is registered before use, control signals that reach every
    lane come from a copy per group of 4 lanes, the synaptic and leak products
    leave their DSP blocks into fabric registers, the fire stage takes no
    subtraction (a second accumulator of ``total - theta``), the spike router's
    lane multiplexer is split at a register per group, host requests are
    registered and reads return through a register per lane and per group (six
    clocks), the counters' increments are registered, and the command engine
    checks each gathered field a clock after reading it.  A row costs ``events +
    2 * edges + 8`` synaptic clocks.  ``docs/boards.md`` has the design and the
    measured clocks.
    """

    COMPACT = "compact"
    PIPELINED = "pipelined"

    @property
    def pipelined(self) -> bool:
        return self is TimingProfile.PIPELINED

    @property
    def host_read_latency(self) -> int:
        """Clocks from the core's ``host_re`` to ``host_rvalid``."""
        return 6 if self.pipelined else 1

    @property
    def row_overhead(self) -> int:
        """Synaptic clocks of a LIF row besides one per event and two per edge."""
        return 8 if self.pipelined else 5


COMPACT = TimingProfile.COMPACT
PIPELINED = TimingProfile.PIPELINED


def watchdog_clocks(config, timing: TimingProfile) -> int:
    """The command engine's bound on one step (``docs/device.md``, Watchdog): twice
    the most clocks a step of any network that fits ``config`` can keep the engine
    waiting for the core (pushing the step's events, then taking its records).

    A LIF layer has at most ``R = ceil(max_neurons / lanes)`` rows; a row walks at
    most ``max_edges`` edges of at most ``n = max(max_neurons, max_inputs)`` events
    (``n + 2`` clocks each), its ``row_overhead``, FIRE and NEURON, and waits at
    most ``lanes + 4`` clocks for the spike router; an SSM layer (when the core
    has the unit) gathers at most ``3 n + 8`` operand items and passes at most
    ``ssm_max_n + 4`` rows per chunk of ``lanes`` columns, ``R`` chunks; a layer
    adds 4 clocks, a step 16, its input events at most 256.
    """
    c = config
    rows = -(-c.max_neurons // c.lanes)
    n = max(c.max_neurons, c.max_inputs)
    lif = rows * (c.max_edges * (n + 2) + timing.row_overhead + 2 + c.lanes + 4)
    ssm = (3 * n + 8) + rows * (c.ssm_max_n + 4 + c.lanes + 4) if c.has_ssm else 0
    return 2 * (c.max_layers * (max(lif, ssm) + 4) + 16 + 256)

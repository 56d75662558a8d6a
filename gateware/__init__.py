"""The NPU gateware (Amaranth), hardware only: the core (:mod:`.core`) with its
lane datapath (:mod:`.lane`), spike router (:mod:`.router`), counter bank
(:mod:`.counters`) and multipliers (:mod:`.dsp`); the device's link, command
engine and SoC top (:mod:`.link`).  The contracts it implements are in
:mod:`spikeforge.contract`, its simulators in :mod:`spikeforge.sim`.
See ``docs/gateware.md``."""

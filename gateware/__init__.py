"""The NPU gateware (Amaranth): the core (:mod:`.core`) with its lane datapath
(:mod:`.lane`) and spike router (:mod:`.router`), the memory layout and network
compiler (:mod:`.layout`), generated Verilog (:mod:`.rtl`), and the simulator
drivers (:mod:`.pysim`, :mod:`.vsim`, :mod:`.verilator`, :mod:`.cocotb_tb`); the
device's link, command engine and SoC top (:mod:`.link`) and the simulated
board (:mod:`.simboard`).
See ``docs/gateware.md``."""

"""The simulators of the gateware: Verilog of the reference configurations and
lint (:mod:`.rtl`), the Amaranth-simulator driver (:mod:`.pysim`), Verilator
builds (:mod:`.verilator`, :mod:`.vsim` with its C++ testbench), the cocotb
testbenches (:mod:`.cocotb_tb`, :mod:`.link_tb`), the simulated board
(:mod:`.simboard`: a Verilator build of the SoC serving the wire protocol on a
TCP port), the RTL evaluation and benchmarks (:mod:`.evaluate`, :mod:`.bench`,
:mod:`.link_bench`)."""

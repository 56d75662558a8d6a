"""Boards: definitions (:mod:`.defs`), PLL settings (:mod:`.pll`), the board top
(:mod:`.top`), the iCE40 SPRAM weight memory (:mod:`.mem`), the PCIe XDMA
bridge (:mod:`.pcie`), open-toolchain builds and reports (:mod:`.build`) and
per-board benchmarks (:mod:`.bench`).  See docs/boards.md."""

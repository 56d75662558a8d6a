"""The PCIe transport: the Xilinx XDMA IP in AXI-Stream mode and a bridge from
its 64-bit streams to the SoC's byte streams.

:class:`XDMABridge` instantiates ``xdma_0`` (created in the Vivado project by
:func:`vivado_ip_script`: PCIe Gen2 x4, 64-bit AXI-Stream, user clock 125 MHz)
and converts:

* H2C (host to card): each 64-bit beat's kept bytes (``tkeep``), lowest first,
  leave on ``rx`` one per clock (``tready`` is high while no beat is held);
* C2H (card to host): each byte from ``tx`` becomes one beat with ``tkeep = 1``;
  ``tlast`` is set on a ``0x00`` byte (the wire protocol's frame delimiter), so
  the XDMA driver's ``read()`` returns at the end of every frame.

``aclk`` / ``aresetn`` / ``link_up`` are the IP's user clock, reset and link
state; the board top runs the ``sync`` domain on ``aclk``.  Nothing here runs
a vendor tool: ``spikeforge build --board litefury`` writes the project files.
"""

from __future__ import annotations

from amaranth import Const, Instance, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["XDMABridge", "vivado_ip_script"]


def vivado_ip_script(lanes: int = 4, speed: str = "5.0_GT/s") -> str:
    """Vivado Tcl creating ``xdma_0`` (inserted after the sources are read)."""
    return "\n".join([
        "create_ip -name xdma -vendor xilinx.com -library ip -module_name xdma_0",
        "set_property -dict [list "
        f"CONFIG.pl_link_cap_max_link_width {{X{lanes}}} "
        f"CONFIG.pl_link_cap_max_link_speed {{{speed}}} "
        "CONFIG.axi_data_width {64_bit} CONFIG.axisten_freq {125} "
        "CONFIG.xdma_axi_intf_mm {AXI_Stream} CONFIG.xdma_rnum_chnl {1} "
        "CONFIG.xdma_wnum_chnl {1}] [get_ips xdma_0]",
        "generate_target all [get_ips xdma_0]",
        "synth_ip [get_ips xdma_0]",
    ])


class XDMABridge(wiring.Component):
    """XDMA AXI-Stream <-> byte streams (see the module docs).

    Ports: ``rx`` Out(stream of 8 bits), ``tx`` In(stream of 8 bits), ``aclk``,
    ``aresetn``, ``link_up`` Out(1); ``pcie`` is the platform's ``pcie`` resource
    (requested by the board top with ``dir="-"``), given at construction.
    """

    def __init__(self, *, pcie=None):
        self.pcie = pcie
        super().__init__({
            "rx": Out(stream.Signature(8)),
            "tx": In(stream.Signature(8)),
            "aclk": Out(1), "aresetn": Out(1), "link_up": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        h2c_data, h2c_keep = Signal(64), Signal(8)
        h2c_valid, h2c_ready = Signal(), Signal()
        c2h_data, c2h_keep = Signal(64), Signal(8)
        c2h_valid, c2h_ready, c2h_last = Signal(), Signal(), Signal()
        pcie_ports = {}
        if self.pcie is not None:
            sys_clk = Signal()
            m.submodules.refclk = Instance("IBUFDS_GTE2", i_I=self.pcie.clk.p,
                                           i_IB=self.pcie.clk.n, i_CEB=Const(0),
                                           o_O=sys_clk)
            pcie_ports = dict(i_sys_clk=sys_clk, i_sys_rst_n=self.pcie.rst.io,
                              i_pci_exp_rxp=self.pcie.rx.p, i_pci_exp_rxn=self.pcie.rx.n,
                              o_pci_exp_txp=self.pcie.tx.p, o_pci_exp_txn=self.pcie.tx.n)
        m.submodules.xdma = Instance(
            "xdma_0", **pcie_ports,
            o_axi_aclk=self.aclk, o_axi_aresetn=self.aresetn, o_user_lnk_up=self.link_up,
            o_m_axis_h2c_tdata_0=h2c_data, o_m_axis_h2c_tkeep_0=h2c_keep,
            o_m_axis_h2c_tvalid_0=h2c_valid, i_m_axis_h2c_tready_0=h2c_ready,
            i_s_axis_c2h_tdata_0=c2h_data, i_s_axis_c2h_tkeep_0=c2h_keep,
            i_s_axis_c2h_tlast_0=c2h_last, i_s_axis_c2h_tvalid_0=c2h_valid,
            o_s_axis_c2h_tready_0=c2h_ready,
        )
        # H2C: hold one beat, send its kept bytes lowest first.
        beat, keep = Signal(64), Signal(8)
        pick = Signal(3)
        for i in reversed(range(8)):
            with m.If(keep[i]):
                m.d.comb += pick.eq(i)
        m.d.comb += [
            h2c_ready.eq(keep == 0),
            self.rx.valid.eq(keep != 0),
            self.rx.payload.eq(beat.word_select(pick, 8)),
        ]
        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += keep.eq(keep & ~(Const(1, 8) << pick))
        with m.If(h2c_valid & h2c_ready):
            m.d.sync += [beat.eq(h2c_data), keep.eq(h2c_keep)]
        # C2H: one byte per beat; tlast on the frame delimiter.
        m.d.comb += [
            c2h_data.eq(self.tx.payload), c2h_keep.eq(1), c2h_valid.eq(self.tx.valid),
            c2h_last.eq(self.tx.payload == 0), self.tx.ready.eq(c2h_ready),
        ]
        return m

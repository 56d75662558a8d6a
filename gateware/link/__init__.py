"""The device's link: UART PHY (:mod:`.uart`), framing (:mod:`.frame`), command
engine (:mod:`.engine`) and the SoC top with its AXI-Stream wrapper
(:mod:`.soc`).  The contract is ``docs/device.md``, the wire protocol
(:mod:`spikeforge.contract.protocol`, ``.framing``, ``.payloads``) and
:mod:`spikeforge.contract.info`."""

from .engine import CommandEngine
from .frame import FrameDecoder, FrameEncoder, crc16_update
from .soc import AXIStreamLink, SoC
from .uart import UARTPHY, UARTRx, UARTTx, uart_divisor

__all__ = ["CommandEngine", "FrameDecoder", "FrameEncoder", "crc16_update", "SoC", "AXIStreamLink",
           "UARTPHY", "UARTRx", "UARTTx", "uart_divisor"]

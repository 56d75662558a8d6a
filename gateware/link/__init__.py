"""The device's link: UART PHY (:mod:`.uart`), framing (:mod:`.frame`), command
engine (:mod:`.engine`) and the SoC top with its AXI-Stream wrapper
(:mod:`.soc`).  The contract is ``docs/device.md`` and ``host/protocol.py``."""

from .engine import ENGINE_BASE, REGISTERS, CommandEngine, config_hash, device_info
from .frame import FrameDecoder, FrameEncoder, crc16_update
from .soc import AXIStreamLink, SoC
from .uart import UARTPHY, UARTRx, UARTTx, uart_divisor

__all__ = ["ENGINE_BASE", "REGISTERS", "CommandEngine", "config_hash", "device_info",
           "FrameDecoder", "FrameEncoder", "crc16_update", "SoC", "AXIStreamLink",
           "UARTPHY", "UARTRx", "UARTTx", "uart_divisor"]

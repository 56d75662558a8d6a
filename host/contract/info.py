"""What a device says about itself: the INFO reply (``docs/device.md``), the
configuration hash the host checks a model against, and the command engine's
registers in the device's address space."""

from __future__ import annotations

import hashlib
import json

from .config import CoreConfig

__all__ = ["ENGINE_BASE", "REGISTERS", "MAX_INFO", "config_hash", "device_info"]

ENGINE_BASE = 0x8000_0000
"""Word address of the engine registers (``REGISTERS`` in order)."""

REGISTERS = ("FLAGS", "FRAMES_OK", "DROP_BAD_CRC", "DROP_BAD_LENGTH", "DROP_TOO_LARGE",
             "ERRORS", "REPLAYS", "STEPS")

MAX_INFO = 1024


def config_hash(config: CoreConfig) -> str:
    """First 16 hex digits of the SHA-256 of the config's JSON (sorted keys, no spaces)."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def device_info(config: CoreConfig, *, link: str = "stream", clock_hz: int | None = None,
                baud: int | None = None) -> bytes:
    """The INFO reply: UTF-8 JSON describing the device (``docs/device.md``)."""
    from .. import __version__

    if not isinstance(config, CoreConfig):
        raise TypeError(f"config must be a CoreConfig, not {config!r}")
    if link not in ("stream", "uart"):
        raise ValueError(f"link must be 'stream' or 'uart', not {link!r}")
    info = {"device": "spikeforge", "version": __version__,
            "config": config.to_dict(), "config_hash": config_hash(config),
            "link": link, "clock_hz": clock_hz, "baud": baud, "engine_base": ENGINE_BASE}
    text = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
    if len(text) > MAX_INFO:
        raise ValueError(f"the INFO JSON of {len(text)} bytes is over {MAX_INFO} bytes")
    return text

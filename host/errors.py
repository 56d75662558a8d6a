"""The device runtime's one error family: every failure to reach or use a
device is a :class:`DeviceError` (the CLI maps it to one exit code)."""

from __future__ import annotations

from .contract.protocol import Command, ErrorCode

__all__ = ["DeviceError", "LinkError", "LinkClosed", "DeviceBusy", "DeviceReplyError",
           "VerifyError"]


class DeviceError(Exception):
    """The device could not do what was asked."""


class LinkError(DeviceError):
    """The link failed: it cannot be opened, it closed, or the device stopped
    answering (no reply after every retry)."""


class LinkClosed(LinkError):
    """The other end of the link went away (end of file, connection reset)."""


class DeviceBusy(LinkError):
    """The device serves another client (it answered BUSY and closed the link)."""


class VerifyError(DeviceError):
    """What was read back from the device differs from what was written."""


class DeviceReplyError(DeviceError):
    """The device answered with an ERROR reply; ``.code`` is its ``ErrorCode``."""

    def __init__(self, command: int, code: int, message: str):
        if code == ErrorCode.BAD_TABLE:
            from .contract.config import describe_fault

            message = describe_fault(message) or message
        meaning = f" ({MEANINGS[code]})" if code in MEANINGS else ""
        super().__init__(f"the device refused {command_name(command)}: "
                         f"{_code_name(code)}{meaning}" + (f": {message}" if message else ""))
        self.command, self.code, self.message = command, code, message


MEANINGS = {
    ErrorCode.UNKNOWN_COMMAND: "the device does not know this command",
    ErrorCode.ADDRESS_OUT_OF_RANGE: "an address outside the device's memory map, or a "
                                    "read-only one",
    ErrorCode.BAD_PAYLOAD: "a malformed request, or a value the device's configuration "
                           "cannot take",
    ErrorCode.BUSY: "another client is using the device",
    ErrorCode.TOO_LARGE: "the reply would exceed the frame's payload limit",
    ErrorCode.WATCHDOG: "a step ran past the device's watchdog bound; the core is back at "
                        "its power-on state: load the model again",
    ErrorCode.BAD_TABLE: "a step reached a bad table entry; the core is back at its "
                         "power-on state: load the model again",
}
"""What each ERROR reply code means (the device's error replies carry no text)."""


def command_name(cmd: int) -> str:
    try:
        return Command(cmd).name
    except ValueError:
        return f"command 0x{cmd:02x}"


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"

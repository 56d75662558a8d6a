"""The NPU core (:class:`.top.NPUCore`) and its parts, one module each."""

from .top import NPUCore

__all__ = ["NPUCore"]

"""Argument checks of the gateware components, made before a component exists.

Amaranth warns (``UnusedElaboratable``) about every Elaboratable that is
created and never elaborated, and a component whose ``__init__`` raises is
one.  ``Elaboratable`` registers the object in its ``__new__``, so a
:class:`CheckedComponent` runs its ``check_arguments`` in ``__new__`` first:
arguments it rejects raise before there is an object to warn about.

``check_integers(name=(value, lo), ...)`` raises ``ValueError`` naming the
first argument that is not an integer of at least ``lo`` (``bool`` is not one):
``"{name} must be a positive integer, not {value!r}"`` when ``lo`` is 1, else
``"{name} must be an integer >= {lo}, not {value!r}"``.
``check_core_arguments`` checks what the NPU core is built from (``TypeError``).
"""

from __future__ import annotations

import inspect

from amaranth.lib import wiring

from ..contract.config import CoreConfig
from ..contract.timing import TimingProfile

__all__ = ["CheckedComponent", "check_integers", "check_core_arguments"]


class CheckedComponent(wiring.Component):
    """A component whose constructor arguments are checked before it is created.

    A subclass overrides :meth:`check_arguments`; ``__new__`` calls it with the
    arguments of ``__init__`` (by name, defaults filled in) before Amaranth's
    ``__new__`` makes the object.  A call that does not fit ``__init__``'s
    parameters is left to ``__init__`` to reject, with Python's own message.
    """

    @staticmethod
    def check_arguments(**arguments) -> None:
        """Raise for arguments the component cannot be built from (nothing here)."""

    def __new__(cls, *args, **kwargs):
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        except TypeError:
            pass
        else:
            bound.apply_defaults()
            _self, *names = bound.arguments
            cls.check_arguments(**{name: bound.arguments[name] for name in names})
        # src_loc_at=1: the object's source location is the caller's, not this frame.
        return super().__new__(cls, *args, src_loc_at=1, **kwargs)


def check_integers(**bounds) -> None:
    for name, (value, lo) in bounds.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            kind = "a positive integer" if lo == 1 else f"an integer >= {lo}"
            raise ValueError(f"{name} must be {kind}, not {value!r}")


def check_core_arguments(*, config, weight_memory, timing=None) -> None:
    """The arguments of the NPU core, also for a component that passes them on to it."""
    if not isinstance(config, CoreConfig):
        raise TypeError(f"config must be a CoreConfig, not {config!r}")
    if weight_memory is not None and not callable(weight_memory):
        raise TypeError(f"weight_memory must be None or a callable, not {weight_memory!r}")
    if timing is not None and not isinstance(timing, TimingProfile):
        raise TypeError(f"timing must be None or a TimingProfile, not {timing!r}")

"""The integer-argument check the gateware blocks share.

``check_integers(component, name=(value, lo), ...)`` raises ``ValueError`` naming the
first argument that is not an integer of at least ``lo`` (``bool`` is not one):
``"{name} must be a positive integer, not {value!r}"`` when ``lo`` is 1, else
``"{name} must be an integer >= {lo}, not {value!r}"``.  A ``component`` that fails
its check is never elaborated, so it is told not to warn that it was unused
(``None`` for a plain function).
"""

from __future__ import annotations

__all__ = ["check_integers"]


def check_integers(component, **bounds) -> None:
    for name, (value, lo) in bounds.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            if component is not None:
                component._MustUse__silence = True
            kind = "a positive integer" if lo == 1 else f"an integer >= {lo}"
            raise ValueError(f"{name} must be {kind}, not {value!r}")

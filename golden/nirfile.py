"""Reading NIR files safely, and building graphs, across nir versions (for :mod:`.nirgraph`
and :mod:`.nirexport`): the file is checked before ``nir.read`` allocates anything, and
the spiking nodes written without ``v_reset`` (NIR <= 1.0.4) are found in the file itself."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

from .nirchain import NirError

__all__ = ["new_graph", "read_graph", "legacy_nodes", "MAX_FILE_BYTES", "MAX_ENTRIES",
           "MAX_INPUTS", "SPIKING_KINDS"]

SPIKING_KINDS = ("LIF", "IF", "CubaLIF")
"""The NIR neuron nodes that spike."""


def _no_type_check(fn) -> dict:
    """``{"type_check": False}`` where ``fn`` takes it (nir >= 1.0.5; nir 1.0.4, which
    Sinabs pins, neither takes it nor checks types)."""
    return {"type_check": False} if "type_check" in inspect.signature(fn).parameters else {}


def new_graph(nodes: dict, edges: list, metadata: dict):
    """A ``nir.NIRGraph`` without nir's type inference (our checks name the node)."""
    import nir

    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata,
                        **_no_type_check(nir.NIRGraph))


def read_graph(path) -> object:
    """``nir.read`` with a clear error for a missing or unreadable file."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such NIR file" if not path.exists() else
                       f"{path}: not a regular file")
    _check_sizes(path)
    try:
        # Our own checks name the node; nir's type inference would also add Output
        # nodes for every node without successors.
        return nir.read(str(path), **_no_type_check(nir.read))
    except Exception as exc:  # h5py / nir raise many kinds for a malformed file
        newer = isinstance(exc, TypeError) and "v_reset" in str(exc)
        hint = (f"; the file was written by a newer nir (neurons with v_reset), which this nir "
                f"({getattr(nir, '__version__', '?')}) cannot read: install nir >= 1.0.5"
                if newer else "")
        raise NirError(f"{path}: not a readable NIR file ({type(exc).__name__}: "
                       f"{exc}){hint}") from exc


MAX_FILE_BYTES = 1 << 30
"""The largest NIR file read (1 GiB)."""
MAX_ENTRIES = 1 << 26
"""The most values a NIR file may declare in all its arrays (64 M, 512 MB as float64)."""
MAX_INPUTS = 1 << 20
"""The largest input a graph may declare."""


def _check_sizes(path: Path) -> None:
    """Refuse a file before nir reads it: over :data:`MAX_FILE_BYTES`, declaring
    arrays of more than :data:`MAX_ENTRIES` values in all, or a dataset that declares
    a shape with no data behind it (nir would allocate it)."""
    import h5py

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise NirError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} a NIR file may have")
    declared = []

    def count(name, item) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf":
            declared.append((name, math.prod(item.shape), item.id.get_storage_size()))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(count)
    except (OSError, ValueError):
        return  # not HDF5: read_graph names it
    total = sum(n for _, n, _ in declared)
    if total > MAX_ENTRIES:
        raise NirError(f"{path}: declares {total} values, more than the {MAX_ENTRIES} a NIR "
                       f"file may hold")
    hollow = [(name, n) for name, n, stored in declared if n > 1 and stored == 0]
    if hollow:
        name, n = hollow[0]
        raise NirError(f"{path}: dataset {name!r} declares {n} values but stores none")


def legacy_nodes(path) -> frozenset:
    """The spiking nodes (names as :func:`from_graph` sees them, ``outer.inner``) whose
    entry in the file has no ``v_reset``: written under NIR <= 1.0.4, whose IF, LIF
    and CubaLIF subtract the threshold on a spike (a newer nir fills in zeros)."""
    import h5py

    found = set()

    def walk(group, prefix: str) -> None:
        for key, item in group.get("nodes", {}).items():
            kind = item["type"][()] if "type" in item else b""
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "NIRGraph":
                walk(item, f"{prefix}{key}.")
            elif kind in SPIKING_KINDS and "v_reset" not in item:
                found.add(f"{prefix}{key}")

    try:
        with h5py.File(path, "r") as f:
            walk(f["node"], "")
    except (OSError, KeyError):  # read_graph has already named an unreadable file
        return frozenset()
    return frozenset(found)

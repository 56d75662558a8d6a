"""Reading NIR files safely, and building graphs, across nir versions (for :mod:`.nirgraph`
and :mod:`.nirexport`): the file is checked before ``nir.read`` allocates anything, and
the spiking nodes written without ``v_reset`` (NIR <= 1.0.4) are found in the file itself."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

from .nirchain import NirError

__all__ = ["new_graph", "read_graph", "legacy_nodes", "MAX_FILE_BYTES", "MAX_ENTRIES",
           "MAX_BYTES", "MAX_STRINGS", "MAX_OBJECTS", "MAX_DEPTH", "MAX_INPUTS", "SPIKING_KINDS"]

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


MAX_FILE_BYTES = 1 << 28
"""The largest NIR file read (256 MiB)."""
MAX_ENTRIES = 1 << 23
"""The most values a NIR file may declare in all its datasets (8 M, 64 MB as float64;
an import takes about 50 bytes per weight, so this keeps one under 1 GB)."""
MAX_BYTES = 1 << 27
"""The most bytes a NIR file's datasets may declare in all (values x item size)."""
MAX_STRINGS = 1 << 20
"""The most variable-length strings (node types, edge ends, ...) a NIR file may declare."""
MAX_OBJECTS = 1 << 15
"""The most groups and datasets a NIR file may hold (a 1,500-layer chain has ~15,000)."""
MAX_DEPTH = 64
"""The deepest nesting of HDF5 groups (each nested graph adds two levels)."""
MAX_INPUTS = 1 << 16
"""The largest input a graph may declare (a 2 x 128 x 128 event camera has 32,768)."""


def _check_sizes(path: Path) -> None:
    """Refuse a file before nir reads it (:func:`_check_file`); a file h5py cannot
    open is left for ``nir.read`` to name."""
    import h5py

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise NirError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} a NIR file may have")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError):
        return  # not HDF5: read_graph names it
    try:
        with f:
            _check_file(path, f)
    except NirError:
        raise
    except Exception as exc:  # h5py raises many kinds for a malformed file
        raise NirError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from exc


def _check_file(path: Path, f) -> None:
    """Walk the file's groups iteratively (no recursion, at most :data:`MAX_DEPTH`
    deep and :data:`MAX_OBJECTS` objects) and refuse: a soft or external link (nir
    would follow it: a cycle, or another file such as a FIFO), a dataset whose data
    lives outside the file (external or virtual storage), a dataset that declares
    values but stores none (nir would allocate them from nothing), and declared
    sizes beyond :data:`MAX_ENTRIES` values, :data:`MAX_BYTES` bytes or
    :data:`MAX_STRINGS` strings in all."""
    import h5py

    totals = {"values": 0, "bytes": 0, "strings": 0}
    limits = {"values": MAX_ENTRIES, "bytes": MAX_BYTES, "strings": MAX_STRINGS}
    objects, todo = 0, [(f, "", 1)]
    while todo:
        group, prefix, depth = todo.pop()
        for key in group:
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.SoftLink):
                raise NirError(f"{path}: {name!r} is a soft link to {link.path!r} (not followed)")
            if isinstance(link, h5py.ExternalLink):
                raise NirError(f"{path}: {name!r} is an external link to {link.filename!r} "
                               f"(not followed)")
            if not isinstance(link, h5py.HardLink):
                raise NirError(f"{path}: {name!r} is a {type(link).__name__} (not followed)")
            objects += 1
            if objects > MAX_OBJECTS:
                raise NirError(f"{path}: more than {MAX_OBJECTS} objects (groups and datasets)")
            item = group[key]
            if isinstance(item, h5py.Group):
                if depth >= MAX_DEPTH:
                    raise NirError(f"{path}: groups nested more than {MAX_DEPTH} deep "
                                   f"({name[:60]!r}...)")
                todo.append((item, f"{name}/", depth + 1))
            elif isinstance(item, h5py.Dataset):
                _check_dataset(path, name, item, totals, limits)


def _check_dataset(path: Path, name: str, item, totals: dict, limits: dict) -> None:
    import h5py

    plist = item.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise NirError(f"{path}: dataset {name!r} is a virtual dataset (its data lives in "
                       f"other files; not read)")
    if plist.get_external_count():
        raise NirError(f"{path}: dataset {name!r} keeps its data in an external file "
                       f"(not read)")
    count = 0 if item.shape is None else math.prod(item.shape)
    if count > 1 and item.id.get_storage_size() == 0:
        raise NirError(f"{path}: dataset {name!r} declares {count} values but stores none")
    declared = {"values": count, "bytes": count * item.dtype.itemsize,
                "strings": count if item.dtype.kind == "O" else 0}
    for what, n in declared.items():
        totals[what] += n
        if totals[what] > limits[what]:
            raise NirError(f"{path}: dataset {name!r} ({n} {what}) brings the file to "
                           f"{totals[what]} {what}, more than the {limits[what]} a NIR file "
                           f"may declare")


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

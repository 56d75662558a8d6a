"""spikeforge: spiking and state-space neural networks onto open FPGAs.

The package root is built from ``host/`` (the runtime and the CLI); the
integer golden model and its tools are in :mod:`spikeforge.golden`, the
gateware in :mod:`spikeforge.gateware`.  ``spikeforge.open(url)`` opens a
device (:mod:`spikeforge.device`); ``spikeforge.from_snntorch(module)`` converts an
snnTorch network to the integer model (:mod:`spikeforge.golden.fromtorch`).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "open", "Device", "DeviceError", "from_snntorch"]


def __getattr__(name):
    # The device runtime imports torch: load it on first use, not on ``import spikeforge``.
    if name in ("open", "Device"):
        from . import device

        return getattr(device, name)
    if name == "from_snntorch":
        from .golden.fromtorch import from_snntorch

        return from_snntorch
    if name == "DeviceError":
        from .errors import DeviceError

        return DeviceError
    raise AttributeError(f"module 'spikeforge' has no attribute {name!r}")

"""spikeforge: spiking and state-space neural networks onto open FPGAs.

The package root is built from ``host/`` (the runtime and the CLI); the
integer golden model and its tools are in :mod:`spikeforge.golden`.
"""

__version__ = "0.1.0"

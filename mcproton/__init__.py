"""mcproton: GPU Monte Carlo proton transport for proton therapy (CUDA kernels, with a CPU/OpenMP build
of the same source)."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

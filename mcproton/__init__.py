"""mcproton: GPU Monte Carlo proton transport for proton therapy (CUDA kernels, with a CPU/OpenMP build
of the same source)."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check"]


def check(*args, **kwargs):
    """Independent Monte Carlo check of a plan against its planning-system dose; returns a CheckResult.
    See :func:`mcproton._check.api.check` and docs/check.md (imported on first use)."""
    from ._check.api import check as _check

    return _check(*args, **kwargs)

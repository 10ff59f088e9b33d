"""The check's gamma worker processes are limited by the memory available (audit 25 memory: each is a fresh
interpreter with pymedphys' working chunks and the arrays it is sent, ~0.24 GB at 0.87 M TPS voxels, and one ran per
gamma up to the cores whatever the memory: 0.81 GB for the process tree where the check counted 0.42 GB)."""
from __future__ import annotations

import pytest

from mcproton._check import compare
from mcproton._run import inputs


@pytest.mark.parametrize("available_gb, reserved_gb, want", [(100.0, 0.0, 6), (1.0, 0.0, 3), (1.0, 0.5, 1),
                                                             (0.1, 0.0, 1), (None, 0.0, 6)])
def test_gamma_workers_fit_in_the_memory(monkeypatch, available_gb, reserved_gb, want):
    mem = None if available_gb is None else inputs.Memory(available_gb * 1e9, 0.0, "the test's limit")
    monkeypatch.setattr(inputs, "available_memory", lambda: mem)
    n = 870_000   # the OpenTPS head's TPS grid: 200 MB + 8 grids of 7 MB = 256 MB a worker (0.24 GB measured)
    assert compare.GAMMA_WORKER_MB * 1e6 + compare.GAMMA_WORKER_GRIDS * 8 * n >= 0.24e9
    assert compare.gamma_worker_count(6, n, reserved_gb * 1e9) == want
    assert compare.gamma_worker_count(1, n) == 1   # in this process: no worker to count


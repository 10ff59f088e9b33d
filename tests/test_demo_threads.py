"""``mcproton demo --threads`` and ``OMP_NUM_THREADS`` are checked as a run's thread count before the demo does
anything, and named as the demo names them (the concurrency audit 25, F6 and F7: ``demo --threads 1000`` said
"run.threads = 1000 ..." after the phantom and the plan were made, and the demo has no run.threads)."""
from __future__ import annotations

import pytest


@pytest.fixture
def no_work(monkeypatch):
    """Any work of the demo (its phantom) fails the test: a refusal comes before it."""
    import mcproton.phantoms

    def made(*a, **k):
        raise AssertionError("the demo started its work")

    monkeypatch.setattr(mcproton.phantoms, "make_head_phantom", made)


def test_demo_threads_above_the_limit_is_refused_before_any_work_naming_threads(tmp_path, no_work):
    from mcproton.demo import run_demo
    from mcproton.settings import thread_limit

    n = thread_limit() + 1
    with pytest.raises(ValueError) as ei:
        run_demo(tmp_path / "demo", threads=n, backend="cpu", quiet=True)
    msg = str(ei.value)
    assert msg.startswith(f"--threads = {n} is more than mcproton accepts here") and "run.threads" not in msg, msg
    assert "leave --threads unset" in msg, msg
    assert not (tmp_path / "demo").exists()


def test_demo_with_omp_num_threads_above_the_limit_is_refused_before_any_work(tmp_path, no_work, monkeypatch):
    from mcproton.demo import run_demo

    monkeypatch.setenv("OMP_NUM_THREADS", "100000")
    with pytest.raises(ValueError, match=r"OMP_NUM_THREADS=100000 asks for 100,000 CPU threads"):
        run_demo(tmp_path / "demo", backend="cpu", quiet=True)
    assert not (tmp_path / "demo").exists()

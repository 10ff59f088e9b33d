"""The CPU backend and the process's OpenMP runtime (the Python-API audit, F1 and F7).

F1: a ``multiprocessing`` worker forked (the "fork" start method, Linux's default before Python 3.14) after the
parent ran ``simulate`` on several OpenMP threads hung for ever in its own ``simulate``: the GNU OpenMP runtime is
not fork-safe, and the child's first team of several threads waits for the parent's pool threads, which do not exist
in it.  Such a child now runs on one thread and says why.  The fork is done in a fresh interpreter under a time
limit (its whole process group is killed at the end), so that a regression fails here instead of hanging the suite.

F7: ``simulate(threads=N)`` left the calling thread's OpenMP thread count (that of every other OpenMP library in the
script) at N, and a count the script had set was lost; it is put back after each launch.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import warnings

import pytest

from mcproton import Beam, RunSettings, box_phantom, simulate

FORK_CODE = r"""
import multiprocessing as mp, warnings
import mcproton as mcp

geom = mcp.box_phantom("water", (20, 20, 40), 2.0)

def job(seed):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = mcp.simulate(geom, mcp.Beam.pencil(60.0, position_mm=(0, 0, -1)),
                         mcp.RunSettings(primaries=400, backend="cpu", threads=2, seed=seed))
    return r.primaries, r.device, [str(w.message) for w in rec if "forked" in str(w.message)]

if __name__ == "__main__":
    job(1)   # the parent runs a team of 2 OpenMP threads first
    with mp.get_context("fork").Pool(1) as pool:
        try:
            primaries, device, said = pool.apply_async(job, (2,)).get(timeout=WAIT_S)
        except mp.TimeoutError:
            print("HUNG", flush=True)
            pool.terminate()
            raise SystemExit(3)
    print("DONE", primaries, "|", device, "|", said[0] if said else "NO WARNING", flush=True)
"""

#: seconds the forked worker is given (a 400-primary run takes well under a second; the kernel library is compiled
#: by the parent); the interpreter as a whole gets more
WAIT_S = 120


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_worker_forked_after_a_multithreaded_run_runs_on_one_thread_and_says_why(tmp_path):
    script = tmp_path / "fork_after_team.py"
    script.write_text(FORK_CODE.replace("WAIT_S", str(WAIT_S)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=WAIT_S + 180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the script and its forked worker
        out, err = proc.communicate()
        pytest.fail(f"the fork scenario did not end in {WAIT_S + 180} s:\n{out}\n{err[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # a worker left behind by a failure
        except ProcessLookupError:
            pass
    assert "HUNG" not in out, "the forked worker hung in simulate (OpenMP pool inherited through fork)\n" + err[-3000:]
    assert proc.returncode == 0 and "DONE 400" in out, out + err[-3000:]
    assert "1 OpenMP thread: forked after the parent used 2" in out, out   # the result's device says so
    assert 'multiprocessing.get_context("spawn")' in out and "runs on 1 thread in this process" in out, out


def _omp_max_threads(lib: ctypes.CDLL) -> int:
    return int(lib.omp_get_max_threads())


def test_simulate_puts_back_the_openmp_thread_count_of_the_calling_thread():
    from mcproton._backend import get_backend

    lib = get_backend("cpu", 1)._lib("transport.cu")   # the OpenMP runtime the kernels use (libgomp or libomp)
    geom = box_phantom("water", (20, 20, 40), 2.0)
    beam = Beam.pencil(60.0, position_mm=(0, 0, -1))
    before = _omp_max_threads(lib)
    try:
        for script_limit in (3, 1):   # what a script sets (threadpoolctl, omp_set_num_threads)
            lib.omp_set_num_threads(script_limit)
            for threads in (1, 2, None):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    simulate(geom, beam, RunSettings(primaries=200, backend="cpu", threads=threads, batches=2))
                assert _omp_max_threads(lib) == script_limit, (script_limit, threads)
    finally:
        lib.omp_set_num_threads(before)

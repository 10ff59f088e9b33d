"""Distributed runs on Dask (``pip install 'mcproton[distributed]'``).

The histories [0, N) are cut into the batches of the run's ``BatchPlan`` (chunks of consecutive, disjoint
history indices).  Each chunk is a Dask task that runs on a worker's cached Simulation (built once per worker
process from the job's config, and reused) and returns the chunk's integer tallies.  The client adds the
results *in chunk order* into the same Accumulator as a local run, so the dose (integer sums) is bitwise
independent of the number of workers and of the scheduling, and even the uncertainty (float sums of the
per-batch dose) and the stopping point are the same as a local run of the same config.

Worker identity: each worker builds its Simulation from the config on its own installation and disk, so before
its first chunk it compares its mcproton version, transport kernel source, geometry (hash of the materials,
densities, voxel size and origin), beam and backend with the client's (``job_identity``; the backend is pinned to
the client's, so that ``run.backend = "auto"`` resolves alike) and refuses to run on any difference
(WorkerMismatchError): the client divides the summed tallies by its own voxel masses and labels the result with its
own provenance, so a worker of another install or with another CT at the same path would give a plausible but
wrong dose.

Worker build: each chunk's result names the kernel build of the worker that ran it (checkpoint.kernel_build: the
compiler, options and CPU that decide the bits under -march=native -ffast-math), recorded as a local run's build
(``kernel_build``; workers of several builds: ``kernel_builds``; before 2026-12-07 a --workers run recorded none:
audit 26 interact, F3), and its transport time.  The time to the first chunk's result less its transport is the
workers' start (the task sent, the worker's Simulation built: geometry, beam, kernel compile), not transport: the
run's time limit does not count it, as a local run's kernel build is not counted (nor the batches that faster
workers ran meanwhile; F5).

Worker loss: Dask re-runs the tasks of a lost worker elsewhere.  Results are keyed by chunk (its first history
index); only the first result of a chunk is summed, so nothing is counted twice.  At most a window of
``2 x workers`` chunks is in flight, so the client's memory stays bounded whatever the number of chunks.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import numpy as np

from .streaming import BatchPlan, run_shrinking

_POOL: dict[str, list[Any]] = {}
_POOL_LOCK = threading.Lock()


def _spec_key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def worker_gpu(settings: Any) -> int | None:
    """The GPU this Dask worker uses: ``run.gpu`` if set; else, for the cuda backend, the worker's index modulo
    the GPUs it can see (LocalCluster workers are numbered 0, 1, ...; other names are hashed), so that the
    workers of a multi-GPU machine spread over its GPUs, one each.  Workers started by dask-cuda see only their
    own GPU (CUDA_VISIBLE_DEVICES) and get device 0.  None on the CPU backend."""
    if settings.gpu is not None:
        return int(settings.gpu)
    if settings.backend == "cpu":
        return None
    from .._backend import cuda_available

    if not cuda_available()[0]:
        return None
    from .._backend.cuda import device_count

    s = _worker_name()
    if not s:
        return None
    idx = int(s) if s.isdigit() else int(hashlib.sha256(s.encode()).hexdigest(), 16)
    return idx % max(device_count(), 1)


class WorkerMismatchError(RuntimeError):
    """A Dask worker whose Simulation differs from the client's job (another install, CT, beam or backend)."""


#: job_identity's keys: what differs, and what to do about it
_IDENTITY = {"version": ("another mcproton version", "install the client's mcproton version on every worker"),
             "kernel_hash": ("another transport kernel (source hash)",
                             "install the same mcproton build on every worker"),
             "geometry_hash": ("another geometry", "the phantom/CT the worker reads from the config's paths differs "
                                                   "from the client's: give every worker the same CT files"),
             "beam_hash": ("another beam", "the plan or beam model the worker reads from the config's paths differs "
                                           "from the client's: give every worker the same files"),
             "backend": ("another backend", "set run.backend and make it available on every worker")}


def job_identity(geometry_hash: str, beam: Any, backend: str) -> dict[str, str]:
    """What a worker's Simulation of ``beam`` must share with the client's: the mcproton version, the transport
    kernel's source hash, the geometry hash (checkpoint.geometry_hash), the beam's hash (spots, CDF, total
    protons: checkpoint.beams_hash) and the backend name."""
    from .. import __version__
    from .._kernels.source import source_hash
    from .checkpoint import beams_hash

    return {"version": __version__, "kernel_hash": source_hash("transport.cu"), "geometry_hash": geometry_hash,
            "beam_hash": beams_hash([beam]), "backend": backend}


def _check_identity(sim: Any, expect: dict[str, str]) -> None:
    from .checkpoint import geometry_hash

    got = job_identity(geometry_hash(sim.geometry), sim.beam, sim.backend.name)
    for key, (what, how) in _IDENTITY.items():
        if key in expect and got[key] != expect[key]:
            name = _worker_name() or "(not in a worker)"
            raise WorkerMismatchError(
                f"Dask worker {name} refused: it has {what} than the client ({key} {got[key][:16]} on the worker, "
                f"{str(expect[key])[:16]} on the client), so its tallies would not belong to the client's job; "
                f"{how}")


def _build_sim(spec: dict[str, Any]) -> Any:
    from ..config import build_beams, build_geometry, run_settings
    from .engine import Simulation

    cfg = spec["cfg"]
    settings = run_settings(cfg)
    settings.threads = spec["threads"]
    expect = spec.get("expect") or {}
    if expect.get("backend"):   # the client's resolution of run.backend = "auto", not the worker's
        settings.backend = expect["backend"]
    settings.gpu = worker_gpu(settings)
    sim = Simulation(build_geometry(cfg), build_beams(cfg)[spec["beam"]], settings,
                     beam_index=spec.get("stream", spec["beam"]))
    _check_identity(sim, expect)
    sim.backend.compile()
    return sim


def _acquire(key: str, spec: dict[str, Any]) -> Any:
    with _POOL_LOCK:
        free = _POOL.get(key)
        if free:
            return free.pop()
    return _build_sim(spec)  # one per concurrently running task of this worker process, then reused


def _release(key: str, sim: Any) -> None:
    with _POOL_LOCK:
        _POOL.setdefault(key, []).append(sim)


def _pack(t: dict[str, np.ndarray]) -> dict[str, tuple]:
    if "voxels" in t:   # already a sparse batch (CPU workers: Simulation.run_histories_sparse)
        return {"__sparse__": ("v", t)}
    out = {}
    for k, a in t.items():
        nz = np.flatnonzero(a)
        out[k] = ("s", a.size, nz.astype(np.int64), a[nz]) if 2 * nz.size < a.size else ("d", a)
    return out


def _unpack(p: dict[str, tuple]) -> dict[str, np.ndarray]:
    if "__sparse__" in p:
        return p["__sparse__"][1]
    out = {}
    for k, v in p.items():
        if v[0] == "d":
            out[k] = v[1]
        else:
            a = np.zeros(v[1], np.int64)
            a[v[2]] = v[3]
            out[k] = a
    return out


def _sim_build(sim: Any) -> dict[str, Any]:
    """The kernel build of a worker's Simulation (checkpoint.kernel_build), found once per Simulation."""
    build = getattr(sim, "_mcproton_kernel_build", None)
    if build is None:
        from .checkpoint import kernel_build

        build = sim._mcproton_kernel_build = kernel_build(sim.backend)
    return build


def run_chunk(key: str, spec: dict[str, Any], first: int, n: int
              ) -> tuple[int, int, dict[str, tuple], dict[str, Any]]:
    """Dask task: histories [first, first + n) on this worker's cached Simulation (GPU out-of-memory: the
    chunk is split into smaller launches whose integer tallies are summed, which changes nothing).  Returns the
    chunk's first history, its histories, its packed tallies and ``{"kernel_build": the worker's build, "setup_s":
    the seconds it took to build the Simulation before the chunk (0 for one reused), "transport_s": the seconds of
    its transport}``."""
    key = f"{key}@{_worker_name()}"   # per worker: workers sharing a process (threads) keep their own GPU
    t0 = time.perf_counter()
    sim = _acquire(key, spec)
    try:
        build = _sim_build(sim)
        t1 = time.perf_counter()
        t, _ = run_shrinking(sim, first, n, cap=None)   # each chunk starts whole; an OOM shrink is per chunk
        t2 = time.perf_counter()
    finally:
        _release(key, sim)
    return first, n, _pack(t), {"kernel_build": build, "setup_s": t1 - t0, "transport_s": t2 - t1}


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except Exception:  # noqa: BLE001 - not inside a worker
        return ""


class DaskExecutor:
    """Runs the batches of a plan as Dask tasks and yields their tallies in history order."""

    def __init__(self, client: Any, spec: dict[str, Any], plan: BatchPlan, window: int | None = None,
                 on_result: Callable[[int, int], None] | None = None,
                 on_build: Callable[[dict[str, Any], int], None] | None = None) -> None:
        self.client, self.spec, self.plan = client, spec, plan
        self.key = _spec_key(spec)
        self.job = uuid.uuid4().hex[:12]
        nw = max(1, len(client.scheduler_info().get("workers", {})))
        self.window = window or max(4, 2 * nw)
        self.on_result = on_result  # test hook: called with (first, n) as each chunk's result arrives
        # called with (a worker's kernel build, the first history of its chunk) for each build not seen before
        # among the chunks counted (mcproton._run.job records it: kernel_build, kernel_builds)
        self.on_build = on_build
        self._builds: set[str] = set()
        # the seconds from the first submission to the result of the first chunk (the one yielded first), less its
        # transport on its worker: the workers' start (the task sent and scheduled, the worker's Simulation built:
        # geometry, beam, kernel compile), not transport; stream() leaves it out of the time-limit clock (audit 26
        # interact, F5: with --workers, a 3 s limit was spent on the workers' start, and 2 of 3 beams not run)
        self.startup_s = 0.0
        self._inflight: dict[Any, tuple[int, int]] = {}
        self.cap = None
        self.duplicates = 0

    def results(self, pos: int) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        from distributed import as_completed

        chunks = self.plan.iter_from(pos)
        ac = as_completed()
        started = time.perf_counter()

        def submit_next() -> None:
            nxt = next(chunks, None)
            if nxt is not None:
                first, n = nxt
                fut = self.client.submit(run_chunk, self.key, self.spec, first, n,
                                         key=f"mcproton-{self.job}-{first}")
                self._inflight[fut] = (first, n)
                ac.add(fut)

        for _ in range(self.window):
            submit_next()
        pending: dict[int, tuple[int, dict]] = {}
        done: set[int] = set()
        next_pos = pos
        try:
            while self._inflight:
                fut = next(ac)
                first, n = self._inflight.pop(fut)
                r_first, r_n, packed, info = fut.result()
                fut.release()
                if r_first == pos and pos not in done and pos not in pending:
                    # the first chunk's: the batches that other workers ran while its worker started come with it
                    # (they ran beside that start, which is not counted)
                    self.startup_s = max(0.0, time.perf_counter() - started - float(info.get("transport_s") or 0.0))
                if r_first in done or r_first in pending or r_first < next_pos:
                    self.duplicates += 1  # a chunk counted once only
                else:
                    pending[r_first] = (r_n, packed)
                    self._note_build(info.get("kernel_build"), r_first)
                if self.on_result is not None:
                    self.on_result(r_first, r_n)
                submit_next()
                while next_pos in pending:
                    n, packed = pending.pop(next_pos)
                    done.add(next_pos)
                    yield next_pos, n, _unpack(packed)
                    next_pos += n
        finally:
            self.close()

    def _note_build(self, build: dict[str, Any] | None, first: int) -> None:
        """Call ``on_build`` for a worker's kernel build not seen before by this executor."""
        if build is None:
            return
        text = json.dumps(build, sort_keys=True, default=str)
        if text not in self._builds:
            self._builds.add(text)
            if self.on_build is not None:
                self.on_build(build, first)

    def close(self) -> None:
        if self._inflight:
            futs = list(self._inflight)
            self._inflight.clear()
            try:
                self.client.cancel(futs)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass


#: Seconds to wait for a scheduler to accept a connection and to greet (the Dask handshake), then for the client.
CONNECT_TIMEOUT_S = 10.0
#: Seconds to wait for at least one worker on a scheduler given with --scheduler.
WORKERS_TIMEOUT_S = 60.0
_EXPECTED = ("expected the address of a running Dask scheduler, e.g. tcp://host:8786 (the port the scheduler prints "
             "as 'Scheduler at:'; the dashboard's HTTP port, 8787 by default, is not it)")


def probe_scheduler(address: str, timeout_s: float | None = None) -> None:
    """Check that ``address`` (tcp://host:port or host:port) is a Dask scheduler before the Dask client connects
    (which waits without end for a server that accepts but does not speak its protocol, such as the dashboard's
    HTTP port).  A Dask server writes its handshake as soon as it accepts a connection; RuntimeError naming what
    was expected when nothing answers, the port is closed, or an HTTP server answers.  Other schemes (tls://,
    ucx://, inproc://) are left to Dask."""
    import socket

    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return
    host, _, port_s = rest.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
    except ValueError:
        raise RuntimeError(f"--scheduler {address}: no port; {_EXPECTED}") from None
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        raise RuntimeError(f"--scheduler {address}: cannot connect ({type(exc).__name__}: {exc}); is the scheduler "
                           f"running and reachable? {_EXPECTED}") from None
    with sock:
        sock.settimeout(timeout_s)
        try:
            greeting = sock.recv(64)
        except (socket.timeout, TimeoutError):
            greeting = None
        except OSError as exc:
            raise RuntimeError(f"--scheduler {address}: the connection failed ({type(exc).__name__}: {exc}); "
                               f"{_EXPECTED}") from None
        if greeting:
            if greeting.startswith(b"HTTP/"):
                raise RuntimeError(f"--scheduler {address} is an HTTP server, not a Dask scheduler; {_EXPECTED}")
            return
        http = False
        if greeting is None:   # silent: ask whether it is a web server (the dashboard, a proxy)
            try:
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                http = sock.recv(16).startswith(b"HTTP/")
            except OSError:
                pass
    what = "is an HTTP server (a dashboard?)" if http else \
        f"accepted the connection but sent nothing in {timeout_s:g} s" if greeting is None else "closed the connection"
    raise RuntimeError(f"--scheduler {address} {what}, not a Dask scheduler; {_EXPECTED}")


@contextlib.contextmanager
def _workers_ignore_sigint(processes: bool) -> Iterator[None]:
    """Start the worker processes of a LocalCluster with SIGINT ignored (an ignored signal stays ignored in a child,
    across its exec, and Python then installs no KeyboardInterrupt handler): a Ctrl-C in a terminal goes to every
    process of the group, and the local workers died of it (about 100 lines of Dask tracebacks) while this process
    waited without end for the batches in flight, so no checkpoint was written (the long-runs audit of 2026-12-05,
    F2).  This process stops the run itself (the stop flag of mcproton._run.job: the batch in flight, then a
    checkpoint; the client then cancels the workers' tasks and closes the cluster).  A Ctrl-C during the few seconds
    the workers take to start is lost (ignored here too): press it again.  Only in the main thread (elsewhere the
    signal's handler cannot be set)."""
    if not processes or threading.current_thread() is not threading.main_thread():
        yield
        return
    import signal

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class DaskSession:
    """A Dask client for a job: the given client, one connected to ``scheduler``, or a LocalCluster of
    ``workers`` single-threaded workers."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, client: Any = None,
                 processes: bool = True, log: Callable[[str], None] | None = None, gpu: bool = False) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise RuntimeError("distributed runs need Dask: pip install 'mcproton[distributed]'") from None
        self._own_client = client is None
        self._cluster = None
        self.local = scheduler is None
        self.cluster_kind = "external"
        if client is not None:
            self.client = client
        elif scheduler:
            probe_scheduler(scheduler)
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise RuntimeError(f"--scheduler {scheduler}: could not connect to a Dask scheduler within "
                                   f"{CONNECT_TIMEOUT_S:g} s ({type(exc).__name__}: {exc}); {_EXPECTED}") from None
            try:   # a scheduler without workers would keep the tasks waiting without end
                self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
            except (TimeoutError, OSError):
                self.client.close()
                raise RuntimeError(f"--scheduler {scheduler}: the Dask scheduler has no workers (none joined within "
                                   f"{WORKERS_TIMEOUT_S:g} s); start workers with: dask worker {scheduler}") from None
        else:
            cluster_cls, self.cluster_kind = LocalCluster, "LocalCluster"
            if gpu and processes:
                try:   # dask-cuda pins each worker process to one GPU (CUDA_VISIBLE_DEVICES)
                    from dask_cuda import LocalCUDACluster

                    cluster_cls, self.cluster_kind = LocalCUDACluster, "LocalCUDACluster (dask-cuda)"
                except ImportError:   # without it, worker_gpu() spreads the workers over the GPUs
                    pass
            # silence_logs CRITICAL, not ERROR: a worker whose heartbeat meets the scheduler closing at the end of
            # a run (a Ctrl-C's checkpoint, under load) logged "Failed to communicate with scheduler during
            # heartbeat" with a 30-line traceback (CI, 2026-12-07).  A task's error reaches this process through
            # its future (raised here, with its message), a lost worker as KilledWorker: nothing is hidden.
            with _workers_ignore_sigint(processes):
                self._cluster = cluster_cls(n_workers=int(workers or 1), threads_per_worker=1, processes=processes,
                                            dashboard_address=None, silence_logs=logging.CRITICAL)
                self.client = Client(self._cluster)
                self.client.wait_for_workers(int(workers or 1))
        if log:
            nw = len(self.client.scheduler_info().get("workers", {}))
            log(f"mcproton: distributed run on {nw} Dask worker(s) ({self.client.scheduler.address})")

    def executor(self, cfg: dict[str, Any], beam_index: int, plan: BatchPlan, settings: Any,
                 stream: int | None = None, expect: dict[str, str] | None = None,
                 on_build: Callable[[dict[str, Any], int], None] | None = None) -> DaskExecutor:
        """The executor of beam ``beam_index`` of ``cfg``, on the random stream ``stream`` (default: the beam
        index; JobOptions.first_beam_index).  ``expect``: the client's job_identity of the beam, which each
        worker's Simulation must match (WorkerMismatchError).  ``on_build``: called with each worker kernel build
        not seen before and the first history of its chunk (:class:`DaskExecutor`)."""
        threads = cfg.get("run", {}).get("threads") or None
        if threads is None and self.local:
            threads = 1  # a LocalCluster has one worker per core: one OpenMP thread each
        spec = {"cfg": cfg, "beam": beam_index, "threads": threads,
                "stream": beam_index if stream is None else int(stream), "expect": dict(expect or {})}
        return DaskExecutor(self.client, spec, plan, on_build=on_build)

    def describe(self) -> dict[str, Any]:
        return {"scheduler": str(self.client.scheduler.address), "cluster": self.cluster_kind,
                "workers": len(self.client.scheduler_info().get("workers", {}))}

    def close(self) -> None:
        if self._own_client:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()

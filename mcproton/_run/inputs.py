"""Input checks run before any transport (``mcproton run``): each problem gives one ConfigError naming the key
and the fix.  Complements config.validate_config (keys, types, NaN/inf) and the settings' range checks;
:func:`beam_grid_checks` runs config.check_beam_hits with the beam checks here."""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._io.errors import McprotonRuntimeWarning, ResultRefused, warn
from .._io.rtdose import CLINICAL_RBE

#: Host memory of a run (CLI path) at its peak where every beam's dose covers the whole grid (the most it needs),
#: bytes: a base, per voxel for the first beam (200) and per voxel for each further beam (100).  Measured 2026-12-07
#: (audit 25 memory; peak RSS, VmHWM, of ``mcproton run``, CPU, 1 thread; /tmp/audit25/memfix), after a beam's
#: finish was computed in chunks and the checkpoint streamed to its file (before: 1.9 x the estimate of then,
#: 0.3 GB + 65 + 34 per beam, and runs it passed were lost after the transport):
#:
#: - one beam's transport sets the peak: the 4 integer tallies (32), the running sums (48), a batch's tallies and
#:   its sums' temporaries: a 230 MeV field over the whole grid, 1.0, 4.1 and 8.0 M voxels: 0.26, 0.78 and 1.45 GB
#:   (175 B per voxel above the interpreter's 0.06 GB): :data:`HOST_BYTES_PER_VOXEL`, with a margin;
#: - each finished beam keeps its result (5 float64 at each voxel with dose, and its index: 48) and its sums as the
#:   checkpoint stores them (48 where more than half the grid has dose) until the beams are added:
#:   :data:`HOST_BYTES_PER_VOXEL_AND_BEAM` (a 3-beam plan, tests/data/dicom/RN_headphantom_rs.dcm, on water phantoms
#:   of 3.0 and 2.2 M voxels, 51-89 % of the voxels with dose: 1.03 and 0.65 GB);
#: - the outputs (the beams' sum, HDF5, RT Doses, plot) stay below the transport's peak.
#:
#: The LETd's own uncertainty (2026-12-08: three more float64 running sums, engine.LET_MOMENTS, 24 B per voxel, in the
#: checkpoint's stored form too, and one more result array, 8) raised these: measured 2026-12-08 (this development VM,
#: peak RSS above the interpreter, ``run_job`` with a checkpoint after every batch, CPU, 1 thread; a 230 MeV field of
#: sigma 64 mm over a 160^3 water grid of 1 mm voxels, 89 % of them scored, 5e4 primaries per beam): one beam 174 ->
#: 200 B per voxel, three beams 342 -> 425 (each further beam 84 -> 112): 200 -> 230 and 100 -> 130, the margin as
#: before.
#: A pencil beam on a large CT needs far less (its dose covers a small part: 5.5 GB for one beam on 52 M voxels, where
#: this gives 10.6 GB), so a run is refused only where even the least cannot fit (:func:`host_memory_least`) and
#: warned about where this most is above 80 % of what is available (:func:`check_memory`), as simulate's check.
#: With more than one CPU thread each further private tally slot adds 32 per voxel, 1 GiB in all at most
#: (engine.PRIVATE_TALLY_BYTES), not counted here.
HOST_BYTES_BASE = 0.15e9
HOST_BYTES_PER_VOXEL = 230
HOST_BYTES_PER_VOXEL_AND_BEAM = 130


def host_memory_estimate(n_vox: int, n_beams: int = 1) -> float:
    """Bytes of host memory a run of ``n_beams`` beams on ``n_vox`` voxels needs at its peak where every beam's dose
    covers the whole grid (the most it needs: the measurements above)."""
    return HOST_BYTES_BASE + n_vox * (HOST_BYTES_PER_VOXEL + HOST_BYTES_PER_VOXEL_AND_BEAM * (max(1, n_beams) - 1))


def host_memory_least(n_vox: int) -> float:
    """Bytes of host memory a run on ``n_vox`` voxels needs however little of its grid gets dose: the tallies and
    running sums, allocated and touched whole, whether or not an address-space limit counts what is allocated."""
    # ``mcproton run`` and the check's transport touch every page of the tallies and running sums even for a pencil
    # beam (measured 77 B per voxel for a pencil on 8 M voxels through the CLI, memory audit of 2026-12-07): their
    # least is the allocated figure (a 800^3 grid on 4 GB was accepted at 3 B per voxel and allocated its 41 GB of
    # tallies)
    return n_vox * SIMULATE_BYTES_PER_VOXEL_ALLOCATED


#: Host memory of one ``mcproton.simulate`` call beyond what its caller holds (the geometry), bytes (review of
#: 2026-12-07, R2: simulate had been checked with ``mcproton run``'s figure above, about 4 times what a pencil beam
#: used, and refused grids that ran).  It follows the dose's footprint, not the grid: the arrays of the grid are
#: mapped lazily and take memory only where written (in 2 MB pages where transparent huge pages are on, so a beam
#: takes whole slices of them).  Measured 2026-12-07 (peak RSS of the process, VmHWM reset after the geometry was
#: built; water boxes of 1 mm voxels, CPU, 1 thread):
#:
#: - a 30 MeV pencil beam, a few voxels scored, on 3.4, 15.6 and 27 M voxels: 26, 76 and 114 MB (3.3 to 4.0 B per
#:   voxel: scans of the grid): :data:`SIMULATE_BYTES_PER_VOXEL_MIN`, what any run needs;
#: - a 100 MeV pencil beam (200 primaries) on 8 and 27 M voxels: 0.29 and 0.64 GB (the audit's case: 23 B/voxel;
#:   the tallies and running sums of the slices its dose reaches);
#: - a 230 MeV field over the whole grid, every voxel scored (50 000 and 250 000 primaries), on 1 and 8 M voxels:
#:   0.25 and 1.93 GB, 240 B per voxel: the 4 integer tallies (32), the running sums (48), a batch's copies of its
#:   voxels and the result's arrays at every voxel (finish): :data:`SIMULATE_BYTES_PER_VOXEL_MAX`, the most a run
#:   needs (with more than one CPU thread, each further private tally slot adds 32 per voxel, 1 GiB in all at most:
#:   engine.PRIVATE_TALLY_BYTES);
#: - the tables and the modules a first run imports: 0.01 to 0.06 GB: :data:`SIMULATE_BYTES_BASE`.
#:
#: Under an address-space limit (``ulimit -v``) what is allocated counts, written or not: the tallies and the
#: running sums at once (:data:`SIMULATE_BYTES_PER_VOXEL_ALLOCATED`, a tally slot per CPU thread as above).
#:
#: The LETd's own uncertainty (2026-12-08) adds three float64 running sums (24 B per voxel, touched whole) and one
#: result array (8 at each voxel with dose).  Measured 2026-12-08 (this development VM, peak RSS above the
#: interpreter, CPU, 1 thread, before -> after): a 230 MeV field over 1.0 and 4.1 M voxels of 1 mm, 89-94 % scored
#: (5e4 and 1e5 primaries), ``simulate``: 180 -> 218 and 172 -> 199 B per voxel; a 230 MeV pencil beam (sigma 3 mm,
#: 2000 primaries) on 8 M voxels through ``run_job``: 85 -> 108.  The most 240 -> 280 and the allocated 80 -> 104
#: (32 of tallies, 72 of running sums).
SIMULATE_BYTES_BASE = 0.1e9
SIMULATE_BYTES_PER_VOXEL_MIN = 3
SIMULATE_BYTES_PER_VOXEL_MAX = 280
SIMULATE_BYTES_PER_VOXEL_ALLOCATED = 104
#: bytes per voxel of one CPU tally slot (4 int64 tallies: mcproton/_run/engine.py)
TALLY_SLOT_BYTES_PER_VOXEL = 32


def simulate_memory_estimate(n_vox: int, tally_slots: int = 1, *, allocated: bool = False) -> tuple[float, float]:
    """(least, most) bytes of host memory one ``mcproton.simulate`` call on ``n_vox`` voxels needs at its peak, with
    ``tally_slots`` CPU tally slots (the measurements above): the least, where almost no voxel gets dose; the most,
    where every voxel does.  ``allocated``: under an address-space limit, where what is allocated counts (the least
    is then the tallies and the running sums whole)."""
    extra_slots = max(0, tally_slots - 1) * TALLY_SLOT_BYTES_PER_VOXEL * n_vox
    least = n_vox * (SIMULATE_BYTES_PER_VOXEL_ALLOCATED if allocated else SIMULATE_BYTES_PER_VOXEL_MIN)
    return least + (extra_slots if allocated else 0.0), SIMULATE_BYTES_BASE + n_vox * SIMULATE_BYTES_PER_VOXEL_MAX \
        + extra_slots


def check_simulate_memory(n_vox: int, shape_zyx: tuple[int, int, int], tally_slots: int, fix: str) -> None:
    """``mcproton.simulate``'s memory check (:func:`simulate_memory_estimate`): ConfigError where even the least it
    needs cannot fit in what this process may allocate (:func:`available_memory`, swap included); a warning where the
    most (every voxel with dose) is more than 80 % of it.  A grid is not refused because a dose over all of it could
    not fit: a beam's dose covers a part of most grids, and such runs fit and ran (``mcproton run``'s check,
    :func:`check_memory`, follows the same rule since audit 25 memory)."""
    from ..config import ConfigError

    nz, ny, nx = shape_zyx
    check_memory_for(simulate_memory_estimate(n_vox, tally_slots)[1],
                     f"the dose grid of {nx} x {ny} x {nz} = {n_vox / 1e6:.1f} M voxels", fix, ConfigError,
                     least=lambda allocated: simulate_memory_estimate(n_vox, tally_slots, allocated=allocated)[0],
                     most_note=f"about {SIMULATE_BYTES_PER_VOXEL_MAX} bytes per voxel with dose; a beam whose dose "
                               "covers a part of the grid needs less")


class Memory(NamedTuple):
    """What a run may allocate: ``available`` and ``swap`` bytes, and ``limit``, the words naming what bounds it;
    ``allocated_counts``: an address-space limit (``ulimit -v``) bounds it, under which memory counts once
    allocated, not only once written."""
    available: float
    swap: float
    limit: str = "the machine's free memory (MemAvailable in /proc/meminfo)"
    allocated_counts: bool = False


def available_memory() -> Memory | None:
    """The memory this process may allocate: MemAvailable and SwapFree from /proc/meminfo, capped by its
    address-space limit (RLIMIT_AS, ``ulimit -v``, less what it already maps) and by its cgroup's memory limit (Slurm
    ``--mem``, ``docker --memory``, Kubernetes limits, less what the cgroup uses: mcproton/_cpus.py
    :func:`cgroup_memory`), whichever is smallest, with the words naming it (:func:`_within_limits`).  Swap is not
    counted under either limit.  Before, the cgroup limit was not read: a run over it was accepted, then killed by the
    kernel with no message (the cluster audit, F1).  Without /proc/meminfo's MemAvailable (Windows, macOS; on Linux
    a kernel before 3.14 or a sandbox without /proc): :func:`_memory_without_proc`, on Linux capped by the same
    limits, the least of what can be read (before the review c of audit 27, R6, the limits were dropped there);
    None where nothing can be read."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                k, v = line.split(":", 1)
                info[k] = float(v.split()[0]) * 1024.0
        mem: Memory | None = Memory(info["MemAvailable"], info.get("SwapFree", 0.0))
    except (OSError, KeyError, ValueError):
        mem = _memory_without_proc()
        if not _on_linux():   # no cgroups, and an address-space limit that is not enforced as on Linux (macOS)
            return mem
    return _within_limits(mem)


def _on_linux() -> bool:
    import sys

    return sys.platform.startswith("linux")


def _within_limits(mem: Memory | None) -> Memory | None:
    """``mem`` capped by this process's address-space limit (RLIMIT_AS, ``ulimit -v``, less what it already maps
    where /proc/self/statm says) and by its cgroup's memory limit (:func:`~mcproton._cpus.cgroup_memory`), whichever
    is smallest, with the words naming it; where ``mem`` is None (the machine's memory not read), the smaller of
    those limits, or None where neither is set or read."""
    try:   # an address-space limit (ulimit -v) caps what this process may allocate
        import resource

        lim = resource.getrlimit(resource.RLIMIT_AS)[0]
        if lim != resource.RLIM_INFINITY:
            try:
                with open("/proc/self/statm", encoding="ascii") as fh:
                    used = float(fh.read().split()[0]) * resource.getpagesize()
                in_use = f", {used / 1e9:.1f} GB of it in use"
            except (OSError, ValueError, IndexError):   # no /proc: what is in use is not known, the limit still is
                used, in_use = 0.0, " (what of it is in use cannot be read: no /proc/self/statm)"
            left = max(0.0, lim - used)
            if mem is None or left < mem.available + mem.swap:
                mem = Memory(left if mem is None else min(mem.available, left), 0.0,
                             f"the address-space limit (ulimit -v) of {lim / 1e9:.1f} GB{in_use}",
                             allocated_counts=True)
    except (ImportError, OSError, ValueError):
        pass
    from .._cpus import cgroup_memory

    cgroup = cgroup_memory()
    if cgroup is not None and (mem is None or cgroup[0] < mem.available + mem.swap):
        mem = Memory(cgroup[0] if mem is None else min(mem.available, cgroup[0]), 0.0, cgroup[1],
                     mem is not None and mem.allocated_counts)
    return mem


def _memory_without_proc() -> Memory | None:
    """:func:`available_memory` where /proc/meminfo cannot be read: on Windows GlobalMemoryStatusEx (the available
    physical memory, and what the page file adds to it), elsewhere ``os.sysconf``'s available physical pages
    (``SC_AVPHYS_PAGES``), else its physical pages (``SC_PHYS_PAGES``: macOS has no count of the available ones, so a
    grid bigger than the machine's memory is refused there, and the warning compares with the whole of it); None
    where none can be read (the memory check is then skipped, and said so: :func:`check_memory_for`).  Before, every
    system without /proc had no memory check at all, without a word: a 102 GB grid on a 24 GB machine passed
    ``--check-config`` (the portability audit 27, F7)."""
    if os.name == "nt":
        return _windows_memory()
    try:
        page = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    for name, words in (("SC_AVPHYS_PAGES", "the machine's free memory (sysconf SC_AVPHYS_PAGES)"),
                        ("SC_PHYS_PAGES", "the machine's physical memory (sysconf SC_PHYS_PAGES; what is free of it "
                                          "cannot be read on this system)")):
        try:
            pages = os.sysconf(name)
        except (ValueError, OSError):   # not a name this system knows
            continue
        if pages > 0 and page > 0:
            return Memory(float(pages) * page, 0.0, words)
    return None


def _windows_memory() -> Memory | None:
    """Windows: the available physical memory (GlobalMemoryStatusEx's ullAvailPhys) and, as swap, what the page
    file's commit limit leaves beyond it (ullAvailPageFile less ullAvailPhys); None where it cannot be read."""
    import ctypes

    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_uint32), ("dwMemoryLoad", ctypes.c_uint32),
                    ("ullTotalPhys", ctypes.c_uint64), ("ullAvailPhys", ctypes.c_uint64),
                    ("ullTotalPageFile", ctypes.c_uint64), ("ullAvailPageFile", ctypes.c_uint64),
                    ("ullTotalVirtual", ctypes.c_uint64), ("ullAvailVirtual", ctypes.c_uint64),
                    ("ullAvailExtendedVirtual", ctypes.c_uint64)]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    try:
        ok = ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))   # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    if not ok or status.ullAvailPhys <= 0:
        return None
    return Memory(float(status.ullAvailPhys), float(max(0, status.ullAvailPageFile - status.ullAvailPhys)),
                  "the machine's free memory (GlobalMemoryStatusEx's available physical memory)")


#: the start of the warning that the memory check was skipped (said once per run or check: :func:`check_memory_for`)
MEMORY_UNKNOWN = "the memory available cannot be read on this system"
_MEMORY_UNKNOWN_SAID: set[str] = set()


def memory_summary(n_vox: int, n_beams: int) -> dict[str, Any]:
    """For ``--check-config``: the run's estimated peak host memory and what it may use (GB), and what bounds that
    (so that a batch job's ``--mem`` can be sized from it); where that cannot be read, ``memory_available_gb`` null
    and ``memory_limit`` saying so."""
    mem = available_memory()
    return {"memory_estimate_gb": round(host_memory_estimate(n_vox, n_beams) / 1e9, 2),
            **({"memory_available_gb": None, "memory_limit": f"unknown: {MEMORY_UNKNOWN} (not checked)"}
               if mem is None else {"memory_available_gb": round((mem.available + mem.swap) / 1e9, 2),
                                    "memory_limit": mem.limit})}


def check_memory(n_vox: int, n_beams: int, shape_zyx: tuple[int, int, int], ct: bool, *,
                 fix: str | None = None) -> None:
    """Refuse a run whose grid cannot fit in memory however little of it gets dose (:func:`host_memory_least`), and
    warn where its peak if every beam's dose covered the whole grid (:func:`host_memory_estimate`) is above 80 % of
    what is available: the rule of simulate's check (:func:`check_simulate_memory`).  Before (audit 25 memory), a
    run was refused above an estimate of a pencil beam's peak, and a run whose dose filled the grid passed it and was
    lost after the transport (1.9 x that estimate).  ``fix``: what to do, where not a run's config keys (``mcproton
    check``).  ``n_beams`` 0: the beams are not read yet (:func:`check_before_build`): the need of one beam, said
    so, and only refused (the warning is the check's after the build, with the beams counted: said once)."""
    from ..config import ConfigError

    nz, ny, nx = shape_zyx
    fix = fix or (("use coarser voxels (phantom.dose_voxel_mm for a CT: blocks of whole CT voxels)" if ct
                   else "use coarser voxels (phantom.voxel_mm)") + " or free memory (or ask the batch system for more)")
    beams = (f"one beam; each further beam adds up to {n_vox * HOST_BYTES_PER_VOXEL_AND_BEAM / 1e9:.1f} GB"
             if n_beams < 1 else f"{n_beams} beam{'s' if n_beams > 1 else ''}")
    grid = f"the dose grid of {nx} x {ny} x {nz} = {n_vox / 1e6:.1f} M voxels ({beams})"
    check_memory_for(host_memory_estimate(n_vox, n_beams), grid, fix, ConfigError, warn_near=n_beams >= 1,
                     least=lambda _allocated: host_memory_least(n_vox), most_note=RUN_MOST_NOTE)


def check_memory_for(need: float, what: str, fix: str, error: Callable[[str], Exception], *,
                     warn_near: bool = True, least: Callable[[bool], float] | None = None,
                     detail: str = "", most_note: str = "") -> None:
    """Raise ``error`` when ``need`` bytes exceed the memory this process may allocate (:func:`available_memory`,
    swap included), and warn when they are more than 80 % of it (``warn_near``): "``what``, but only X GB are
    available ...: ``fix``" (a CT before its pixels are read: mcproton/_io/ct.py).  With ``least`` (a run's dose
    grid, :func:`check_memory`; the check's transport grid), ``need`` is the most the run needs (every voxel with
    dose) and ``what`` names the grid: refused only where ``least(allocated)`` (what it needs however little of the
    grid gets dose; ``allocated``: under an address-space limit) cannot fit, warned where ``need`` is above 80 %;
    ``detail`` follows the figures (where the grid comes from); ``most_note`` says in the warning what the most is
    made of."""
    mem = available_memory()
    if mem is None:   # said, not silent (the portability audit 27, F7): once per run or check
        from .._io.errors import said_in_this_call

        if not said_in_this_call(MEMORY_UNKNOWN, _MEMORY_UNKNOWN_SAID, at_start=True):
            needs = f" needs up to about {need / 1e9:.1f} GB" if least is not None else ""
            warn(f"{MEMORY_UNKNOWN}, so the memory check was skipped: {what}{needs}; make sure the machine has that "
                 "free, or the run may swap or fail for want of memory", McprotonRuntimeWarning)
        return
    avail, swap = mem.available, mem.swap
    if least is None:
        if need > avail + swap:
            raise error(f"{what}, but only {avail / 1e9:.1f} GB are available ({swap / 1e9:.1f} GB of swap), "
                        f"bounded by {mem.limit}: {fix}")
        if warn_near and need > 0.8 * avail:
            warn(f"{what} of the {avail / 1e9:.1f} GB available (bounded by {mem.limit}); the run may swap or be "
                 f"killed: {fix}", McprotonRuntimeWarning)
        return
    low = least(mem.allocated_counts)
    if low > avail + swap:
        how = ("the tallies and running sums it allocates" if mem.allocated_counts
               else "however few of its voxels get dose")
        raise error(f"{what} needs at least {low / 1e9:.1f} GB of memory ({how}; up to about {need / 1e9:.1f} GB "
                    f"where every voxel gets dose){detail}, but only {avail / 1e9:.1f} GB are available "
                    f"({swap / 1e9:.1f} GB of swap), bounded by {mem.limit}: {fix}")
    if warn_near and need > 0.8 * avail:
        warn(f"{what} needs up to about {need / 1e9:.1f} GB of memory where the dose covers the whole grid "
             f"({most_note}){detail} of the {avail / 1e9:.1f} GB available (bounded by {mem.limit}); the run may swap "
             f"or be killed if its dose covers much of the grid: {fix}", McprotonRuntimeWarning)


#: what the most of a run (host_memory_estimate) is made of, in its memory warning
RUN_MOST_NOTE = (f"about {HOST_BYTES_PER_VOXEL} bytes per voxel, {HOST_BYTES_PER_VOXEL_AND_BEAM} more for each further "
                 "beam; a dose over a part of the grid needs less")


#: Disk space of a run beside its output, bytes per voxel (upper bounds, before compression):
#: - a checkpoint holds 9 running sums of 8 bytes per voxel and beam (72, 48 before the LETd's three of 2026-12-08;
#:   mcproton/_run/checkpoint.py, dense when more than half the grid has dose), and a new one is written beside the
#:   old before it replaces it (so twice);
#: - the HDF5 holds dose and dose to water (float64 each; dose to water float32 before 2026-12-07), LET, uncertainty,
#:   the LETd's uncertainty (since 2026-12-08) and density (float32 each), the material index and labels (2 at most
#:   each), with a body outline also the dose before it (float32) and the mask (1): 41, gzip-compressed in practice
#:   to a fraction of this;
#: - an RT Dose holds 4 (32-bit pixels) per voxel, one file per beam besides the plan's with
#:   output.rtdose_per_beam;
#: - each file has its headers and attributes besides (the checkpoint's ledger, provenance, DICOM header): 1 MB.
DISK_BYTES_PER_FILE = 1e6
DISK_BYTES_CHECKPOINT_PER_VOXEL_AND_BEAM = 72
DISK_BYTES_HDF5_PER_VOXEL = 41
DISK_BYTES_RTDOSE_PER_VOXEL = 4


def disk_space_estimate(n_vox: int, n_beams: int, *, checkpoint: bool, rtdose_files: int) -> dict[str, float]:
    """Upper bounds, in bytes, of what a run writes beside its output: 'checkpoint' (at its peak, two copies while
    one replaces the other), 'outputs' (HDF5 and RT Doses) and 'peak' (the larger of the checkpoint's peak and one
    checkpoint with the outputs: the checkpoint is removed once the outputs are written)."""
    ckpt = (DISK_BYTES_PER_FILE + DISK_BYTES_CHECKPOINT_PER_VOXEL_AND_BEAM * n_vox * max(1, n_beams)
            if checkpoint else 0.0)
    outputs = ((1 + rtdose_files) * DISK_BYTES_PER_FILE
               + n_vox * (DISK_BYTES_HDF5_PER_VOXEL + DISK_BYTES_RTDOSE_PER_VOXEL * rtdose_files))
    return {"checkpoint": ckpt, "outputs": outputs, "peak": max(2 * ckpt, ckpt + outputs)}


def _existing_folder(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (its parent, or the first one above that exists)."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_disk_space(out: Path, n_vox: int, n_beams: int, *, checkpoint: bool, rtdose_files: int,
                     free_bytes: Callable[[Path], float] | None = None, rtdose: Path | None = None) -> None:
    """Warn before the transport when the file system of ``out`` has less free space than the run may write
    beside it (:func:`disk_space_estimate`): a checkpoint that cannot be written leaves a long run unprotected, and
    outputs that cannot be written are rescued elsewhere (cli._write_output_or_explain), both found out only hours
    later.  Upper bounds, so a warning, not a refusal: compression and a sparse dose usually need much less.
    ``rtdose``: the RT Dose's path; on another file system than ``out`` its ``rtdose_files`` are checked there."""
    import os

    folder = _existing_folder(Path(out).resolve())
    free = _free_space(folder, free_bytes)
    if free is None:
        return
    other = None
    try:   # its own try: a folder that cannot be asked does not stop the check of --out's
        if rtdose is not None and rtdose_files:
            rd_folder = _existing_folder(Path(rtdose).resolve())
            if os.stat(rd_folder).st_dev != os.stat(folder).st_dev:
                rd_free = _free_space(rd_folder, free_bytes)
                other = (rd_folder, rd_free) if rd_free is not None else None
    except OSError:
        other = None
    if other is not None:   # the RT Doses are written there, not beside --out
        rd_need = rtdose_files * (DISK_BYTES_PER_FILE + DISK_BYTES_RTDOSE_PER_VOXEL * n_vox)
        if rd_need > other[1]:
            warn(f"the file system of {other[0]} has {_gb(other[1])} free, and this run's {rtdose_files} RT Dose "
                 f"file(s) may need up to {_gb(rd_need)} there; if the disk fills, they are not written (the HDF5 and "
                 "the checkpoint are kept): free disk space or give --rtdose on a larger file system",
                 McprotonRuntimeWarning)
        rtdose_files = 0
    need = disk_space_estimate(n_vox, n_beams, checkpoint=checkpoint, rtdose_files=rtdose_files)
    if need["peak"] <= free:
        return
    parts = ([f"checkpoints up to {_gb(need['checkpoint'])} (two while one replaces the other)"] if checkpoint
             else []) + [f"outputs up to {_gb(need['outputs'])} before compression"]
    fix = ("free disk space, give --out on a larger file system, use coarser voxels"
           + (", or run with --no-checkpoint (the run is then not protected against interruption)" if checkpoint
              else ""))
    warn(f"the file system of {folder} has {_gb(free)} free, and this run may write up to {_gb(need['peak'])} "
         f"there ({n_vox / 1e6:.1f} M voxels, {n_beams} beam{'s' if n_beams != 1 else ''}: {'; '.join(parts)}); "
         f"if the disk fills, checkpoints fail and the outputs are written to the temporary folder instead: {fix}",
         McprotonRuntimeWarning)


def _free_space(folder: Path, free_bytes: Callable[[Path], float] | None = None) -> float | None:
    """The free space (bytes) of the file system of ``folder`` (``free_bytes``: how to ask, for tests), or None
    where it cannot be asked."""
    import shutil

    try:
        return float(free_bytes(folder) if free_bytes else shutil.disk_usage(folder).free)
    except OSError:
        return None


#: Disk space of a check's report (check.html with its figures embedded, and check.json), bytes: 1.5 MB for a
#: 3-beam plan with 30 structures on an 81 x 99 x 109 TPS grid (measured 2026-12-05); its figures are of a fixed
#: size in pixels whatever the grid, and the JSON grows with the structures, so 20 MB bounds it with a wide margin
DISK_BYTES_CHECK_REPORT = 20e6


def check_disk_space_of_check(out_dir: Path, n_vox: int, rtdose_files: int, *, report: bool = True,
                              free_bytes: Callable[[Path], float] | None = None) -> None:
    """Warn before a check's transport (``mcproton check --out``) when the file system of ``out_dir`` has less
    free space than the check writes there: ``rtdose_files`` MC RT Doses of ``n_vox`` voxels each (the plan's and
    one per per-beam TPS dose) and, with ``report``, the report.  As :func:`check_disk_space` for a run: found
    out otherwise only after the Monte Carlo (the MC dose then goes to the temporary folder: _check/api.py)."""
    folder = _existing_folder(Path(out_dir).resolve() / "RD_mc.dcm")   # the folder itself where it exists
    free = _free_space(folder, free_bytes)
    if free is None:
        return
    need = (rtdose_files * (DISK_BYTES_PER_FILE + DISK_BYTES_RTDOSE_PER_VOXEL * n_vox)
            + (DISK_BYTES_CHECK_REPORT if report else DISK_BYTES_PER_FILE))
    if need <= free:
        return
    warn(f"the file system of {folder} has {_gb(free)} free, and this check may write up to {_gb(need)} there "
         f"({rtdose_files} MC RT Dose file(s) of {n_vox / 1e6:.1f} M voxels"
         + (" and the report)" if report else " and check.json)")
         + "; if the disk fills, the MC dose is written to the temporary folder instead and the report is not "
           "written: free disk space or give --out on a larger file system", McprotonRuntimeWarning)


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


#: how ``mcproton run`` goes on past a refusal of :func:`check_position_against_ct` / :func:`check_frame_of_reference`
ALLOW_POSITION_MISMATCH = (", or set plan.allow_position_mismatch = true if the plan's position is right and the CT's "
                           "PatientPosition is known to be wrong")
ALLOW_OTHER_FRAME = ", or set plan.allow_other_frame = true if the two frames are known to coincide"

#: The refusals of a patient plan that a run can be told to pass, by the name ``simulate(..., allow=...)`` and
#: ``sum_results(..., allow=...)`` take (``mcproton run``: the ``plan.allow_*`` key named in each), with what was
#: passed.  A result computed past one records its name in ``provenance["overrides"]``, and its RT Dose says
#: OVERRIDE (mcproton/_io/rtdose.py override_note).  "shifter_inside" has no key in ``mcproton run`` (its dose is
#: wrong: the material between the slab and the skin is never crossed): a script may study that error.
OVERRIDES = {
    "other_frame": "the plan's or structure set's FrameOfReferenceUID is not the CT's, or the plan gives none and "
                   "nothing links it to the CT",
    # mcproton run only (plan.allow_other_patient: check_patients); simulate has no files to compare, so it takes
    # the name and changes nothing for it
    "other_patient": "the plan's or structure set's patient (PatientID, birth date or sex) is not the CT's",
    "position_mismatch": "the plan's patient position is not the CT's, or its beams' positions differ",
    "shifter_inside": "a range shifter lies inside the patient",
    # sum_results only (simulate takes the names and changes nothing for them; the beams of one mcproton run share
    # one build and one physics, so it has no key): mcproton/_run/builds.py
    "mixed_builds": "the results summed were computed by different builds of mcproton (kernel, physics data), or one "
                    "does not record its build",
    "mixed_physics": "the results summed were computed with different physics settings",
}


def ordered_overrides(names) -> list[str]:
    """The refusals passed (``provenance["overrides"]``) in :data:`OVERRIDES`' order, any other name after them,
    sorted: one order for ``mcproton run``'s record and :func:`~mcproton.sum_results`'."""
    names = {str(n) for n in names}
    return [k for k in OVERRIDES if k in names] + sorted(names - set(OVERRIDES))


#: the provenance key that says a result does not record the refusals it passed (``overrides``): the file it was
#: loaded from (DoseResult.load of a file without ``overrides``; kept by ``save``), or the files of a sum's parts
OVERRIDES_NOT_RECORDED = "overrides_not_recorded"


def overrides_not_recorded(provenance: dict) -> str:
    """Where a result does not record which of mcproton's refusals it passed: the files named by its provenance's
    :data:`OVERRIDES_NOT_RECORDED`, or "its provenance" for a result of a run without ``overrides``; "" where it
    records them (``overrides``: [] for none).  An absent record is not an empty one: ``overrides`` exists since
    2026-12-06 (87aea33: a run past ``plan.allow_other_frame`` before wrote no trace of it), and an empty one was not
    written until the compat audit of that day (F5), so such a file may hold a dose computed past a refusal."""
    said = provenance.get(OVERRIDES_NOT_RECORDED)
    if said:
        return str(said)
    return "its provenance" if "overrides" not in provenance and "kernel_hash" in provenance else ""


def overrides_unknown_text(where: str) -> str:
    """The words for a result whose ``overrides`` are not recorded (:func:`overrides_not_recorded`: ``where``)."""
    return (f"{where} does not record whether its dose was computed past one of mcproton's refusals of a plausible "
            "but wrong dose (a plan of another CT, a patient lying otherwise, a range shifter inside the patient): "
            "it was written by an older mcproton, which recorded no \"overrides\" before 2026-12-06 and only those "
            "passed until later that day; if you know which were passed (plan.allow_* in its run's config, "
            "simulate's allow=), set result.provenance[\"overrides\"] to them ([] for none) and delete "
            f"result.provenance[\"{OVERRIDES_NOT_RECORDED}\"]")


def checked_allow(allow: Any, where: str) -> frozenset[str]:
    """The refusals ``allow`` asks to pass (:data:`OVERRIDES` names; a name alone, a tuple or list of them, or
    () / None for none), refused (ValueError) where one is not such a name."""
    if allow is None:
        return frozenset()
    keys = [allow] if isinstance(allow, str) else allow
    if isinstance(keys, (list, tuple, set, frozenset)) and all(isinstance(k, str) and k in OVERRIDES for k in keys):
        return frozenset(keys)
    names = ", ".join(repr(k) for k in OVERRIDES)
    raise ValueError(f"{where}: allow = {allow!r}: give a tuple of the refusals to pass, of {names} (e.g. "
                     "allow=(\"other_frame\",)), or () for none (the default)")


def overrides_used(cfg: dict[str, Any], geometry: Any, beams: list[Any]) -> list[str]:
    """The refusals of :func:`check_inputs` that this run passed through ``plan.allow_other_frame``,
    ``plan.allow_other_patient`` or ``plan.allow_position_mismatch`` (the :data:`OVERRIDES` names "other_frame",
    "other_patient", "position_mismatch"; [] where the keys are off or nothing would have been refused; on a
    slab_ct phantom, written for its plan, only its structure set's "other_frame"): ``mcproton run`` records them
    in its result as ``simulate`` does, so that its RT Dose says OVERRIDE too.  Nothing is warned here
    (check_inputs has said what it says), and no input file is read again for the patients (:func:`patient_files`:
    those check_inputs compared)."""
    from .._io.rtplan import beams_by_position
    from ..config import ConfigError

    pl = cfg.get("plan", {})
    kind = cfg.get("phantom", {}).get("type")
    if kind == "slab_ct":   # written for its plan, in its frame: only the structure set can lie in another
        if not pl.get("allow_other_frame", False):
            return []
        try:
            check_struct_frame({**cfg, "plan": {**pl, "allow_other_frame": False}},
                               *struct_frame_of(cfg, geometry, beams))
        except ConfigError:
            return ["other_frame"]
        return []
    if kind != "ct":   # as check_inputs: a patient CT only
        return []
    used = []
    ct_for = getattr(geometry, "frame_of_reference_uid", "") or ""
    if pl.get("allow_other_frame", False) and ct_for:
        try:
            check_frame_of_reference(geometry, beams)
            check_struct_frame({**cfg, "plan": {**pl, "allow_other_frame": False}}, ct_for)
            if plan_frame_unlinked(cfg, ct_for, beams)[0]:   # a plan that gives no frame, nothing linking it
                used.append("other_frame")
        except ConfigError:
            used.append("other_frame")
    if pl.get("allow_other_patient", False) and check_patients(cfg, geometry, quiet=True):
        used.append("other_patient")
    if pl.get("allow_position_mismatch", False) and positions_checked(geometry):
        ct_pos = str(getattr(geometry, "patient_position", "") or "").strip().upper()
        plan_pos = beams_by_position((b.name, (getattr(b, "meta", None) or {}).get("patient_position")) for b in beams)
        if len(plan_pos) > 1 or (ct_pos and any(pos != ct_pos for pos in plan_pos)):
            used.append("position_mismatch")
    return used


def positions_checked(geometry: Any) -> bool:
    """Whether a plan's setup positions (PatientSetupSequence PatientPosition) are checked on ``geometry``, against
    the CT's and against each other: the one rule of ``mcproton run`` (:func:`check_patient_position`),
    ``simulate`` and ``sum_results``.  They are on a grid from a patient's DICOM CT (``geometry.study`` set; a CT
    shows the patient lying one way); not on a water box or slab phantom (no study), nor on the CT mcproton wrote for
    its plan (``phantom.type = "slab_ct"``, :func:`mcproton.slab_ct_geometry`: ``study.written_for_plan``), whose
    slabs lie in the plan's patient coordinates whatever position a beam is set up in.  Before (review R2 of
    2026-12-06) ``sum_results`` refused a slab CT's plan of mixed positions that ``mcproton run`` had not checked,
    after the whole transport."""
    study = getattr(geometry, "study", None)
    return study is not None and not getattr(study, "written_for_plan", False)


def check_patient_position(cfg: dict[str, Any], geometry: Any, beams: list[Any]) -> None:
    """Refuse a plan whose setup position (PatientSetupSequence PatientPosition) differs from the CT's
    PatientPosition (:func:`check_position_against_ct`); and one whose beams are set up in different positions,
    whatever the CT says.  Warn when the CT does not say its position."""
    from .._io.rtplan import beams_by_position, mixed_positions
    from ..config import ConfigError

    if not positions_checked(geometry):  # a patient CT only: a slab_ct phantom is written for its plan
        return
    ct_pos = str(getattr(geometry, "patient_position", "") or "").strip().upper()
    plan_pos = beams_by_position((b.name, (getattr(b, "meta", None) or {}).get("patient_position")) for b in beams)
    if not plan_pos or cfg.get("plan", {}).get("allow_position_mismatch", False):
        return
    if len(plan_pos) > 1:   # whatever the CT says: one CT shows the patient lying one way
        raise ConfigError(mixed_positions(plan_pos) + " (or set plan.allow_position_mismatch = true if the CT's and "
                          "the plan's positions are known to be right)")
    if not ct_pos:
        warn(f"the CT series has no PatientPosition, so the plan's setup position {', '.join(sorted(plan_pos))} "
             "cannot be checked against it")
        return
    src = ("PatientSetupSequence PatientPosition, or plan.patient_position where the plan has none"
           if cfg.get("plan", {}).get("patient_position") else "PatientSetupSequence PatientPosition")
    check_position_against_ct(geometry, beams, src)


def check_position_against_ct(geometry: Any, beams: list[Any], src: str = "PatientSetupSequence PatientPosition",
                              override: str = ALLOW_POSITION_MISMATCH) -> None:
    """Refuse (ConfigError) a beam set up (``beam.meta["patient_position"]``, from ``src``) otherwise than the CT
    was acquired (``geometry.patient_position``; nothing is checked where either is empty): the plan's gantry
    angles are then turned about the wrong patient axes (a prone plan on a supine CT puts every beam on the
    opposite side of the anatomy).  ``override``: how to go on anyway (``mcproton run``'s key; ``simulate`` warns)."""
    from .._io.rtplan import beams_by_position
    from ..config import ConfigError

    ct_pos = str(getattr(geometry, "patient_position", "") or "").strip().upper()
    if not ct_pos:
        return
    plan_pos = beams_by_position((b.name, (getattr(b, "meta", None) or {}).get("patient_position")) for b in beams)
    for pos, names in sorted(plan_pos.items()):
        if pos != ct_pos:
            raise ConfigError(f"plan beam(s) {', '.join(repr(n) for n in names)} are set up {pos} ({src}) but the CT "
                              f"was acquired {ct_pos}: the gantry angles would be applied to a patient lying otherwise "
                              "than in the images, so a beam can enter from the wrong side; use the CT the plan "
                              f"was made on{override}")


def check_frame_of_reference(geometry: Any, beams: list[Any], override: str = ALLOW_OTHER_FRAME) -> None:
    """Refuse (ConfigError) a beam whose plan's FrameOfReferenceUID (``beam.meta["frame_of_reference_uid"]``) is not
    the CT's (``geometry.frame_of_reference_uid``; nothing is checked where either is empty): the plan was made on
    another CT, and its isocentre would put the dose in the wrong place.  ``override`` as in
    :func:`check_position_against_ct`."""
    from ..config import ConfigError

    ct_for = getattr(geometry, "frame_of_reference_uid", "") or ""
    if not ct_for:
        return
    for beam in beams:
        plan_for = (getattr(beam, "meta", None) or {}).get("frame_of_reference_uid") or ""
        if plan_for and plan_for != ct_for:
            raise ConfigError(f"plan beam {beam.name!r} refers to FrameOfReferenceUID {plan_for} but the CT's is "
                              f"{ct_for}: the plan was made on another CT, and its isocentre coordinates would "
                              f"put the dose in the wrong place; use the plan's CT{override}")


def struct_frame_of(cfg: dict[str, Any], geometry: Any, beams: list[Any]) -> tuple[str, str, str]:
    """The frame of reference that plan.rtstruct's contours must lie in (:func:`check_struct_frame`), with the words
    for it and for what to give instead: on a patient's CT (phantom.type = "ct") the CT's; on a slab phantom's CT
    (phantom.type = "slab_ct") the frame it was written in, the plan's (config._plan_frame_study; a new one where the
    plan gives none, so that no structure set lies in it), since its slabs lie in the plan's patient coordinates and
    the structure set's overrides are put into it (before 2026-12-07, followb: not checked there, so a structure set
    of another frame put its bolus where its coordinates fell in the slabs); ("", "", "") on any other phantom
    (nothing checked)."""
    kind = cfg.get("phantom", {}).get("type")
    ct_for = getattr(geometry, "frame_of_reference_uid", "") or ""
    if kind == "ct":
        return ct_for, "the CT's", "give the structure set of this CT"
    if kind != "slab_ct" or not ct_for:
        return "", "", ""
    if any((getattr(b, "meta", None) or {}).get("frame_of_reference_uid") == ct_for for b in beams):
        return ct_for, "the slab phantom's CT's (the plan's)", "give a structure set in the plan's frame of reference"
    return (ct_for, "the slab phantom's CT's (a new one: the plan gives no valid FrameOfReferenceUID (0020,0052), so "
            "nothing links a structure set to the slabs)", "export the plan again with its FrameOfReferenceUID "
            "and give a structure set in that frame")


def check_struct_frame(cfg: dict[str, Any], ct_for: str, whose: str = "the CT's",
                       fix: str = "give the structure set of this CT") -> None:
    """Refuse an RT Structure Set (plan.rtstruct) whose contours lie in another frame of reference than the CT
    (``ct_for``; "" = not known, nothing checked; ``whose`` names that frame, ``fix`` says what to give instead:
    :func:`struct_frame_of`): its body ROI would cut the dose (the body outline), its material overrides would be
    put in the wrong place and its DVHs would be of other anatomy.  ``plan.allow_other_frame = true`` turns it into
    a warning."""
    from ..config import ConfigError, _resolve

    rts = cfg.get("plan", {}).get("rtstruct")
    if not ct_for or not isinstance(rts, str):
        return
    from .._io.rtstruct import read_rtstruct

    path = _resolve(cfg, rts)
    other: dict[str, list[str]] = {}
    for name, f in read_rtstruct(path).frames_of_contours().items():
        if f and f != ct_for:
            other.setdefault(f, []).append(name)
    if not other:
        return
    what = "; ".join(f"{', '.join(repr(n) for n in names[:5])}{' and more' if len(names) > 5 else ''} in {f}"
                     for f, names in other.items())
    msg = (f"plan.rtstruct {path}: the contours of ROI(s) {what} lie in another frame of reference "
           f"(ReferencedFrameOfReferenceUID (3006,0024)) than {whose} FrameOfReferenceUID {ct_for}: the "
           "structure set belongs to another CT, so its body ROI would cut the dose, its material overrides would be "
           "put in the wrong place and its DVHs would be of other anatomy")
    if cfg.get("plan", {}).get("allow_other_frame", False):
        warn(f"{msg}; run anyway (plan.allow_other_frame = true)")
        return
    raise ConfigError(f"{msg}; {fix}, or set plan.allow_other_frame = true if the two frames are known to coincide")


def unframed_plan_beams(beams: list[Any]) -> list[Any]:
    """The beams of an RT Ion Plan (:func:`~mcproton.dicom.plan_to_beams`, whose ``meta`` holds the plan's
    ``frame_of_reference_uid``) whose plan gives no FrameOfReferenceUID (0020,0052): the Frame of Reference module
    is optional (U) in the RT Ion Plan IOD, and an anonymiser may strip it.  A beam of [beam] or of mcproton's
    planning (no such key) is none of them."""
    return [b for b in beams if "frame_of_reference_uid" in (getattr(b, "meta", None) or {})
            and not b.meta["frame_of_reference_uid"]]


def unframed_plan_text(beams: list[Any], ct_for: str, plan: str = "the RT Ion Plan", why: str = "") -> str:
    """What is wrong with a plan of ``beams`` (:func:`unframed_plan_beams`) on a CT of frame ``ct_for`` (``why``: what
    else does not link it, "" for nothing said): one text for ``mcproton run`` and ``simulate``."""
    names = ", ".join(repr(b.name) for b in beams)
    return (f"{plan} (beam(s) {names}) gives no FrameOfReferenceUID (0020,0052){', and ' + why if why else ''}: "
            f"nothing shows that it was made on this CT (FrameOfReferenceUID {ct_for}), and a plan of another CT, or "
            "of another patient, would be computed with its isocentre coordinates in this CT's frame, the dose in "
            "the wrong place")


def plan_frame_unlinked(cfg: dict[str, Any], ct_for: str, beams: list[Any]) -> tuple[str, str]:
    """(what is wrong, what links it): ("", "") where the CT gives no frame (``ct_for`` "") or every plan beam's
    plan gives one (:func:`check_frame_of_reference` compares it); ("", the words of the link) where a plan that
    gives none names (ReferencedStructureSetSequence) the RT Structure Set given as plan.rtstruct and that set's
    contours lie in the CT's frame; else (the refusal's text, "").  Audit 24 swallow, F1: such a plan was computed
    on any CT without a word."""
    unframed = unframed_plan_beams(beams)
    if not ct_for or not unframed:
        return "", ""
    from ..config import _resolve

    pl = cfg.get("plan", {})
    rts = pl.get("rtstruct")
    plan = (f"plan.rtplan {_resolve(cfg, pl['rtplan'])}" if isinstance(pl.get("rtplan"), str)
            else "the RT Ion Plan")
    named = sorted({uid for b in unframed for uid in (b.meta.get("plan_structure_sets") or ())})
    if not isinstance(rts, str):
        why = ("no plan.rtstruct links it to this CT"
               + (f" (the plan names the structure set {', '.join(named)})" if named else ""))
    else:
        path = _resolve(cfg, rts)
        sop, frames = _struct_identity(path)
        if not all(sop and sop in (b.meta.get("plan_structure_sets") or ()) for b in unframed):
            why = (f"plan.rtstruct {path} (SOPInstanceUID {sop or '(none)'}) is not the structure set it names "
                   + (f"({', '.join(named)})" if named else "(it names none: no ReferencedStructureSetSequence)"))
        elif frames != {ct_for}:
            where = f"frame(s) of reference {', '.join(sorted(frames))}" if frames else "no stated frame of reference"
            why = f"plan.rtstruct {path}, which it names, lies in {where}, not the CT's"
        else:
            return "", (f"the plan names (ReferencedStructureSetSequence) plan.rtstruct {path} (SOPInstanceUID {sop}), "
                        f"whose contours lie in the CT's frame of reference {ct_for}")
    return unframed_plan_text(unframed, ct_for, plan, why), ""


def _struct_identity(path: Path) -> tuple[str, set[str]]:
    """(SOPInstanceUID, the frames of reference its contours and header give) of an RT Structure Set file, from the
    structure set as read for the run (:func:`~mcproton._io.rtstruct.read_rtstruct`, which keeps it: not read again)."""
    from .._io.rtstruct import read_rtstruct

    rs = read_rtstruct(path)
    return rs.sop_instance_uid, ({rs.frame_of_reference_uid} | set(rs.frames_of_contours().values())) - {""}


def check_plan_frame_of(geometry: Any, beams: list[Any]) -> None:
    """``simulate``'s :func:`check_plan_frame_given`: refuse (ConfigError) a plan beam whose plan gives no
    FrameOfReferenceUID on a grid from a patient's DICOM CT that has one (a script has no plan.rtstruct to link
    them: simulate's allow=("other_frame",) passes it).  Not on the CT mcproton writes for a plan (slab_ct: its
    frame is its own, and its slabs lie in the plan's coordinates)."""
    from ..config import ConfigError

    study = getattr(geometry, "study", None)
    ct_for = getattr(geometry, "frame_of_reference_uid", "") or ""
    unframed = unframed_plan_beams(beams)
    if study is None or getattr(study, "written_for_plan", False) or not ct_for or not unframed:
        return
    raise ConfigError(f"{unframed_plan_text(unframed, ct_for)}; export the plan again with its FrameOfReferenceUID "
                      "(mcproton run also takes the structure set the plan names, given as plan.rtstruct, as the link)")


def check_plan_frame_given(cfg: dict[str, Any], ct_for: str, beams: list[Any]) -> None:
    """``mcproton run``: a plan that gives no FrameOfReferenceUID on a CT that has one (:func:`plan_frame_unlinked`)
    is refused (ConfigError) unless something links it to the CT (the structure set it names, given as
    plan.rtstruct, in the CT's frame: said in a note which) or plan.allow_other_frame = true (a warning; the outputs
    say OVERRIDE: :func:`overrides_used`).  Before, it was computed on whatever CT was given, without a word, while
    the same plan with its UID was refused on that CT (audit 24 swallow, F1)."""
    import sys

    from ..config import ConfigError

    wrong, link = plan_frame_unlinked(cfg, ct_for, beams)
    if link:
        sys.stderr.write(f"mcproton: note: the plan gives no FrameOfReferenceUID (0020,0052); it is linked to the CT "
                         f"because {link}\n")
    if not wrong:
        return
    if cfg.get("plan", {}).get("allow_other_frame", False):
        warn(f"{wrong}; run anyway (plan.allow_other_frame = true: the outputs say OVERRIDE)", McprotonRuntimeWarning)
        return
    raise ConfigError(f"{wrong}; export the plan again with its FrameOfReferenceUID, or give as "
                      "plan.rtstruct the structure set the plan names (ReferencedStructureSetSequence) if it lies in "
                      "this CT's frame, or set plan.allow_other_frame = true if the plan is known to be of this CT "
                      "(the outputs then say OVERRIDE)")


#: the private config key (not part of the run's fingerprint: mcproton/_run/checkpoint.py drops "_" keys) under which
#: :func:`patient_files` keeps the files it compared, with what they were found for
PATIENT_FILES_KEY = "_patient_files"


def patient_files(cfg: dict[str, Any], geometry: Any) -> list[Any]:
    """The files of a run on a patient's CT (``phantom.type = "ct"``) whose patients must agree
    (mcproton/_io/patients.py): the plan (plan.rtplan), the structure set (plan.rtstruct; linked to the plan where
    its ReferencedStructureSetSequence names it) and the CT (``geometry.study``: its slices agree, load_ct_series);
    [] on any other phantom (a slab CT is written for its plan, a box has no patient).  Found once per run: kept in
    ``cfg`` (:data:`PATIENT_FILES_KEY`) for the same plan, structure set and CT patient, so that
    :func:`overrides_used` and :func:`input_patients` (after the transport) record the files check_inputs compared
    and read none of them again (review of 2026-12-07, R2: a 20 MB structure set was read whole twice more per
    run for its PatientID)."""
    study = getattr(geometry, "study", None)
    if cfg.get("phantom", {}).get("type") != "ct" or study is None:
        return []
    pl = cfg.get("plan", {})
    for_what = (pl.get("rtplan"), pl.get("rtstruct"), cfg["phantom"].get("ct_dir"), cfg.get("_base_dir"),
                str(study.patient_id or ""), str(study.patient_name or ""),
                str(getattr(study, "patient_birth_date", "") or ""), str(getattr(study, "patient_sex", "") or ""))
    kept = cfg.get(PATIENT_FILES_KEY)
    if kept is not None and kept[0] == for_what:
        return list(kept[1])
    files = _patient_files(cfg, study)
    cfg[PATIENT_FILES_KEY] = (for_what, tuple(files))
    return files


def _patient_files(cfg: dict[str, Any], study: Any) -> list[Any]:
    """:func:`patient_files`, read: each file's attributes of identity only (``read_header``: not its contours)."""
    from .._io.patients import PatientFile, PatientIdentity, read_header
    from ..config import _resolve

    pl = cfg.get("plan", {})
    files: list[PatientFile] = []
    named: set[str] = set()
    for key in ("rtplan", "rtstruct"):
        if not isinstance(pl.get(key), str):
            continue
        ds = read_header(_resolve(cfg, pl[key]))
        if ds is None:   # read (and refused where damaged) by its own reader
            continue
        if key == "rtplan":
            named = {str(r.get("ReferencedSOPInstanceUID", "") or "")
                     for r in (ds.get("ReferencedStructureSetSequence", None) or [])}
        linked = key == "rtplan" or str(ds.get("SOPInstanceUID", "") or "") in named - {""}
        files.append(PatientFile(f"plan.{key} {pl[key]}", PatientIdentity.of(ds), linked=linked, key=f"plan.{key}",
                                 path=str(pl[key])))
    ct = PatientIdentity(str(study.patient_id or ""), str(study.patient_name or ""),
                         str(getattr(study, "patient_birth_date", "") or "").strip(),
                         str(getattr(study, "patient_sex", "") or "").strip().upper())
    ct_dir = str(cfg["phantom"].get("ct_dir"))
    files.append(PatientFile(f"the CT (phantom.ct_dir {ct_dir})", ct, linked=False, key="phantom.ct_dir", path=ct_dir))
    return files


def check_patients(cfg: dict[str, Any], geometry: Any, *, quiet: bool = False) -> bool:
    """Refuse (ConfigError) a run whose CT, plan and structure set are not one patient's (the rule of
    mcproton/_io/patients.py, as ``mcproton check`` applies it to its files): another PatientID, birth date or sex.
    Warn of a name spelled differently under one ID, and of a plan and the structure set it names carrying different
    IDs.  ``plan.allow_other_patient = true`` (another patient's or a phantom's plan on this CT, on purpose) makes
    the refusal a warning; the RT Dose is filed under the CT's patient and tagged OVERRIDE (overrides_used).
    Returns whether the refusal applies (``quiet``: nothing raised or warned).  Audit 24, identity F1: the run
    compared no patient, and filed patient B's plan dose under CT patient A without a word."""
    from .._io.patients import compare_patients
    from ..config import ConfigError

    files = patient_files(cfg, geometry)
    if not files:
        return False
    found = compare_patients(files)
    if quiet:
        return bool(found.refusal)
    for text in found.warnings:
        warn(text)
    if not found.refusal:
        return False
    ct_pid = files[-1].identity.patient_id
    msg = f"the run's input files {found.refusal}"
    if cfg.get("plan", {}).get("allow_other_patient", False):
        warn(f"{msg}; run anyway (plan.allow_other_patient = true): the RT Dose is filed under the CT's patient "
             f"({ct_pid!r}), and it and the HDF5 say OVERRIDE")
        return True
    raise ConfigError(f"{msg}; give this patient's CT (phantom.ct_dir), plan (plan.rtplan) and structure set "
                      "(plan.rtstruct), or set plan.allow_other_patient = true to compute another patient's or a "
                      "phantom's plan or structure set on this CT on purpose (research: the RT Dose is then filed "
                      f"under the CT's patient ({ct_pid!r}) and tagged OVERRIDE)")


def input_patients(cfg: dict[str, Any], geometry: Any) -> list[dict[str, str]]:
    """Whom each input file of a run on a patient's CT names (:func:`patient_files`), for the HDF5's provenance
    ``input_patients``: [{"key", "file", "PatientID", "PatientName"}, ...] (the plan, the structure set, the CT: its
    config key and path as given); [] on another phantom.  The RT Dose names the CT's patient: this says whose plan
    and structures it holds."""
    return [{"key": f.key, "file": f.path, "PatientID": f.identity.patient_id, "PatientName": f.identity.name}
            for f in patient_files(cfg, geometry)]


def warn_ct_outside_external(cfg: dict[str, Any], geometry: Any, beams: list[Any]) -> None:
    """With plan.rtstruct and plan.outside_external = "ct" (the default): warn of each plan beam whose central axis
    crosses CT material outside the External (a couch, a head rest), as `mcproton check` notes it
    (:func:`~mcproton._io.roi_overrides.outside_external_beam_notes`).  It is transported, where a planning system
    that computes inside the External and its support ROIs only leaves it out: the range differs by about its
    water-equivalent thickness (CT audit 14, F8: a carbon-fibre couch behind a head, 6 mm of it, moved the distal
    R80 by 4.9 mm, and the run said nothing).  Beams of [beam] (no isocentre) are not looked at."""
    pl = cfg.get("plan", {})
    rts = pl.get("rtstruct")
    if pl.get("outside_external", "ct") != "ct" or not isinstance(rts, str):
        return
    aimed = [(f"beam {b.name!r}", b.meta["isocenter_mm"], b.meta["beam_direction"]) for b in beams
             if (b.meta or {}).get("isocenter_mm") is not None and b.meta.get("beam_direction") is not None]
    if not aimed:
        return
    from ..config import _resolve
    from .._io.roi_overrides import outside_external, outside_external_beam_notes, roi_overrides
    from .._io.rtstruct import read_rtstruct

    path = _resolve(cfg, rts)
    # the ROIs whose override was applied are the planning system's material, as plan.outside_external = "air" keeps
    kept = [r["name"] for r in roi_overrides(path)] if pl.get("struct_overrides", "apply") == "apply" else []
    from ..body import body_roi_wanted

    found = outside_external(geometry, read_rtstruct(path), also_keep=kept, wanted=body_roi_wanted(cfg))
    if found is None:   # no External: nothing to tell inside from outside
        return
    for note in outside_external_beam_notes(geometry, found, aimed, 'set plan.outside_external = "air"'):
        warn(f"plan.rtstruct: {note}", McprotonRuntimeWarning)


def check_inputs(cfg: dict[str, Any], settings: Any, geometry: Any, beams: list[Any]) -> None:
    from .._io.rtdose import checked_dose_to, plausible_rbe
    from ..config import STRUCT_GEOMETRY_PHANTOMS, ConfigError

    ph = cfg.get("phantom", {})
    check_memory(int(geometry.material_index_zyx.size), len(beams), geometry.shape_zyx, ph.get("type") == "ct")
    out = cfg.get("output", {})
    checked_dose_to(out.get("dose_to", "medium"), "output.dose_to", error=ConfigError)
    plausible_rbe(out.get("rbe"), "output.rbe", error=ConfigError)
    # a patient CT only: a slab_ct phantom is built for its plan and has a frame of its own
    ct_for = (getattr(geometry, "frame_of_reference_uid", "") or "") if ph.get("type") == "ct" else ""
    check_patients(cfg, geometry)   # first: another patient's plan is on another frame too, and that says less
    if ct_for and not cfg.get("plan", {}).get("allow_other_frame", False):
        check_frame_of_reference(geometry, beams)
    check_struct_frame(cfg, *struct_frame_of(cfg, geometry, beams))   # the CT's, or the slab CT's (the plan's)
    check_plan_frame_given(cfg, ct_for, beams)
    check_patient_position(cfg, geometry, beams)
    if ph.get("type") in STRUCT_GEOMETRY_PHANTOMS:   # a CT whose geometry the structure set changes (config.py)
        warn_ct_outside_external(cfg, geometry, beams)
    rho = geometry.density_g_cm3_zyx
    if not np.isfinite(rho).all():
        raise ConfigError("the phantom's density has NaN or infinite values; check the CT series and "
                          "phantom.calibration")
    if (rho < 0).any():
        raise ConfigError("the phantom has negative densities; check phantom.density_g_cm3 / the HU calibration")
    check_not_vacuum(geometry, "phantom.density_g_cm3 / the HU calibration")
    where = "beam" if "beam" in cfg else "plan"
    for check in beam_grid_checks(geometry, beams, where):
        check()
    if ph.get("type") == "ct":   # a water box or a slab phantom is meant to touch the grid's faces
        check_ct_truncation(geometry, beams, where)
    check_beam_energies(beams, settings, where)


#: MCP_VACUUM_DENSITY (kernels/transport.cu): a voxel below this density (g/cm3) is transported as vacuum
VACUUM_DENSITY_G_CM3 = 1e-6


def check_not_vacuum(geometry: Any, fix: str) -> None:
    """Refuse (ConfigError) a grid whose every voxel is vacuum: no dose would be deposited.  ``fix``: what to check
    (``mcproton run``: phantom.density_g_cm3 / the HU calibration; ``simulate`` warns with it)."""
    from ..config import ConfigError

    if geometry.density_g_cm3_zyx.max(initial=0.0) < VACUUM_DENSITY_G_CM3:
        raise ConfigError("the phantom's density is zero everywhere (below 1e-6 g/cm3, transported as vacuum), so "
                          f"no dose would be deposited; check {fix}")


#: A beam whose primaries are sampled at or below physics.e_cut_mev with more than this expected fraction (the
#: Gaussian tail of its spots' energy spreads, by spot weight) is warned about (:func:`check_beam_energies`); a
#: therapy beam with the default cut-off has a tail of < 1e-300 (70 MeV, sigma 1 MeV: 69.5 sigma below).
E_CUT_TAIL_WARN = 1e-6


def fraction_below_cut(beam: Any, cut: float) -> tuple[float, int]:
    """The expected fraction of ``beam``'s primaries whose kinetic energy, sampled from their spot's Gaussian energy
    spread (kernels/source/sample.h), is at or below ``cut`` (MeV): sum_j w_j Phi((cut - E_j) / sigma_j) / sum_j w_j;
    and the spot that gives most of it (-1 where none gives any)."""
    import math

    total, below, worst, worst_part = 0.0, 0.0, -1, 0.0
    for j, s in enumerate(beam.spots):
        w = float(s.weight)
        total += w
        sig = float(s.energy_spread_mev)
        if w <= 0 or sig <= 0:
            continue
        part = w * 0.5 * math.erfc((float(s.energy_mev) - cut) / (sig * math.sqrt(2.0)))
        below += part
        if part > worst_part:
            worst, worst_part = j, part
    return (below / total if total > 0 else 0.0), worst


def _share(f: float) -> str:
    """A fraction in words: '16 %', '0.12 %' or '2.3e-05'."""
    return f"{100 * f:.2g} %" if f >= 1e-3 else f"{f:.1e}"


def check_beam_energies(beams: list[Any], settings: Any, where: str) -> None:
    """The beams' energies against the physics: beyond the tables (E_MAX_MEV) or at or below the cut-off
    physics.e_cut_mev (no proton transported) raise ConfigError; a beam whose energy spread puts more than
    :data:`E_CUT_TAIL_WARN` of its primaries at or below the cut-off (they are not transported: counted as missed,
    no dose) and a config beam above the nuclear data's 250 MeV are warned about (a plan's energies above 250 MeV
    are warned about by its beam model).  ``mcproton run`` refuses with them, ``simulate`` warns
    (run._check_implausible)."""
    from .._physics.tables import E_MAX_MEV
    from ..config import ConfigError

    cut = settings.physics.e_cut_mev
    for beam in beams:
        model = _beam_model_of(beam)
        e_hi = beam.max_energy_mev
        if e_hi >= E_MAX_MEV:
            fix = (f"the spot energies come from {model}: check its columns mean_energy and energy_spread (MeV, or "
                   "energy_spread_unit)" if model else "lower beam.energy_mev or beam.energy_spread_mev")
            raise ConfigError(f"{where}: energy + 5 sigma of the energy spread reaches {e_hi:.1f} MeV, beyond the "
                              f"physics tables ({E_MAX_MEV:g} MeV); {fix}")
        for j, s in enumerate(beam.spots):
            if s.weight > 0 and s.energy_mev <= cut:
                name = "beam.energy_mev" if len(beam.spots) == 1 and where == "beam" else \
                    f"spot {j} of {where} {beam.name!r}"
                fix = (f"the spot energies come from {model}: check its column mean_energy (kinetic energy in MeV)"
                       if model else "raise the energy (therapy protons have 50-250 MeV)")
                raise ConfigError(f"{name} = {s.energy_mev:g} MeV is at or below the cut-off physics.e_cut_mev = "
                                  f"{cut:g} MeV, so no proton would be transported; {fix} or lower "
                                  "physics.e_cut_mev")
        warn_below_cut(beam, cut, where, model)
    if where == "beam":   # a plan's energies: BeamModel.at warns, once per run, check or plan_to_beams call
        from .._io.beam_model import NUCLEAR_DATA_MAX_MEV, warn_above_nuclear_data

        e_top = max((s.energy_mev for b in beams for s in b.spots), default=0.0)
        if e_top > NUCLEAR_DATA_MAX_MEV:
            warn_above_nuclear_data("beam.energy_mev", e_top)


def warn_below_cut(beam: Any, cut: float, where: str, model: str) -> None:
    """Warn when more than :data:`E_CUT_TAIL_WARN` of ``beam``'s primaries are expected to be sampled at or below
    the cut-off ``cut`` (physics.e_cut_mev): the kernel does not transport them (kernels/transport.cu
    start_history: their energy is counted as missed and they deposit nothing), so the dose they would give near
    where they enter is missing, without any other message (the edges audit of 2026-12-07, F4: 12 MeV with a 2 MeV
    spread and a 10 MeV cut-off lost 16 % of the primaries, 12 % of the energy)."""
    frac, j = fraction_below_cut(beam, cut)
    if frac <= E_CUT_TAIL_WARN:
        return
    s = beam.spots[j]
    if len(beam.spots) == 1 and where == "beam":
        name = f"beam.energy_mev = {s.energy_mev:g} MeV with beam.energy_spread_mev = {s.energy_spread_mev:g} MeV"
        tail = "the Gaussian tail of the energy spread"
    else:
        name = f"{where} {beam.name!r}"
        tail = (f"the Gaussian tail of the spots' energy spreads, most of it from spot {j}: {s.energy_mev:g} MeV, "
                f"spread {s.energy_spread_mev:g} MeV")
    tail += f"; the spot energies come from {model}" if model else ""
    warn(f"{name}: an expected {_share(frac)} of the primaries are sampled at or below the cut-off "
         f"physics.e_cut_mev = {cut:g} MeV ({tail}); they are not transported: "
         "they deposit nothing (their energy is counted as missed in the energy ledger), so the dose they would give "
         "where they enter is missing; lower physics.e_cut_mev (default 0.5 MeV) below the beam's energies",
         McprotonRuntimeWarning)


def _beam_model_of(beam: Any) -> str:
    """'beam model NAME (PATH)' of a plan's beam, "" for a config's [beam]."""
    bm = (getattr(beam, "meta", None) or {}).get("beam_model")
    if not isinstance(bm, dict):
        return ""
    return f"beam model {bm.get('name')!r}" + (f" ({bm['path']})" if bm.get("path") else "")


def _same_file(a: Path, b: Path) -> bool:
    import os

    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)   # hard links, bind mounts
    except OSError:
        return False


def input_paths(cfg: dict[str, Any], config_path: str | None, *, every_ct_file: bool = True) -> list[tuple[str, Path]]:
    """(what, path) of every input file or folder a run reads: the config, the plan, the structure set, the beam
    model and calibration files, the CT folder and each file in it.

    ``every_ct_file`` false: of the CT folder's files only those the CT reader may read as DICOM and so may name
    (:func:`~mcproton._io.dicom_common.may_be_dicom`, not hidden), for the refusal of names an ASCII locale cannot
    hold: a stray note (``Notiz_für_Physik.txt``) is opened, found not DICOM and skipped unnamed, so its name is
    never written anywhere, and refusing the run over it protected nothing (the new-features audit of 2026-12-06,
    F4).  True (the default): every file, as outputs are checked against (an output must not replace any of them)."""
    from pathlib import Path

    from .._io.dicom_common import may_be_dicom
    from ..config import _resolve

    found: list[tuple[str, Path]] = []
    if config_path:
        found.append(("the config file", Path(config_path)))
    pl, ph = cfg.get("plan", {}), cfg.get("phantom", {})
    for key in ("rtplan", "rtstruct", "beam_model"):
        if isinstance(pl.get(key), str):
            q = _resolve(cfg, pl[key])
            if q.exists() or key != "beam_model":
                found.append((f"plan.{key}", q))
    if isinstance(ph.get("calibration"), str) and _resolve(cfg, ph["calibration"]).exists():
        found.append(("phantom.calibration", _resolve(cfg, ph["calibration"])))
    if isinstance(ph.get("ct_dir"), str):
        d = _resolve(cfg, ph["ct_dir"])
        what = "phantom.ct_dir" if ph.get("type") == "ct" else "phantom.ct_dir (the slab CT folder)"
        found.append((what, d))
        if d.is_dir():
            found += [(f"a file of {what}", f) for f in sorted(d.iterdir())
                      if every_ct_file or (not f.name.startswith(".") and may_be_dicom(f))]
    return found


def input_files(cfg: dict[str, Any], config_path: str | None) -> list[Path]:
    """Every file a run reads, for the SHA-256s of ``mcproton run --resume``'s run identity (the new-features audit
    of 2026-12-06, F2: an RT Struct changed in place was "already complete"): the config, plan, structure set, beam
    model and calibration files (a calibration folder's files), and the CT folder's files as the CT reader lists them
    (every file not hidden: each is opened).  A slab_ct phantom's CT folder is not: the run writes it (from the
    config, which is in the identity)."""
    import os
    from pathlib import Path

    files: list[Path] = []
    for what, p in input_paths(cfg, config_path):
        if what.startswith(("phantom.ct_dir (the slab CT folder)", "a file of phantom.ct_dir (the slab")):
            continue
        if what == "phantom.calibration" and p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file())
        elif p.is_file() and not (what.startswith("a file of ") and p.name.startswith(".")):
            files.append(Path(os.path.abspath(p)))
    return files


def check_output_paths(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> None:
    """Refuse outputs that would destroy something: an output equal to an input or to another output, or one that
    exists and is not a regular file (a folder, a device node, a FIFO); and outputs that could not be written: a
    name longer than the file system allows, with its lock file's suffix (the temporary and rescue names are short
    whatever the output's: mcproton/_io/atomic.py) (ConfigError); or in a folder that is read-only or cannot be written
    (OutputWriteError: the machine's, exit status 3)."""
    import os
    import stat

    from .._io.atomic import name_too_long
    from .._io.errors import OutputWriteError
    from .._io.lock import LOCK_SUFFIX
    from ..config import ConfigError

    for i, (what, p) in enumerate(outputs):
        for other, q in outputs[:i]:
            if _same_file(p, q):
                raise ConfigError(f"{what} {p} is the same file as {other}: one would overwrite the other; give them "
                                  "different names" + (" (the plot is written beside the HDF5 with the suffix .png: "
                                                       "name --out *.h5, or set output.plot = false)"
                                                       if "plot" in what + other else ""))
        for other, q in outputs:
            if q != p and Path(os.path.realpath(q)) in Path(os.path.realpath(p)).parents:   # links resolved
                # found now: after the transport, the second could not be written ("File exists")
                raise ConfigError(f"{what} {p} lies inside {other} {q}, which is written as a file: give {other} a "
                                  f"file name (e.g. {Path(q) / 'dose.h5'} for the HDF5) or {what} another folder")
        for other, q in inputs:
            if _same_file(p, q):
                raise ConfigError(f"{what} {p} is {other}: writing it would destroy an input; give another path")
        try:
            st = os.stat(p)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise ConfigError(f"{what} {p} is {kind}; an output must be a regular file: give a file name")
        too_long = name_too_long(p, ("", LOCK_SUFFIX))   # found now, not when the transport's result is written
        if too_long:
            raise ConfigError(f"{what} {p}: {too_long}")
        parent = _existing_folder(p)
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{what} {p}: {parent} is a file, not a folder; give a path in a folder")
        # the machine's, not the config's: exit status 3, as check, demo, phantom and validate give for the same
        # folder (their lock file cannot be made there); before, 2 and "config error" (audit 26 exitcodes, F3)
        if parent.is_dir() and _read_only(parent):   # not "no permission": chmod would not help (audit F12)
            raise OutputWriteError(f"{what} {p}: the folder {parent} is on a read-only file system, so the run's "
                                   "output could not be saved there; give a path on a writable file system (or "
                                   "remount it read-write)")
        if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
            # found now, not after the transport (where the result would go to the temporary folder instead)
            raise OutputWriteError(f"{what} {p}: the folder {parent} cannot be written (no permission), so the run's "
                                   "output could not be saved there; give a path in a folder you can write to")


def check_replaceable(outputs: list[tuple[str, Path] | tuple[str, Path, str]]) -> None:
    """Refuse, before the transport, an output path where a file exists that mcproton did not write
    (mcproton/_io/ownership.py :func:`written_by_mcproton`: a planning system's RT Dose, a user's HDF5 or PNG):
    ``mcproton run`` replaces only its own earlier outputs (the hostile-inputs audit of 2026-12-06, F3: a config's
    ``output.rtdose`` replaced a TPS's RT Dose, and --out thesis.h5 a user's file and the PNG beside it, with a note
    calling them "the existing output of an earlier run").  A PNG that only matplotlib marks (any figure a user drew
    with it) is taken as the plot of an earlier run where the HDF5 of the same name beside it is mcproton's too.
    Each output is ``(what, path)`` or ``(what, path, kind)``: with its kind ("rtdose", "hdf5", "png"), a file that
    mcproton wrote is replaced only where it is an earlier output of that kind (:func:`other_kind`: an RT Dose
    replaces an RT Dose, not a CT slice of another series or an RT Ion Plan that mcproton wrote; the identity audit
    of 2026-12-07, F7)."""
    import os

    from .._io.ownership import OUTPUT_KINDS, other_kind, png_marked_by_mcproton, written_by_mcproton
    from ..config import ConfigError

    for what, p, *kind in outputs:
        p = Path(p)
        if not os.path.lexists(p):
            continue
        ours, why = written_by_mcproton(p)
        if ours and p.suffix.lower() == ".png" and not png_marked_by_mcproton(p):
            beside = [q for q in (p.with_suffix(".h5"), p.with_suffix(".hdf5")) if q.is_file()]
            ours = any(written_by_mcproton(q)[0] for q in beside)
            why = "a PNG without mcproton's mark, and no mcproton HDF5 of its name beside it"
        if not ours:
            raise ConfigError(f"{what} {p} exists and mcproton did not write it ({why}): it is not replaced; give "
                              "another path, or delete or move that file yourself if it is no longer needed")
        other = other_kind(p, kind[0]) if kind else ""
        if other:
            raise ConfigError(f"{what} {p} exists and is {other}, not {OUTPUT_KINDS[kind[0]]}: it is not replaced "
                              f"(an output replaces only an earlier output of its own kind); give another path, or "
                              "delete or move that file yourself if it is no longer needed")


def _read_only(folder: Path) -> bool:
    """Whether ``folder`` is on a file system mounted read-only (statvfs ST_RDONLY; False where unknown)."""
    import os

    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


#: A source farther than this from the grid is refused (mm).  Beam models put their source plane 0.5-3 m upstream
#: of the isocentre (dcpt_v2 500 mm, dcpt_v5 600 mm; MCsquare BDLs up to ~2.5 m); 10 m leaves a wide margin.
MAX_SOURCE_DISTANCE_MM = 10_000.0

#: Largest angular sigma of a spot (rad); therapy beam models give a few mrad (dcpt_v5: < 5 mrad).
MAX_DIVERGENCE_RAD = 0.2
#: A source inside the phantom: refused when more than this much material (g/cm2; 0.1 = 1 mm of water) lies between
#: the source and the grid's face upstream of it, along the central ray; the protons start at the source and never
#: cross it (no dose there, the Bragg peak that much deeper).  Voxels below AIR_LIKE_G_CM3 (air: 0.0012 g/cm3; the
#: air a CT or a slab CT holds in front of the patient) do not count.
MAX_SKIPPED_G_CM2 = 0.1
AIR_LIKE_G_CM3 = 0.01

#: A finished run fails when more than this fraction of the incident energy missed the grid or left it (ledger).
MAX_LOST_ENERGY_FRACTION = 0.5


#: Extent (x, y, z) in mm of the paediatric neuraxis phantom at 1 and 18 years (make_head_phantom, 2026-12-04).
_PAEDIATRIC_EXTENT_1Y_MM = (212.0, 196.0, 488.0)
_PAEDIATRIC_EXTENT_18Y_MM = (364.0, 300.0, 896.0)


def _config_grid_shape(ph: dict[str, Any]) -> tuple[int, int, int] | None:
    """Shape (z, y, x) of the grid a box / slab / slab_ct / paediatric phantom config asks for (before it is
    allocated); None when the config does not say (a CT: :func:`_ct_grid_shape`) or its values are not numbers (the
    builder then refuses them)."""
    import math

    from .._io.slab_ct import MAX_AIR_MM

    def nums(v: Any, n: int) -> list[float] | None:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v] * n
        if isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      and math.isfinite(x) and x > 0 for x in v):
            return [float(x) for x in v]
        return None

    kind = ph.get("type", "water")
    vox = nums(ph.get("voxel_mm", 2.0 if kind == "paediatric" else [2.0, 2.0, 1.0]), 3)
    if vox is None:
        return None
    if kind in ("water", "box"):
        size = nums(ph.get("size_mm", [200.0, 200.0, 300.0]), 3)
    elif kind in ("slabs", "slab_ct") and isinstance(ph.get("layers"), list):
        lat = nums(ph.get("lateral_size_mm", [200.0, 200.0]), 2)
        depth = sum(float(L.get("thickness_mm", 0)) for L in ph["layers"] if isinstance(L, dict)
                    and isinstance(L.get("thickness_mm"), (int, float)) and L["thickness_mm"] > 0)
        air = ph.get("air_mm", 0.0) if kind == "slab_ct" else 0.0
        depth += float(air) if isinstance(air, (int, float)) and 0 < air <= MAX_AIR_MM else 0.0   # else refused
        axis = str(ph.get("depth_axis", "+z"))[-1:] if kind == "slab_ct" else "z"
        k = "xyz".index(axis) if axis in ("x", "y", "z") else 2
        if lat is None:
            return None
        size = lat[:k] + [depth] + lat[k:] if kind == "slab_ct" else lat + [depth]
    elif kind == "paediatric":   # its extent by age, interpolated (+10 %) between the 1 y and 18 y phantoms
        age = ph.get("age_years", 5.0)
        if not isinstance(age, (int, float)) or isinstance(age, bool) or not math.isfinite(age):
            return None
        f = min(max((float(age) - 1.0) / 17.0, 0.0), 1.0)
        size = [1.1 * (a + f * (b - a)) for a, b in zip(_PAEDIATRIC_EXTENT_1Y_MM, _PAEDIATRIC_EXTENT_18Y_MM)]
    else:
        return None
    if size is None:
        return None
    nx, ny, nz = (max(1, int(round(min(s / v, 1e9)))) for s, v in zip(size, vox))
    return nz, ny, nx


def _ct_grid_shape(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """Shape (z, y, x) of the dose grid of a phantom.type = "ct" config, from the CT series' headers alone (no pixel
    is read: mcproton/_io/ct.py ct_series_grid) and phantom.dose_voxel_mm, with the arithmetic the build uses
    (config._ct_dose_blocks, geometry.blocked_shape), so that the two cannot disagree.  None where the headers
    cannot say (no ct_dir, a series the reader refuses, dose voxels it refuses): the build then refuses with its
    own words.  Before, a CT's grid was known only once the CT was read and converted: the 140 GB grid of a
    1024 x 1024 x 800 CT was refused after 35 s and 6.9 GB of it (the scale audit of 2026-12-07, F3)."""
    from .._io.ct import ct_series_grid
    from ..config import _ct_dose_blocks, _resolve
    from ..geometry import blocked_shape

    ph = cfg.get("phantom", {})
    if not isinstance(ph.get("ct_dir"), str):
        return None
    try:
        shape, voxel_mm = ct_series_grid(_resolve(cfg, ph["ct_dir"]), series_uid=ph.get("ct_series"))
        return blocked_shape(shape, _ct_dose_blocks(ph, shape, voxel_mm))
    except (ValueError, TypeError, KeyError, OSError):   # refused by the build, which says why
        return None


def check_before_build(cfg: dict[str, Any]) -> None:
    """Checks that need no geometry, run before it is built: the memory of the grid the config asks for (a grid
    too large for memory is refused before it is allocated; a CT's from its headers, before its pixels are read)
    and the files named by [plan] (a missing structure set is reported now, not after the transport)."""
    from ..config import ConfigError, _resolve, relative_path_note

    ph = cfg.get("phantom", {})
    ct = ph.get("type") == "ct"
    shape = _ct_grid_shape(cfg) if ct else _config_grid_shape(ph)
    if shape is not None:
        check_memory(int(np.prod(shape, dtype=float)), 0, shape, ct)   # the beams are read later
    pl = cfg.get("plan", {})
    for key, what in (("rtplan", "an RT Ion Plan file"), ("rtstruct", "an RT Structure Set file")):
        if isinstance(pl.get(key), str):
            p = _resolve(cfg, pl[key])
            if not p.is_file():
                raise ConfigError(f"plan.{key} = {pl[key]!r}: {p} {'is a folder' if p.is_dir() else 'not found'}"
                                  f"{relative_path_note(cfg, pl[key])}; give the path of {what}")
    if isinstance(pl.get("rtstruct"), str):
        from .._io.rtstruct import read_rtstruct

        try:
            read_rtstruct(_resolve(cfg, pl["rtstruct"]))
        except (ValueError, OSError, KeyError, AttributeError) as exc:
            raise ConfigError(f"plan.rtstruct: {exc}") from None


def beam_grid_checks(geometry: Any, beams: list[Any], where: str, *,
                     shifters: bool = True) -> tuple[Callable[[], None], ...]:
    """The checks of ``beams`` against the grid, in order, each a call that raises ConfigError: every spot missing
    the grid (config.check_beam_hits), spots that can only be nonsense (:func:`check_beam_sanity`), a source or a
    range shifter inside the phantom (``shifters``: with :func:`check_shifters_outside`), a beam whose every layer
    stops in its range shifter (the layers that do are warned about: :func:`check_shifter_ranges`).  ``mcproton run``
    and ``mcproton check`` refuse with them; ``simulate`` warns of them, but on a CT's grid refuses a range shifter
    inside the patient itself (``shifters=False`` here)."""
    from ..config import check_beam_hits

    return (lambda: check_beam_hits(geometry, beams), lambda: check_beam_sanity(geometry, beams, where),
            lambda: check_source_outside(geometry, beams, where),
            *((lambda: check_shifters_outside(geometry, beams, where),) if shifters else ()),
            lambda: check_shifter_ranges(beams, where))


def check_beam_sanity(geometry: Any, beams: list[Any], where: str) -> None:
    """Spot sizes, divergences and source positions that can only be nonsense: a spot sigma larger than the whole
    grid (its protons would nearly all miss it), an angular sigma beyond MAX_DIVERGENCE_RAD and a source farther
    than MAX_SOURCE_DISTANCE_MM from the grid."""
    from ..config import ConfigError

    lo = np.asarray(geometry.lower_corner_mm, float)
    ext = np.asarray(geometry.extent_mm, float)
    centre = lo + ext / 2
    span = float(np.linalg.norm(ext))
    for beam in beams:
        for j, s in enumerate(beam.spots):
            if s.weight <= 0:
                continue
            name = where if len(beam.spots) == 1 and where == "beam" else f"spot {j} of {where} {beam.name!r}"
            sig = max(float(v) for v in s.sigma_mm)
            if sig > span:
                raise ConfigError(f"{name}: sigma_mm = {list(s.sigma_mm)} mm is larger than the whole grid "
                                  f"({span:.0f} mm corner to corner), so nearly every proton would miss it; give the "
                                  "spot sigma in mm (therapy spots: 2-15 mm)")
            div = max(abs(float(v)) for v in s.divergence_rad)
            if div > MAX_DIVERGENCE_RAD:
                raise ConfigError(f"{name}: divergence_rad = {list(s.divergence_rad)} is beyond the limit of "
                                  f"{MAX_DIVERGENCE_RAD:g} rad (the angular sigma of a therapy beam is a few mrad); "
                                  "give it in radians")
            dist = float(np.linalg.norm(np.asarray(s.position_mm, float) - centre))
            if not dist <= MAX_SOURCE_DISTANCE_MM + span:
                raise ConfigError(f"{name}: position_mm = {list(s.position_mm)} is {dist:.3g} mm from the grid, "
                                  f"farther than the limit of {MAX_SOURCE_DISTANCE_MM:g} mm (10 m; beam models put "
                                  "the source 0.5-3 m upstream); give the position in mm, near the phantom")


def material_upstream_g_cm2(geometry: Any, position_mm: Any, direction: Any, *, max_rays: int = 2000,
                            where: np.ndarray | None = None, min_density: float = AIR_LIKE_G_CM3,
                            density: np.ndarray | None = None) -> np.ndarray:
    """For each source (rows of ``position_mm``, ``direction``): the mass thickness (g/cm2) of the grid's material
    denser than ``min_density`` (default AIR_LIKE_G_CM3) between the source and the grid's face upstream of it
    along the central ray; 0 for
    a source outside the grid.  Sampled at a quarter of the smallest voxel; at most ``max_rays`` of the sources
    inside the grid are traced (the others NaN).  ``where``: a (z, y, x) mask; only its voxels count (e.g. the
    CT outside the External upstream of a beam's isocentre); ``density``: a (z, y, x) density traced in place of the
    geometry's (the CT's material outside the External per block)."""
    p = np.atleast_2d(np.asarray(position_mm, float))
    d = np.atleast_2d(np.asarray(direction, float))
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    lo = np.asarray(geometry.lower_corner_mm, float)
    vs = np.asarray(geometry.voxel_size_mm, float)
    hi = lo + np.asarray(geometry.extent_mm, float)
    out = np.zeros(len(p))
    inside = np.flatnonzero(np.all((p > lo) & (p < hi), axis=1))
    if inside.size == 0:
        return out
    out[inside[max_rays:]] = np.nan
    rho = np.asarray(geometry.density_g_cm3_zyx if density is None else density)
    shape_xyz = np.array(rho.shape[::-1])
    step = float(vs.min()) / 4
    for i in inside[:max_rays]:
        back = -d[i]
        with np.errstate(divide="ignore"):   # distance to the grid's face behind the source
            t = np.where(back > 0, (hi - p[i]) / back, np.where(back < 0, (lo - p[i]) / back, np.inf))
        t_exit = float(t.min())
        ts = (np.arange(int(np.ceil(t_exit / step))) + 0.5) * step
        ts = ts[ts < t_exit]
        idx = np.floor((p[i] + ts[:, None] * back - lo) / vs).astype(int)
        idx = np.clip(idx, 0, shape_xyz - 1)
        r = rho[idx[:, 2], idx[:, 1], idx[:, 0]]
        if where is not None:
            r = np.where(where[idx[:, 2], idx[:, 1], idx[:, 0]], r, 0.0)
        dl = np.full(ts.size, step)
        if ts.size:
            dl[-1] = t_exit - (ts[-1] - step / 2)   # the last sample's part up to the face
        out[i] = float(np.sum(np.where(r > min_density, r, 0.0) * dl)) / 10.0   # mm -> cm
    return out


def check_source_outside(geometry: Any, beams: list[Any], where: str) -> None:
    """Refuse a source inside the phantom (more than MAX_SKIPPED_G_CM2 of material upstream of it along the
    central ray): the protons start there, so the material in front of it gets no dose and the dose behind it is
    that of a beam that never crossed it (a plausible but wrong depth dose)."""
    from ..config import ConfigError

    for beam in beams:
        spots = [(j, s) for j, s in enumerate(beam.spots) if s.weight > 0]
        if not spots:
            continue
        spots = _evenly(spots, MAX_TRACED_SPOTS)   # every ray traced (before: rays beyond 2000 counted as material)
        g = material_upstream_g_cm2(geometry, [s.position_mm for _, s in spots], [s.direction for _, s in spots],
                                    max_rays=len(spots))
        bad = np.flatnonzero(g > MAX_SKIPPED_G_CM2)
        if bad.size == 0:
            continue
        j, s = spots[int(bad[0])]
        name = where if len(beam.spots) == 1 and where == "beam" else f"spot {j} of {where} {beam.name!r}"
        gb = float(g[bad[0]])
        amount = (f"{gb:.3g} g/cm2 of material (about {10 * gb:.3g} mm of water)" if np.isfinite(gb)
                  else "material")
        others = f" ({bad.size} of the beam's {len(spots)} spots)" if bad.size > 1 else ""
        raise ConfigError(f"{name}: the source position_mm = {[float(v) for v in s.position_mm]} lies inside the "
                          f"phantom{others}: {amount} lie between it and the phantom's surface upstream along "
                          "the beam, which the protons never cross (they start at the source), so that material "
                          "gets no dose and the dose behind it is too deep; put the source upstream of the phantom "
                          "(in the air in front of it, or outside the grid: beam models put it 0.5-3 m upstream "
                          "of the isocentre)")


#: At most this many spots of a beam are traced for its source's and its range shifter's position (evenly through
#: the beam's spots)
MAX_TRACED_SPOTS = 2000
#: A range shifter is inside the patient when material denser than SHIFTER_MATERIAL_G_CM3 lies between its
#: downstream face and the grid's face upstream of it along a spot's central ray (the protons start at the face, so
#: that material is never crossed): above WARN_SHIFTER_INSIDE_G_CM2 (g/cm2) on any spot's ray ``mcproton run``,
#: ``mcproton check`` and ``simulate`` warn, naming the water-equivalent thickness and the share of the spots;
#: above MAX_SHIFTER_INSIDE_G_CM2 ``mcproton run`` and ``mcproton check`` refuse (``simulate`` warns).  The air
#: of a CT does not count (its noise, block-averaged, stays far below 0.5 g/cm3).
#: Measured (2026-12-06, this tracer, every real plan with a shifter in tests/data/dicom): the DCPT head phantom
#: (Eclipse RN_headphantom_rs, RS_5CM, 3 beams, on its CT from nbassler/dicomexport), OpenTPS's head plan
#: (RPO_RS, RS_Block, on its CT) and APTG plan06 (RayStation, RS_3CM, on water from 43.7 mm before the
#: isocentre, its geometry F): 0 g/cm2 on every spot (max and mean; each face outside the CT grid, 163-254 mm
#: before the first material); the planner's own shifter (audit 18's infant orbit, RS_3CM, 40 mm air gap): 0
#: (max and mean).  A face 8.5 mm inside that 1-year-old's head (audit 18, F1): max 1.91, mean 0.71 g/cm2,
#: target D95 -12 %; 1.5 mm inside it: max 1.18, mean 0.27 g/cm2.
#: So 0.15 g/cm2 (1.5 mm of water, the skin voxel's partial volume at a face touching the skin) warns, and
#: 0.5 g/cm2 (5 mm of water: more than a 2-3 mm CT voxel of tissue; a thermoplastic mask's shell, 1.5-3 mm of
#: about 1.2 g/cm3, is 0.2-0.36 g/cm2 and is warned about, not refused) refuses.  Before 2026-12-06 the refusal was
#: at 2.0 g/cm2 and nothing below it was said: 19 mm of an infant's head skipped without a word (audit 18, F1).
#: The audit of 2026-12-05's shifter placed 248 mm too close (a cm/mm slip) had 4.9 g/cm2 upstream.
WARN_SHIFTER_INSIDE_G_CM2 = 0.15
MAX_SHIFTER_INSIDE_G_CM2 = 0.5
SHIFTER_MATERIAL_G_CM3 = 0.5


def _evenly(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly through them (all when there are no more)."""
    if len(items) <= n:
        return items
    return [items[k] for k in np.unique(np.linspace(0, len(items) - 1, n).astype(int))]


def shifter_upstream_g_cm2(geometry: Any, beam: Any) -> tuple[list, np.ndarray]:
    """The spots of ``beam`` with a range shifter and a weight (at most MAX_TRACED_SPOTS, evenly), as (index,
    spot), and for each the material denser than SHIFTER_MATERIAL_G_CM3 (g/cm2) between its shifter's downstream
    face and the grid's face upstream of it along its central ray (0 for a face outside the grid)."""
    spots = [(j, s) for j, s in enumerate(beam.spots) if s.weight > 0 and s.range_shifter is not None]
    if not spots:
        return [], np.zeros(0)
    spots = _evenly(spots, MAX_TRACED_SPOTS)
    d = np.array([np.asarray(s.direction, float) / np.linalg.norm(s.direction) for _, s in spots])
    exit_mm = np.array([s.range_shifter.upstream_face_mm + s.range_shifter.thickness_mm for _, s in spots])
    p = np.array([np.asarray(s.position_mm, float) for _, s in spots]) + d * exit_mm[:, None]
    return spots, material_upstream_g_cm2(geometry, p, d, max_rays=len(spots), min_density=SHIFTER_MATERIAL_G_CM3)


#: What to do about a range shifter inside the patient (no key overrides the refusal: the dose would be wrong)
SHIFTER_INSIDE_FIX = ("check the plan's IsocenterToRangeShifterDistance (300A,0364, mm from the isocentre to the "
                      "shifter's downstream face: the snout position) and the beam model's range shifter; where the "
                      "material upstream of the face is not the patient but the CT's couch, head rest or mask that "
                      "the treatment does not have, crop the CT outside the External (plan.outside_external = "
                      "\"air\" in mcproton run, --outside-external air in mcproton check)")


def check_shifters_outside(geometry: Any, beams: list[Any], where: str) -> list[str]:
    """Refuse a range shifter inside the phantom: more than MAX_SHIFTER_INSIDE_G_CM2 of material denser than
    SHIFTER_MATERIAL_G_CM3 between the slab's downstream face and the grid's face upstream of it, along a spot's
    central ray; warn (McprotonRuntimeWarning) above WARN_SHIFTER_INSIDE_G_CM2.  The slab is crossed before
    the protons enter the grid, so that material would never be crossed: an IsocenterToRangeShifterDistance of
    27.55 instead of 275.5 mm put a 50 mm slab inside a head and took 57 mm of tissue out of the beam's way (the
    target dose of that beam 0.0005 instead of 0.32 Gy, a helper's audit, 2026-12-05); a face 8.5 mm inside an
    infant's head skipped up to 19 mm of water-equivalent tissue (target D95 -12 %, audit 18).  Returns the
    warnings given (one per beam; mcproton check names them among its likely causes)."""
    from ..config import ConfigError

    notes = []
    for beam in beams:
        spots, g = shifter_upstream_g_cm2(geometry, beam)
        if not spots:
            continue
        gmax = float(np.nanmax(g))
        if not gmax > WARN_SHIFTER_INSIDE_G_CM2:
            continue
        k = int(np.nanargmax(g))
        j, s = spots[k]
        rs = s.range_shifter
        wet = f", WET {rs.wet_mm:g} mm" if rs.wet_mm else ""
        n = int(np.sum(g > WARN_SHIFTER_INSIDE_G_CM2))
        what = (f"{where} {beam.name!r}: its range shifter {rs.id or '(no ID)'!r} ({rs.thickness_mm:.1f} mm{wet}) "
                f"lies inside the phantom: up to {gmax:.3g} g/cm2 of material denser than "
                f"{SHIFTER_MATERIAL_G_CM3:g} g/cm3 (about {10 * gmax:.3g} mm of water, along spot {j}'s ray; "
                f"{n} of the {len(spots)} spots traced, {100 * n / len(spots):.0f} %, have more than "
                f"{WARN_SHIFTER_INSIDE_G_CM2:g} g/cm2, mean {float(np.nanmean(g)):.2g} g/cm2) lie between its "
                "downstream face and the phantom's surface upstream, which the protons would never cross, so the "
                "dose behind it is too deep")
        if gmax > MAX_SHIFTER_INSIDE_G_CM2:
            raise ConfigError(f"{what} (refused above {MAX_SHIFTER_INSIDE_G_CM2:g} g/cm2); {SHIFTER_INSIDE_FIX}")
        notes.append(what)
        warn(f"{what}; {SHIFTER_INSIDE_FIX}", McprotonRuntimeWarning, stacklevel=2)
    return notes


#: The patient cut off on a beam's path (check_ct_truncation): matter denser than TRUNCATION_TISSUE_G_CM3 over at
#: least TRUNCATION_MIN_RUN_MM along a spot's central ray is the patient (soft tissue and bone, fat 0.92 g/cm3; not
#: lung, air, couch foam; about the -400 HU of the automatic body outline, mcproton/body.py); thinner dense layers
#: (the carbon-fibre shells of a couch top, a thermoplastic mask: 1-3 mm, blurred over a voxel or two) are passed.
#: The ray's first such run is where the beam enters the patient: it is cut off when that lies within one voxel of
#: the grid face the ray came in through, or within TRUNCATION_FOV_GAP_VOXELS voxels of the CT's out-of-field-of-view
#: padding (VoxelGeometry.outside_fov_zyx), a voxel measured along the ray (_ray_entries).  At most
#: MAX_TRUNCATION_RAYS spots per beam are traced (evenly).
TRUNCATION_TISSUE_G_CM3 = 0.6
TRUNCATION_MIN_RUN_MM = 10.0
TRUNCATION_FOV_GAP_VOXELS = 2
MAX_TRUNCATION_RAYS = 400


def _ray_entries(geometry: Any, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rays from ``p`` along unit ``d`` (rows): whether each enters the patient cut off by the grid's face
    (``edge``) or next to the field-of-view padding (``fov``), and whether it meets the patient at all (``hit``):
    see TRUNCATION_TISSUE_G_CM3.  Sampled at half the smallest voxel, all rays at once.

    "One voxel" is measured along each ray: for the grid face, the voxel layer at the face the ray came in through
    (its side across the face / |d| across it); for the padding, the voxel's chord along the ray (min over the axes
    of side / |d|).  The largest side of the voxel, used until 2026-12-06, flagged a lateral beam on 1 x 1 x 3 mm
    voxels crossing 2 mm of air in the CT before the skin as cut off, and not on 1 x 1 x 1 mm (grids audit F1)."""
    lo = np.asarray(geometry.lower_corner_mm, float)
    vs = np.asarray(geometry.voxel_size_mm, float)
    hi = lo + np.asarray(geometry.extent_mm, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - p) / d, (hi - p) / d
    # a ray parallel to an axis: within the grid's slab on it, no bound from it (-inf, +inf); outside, no crossing
    # at all (both -inf, so t_out < t_in); before, outside gave (+inf, -inf), a crossing clipped onto the edge row
    t1 = np.where(d == 0, -np.inf, t1)
    t2 = np.where(d == 0, np.where((p > lo) & (p < hi), np.inf, -np.inf), t2)
    t_near = np.minimum(t1, t2)
    t_in = np.maximum(t_near.max(axis=1), 0.0)
    t_out = np.maximum(t1, t2).min(axis=1)
    a = np.abs(d)
    with np.errstate(divide="ignore"):
        along = np.where(a > 0, vs / np.where(a > 0, a, 1.0), np.inf)   # (rays, 3): a voxel's side along the ray
    face_layer = along[np.arange(len(p)), np.argmax(t_near, axis=1)]   # the layer at the face the ray came in by
    chord = along.min(axis=1)
    n = len(p)
    edge, fov, hit = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    step = float(vs.min()) / 2
    run = max(1, int(np.ceil(TRUNCATION_MIN_RUN_MM / step)))
    gap = np.ceil(TRUNCATION_FOV_GAP_VOXELS * chord / step).astype(np.int64)   # samples, per ray
    shape_xyz = np.array(geometry.shape_zyx[::-1])
    rho_zyx = np.asarray(geometry.density_g_cm3_zyx)
    pad_zyx = geometry.outside_fov_zyx
    ok_all = np.flatnonzero(t_out > t_in)
    for c0 in range(0, ok_all.size, 64):   # 64 rays at a time: a few MB of samples, whatever the grid
        ok = ok_all[c0:c0 + 64]
        k = int(np.ceil(float((t_out[ok] - t_in[ok]).max()) / step))
        ts = t_in[ok, None] + (np.arange(k) + 0.5) * step            # (rays, samples)
        inside = ts < t_out[ok, None]
        pts = p[ok, None, :] + ts[..., None] * d[ok, None, :]
        idx = np.clip(np.floor((pts - lo) / vs).astype(np.int64), 0, shape_xyz - 1)
        tissue = (rho_zyx[idx[..., 2], idx[..., 1], idx[..., 0]] > TRUNCATION_TISSUE_G_CM3) & inside
        length = np.zeros(tissue.shape, np.int32)   # the run of tissue samples from each sample on
        acc = np.zeros(len(ok), np.int32)
        for j in range(k - 1, -1, -1):
            acc = np.where(tissue[:, j], acc + 1, 0)
            length[:, j] = acc
        # a run that reaches the grid's far face counts as long (a patient cut on the exit side is not this check's)
        to_end = inside.sum(axis=1, keepdims=True) - np.arange(k) <= length
        start = tissue & ((length >= run) | to_end)
        first = np.argmax(start, axis=1)
        for r in np.flatnonzero(start[np.arange(len(ok)), first]):
            j, i = int(first[r]), int(ok[r])
            hit[i] = True
            edge[i] = t_in[i] > 0 and j * step < face_layer[i]   # t_in > 0: the ray came in through a face
            if pad_zyx is not None and j > 0:
                q = idx[r, max(0, j - int(gap[i])):j]
                fov[i] = bool(np.asarray(pad_zyx)[q[:, 2], q[:, 1], q[:, 0]].any())
    return edge, fov, hit


def check_ct_truncation(geometry: Any, beams: list[Any], where: str) -> None:
    """Warn when a beam enters the patient where the CT has cut the patient off: at the face of the CT grid the beam
    comes in through, or at the scanner's out-of-field-of-view padding (a patient wider than the reconstruction
    circle).  The patient beyond is missing from the CT, so the beam crosses less matter than in the patient and
    its dose lies too deep by the missing tissue's WET.  Only the rays' entry points count: a head CT whose last
    slices cut the neck is not a finding for a lateral beam, and a couch top cut by the grid is passed
    (TRUNCATION_MIN_RUN_MM).  The warning names the beam and the share of its spot weight whose central rays enter
    so (among the MAX_TRUNCATION_RAYS traced).  The paediatric audit's head cylinder cut by a 190 mm field of view
    5 mm before its side moved the range of a lateral beam by 6 mm without a word.  The field of view's outside stored
    as air is marked where the body touches the reconstruction circle (mcproton._io.ct.fov_cut_mask; the pacs audit's
    F1: the same 6 mm, unwarned)."""
    from .._io.hu_calibration import FOV_PADDING_HU

    for beam in beams:
        spots = _evenly([s for s in beam.spots if s.weight > 0], MAX_TRUNCATION_RAYS)
        if not spots:
            continue
        p = np.array([np.asarray(s.position_mm, float) for s in spots])
        d = np.array([np.asarray(s.direction, float) for s in spots])
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        w = np.array([float(s.weight) for s in spots])
        edge, fov, _ = _ray_entries(geometry, p, d)
        parts = []
        if edge.any():
            parts.append(f"{100 * w[edge].sum() / w.sum():.3g} % of its spot weight enters the patient at the edge "
                         "of the CT grid (the patient is cut off by the CT's extent there)")
        if fov.any():
            parts.append(f"{100 * w[fov].sum() / w.sum():.3g} % of its spot weight enters the patient next to the "
                         "scanner's padding outside its reconstruction field of view (CT values below "
                         f"{FOV_PADDING_HU:g} HU, or the body cut off at the reconstruction circle with air stored "
                         "beyond it: the patient is wider than the field of view there)")
        if parts:
            warn(f"{where} {beam.name!r}: {'; '.join(parts)}: the tissue beyond the CT is missing on the beam's path, "
                 "so its dose lies too deep by that tissue's water-equivalent thickness; use a CT that holds the "
                 "whole patient on the beam's path (a larger field of view or scan length, or the patient's outline "
                 "completed with tissue in the planning system)", McprotonRuntimeWarning)


#: A layer stops in its range shifter when the CSDA range in water of its protons, taken at the mean energy plus
#: SHIFTER_STOP_SIGMAS sigmas of the energy spread and lengthened by SHIFTER_STOP_SIGMAS sigmas of range straggling,
#: is below the shifter's water-equivalent thickness: then (nearly) none of its protons leaves the shifter.  The
#: straggling sigma is 0.012 R^0.935 (cm; Bortfeld, Med Phys 24 (1997) 2024, eq. 17, as mcproton.planning.kernel
#: uses it).  A layer whose range is just above the WET delivers a shallow peak, which may be meant: not warned.
SHIFTER_STOP_SIGMAS = 3.0


def shifter_wet_mm(slab: Any) -> float:
    """The water-equivalent thickness (mm) of a :class:`~mcproton.source.RangeShifterSlab` as it is transported:
    its thickness x its linear stopping-power ratio to water at RS_SPR_ENERGY_MEV (100 MeV; the ratio of plastics
    changes by < 0.5 % between 70 and 230 MeV), as the beam model derives a shifter's thickness from its WET
    (mcproton/_io/beam_model.py shifter_stopping_power_ratio)."""
    from .._io.beam_model import shifter_stopping_power_ratio

    return float(slab.thickness_mm) * shifter_stopping_power_ratio(slab.material, float(slab.density_g_cm3))


def _highest_range_mm(energy_mev: float, spread_mev: float) -> float:
    """The CSDA range in water (mm; the engine's ICRU 90 table, mcproton.planning.kernel.water_range_mm) of the
    protons of a layer, at its mean energy + SHIFTER_STOP_SIGMAS energy-spread sigmas, plus SHIFTER_STOP_SIGMAS
    sigmas of range straggling."""
    from ..planning.kernel import STRAGGLING_A_CM, STRAGGLING_B, water_range_mm

    r_cm = float(water_range_mm(energy_mev + SHIFTER_STOP_SIGMAS * max(spread_mev, 0.0))) / 10.0
    return 10.0 * (r_cm + SHIFTER_STOP_SIGMAS * STRAGGLING_A_CM * r_cm ** STRAGGLING_B)


def _layer_names(beam: Any) -> dict[float, str]:
    """Spot mean energy -> "70 MeV (mean 70.14 MeV)" for a plan's beam whose layers have one mean energy each (the
    beam model's mean energy rises with the nominal one), else "mean energy 70.14 MeV"."""
    means = sorted({float(s.energy_mev) for s in beam.spots})
    nominal = sorted((getattr(beam, "meta", None) or {}).get("nominal_energies_mev") or [])
    if len(nominal) == len(means):
        return {m: f"{n:g} MeV (mean energy {m:.2f} MeV)" for m, n in zip(means, nominal)}
    return {m: f"mean energy {m:.2f} MeV" for m in means}


def check_shifter_ranges(beams: list[Any], where: str) -> None:
    """The energy layers whose protons all stop in their range shifter (:data:`SHIFTER_STOP_SIGMAS`): they deposit
    nothing in the patient, which no clinical plan does; the usual cause is a plan's RangeShifterID mapped to
    the wrong shifter of the beam model, or the wrong beam model.  Such layers are warned about (beam, layer
    energy, shifter ID, WET, the share of the beam's protons); a beam whose every layer stops is refused.  The
    paediatric audit's 70 MeV layer (CSDA range 41 mm) behind RS_5CM (57 mm WET) ran without a word beside a 110 MeV
    one (63 % of the incident energy ended in the shifter), and alone was blamed on the phantom after the run."""
    from ..config import ConfigError
    from ..planning.kernel import water_range_mm

    for beam in beams:
        spots = [s for s in beam.spots if s.weight > 0]
        total = float(sum(s.weight for s in spots))
        if not spots or not any(s.range_shifter is not None for s in spots):
            continue
        layers: dict[tuple, list] = {}
        for s in spots:
            rs = s.range_shifter
            key = (float(s.energy_mev), float(s.energy_spread_mev), None if rs is None else (
                str(rs.id), rs.material_name, float(rs.thickness_mm), float(rs.density_g_cm3)))
            layers.setdefault(key, [rs, 0.0])[1] += float(s.weight)
        names = _layer_names(beam)
        stopped: dict[str, list] = {}   # shifter -> [wet, [(layer, range), ...], weight]
        wets: dict[tuple, float] = {}
        for (e, spread, rs_key), (rs, w) in layers.items():
            if rs is None:
                continue
            wet = wets.setdefault(rs_key, shifter_wet_mm(rs))
            r_hi = _highest_range_mm(e, spread)
            if r_hi < wet:
                entry = stopped.setdefault(rs.id or "(no ID)", [wet, [], 0.0])
                entry[1].append((e, float(water_range_mm(e)), r_hi))
                entry[2] += w
        if not stopped:
            continue
        parts = []
        for rs_id, (wet, items, w) in stopped.items():
            items.sort()
            lay = ", ".join(names[e] for e, _, _ in items)
            e, r, r_hi = items[-1]   # the highest of them
            parts.append(f"{len(items)} energy layer(s) ({lay}; {100 * w / total:.3g} % of the beam's protons) stop "
                         f"in range shifter {rs_id!r} of WET {wet:.1f} mm: the CSDA range in water of "
                         f"{e:.2f} MeV is {r:.1f} mm (ICRU 90), {r_hi:.1f} mm with {SHIFTER_STOP_SIGMAS:g} sigma of "
                         "energy spread and range straggling")
        why = ("; a plan's layers are never meant to stop in the shifter: the likely cause is a RangeShifterID "
               "mapped to the wrong [[range_shifter]] of the beam model (its id and wet_mm) or the wrong beam model "
               "(its energies) for this plan")
        n_stop = sum(len(v[1]) for v in stopped.values())
        if n_stop == len(layers):
            raise ConfigError(f"{where} {beam.name!r}: every energy layer stops in its range shifter, so no proton of "
                              f"this beam would reach the patient: {'; '.join(parts)}{why}; correct the beam model's "
                              "range shifter or give the beam model of the plan's machine")
        warn(f"{where} {beam.name!r}: {'; '.join(parts)}, so they deposit nothing in the patient and their MU are "
             f"lost{why}", McprotonRuntimeWarning)


def _shifter_share(led: dict, beams: list[Any] | None) -> str:
    """What the ledger's range-shifter entries say when the shifters took at least MAX_LOST_ENERGY_FRACTION of the
    primaries or of the incident energy: "N % of the primaries (k of n) and M % of the incident energy ended in range
    shifter 'RS_5CM' ...", else ""."""
    inc = float(led.get("incident", 0.0))
    n = int(led.get("primaries", 0) or 0)
    f_e = float(led.get("shifter", 0.0)) / inc if inc > 0 else 0.0
    f_n = int(led.get("shifter_removed", 0) or 0) / n if n > 0 else 0.0
    if max(f_e, f_n) < MAX_LOST_ENERGY_FRACTION:
        return ""
    ids = sorted({str(s.range_shifter.id or "(no ID)") for b in beams or [] for s in b.spots
                  if s.range_shifter is not None})
    which = (f"range shifter {ids[0]!r}" if len(ids) == 1 else
             f"the range shifters {', '.join(repr(i) for i in ids)}" if ids else "the range shifters")
    return (f"{100 * f_n:.0f} % of the primaries ({int(led.get('shifter_removed', 0))} of {n}) and {100 * f_e:.0f} % "
            f"of the incident energy ended in {which} (ledger: shifter_removed, shifter): the beam's protons stop in "
            "the shifter (a CSDA range below its WET); check the plan's RangeShifterID against the beam model's "
            "[[range_shifter]] entries and that the beam model is the plan's machine's")


def check_result(result: Any, *, allow_empty: bool = False, beams: list[Any] | None = None,
                 script: bool = False, rerun: str = "rerun with --allow-empty") -> None:
    """Refuse a finished run that scored nothing, or whose beam mostly missed the grid or left it (the ledger):
    such a dose is almost always a mistake in the config (a spot sigma in um, a position in the wrong unit).  When
    the range shifters took most of the primaries or the energy (ledger entries shifter_removed, shifter), the
    message says so and names them (``beams``: the run's, for the shifters' IDs) instead of pointing at the beam's
    geometry and the phantom.  ``allow_empty`` (``--allow-empty``) accepts it.  ``script``: worded for
    ``simulate``, which warns with it and returns the dose (nothing is written, no option to rerun with).  ``rerun``:
    how to write such a dose anyway, the end of the message (``mcproton run`` says ``--resume --allow-empty`` where
    it keeps the finished run's checkpoint)."""
    if allow_empty:
        return
    led = result.ledger
    inc = float(led.get("incident", 0.0))
    fix = ("check the beam (energy, sigma_mm, position_mm, direction) and the phantom; if this is meant (a beam "
           "that shoots through a thin phantom), " + ("the dose is as computed" if script else
                                                      rerun))
    unwritten = "" if script else ": nothing was written"
    shifter = _shifter_share(led, beams)
    from .result import ScoredGrid, stored_grid

    # a beam's result held as its scored voxels (simulate's) is not made a whole grid here
    dose = stored_grid(result, "dose_gy_zyx")
    dose = dose.values if isinstance(dose, ScoredGrid) else np.asarray(dose)
    if not (dose.max(initial=0.0) > 0):
        raise ResultRefused(f"the run scored no dose anywhere in the grid (incident energy {inc:.4g} MeV, deposited "
                            f"{float(led.get('deposited', 0.0)):.4g} MeV){unwritten}; {shifter or fix}")
    if inc > 0:
        for key, what in (("missed", "missed the grid"), ("escaped", "left the grid")):
            f = float(led.get(key, 0.0)) / inc
            if f > MAX_LOST_ENERGY_FRACTION:
                raise ResultRefused(f"{100 * f:.0f} % of the beam's incident energy {what} (ledger: {key} "
                                    f"{float(led[key]):.4g} of {inc:.4g} MeV; the limit is "
                                    f"{100 * MAX_LOST_ENERGY_FRACTION:.0f} %){unwritten}; "
                                    f"{shifter + '; else ' if shifter else ''}{fix}")


#: Warn when the mean dose in the target differs from the prescription by more than this fraction.
PRESCRIPTION_TOLERANCE = 0.15


def plan_prescription(rtplan_path: Any) -> tuple[float, int, int | None] | None:
    """(TargetPrescriptionDose in Gy(RBE) for all fractions, NumberOfFractionsPlanned, ReferencedROINumber or None)
    of an RT Ion Plan's first target volume dose reference (DoseReferenceType TARGET, structure type VOLUME or
    SITE: mcproton._check.prescription, as the check takes it); None when the plan gives none.  A POINT or
    COORDINATES reference is the dose at a point (the DCPT head plan's "Verification3/5", 8.64 Gy(RBE) of a
    verification box), not the target's: before 2026-12-05 it was taken, and the run warned about a CTV at 0.61
    times it."""
    from .._check.prescription import plan_dose_references

    refs = plan_dose_references(str(rtplan_path), with_tags=["FractionGroupSequence"])   # one header read
    if not refs.items:
        return None
    roi, dose = refs.items[0]
    fg = (refs.header.get("FractionGroupSequence") or [None])[0]
    n = int(fg.get("NumberOfFractionsPlanned", 1) or 1) if fg is not None else 1
    return dose, max(n, 1), roi


def prescription_check(cfg: dict[str, Any], result: Any) -> str | None:
    """A warning when the mean dose in the plan's target structure is far from the plan's prescription (with the
    ratio), else None.  Needs plan.rtplan with a TARGET dose reference (TargetPrescriptionDose) and plan.rtstruct
    with a target (the dose reference's ROI, else the first CTV, PTV or GTV); the prescription is taken as
    Gy(RBE), so the physical dose is weighted by output.rbe or the clinical 1.1."""
    from ..config import _resolve

    pl = cfg.get("plan", {})
    if not (isinstance(pl.get("rtplan"), str) and isinstance(pl.get("rtstruct"), str)):
        return None
    from .result import is_per_primary

    if is_per_primary(result):
        return None
    try:
        rx = plan_prescription(_resolve(cfg, pl["rtplan"]))
        if rx is None:
            return None
        from .._io.rtstruct import rasterise, read_rtstruct

        st = read_rtstruct(_resolve(cfg, pl["rtstruct"]))
    except (ValueError, OSError, KeyError, AttributeError, TypeError):
        return None
    total_gy, n_frac, roi = rx
    target = next((nm for nm, num in st.roi_numbers.items() if roi is not None and num == roi), None)
    for kind in ("CTV", "PTV", "GTV"):
        target = target or next((nm for nm, t in st.roi_types.items() if str(t).upper() == kind), None)
    if target is None:
        return None
    mask = rasterise(st, result.geometry, names=[target]).get(target)
    if mask is None or not mask.any():
        return None
    rbe = float(cfg.get("output", {}).get("rbe", CLINICAL_RBE))
    want = total_gy if pl.get("all_fractions", False) else total_gy / n_frac
    got = float(np.asarray(result.dose_gy_zyx)[mask].mean()) * rbe
    ratio = got / want if want > 0 else float("inf")
    if abs(ratio - 1.0) <= PRESCRIPTION_TOLERANCE:
        return None
    part = f" (only plan.beams = {pl['beams']})" if pl.get("beams") else ""
    return (f"the mean dose in the target {target!r} is {got:.3g} Gy(RBE) (RBE {rbe:g}), {ratio:.2f} times the plan's "
            f"prescription of {want:.3g} Gy(RBE) per {'course' if pl.get('all_fractions') else 'fraction'} "
            f"({total_gy:g} Gy in {n_frac} fractions){part}: check the beam model, the plan's MU and the CT "
            "calibration before using this dose")

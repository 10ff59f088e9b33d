"""The transport engine of a run: ``Simulation`` (tables, geometry and source on the backend, one ``Params``
struct, batches of histories launched on the kernel) and the running sums of the tallies over batches
(``Accumulator`` on the host, ``DeviceAccumulator`` on the GPU).

Data flow (params / state): the physics tables, geometry and source are built once in NumPy, mirrored to
the backend, and referenced by one ``Params`` struct (kernels/params.h).  The run proceeds in batches of
histories with disjoint, consecutive history indices; each batch zeroes the integer tallies, launches the
kernel, and adds the tallies to integer running sums (so the dose does not depend on the batch split, the
thread count or, on the CPU, anything but the seed) and the squared per-batch dose to a float sum for the
per-voxel standard error.  The driver that runs the batches is mcproton/_run/job.py (``run_job``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._backend import get_backend
from .._kernels.layout import FLAG_MSC, FLAG_NUCLEAR, FLAG_SHARED_TALLY, FLAG_STRAGGLING, LEDGER, N_LEDGER, \
    new_params, TALLY_SCALE, TOUCH_SHIFT
from .._physics.tables import E_MAX_MEV, PhysicsTables, build_tables
from ..geometry import VoxelGeometry
from ..settings import MAX_BATCH_SIZE, MAX_PRIMARIES, MORE_THAN_MAX_PRIMARIES, RunSettings
from ..source import Beam
from .result import at_voxels
from .stats import batch_rel_uncertainty, batch_weight, mean_uncertainty_above_half_max, weight_sum_of

#: largest memory of the CPU tally slots (4 int64 tallies per voxel and slot).  A larger budget (2 slots of
#: a 512 x 512 x 200 grid, 3.4 GB) made the transport of that grid 16 % faster in steady state but whole runs
#: of 2e5 protons slower (6.8-8.4 s against 3.4-4.7 s: the second slot's pages are faulted in): 1 GiB.
PRIVATE_TALLY_BYTES = 1 << 30


#: the integer tallies of a run (kernels/params.h): the Simulation's, summed over batches by the Accumulator
TALLIES = ("edep", "edep_water", "edep_proton", "let_num")

#: the float sums over batches from which the LETd's own statistical uncertainty is estimated
#: (stats.let_d_rel_uncertainty): with a batch's ``n_b = let_num_b / N_b`` and ``e_b = edep_proton_b / N_b`` (tally
#: units per history, float64) and its weight ``w_b`` (stats.batch_weight, as the dose's sums), the sums of
#: ``w_b n_b^2``, ``w_b n_b e_b`` and ``w_b e_b^2``.  The first moments are not stored: ``sum w_b n_b = let_num /
#: N_unit`` exactly in the integer sums.  The LETd's denominator is the protons' deposit (edep_proton), not the dose's
#: (edep), so the dose's sum_x2 cannot serve.  24 bytes per voxel (the memory estimate, mcproton/_run/inputs.py).  NaN
#: where unknown (a checkpoint written before they existed: its batches' moments are lost, so the LETd uncertainty of
#: that run is NaN, not a figure of part of it).
LET_MOMENTS = ("let_nn", "let_ne", "let_ee")


def add_let_moments(moments: dict[str, Any], idx: Any, batch: dict[str, Any], n: int, w: float,
                    nz: Any = None) -> None:
    """Add a batch's LETd moments (:data:`LET_MOMENTS`) at the flat voxels ``idx`` (the batch's values at ``nz`` of
    its arrays, or whole where ``nz`` is None); the same operations on NumPy (Accumulator) and CuPy
    (DeviceAccumulator) arrays, so that the two give the same sums."""
    ln, ep = batch["let_num"], batch["edep_proton"]
    if nz is not None:
        ln, ep = ln[nz], ep[nz]
    a = ln.astype(np.float64) / n
    e = ep.astype(np.float64) / n
    if w != 1.0:
        moments["let_nn"][idx] += a * a * w
        moments["let_ne"][idx] += a * e * w
        moments["let_ee"][idx] += e * e * w
    else:
        moments["let_nn"][idx] += a * a
        moments["let_ne"][idx] += a * e
        moments["let_ee"][idx] += e * e

#: The largest running sum of a voxel's integer tally (int64, units of kernels/params.h: 2^-24 MeV, 2.7e11 MeV in
#: one voxel; the LET numerator 2^-16 MeV x MeV cm2/g): a batch that would take a voxel past it is refused before
#: anything is added (TallyLimitError).  A batch's own values stay below 2^62 (settings.MAX_BATCH_SIZE), so a sum at
#: this limit plus one batch never wraps int64.  Integrated-depth-dose geometries (a 20 x 20 cm voxel, 1 mm deep)
#: reach it at about 5e10 primaries (70 MeV; 7.8e10 at 230 MeV); a 1 mm voxel of a pencil beam at 1e13 (the scale
#: audit 19, F4).
TALLY_SUM_LIMIT = 2**62


class TallyLimitError(OverflowError):
    """A batch would take a voxel's running tally past TALLY_SUM_LIMIT: refused before any of it was added (the sums
    hold every batch before it).  ``streaming.stream`` stops the run there (stop reason "tally_limit")."""


def tally_limit_text() -> str:
    """TALLY_SUM_LIMIT in words, for messages."""
    return (f"the limit of a voxel's 64-bit tally ({TALLY_SUM_LIMIT / TALLY_SCALE:.3g} MeV deposited in one voxel, in "
            "units of 2^-24 MeV)")


#: what to do about a run that meets TALLY_SUM_LIMIT
TALLY_LIMIT_REMEDY = ("run fewer primaries per beam (by then the statistical uncertainty is far below 0.1 %), or run "
                      "the beam as several runs with other seeds and take the primaries-weighted mean of their doses, "
                      "or use smaller voxels (the limit is on the energy in one voxel: a large voxel in the beam's "
                      "path, such as the slab of an integrated depth dose, meets it first)")


def tally_limit_message() -> str:
    """TallyLimitError's message."""
    return (f"this batch would take the energy summed in one voxel past {tally_limit_text()}; nothing of it was "
            f"added: {TALLY_LIMIT_REMEDY}")


def top_after_add(sums: Any, vals: Any, vals_top: int, bound: int | None,
                  top: Callable[[Any], int] = lambda a: int(a.max(initial=0))) -> int:
    """An upper bound on the largest of ``sums + vals`` (``vals_top``: the largest of ``vals``; ``bound``: one on the
    largest of ``sums``, or None), without scanning ``sums`` where that bound plus ``vals_top`` stays within
    TALLY_SUM_LIMIT; nearer the limit the largest of ``sums``, then of the sum itself, are taken exactly.
    TallyLimitError where the sum passes the limit.  ``top``: the largest element of an array as an int (numpy's; a
    CuPy caller passes its own)."""
    after = None if bound is None else bound + vals_top
    if after is None or after > TALLY_SUM_LIMIT:   # none yet, or one near the limit: the exact sums
        after = top(sums) + vals_top
        if after > TALLY_SUM_LIMIT:
            after = top(sums + vals)
            if after > TALLY_SUM_LIMIT:
                raise TallyLimitError(tally_limit_message())
    return after


def primaries_to_tally_limit(batch_top: int, n: int) -> float | None:
    """The primaries after which the hottest voxel reaches TALLY_SUM_LIMIT, at the rate of a batch of ``n`` histories
    whose largest tally value is ``batch_top`` (Accumulator.batch_top); None where the batch scored nothing."""
    return TALLY_SUM_LIMIT * n / batch_top if batch_top > 0 and n > 0 else None


def exact_ledger(ledger: Any) -> np.ndarray:
    """A ledger (the kernel's int64 entries, or a running sum) as an array of Python ints (dtype object), whose sums
    are exact however many batches they hold: int64 wraps above 2^63 units of 2^-24 MeV (5.5e11 MeV, the incident
    energy of 2.4e9 primaries at 230 MeV; the scale audit 19, F2: the wrapped ledger refused a correct run)."""
    return np.array([int(v) for v in np.asarray(ledger).reshape(-1)], dtype=object)


def exact_sum(a: Any) -> int:
    """The sum of an int64 array as a Python int, exact however large (NumPy's int64 sum wraps above 2^63): its high
    and low 32-bit halves summed in int64 over chunks of 2^30 values, which cannot overflow."""
    a = np.asarray(a, np.int64).reshape(-1)
    total = 0
    step = 1 << 30
    for s in range(0, a.size, step):
        c = a[s:s + step]
        total += (int((c >> 32).sum()) << 32) + int((c & 0xFFFFFFFF).sum())
    return total


def cpu_tally_slots(n_vox: int, threads: int) -> int:
    """The CPU backend's tally slots for ``threads`` threads on ``n_vox`` voxels: one per thread while they fit in
    :data:`PRIVATE_TALLY_BYTES` (4 int64 tallies per voxel, padded to whole blocks), at least one."""
    if threads <= 1:
        return 1
    slot_bytes = -(-n_vox >> TOUCH_SHIFT << TOUCH_SHIFT) * 4 * 8
    return int(min(threads, max(1, PRIVATE_TALLY_BYTES // slot_bytes)))


class Simulation:
    """A prepared simulation: tables, geometry and source on the backend.  ``run_histories`` can be called
    repeatedly with disjoint history ranges (used by batching, checkpointing and distributed runs)."""

    def __init__(self, geometry: VoxelGeometry, beam: Beam, settings: RunSettings | None = None,
                 tables: PhysicsTables | None = None, beam_index: int = 0,
                 recycle: "Simulation | None" = None) -> None:
        """``recycle``: a Simulation of the same grid and backend that is no longer used (the previous beam of a
        job, CPU backend): its tallies, all 0 after its sparse batches, are taken over instead of new ones (on a
        46 M-voxel grid 1.5 GB of memory not faulted in again); it cannot run afterwards."""
        self.settings = settings or RunSettings()
        # Each beam of a plan gets its own disjoint range of history indices (2^40 apart; a run has fewer
        # primaries), so the beams' random numbers - and their statistical errors - are independent.
        self.beam_index = int(beam_index)
        if not 0 <= self.beam_index < 1 << 23:   # 64-bit history indices; a run has fewer than 2^40 primaries
            raise ValueError(f"beam_index must be an integer in [0, 2^23); got {beam_index}")
        self.history_offset = self.beam_index << 40
        self.geometry = geometry
        self.beam = beam
        phys = self.settings.physics
        if beam.max_energy_mev >= E_MAX_MEV:
            raise ValueError(f"beam energy up to {beam.max_energy_mev:.1f} MeV exceeds the physics tables "
                             f"({E_MAX_MEV} MeV); lower the energy or its spread")
        # the geometry's materials, then the range shifters' (mcproton/source.py Beam.run_materials)
        self.tables = tables or build_tables(beam.run_materials(geometry.materials), phys.water_model,
                                             phys.e_cut_mev, phys.nuclear_elastic, phys.ivalue_set)
        self.backend = get_backend(self.settings.backend, self.settings.threads, self.settings.gpu)
        b = self.backend
        nz, ny, nx = geometry.shape_zyx
        self.n_vox = nx * ny * nz
        corner_cm = geometry.lower_corner_mm / 10.0
        spots = beam.spot_array([m.name for m in self.tables.materials])
        spots["pos_cm"] -= corner_cm.astype(np.float32)
        self._keep = {
            "energy_table": b.asarray(self.tables.energy_table),
            "range_index": b.asarray(self.tables.range_index),
            "material_props": b.asarray(self.tables.material_props),
            "material_index": b.asarray(geometry.material_index_zyx.reshape(-1)),
            "density": b.asarray(geometry.density_g_cm3_zyx.reshape(-1)),
            "spots": b.asarray(spots.view(np.uint8)),
            "spot_cdf": b.asarray(beam.spot_cdf()),
        }
        # CPU: one private tally slot per thread (no atomics, no cache-line contention) when the memory
        # allows; else as many slots as fit, each shared by a few threads with atomic adds (fewer threads
        # contending for one cache line than with a single tally).  The GPU has one shared tally with atomic
        # adds.
        threads = int(getattr(b, "threads", 1)) if b.name == "cpu" else 1
        self.slots = cpu_tally_slots(self.n_vox, threads)
        # Tallies padded to whole blocks of 2**TOUCH_SHIFT (32) voxels; the kernel flags every block it scores
        # into (``touched``), so that a batch on a large, mostly empty grid (a patient CT) costs the host work
        # of its dose footprint, not of the grid (run_histories_sparse).
        self.n_blocks = -(-self.n_vox >> TOUCH_SHIFT)
        self.n_pad = self.n_blocks << TOUCH_SHIFT
        self.tally: dict[str, Any]
        self.touched: Any
        self._handed_over = False   # True once a later Simulation took over the tallies (recycle=)
        # invariant of run_histories_sparse: tallies and flags are all 0 between batches
        self._tallies_zero: bool = True
        if (recycle is not None and recycle.sparse_batches and recycle.backend is b and recycle._tallies_zero
                and recycle.n_pad == self.n_pad and recycle.slots == self.slots):
            self.tally, self.touched = recycle.tally, recycle.touched
            recycle.tally, recycle._handed_over = {}, True
        else:
            self.tally = {k: b.zeros((self.slots, self.n_pad), np.int64)
                          for k in TALLIES}
            self.touched = b.zeros(self.n_blocks, np.uint8)
        self.ledger_dev = b.zeros(N_LEDGER, np.int64)
        # the GPU's persistent loop hands out the histories of a launch from this counter (Params::work_next),
        # zeroed before every launch (_launch_transport); the CPU kernel keeps its own
        self.work_next = b.zeros(1, np.int64)
        p = new_params()
        for k, a in {**self._keep, **self.tally, "ledger": self.ledger_dev, "touched": self.touched,
                     "work_next": self.work_next}.items():
            p[k] = b.ptr(a)
        p["log_e_min"] = self.tables.log_e_min
        p["inv_dlog_e"] = 1.0 / self.tables.dlog_e
        p["log_r_min"] = self.tables.log_r_min
        p["inv_dlog_r"] = 1.0 / self.tables.dlog_r
        p["n_e"], p["n_r"], p["n_mat"], p["n_spots"] = (self.tables.n_e, self.tables.n_r,
                                                        len(self.tables.materials), len(beam.spots))
        p["nx"], p["ny"], p["nz"] = nx, ny, nz
        # atomic adds only where threads share a tally: the GPU, or CPU threads sharing slots
        shared = b.name != "cpu" or self.slots < threads
        p["flags"] = ((FLAG_STRAGGLING if phys.straggling else 0) | (FLAG_MSC if phys.msc else 0)
                      | (FLAG_NUCLEAR if phys.nuclear else 0) | (FLAG_SHARED_TALLY if shared else 0))
        p["vx"], p["vy"], p["vz"] = (v / 10.0 for v in geometry.voxel_size_mm)
        p["inv_vx"], p["inv_vy"], p["inv_vz"] = (10.0 / v for v in geometry.voxel_size_mm)
        p["dlog_e"] = self.tables.dlog_e
        p["e_cut"] = phys.e_cut_mev
        p["max_eloss_fraction"] = phys.max_eloss_fraction
        p["max_step"] = phys.max_step_mm / 10.0
        p["seed"] = self.settings.seed
        p["tally_stride"] = self.n_pad if self.slots > 1 else 0
        p["n_slots"] = self.slots
        self.params_host = p
        self.params_dev = b.asarray(p.view(np.uint8))

    def _reduce_slots(self, a: np.ndarray) -> np.ndarray:
        """Sum of the tally slots (a fresh array: the slots are zeroed for the next batch)."""
        if self.slots == 1:
            # the GPU's to_host already made a fresh host array: no second copy of 4 x n_vox int64 per batch
            return a[0] if getattr(self.backend, "to_host_is_copy", False) else a[0].copy()
        out = a[0] + a[1]
        for s in range(2, self.slots):
            out += a[s]
        return out

    @property
    def keeps_tallies_on_device(self) -> bool:
        """True on the GPU: batches can stay on the device (``run_histories(..., on_device=True)``) and be
        summed there by a DeviceAccumulator, so that a batch costs no host copy of the tallies."""
        return getattr(self.backend, "name", "") == "cuda" and self.slots == 1

    def run_histories(self, first: int, n: int, on_device: bool = False) -> dict[str, np.ndarray]:
        """Transport histories [first, first + n) into zeroed tallies; returns host copies (int64), or with
        ``on_device`` (GPU only, see keeps_tallies_on_device) the device tallies themselves - views that the
        next call overwrites, to be summed (DeviceAccumulator.add) before it; the ledger is always a host
        copy."""
        b = self.backend
        nv = self.n_vox
        with b.device_context():
            self._zero_tallies()
            self.ledger_dev.fill(0)
            self._tallies_zero = False
            ledger = self._launch_transport(first, n)
            if on_device and self.keeps_tallies_on_device:
                out = {k: a[0, :nv] for k, a in self.tally.items()}   # no copy: consumed before the next one
            else:
                out = {k: self._reduce_slots(b.to_host(a))[:nv] for k, a in self.tally.items()}
            out["ledger"] = ledger
        return out

    def _launch_transport(self, first: int, n: int) -> np.ndarray:
        """One launch of mcp_transport over histories [first, first + n) into the zeroed tallies and ledger; returns
        the ledger (a host copy) after the check that the kernel transported exactly n primaries (a
        work-distribution fault must fail loudly, never give a partial dose)."""
        b = self.backend
        if self._handed_over:
            raise RuntimeError("this Simulation's tallies were taken over by another (recycle=); make a new one")
        if n > MAX_BATCH_SIZE:   # the kernel's 64-bit sums of one launch could wrap (settings.MAX_BATCH_SIZE)
            raise ValueError(f"a launch of {n:,} histories is more than the transport kernel's 64-bit sums allow "
                             f"({MAX_BATCH_SIZE:,}); run them as several batches")
        if first < 0 or first + n > MAX_PRIMARIES + 1:   # beyond: the next beam index's (overflow audit 29, F4)
            raise ValueError(f"histories {first:,}..{first + n - 1:,} are outside the beam's range of histories [0, "
                             f"2^40): beam index {self.beam_index}'s history 2^40 + k would be beam index "
                             f"{self.beam_index + 1}'s history k, the same random numbers; {MORE_THAN_MAX_PRIMARIES}")
        self.work_next.fill(0)
        b.launch("mcp_transport", n, self.params_dev, first + self.history_offset, n)
        b.synchronize()
        ledger = b.to_host(self.ledger_dev).copy()
        done = int(ledger[LEDGER["primaries"]])
        if done != n:
            raise RuntimeError(f"the transport kernel ran {done} of the {n} primaries of histories {first}.."
                               f"{first + n - 1}: a fault of the kernel's work distribution; the batch is "
                               "discarded, please report it with the run's provenance")
        return ledger

    def _zero_tallies(self) -> None:
        for a in (*self.tally.values(), self.touched):
            a.fill(0)

    @property
    def sparse_batches(self) -> bool:
        """True where run_histories_sparse is available (the CPU backend)."""
        return getattr(self.backend, "name", "") == "cpu"

    def run_histories_sparse(self, first: int, n: int) -> dict[str, np.ndarray]:
        """Like run_histories, but returns only the voxels of the blocks the batch scored into:
        ``{"voxels": flat indices (int64, increasing), "edep": ..., "edep_water": ..., "edep_proton": ...,
        "let_num": ... (values at those voxels), "ledger": ...}``, which Accumulator.add takes like a dense
        batch (bitwise the same sums).  Only those blocks are read and zeroed again, so the host work per
        batch scales with the dose footprint, not with the grid: on a 512 x 512 x 200 grid a pencil-beam batch
        touches ~2 % of the blocks.  CPU backend (the GPU sums whole batches on the device,
        DeviceAccumulator)."""
        if not self.sparse_batches:
            raise RuntimeError("run_histories_sparse needs the cpu backend; use run_histories")
        if not self._tallies_zero:
            self._zero_tallies()
        # False until the touched blocks are read and cleared below (an error in between must not leave this
        # batch's deposits for the next one)
        self._tallies_zero = False
        self.ledger_dev.fill(0)
        ledger = self._launch_transport(first, n)
        blocks = np.flatnonzero(self.touched)
        size = 1 << TOUCH_SHIFT
        out: dict[str, np.ndarray] = {}
        for k, a in self.tally.items():
            t3 = a.reshape(self.slots, self.n_blocks, size)
            part = t3[:, blocks, :]                      # a copy: (slots, blocks, size)
            out[k] = (part[0] if self.slots == 1 else part.sum(axis=0)).reshape(-1)
            t3[:, blocks, :] = 0
        self.touched[blocks] = 0
        voxels = (blocks[:, None] * size + np.arange(size)).reshape(-1)
        if voxels.size and voxels[-1] >= self.n_vox:      # the padding of the last block
            keep = voxels < self.n_vox
            voxels = voxels[keep]
            out = {k: v[keep] for k, v in out.items()}
        out["voxels"] = voxels
        out["blocks"] = blocks   # the voxels are these blocks' (the last one cut at the grid's end): Accumulator.add
        out["ledger"] = ledger
        self._tallies_zero = True
        return out


#: a stopping-figure evaluation scans the whole grid instead of the scored blocks' voxels when more than this share of
#: the grid's blocks is scored (a contiguous scan then costs about as much as gathering the blocks' voxels)
SCORED_BLOCKS_SCAN_SHARE = 0.25


class Accumulator:
    """Running integer sums of the tallies over batches, and the float sum of squared batch dose."""

    # The 2**TOUCH_SHIFT-voxel blocks holding every voxel with sum_x != 0 (bool per block), and the sum_x array they
    # describe: made by the first mean_rel_uncertainty_50 (a scan of the grid), then kept by add, so that later
    # evaluations read the blocks' voxels only (the host audit of 2026-12-05, F1: one grid scan per batch was
    # 0.33 s on a 512 x 512 x 200 grid, ten times the transport of a 200-proton batch).  None (class default, also
    # for instances made by __new__), or sum_x replaced: not known, a scan.
    _scored_blocks: np.ndarray | None = None
    _scored_of: np.ndarray | None = None
    #: the largest value of any tally in the last batch added (its units): the rate at which the hottest voxel nears
    #: TALLY_SUM_LIMIT (streaming.stream says after its first batch when a run will meet it)
    batch_top: int = 0
    # Per tally, an upper bound on its largest running sum and the array it bounds: the exact largest sum where add
    # last took it, plus the largest value of every batch added since.  The limit check before a batch reads it
    # instead of scanning the sums (review 5 of 2026-12-06, F6: 12 ms of a 140 ms add on a 4 M-voxel grid), and
    # takes the exact largest sum only where the bound plus the batch passes TALLY_SUM_LIMIT: no sum passes it
    # unseen.  Kept by add only; a sum array replaced (a checkpoint read, cleared) is not bounded (None, or another
    # array: a scan).  Sums raised in place other than by add after an add are not seen: replace the array instead.
    _top_bounds: dict[str, tuple[np.ndarray, int]] | None = None

    def __init__(self, n_vox: int) -> None:
        self.sums = {k: np.zeros(n_vox, np.int64) for k in TALLIES}
        self.ledger = exact_ledger(np.zeros(N_LEDGER, np.int64))   # Python ints: exact at any run size
        self.sum_x2 = np.zeros(n_vox, np.float64)   # sum over batches of w_b (edep_b / n_b)^2, MeV^2
        self.sum_x = np.zeros(n_vox, np.float64)    # sum over batches of w_b edep_b / n_b, MeV (w_b: below)
        self.let_moments = {k: np.zeros(n_vox, np.float64) for k in LET_MOMENTS}   # the LETd's (LET_MOMENTS)
        self.batches = 0
        self.primaries = 0
        # batches of unequal size weight sum_x and sum_x2 by their size relative to the first (stats.batch_weight);
        # None: as many as batches (all of one size), also for sums whose batches are set by hand
        self.batch_weight_sum: float | None = None
        self.batch_unit = 0

    @classmethod
    def cleared(cls, old: "Accumulator", voxels: np.ndarray) -> "Accumulator":
        """A new, empty Accumulator on the arrays of ``old`` (a finished beam's, no longer read: not the whole
        arrays of a checkpoint's stored form), whose integer sums are 0 outside ``voxels`` (its scored_voxels):
        those are cleared at the voxels, the float sums whole.  Memory already written, instead of new pages
        faulted in by the next beam's batches (2.2 GB on a 46 M-voxel grid); bitwise zeros like new arrays."""
        out = cls.__new__(cls)
        for a in old.sums.values():
            a[voxels] = 0
        old.sum_x.fill(0.0)
        old.sum_x2.fill(0.0)
        for m in old.let_moments.values():
            m.fill(0.0)
        out.sums, out.sum_x, out.sum_x2 = old.sums, old.sum_x, old.sum_x2
        out.let_moments = old.let_moments
        old.sums = {}
        out.ledger = exact_ledger(np.zeros(N_LEDGER, np.int64))
        out.batches = 0
        out.primaries = 0
        out.batch_weight_sum = None
        out.batch_unit = 0
        return out

    @property
    def n_vox(self) -> int:
        return int(self.sum_x.size)

    def at(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The running sums at the flat voxel indices ``idx``: the four tallies by name, ``"sum_x"``,
        ``"sum_x2"`` and the LETd moments (:data:`LET_MOMENTS`; what finish reads; ScoredSums.at gives the same)."""
        return {**{k: v[idx] for k, v in self.sums.items()}, "sum_x": self.sum_x[idx], "sum_x2": self.sum_x2[idx],
                **{k: v[idx] for k, v in self.let_moments.items()}}

    def touch(self) -> None:
        """Write every page of the sums once (np.zeros maps them lazily; the first write to each page then
        costs a page fault, which would otherwise fall on the first batch)."""
        for a in (*self.sums.values(), self.sum_x, self.sum_x2, *self.let_moments.values()):
            a.fill(0)

    def add(self, batch: dict[str, np.ndarray], n: int) -> None:
        """Add one batch of ``n`` histories: whole tallies (run_histories) or, with a ``"voxels"`` entry, the
        values at those voxels only (run_histories_sparse; with its ``"blocks"``, the whole blocks are added as
        rows); all give bitwise the same sums.  TallyLimitError, with nothing added, where a voxel's sum would pass
        TALLY_SUM_LIMIT."""
        vox = batch.get("voxels")
        blocks = batch.get("blocks")
        size = 1 << TOUCH_SHIFT
        n_full = self.n_vox // size   # whole blocks of the grid (the last may be cut at its end)
        n_rows = 0 if blocks is None else int(np.searchsorted(blocks, n_full))
        # the new sums are made and checked for every tally first, and written only when all are within the limit:
        # a refused batch leaves the sums as they were (before, the check came after each tally's +=)
        new: dict[str, tuple[int, np.ndarray | None, np.ndarray | None]] = {}
        bounds = self._top_bounds if self._top_bounds is not None else {}
        new_bounds: dict[str, int] = {}
        top_batch = 0
        for k in self.sums:
            vals = batch[k]
            b_top = int(vals.max(initial=0))
            top_batch = max(top_batch, b_top)
            if b_top > TALLY_SUM_LIMIT:
                raise TallyLimitError(tally_limit_message())
            known = bounds.get(k)
            bound = known[1] if known is not None and known[0] is self.sums[k] else None
            if vox is None:
                new_bounds[k] = top_after_add(self.sums[k], vals, b_top, bound)
                new[k] = (0, None, None)
                continue
            n_r = n_rows if self.sums[k].flags.c_contiguous else 0   # (a reshape of a strided array copies)
            part = tail_sum = None
            top = b_top
            if n_r:   # whole blocks as rows of a (blocks x size) view: one row copy per block, not per voxel
                part = self.sums[k][:n_full * size].reshape(n_full, size)[blocks[:n_r]]
                part += vals[:n_r * size].reshape(n_r, size)
                top = max(top, int(part.max(initial=0)))
            tail = vox[n_r * size:]
            if tail.size:
                tail_sum = self.sums[k][tail] + vals[n_r * size:]
                top = max(top, int(tail_sum.max(initial=0)))
            if top > TALLY_SUM_LIMIT:
                raise TallyLimitError(tally_limit_message())
            if bound is not None:   # the voxels not added to are where they were, at or below the bound
                new_bounds[k] = max(bound, top)
            new[k] = (n_r, part, tail_sum)
        for k, (n_r, part, tail_sum) in new.items():
            if vox is None:
                self.sums[k] += batch[k]
                continue
            if part is not None:
                self.sums[k][:n_full * size].reshape(n_full, size)[blocks[:n_r]] = part
            if tail_sum is not None:
                self.sums[k][vox[n_r * size:]] = tail_sum
        self._top_bounds = {k: (self.sums[k], b) for k, b in new_bounds.items()}
        self.batch_top = top_batch
        self.ledger = exact_ledger(self.ledger) + exact_ledger(batch["ledger"])
        nz = np.flatnonzero(batch["edep"])
        idx = nz if vox is None else vox[nz]
        x = batch["edep"][nz].astype(np.float64) / TALLY_SCALE / n
        w = batch_weight(self, n)
        if w == 1.0:
            self.sum_x[idx] += x
            self.sum_x2[idx] += x * x
        else:
            self.sum_x[idx] += x * w
            self.sum_x2[idx] += x * x * w
        nzp = np.flatnonzero(batch["let_num"] | batch["edep_proton"])   # a proton deposited (LETd's terms)
        add_let_moments(self.let_moments, nzp if vox is None else vox[nzp], batch, n, w, nzp)
        if self._scored_blocks is not None and self._scored_of is self.sum_x:
            self._scored_blocks[idx >> TOUCH_SHIFT] = True
        self.batches += 1
        self.primaries += n

    def _voxels_with_x(self) -> np.ndarray:
        """``np.flatnonzero(self.sum_x)``, the same increasing indices, read from the scored blocks' voxels only
        once a first call has scanned the grid (the blocks are then kept by :meth:`add`).  Sums written other than
        by add after that call (by hand, in place) are not seen: replace ``sum_x`` (a new array) instead."""
        if self._scored_blocks is None or self._scored_of is not self.sum_x:
            idx = np.flatnonzero(self.sum_x)
            self._scored_blocks = np.zeros(-(-self.n_vox >> TOUCH_SHIFT), bool)
            self._scored_blocks[idx >> TOUCH_SHIFT] = True
            self._scored_of = self.sum_x
            return idx
        blocks = np.flatnonzero(self._scored_blocks)
        if blocks.size > SCORED_BLOCKS_SCAN_SHARE * self._scored_blocks.size:
            return np.flatnonzero(self.sum_x)
        size = 1 << TOUCH_SHIFT
        voxels = (blocks[:, None] * size + np.arange(size)).reshape(-1)
        if voxels.size and voxels[-1] >= self.n_vox:   # the last block cut at the grid's end
            voxels = voxels[voxels < self.n_vox]
        return voxels[self.sum_x[voxels] != 0]

    def mean_rel_uncertainty_50(self, inv_mass: Any, density: np.ndarray) -> float:
        """``mean_uncertainty_above_half_max`` of the running sums (mcproton/_run/stats.py), on the voxels
        with dose only (elsewhere the dose is 0: the figure needs only these voxels), found in the blocks that
        the batches scored into (:meth:`_voxels_with_x`): the cost follows the dose footprint, not the grid.
        ``inv_mass`` (an array, or :class:`~mcproton._run.stats.InverseMass`) and ``density`` are flat over the
        grid, read at those voxels."""
        idx = self._voxels_with_x()
        dose = self.sums["edep"][idx] * inv_mass[idx]   # proportional to the dose
        return mean_uncertainty_above_half_max(dose, batch_rel_uncertainty(self.sum_x[idx], self.sum_x2[idx],
                                                                           self.batches, weight_sum_of(self)),
                                               density[idx])


@dataclass(eq=False)
class ScoredSums:
    """An Accumulator's running sums held at its scored voxels only (result.scored_voxels: where any sum is
    non-zero; every sum is 0 elsewhere): what DeviceAccumulator.host() copies back from the GPU when at most half
    the grid has dose, instead of nine whole-grid arrays (72 bytes per voxel: 3.3 GB on a 46 M-voxel CT).  finish,
    BeamState and the checkpoint read it like an Accumulator, with bitwise the same results; ``dense()`` gives
    the Accumulator."""

    voxels: np.ndarray                 # flat indices into the grid, increasing (int64, as np.flatnonzero gives)
    sums: dict[str, np.ndarray]        # the four integer tallies' sums at the voxels (int64)
    sum_x: np.ndarray                  # the float sums at the voxels (float64)
    sum_x2: np.ndarray
    ledger: np.ndarray                 # Python ints (exact_ledger)
    batches: int
    primaries: int
    n_vox: int                         # voxels of the grid
    batch_weight_sum: float | None = None   # stats.batch_weight (None: as many as batches, all of one size)
    batch_unit: int = 0
    let_moments: dict[str, np.ndarray] | None = None   # the LETd moments at the voxels (None: unknown, NaN)

    @classmethod
    def empty(cls, n_vox: int) -> "ScoredSums":
        """The sums of a beam that has no batch yet (all 0), without any array of the grid's size."""
        return cls(np.zeros(0, np.int64), {k: np.zeros(0, np.int64) for k in TALLIES}, np.zeros(0),
                   np.zeros(0), exact_ledger(np.zeros(N_LEDGER, np.int64)), 0, 0, int(n_vox),
                   let_moments={k: np.zeros(0) for k in LET_MOMENTS})

    def moments(self) -> dict[str, np.ndarray]:
        """The LETd moments at the voxels (NaN where not known)."""
        if self.let_moments is None:
            return {k: np.full(self.voxels.size, np.nan) for k in LET_MOMENTS}
        return self.let_moments

    def at(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The running sums at the increasing flat voxel indices ``idx`` (0 where no voxel is scored), as
        Accumulator.at: the stored arrays themselves where ``idx`` are the scored voxels."""
        arrays = {**self.sums, "sum_x": self.sum_x, "sum_x2": self.sum_x2, **self.moments()}
        if idx is self.voxels or np.array_equal(idx, self.voxels):
            return arrays
        return dict(zip(arrays, at_voxels(self.voxels, idx, *arrays.values())))

    def dense(self) -> Accumulator:
        """The Accumulator with these sums (whole-grid arrays)."""
        out = Accumulator(self.n_vox)
        for k, v in self.sums.items():
            out.sums[k][self.voxels] = v
        out.sum_x[self.voxels] = self.sum_x
        out.sum_x2[self.voxels] = self.sum_x2
        for k, v in self.moments().items():
            out.let_moments[k][self.voxels] = v
        out.ledger = exact_ledger(self.ledger)
        out.batches, out.primaries = self.batches, self.primaries
        out.batch_weight_sum, out.batch_unit = weight_sum_of(self), self.batch_unit
        return out


#: The whole-grid float64 temporaries that DeviceAccumulator.add makes at once (add_let_moments: ``a``, ``e``, ``a * a``
#: and ``a * a * w``): 32 bytes per voxel on the device besides the persistent sums' 72 (four int64 tallies, the
#: dose's two float64 sums, the LETd's three; 48 and 16 before 2026-12-08: review b, R6, measured with NumPy standing
#: in for CuPy, tracemalloc, 4 M voxels)
ADD_TEMPORARIES = 4
#: The device memory (bytes per voxel, besides the sums) that checking a target uncertainty after a batch takes
#: (DeviceAccumulator.mean_rel_uncertainty_50; review c of audit 33, R3), counted from the code with every operation a
#: new array (CuPy elides none): kept for the run, ``_dev_mass`` (float64, 8) and ``_dev_density`` (float32, 4); at
#: the peak of stats.batch_rel_uncertainty, ``mean_x`` (8), ``v`` (8), ``var_mean`` (8), ``has`` (bool, 1),
#: ``var_mean ** 0.5`` (8), ``~has`` (1), ``mean_x + ~has`` (8) and their quotient (8): 50; after it,
#: stats.mean_uncertainty_above_half_max holds less (``unc`` 8, the dose 8, ``tissue`` 1, ``d`` 8, ``hi`` 1,
#: ``unc[hi]`` at most 8).  12 + 50 = 62 (NumPy standing in for CuPy, which elides temporaries, measures 42 + 12)
TARGET_CHECK_BYTES = 62


class DeviceAccumulator:
    """The Accumulator's sums kept in GPU memory while a run streams its batches (``xp`` = cupy): a batch then
    costs a few device additions instead of copying four tallies to the host and summing them there.
    ``host()`` returns host copies (for checkpoints and the result): only the voxels with dose (ScoredSums)
    where at most half the grid has dose; the sums are integers, so the dose is bitwise the same as with host
    accumulation.  ``acc``: the sums to start from, an Accumulator or a ScoredSums (``ScoredSums.empty``: a
    new beam, no whole-grid host arrays uploaded)."""

    def __init__(self, acc: Accumulator | ScoredSums, xp: Any,
                 device_context: Callable[[], Any] | None = None, target_check: bool = False) -> None:
        self.xp = xp
        self._ctx = device_context or contextlib.nullcontext   # the GPU the sums live on, made current
        with self._ctx():
            if isinstance(acc, ScoredSums):   # zeros, and the values at the voxels
                n = acc.n_vox
                self.sums = {k: xp.zeros(n, np.int64) for k in acc.sums}
                self.sum_x = xp.zeros(n, np.float64)
                self.sum_x2 = xp.zeros(n, np.float64)
                self.let_moments = {k: xp.zeros(n, np.float64) for k in LET_MOMENTS}
                if acc.voxels.size:
                    idx = xp.asarray(acc.voxels)
                    for k, v in acc.sums.items():
                        self.sums[k][idx] = xp.asarray(v)
                    self.sum_x[idx] = xp.asarray(acc.sum_x)
                    self.sum_x2[idx] = xp.asarray(acc.sum_x2)
                    for k, v in acc.moments().items():
                        self.let_moments[k][idx] = xp.asarray(v)
            else:
                self.sums = {k: xp.asarray(v) for k, v in acc.sums.items()}
                self.sum_x = xp.asarray(acc.sum_x)
                self.sum_x2 = xp.asarray(acc.sum_x2)
                self.let_moments = {k: xp.asarray(v) for k, v in acc.let_moments.items()}
            # adding a batch makes whole-grid float64 temporaries (add_let_moments: the two per-history tallies and
            # two products, of which CuPy, unlike NumPy, elides none): ADD_TEMPORARIES x 8 bytes per voxel on top of the
            # sums' 72.  Allocated once here, so that a grid whose sums fit but whose additions would not is found
            # now, where the caller sums on the host instead (job.py), not by an out-of-memory error in the middle
            # of a run; CuPy's memory pool keeps the freed blocks for those additions (review b, R6).  A run that stops
            # at a target uncertainty (``target_check``) checks it on the device after each batch, which takes more
            # (TARGET_CHECK_BYTES): that is reserved instead (review c of audit 33, R3)
            arrays = max(ADD_TEMPORARIES, -(-TARGET_CHECK_BYTES // 8) if target_check else 0)
            probe = [xp.zeros(self.sum_x.size, np.float64) for _ in range(arrays)]
            del probe
        self.ledger = exact_ledger(acc.ledger)
        self.batches = acc.batches
        self.primaries = acc.primaries
        self.batch_weight_sum = weight_sum_of(acc)
        self.batch_unit = getattr(acc, "batch_unit", 0)

    def add(self, batch: dict[str, Any], n: int) -> None:
        with self._ctx():
            self._add(batch, n)

    #: the largest value of any tally in the last batch added (Accumulator.batch_top)
    batch_top: int = 0
    #: per tally, an upper bound on its largest sum and the array it bounds (Accumulator._top_bounds)
    _top_bounds: dict[str, tuple[Any, int]] | None = None

    def _add(self, batch: dict[str, Any], n: int) -> None:
        # every tally checked before any is added (a refused batch leaves the sums as they were): the largest sum
        # plus the batch's largest value, and only where that passes the limit the exact largest new sum
        # (the largest sums bounded as Accumulator.add does: no scan of the sums per batch where far from it)
        top_batch = 0
        bounds = self._top_bounds if self._top_bounds is not None else {}
        new_bounds: dict[str, int] = {}
        for k in self.sums:
            b_top = int(batch[k].max())
            top_batch = max(top_batch, b_top)
            if b_top > TALLY_SUM_LIMIT:
                raise TallyLimitError(tally_limit_message())
            known = bounds.get(k)
            bound = known[1] if known is not None and known[0] is self.sums[k] else None
            new_bounds[k] = top_after_add(self.sums[k], batch[k], b_top, bound, lambda a: int(a.max()))
        for k in self.sums:
            self.sums[k] += batch[k]
        self._top_bounds = {k: (self.sums[k], b) for k, b in new_bounds.items()}
        self.batch_top = top_batch
        self.ledger = self.ledger + exact_ledger(np.asarray(batch["ledger"]))
        x = batch["edep"].astype(np.float64) / TALLY_SCALE / n   # the same rounding as Accumulator.add
        w = batch_weight(self, n)
        if w == 1.0:
            self.sum_x += x
            self.sum_x2 += x * x
        else:
            self.sum_x += x * w
            self.sum_x2 += x * x * w
        add_let_moments(self.let_moments, slice(None), batch, n, w)
        self.batches += 1
        self.primaries += n

    def mean_rel_uncertainty_50(self, inv_mass: Any, density: np.ndarray) -> float:
        """The figure of Accumulator.mean_rel_uncertainty_50 by the same code (mcproton/_run/stats.py),
        evaluated on the device: no host copy of the grid per batch when a run stops at a target
        uncertainty."""
        with self._ctx():
            if getattr(self, "_dev_mass", None) is None:   # the grid's constants, copied once
                self._dev_mass = self.xp.asarray(np.asarray(inv_mass))   # an InverseMass: the whole grid's
                self._dev_density = self.xp.asarray(density)
            unc = batch_rel_uncertainty(self.sum_x, self.sum_x2, self.batches, self.batch_weight_sum)
            return mean_uncertainty_above_half_max(self.sums["edep"] * self._dev_mass, unc, self._dev_density)

    @property
    def n_vox(self) -> int:
        return int(self.sum_x.size)

    def host(self) -> Accumulator | ScoredSums:
        """Host copies of the sums.  The scored voxels (where any sum is non-zero) are found on the device by the
        host's rule (result.scored_voxels, the same expressions); where at most half the grid is scored (the
        threshold of the checkpoint's sparse form, BeamState.stored_arrays) only their indices and values are
        gathered and copied (a ScoredSums: 80 bytes per scored voxel), else the nine whole arrays (an
        Accumulator: 72 bytes per voxel)."""
        from .result import scored_voxels

        xp = self.xp
        n = self.n_vox
        with self._ctx():
            idx = scored_voxels(self)
            if int(idx.size) > n // 2:
                out = Accumulator.__new__(Accumulator)
                out.sums = {k: xp.asnumpy(v) for k, v in self.sums.items()}
                out.sum_x = xp.asnumpy(self.sum_x)
                out.sum_x2 = xp.asnumpy(self.sum_x2)
                out.let_moments = {k: xp.asnumpy(v) for k, v in self.let_moments.items()}
                out.ledger = exact_ledger(self.ledger)
                out.batches, out.primaries = self.batches, self.primaries
                out.batch_weight_sum, out.batch_unit = self.batch_weight_sum, self.batch_unit
                return out
            return ScoredSums(xp.asnumpy(idx), {k: xp.asnumpy(v[idx]) for k, v in self.sums.items()},
                              xp.asnumpy(self.sum_x[idx]), xp.asnumpy(self.sum_x2[idx]), exact_ledger(self.ledger),
                              self.batches, self.primaries, n, self.batch_weight_sum, self.batch_unit,
                              {k: xp.asnumpy(v[idx]) for k, v in self.let_moments.items()})

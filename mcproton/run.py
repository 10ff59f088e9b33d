"""Run a simulation: ``simulate(geometry, beam, settings) -> DoseResult``.

Data flow (params / state): the physics tables, geometry and source are built once in NumPy, mirrored to
the backend, and referenced by one ``Params`` struct (kernels/params.h).  The run proceeds in batches of
histories with disjoint, consecutive history indices; each batch zeroes the integer tallies, launches the
kernel, and adds the tallies to integer running sums (so the dose does not depend on the batch split, the
thread count or, on the CPU, anything but the seed) and the squared per-batch dose to a float sum for the
per-voxel standard error.
"""
from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from ._backend import get_backend
from ._kernels.layout import FLAG_MSC, FLAG_NUCLEAR, FLAG_SHARED_TALLY, FLAG_STRAGGLING, LEDGER, LEDGER_ENTRIES, \
    LET_SCALE, N_LEDGER, TALLY_SCALE, TOUCH_SHIFT, new_params
from ._kernels.source import source_hash
from ._physics.tables import E_MAX_MEV, PhysicsTables, build_tables
from .geometry import VoxelGeometry
from .settings import RunSettings
from .source import Beam

MEV_TO_J = 1.602176634e-13  # J per MeV (SI exact, CODATA 2018)
MEV_PER_G_TO_GY = MEV_TO_J * 1e3  # MeV/g -> J/kg
#: largest memory of the CPU tally slots (4 int64 tallies per voxel and slot).  A larger budget (2 slots of a
#: 512 x 512 x 200 grid, 3.4 GB) made the transport of that grid 16 % faster in steady state but whole runs of
#: 2e5 protons slower (6.8-8.4 s against 3.4-4.7 s: the second slot's pages are faulted in), so it stays 1 GiB.
PRIVATE_TALLY_BYTES = 1 << 30


# Voxels lighter than this (air, g/cm3) are left out of the 50 %-of-Dmax uncertainty figure: dose to medium in
# air is large and noisy, and would otherwise set Dmax.
UNCERTAINTY_MIN_DENSITY = 0.05


def mean_uncertainty_above_half_max(dose: np.ndarray, unc: np.ndarray, density: np.ndarray) -> float:
    """Mean relative uncertainty over the voxels (density >= 0.05 g/cm3) with dose >= 50 % of their maximum
    (MCsquare's stopping figure).  NaN without dose."""
    tissue = np.asarray(density).reshape(dose.shape) >= UNCERTAINTY_MIN_DENSITY
    d = np.where(tissue, dose, 0.0)
    dmax = d.max(initial=0.0)
    if dmax <= 0:
        return float("nan")
    hi = d >= 0.5 * dmax
    return float(np.asarray(unc)[hi].mean())


def batch_rel_uncertainty(sum_x, sum_x2, batches: int):
    """Relative standard error of each voxel's mean over ``batches`` batches, from the sums of the batch means
    and of their squares; 0 where there is no dose.  Operators only, so that the same code serves NumPy (the
    result) and CuPy arrays (DeviceAccumulator's stopping figure)."""
    mean_x = sum_x / batches
    v = sum_x2 / batches - mean_x * mean_x
    var_mean = (v + abs(v)) / 2 / max(batches - 1, 1)   # max(v, 0) / (B - 1)
    has = mean_x > 0
    return var_mean ** 0.5 / (mean_x + ~has) * has


@dataclass
class DoseResult:
    """The result of a run.  Arrays are (z, y, x).  Dose is Gy per primary proton unless the beam gives
    ``total_protons`` (then Gy for that many protons): see ``normalisation``."""

    dose_gy_zyx: np.ndarray
    dose_to_water_gy_zyx: np.ndarray
    let_d_kev_um_zyx: np.ndarray
    uncertainty_rel_zyx: np.ndarray
    mean_rel_uncertainty_50: float
    geometry: VoxelGeometry
    ledger: dict
    provenance: dict
    primaries: int
    wall_s: float
    protons_per_second: float
    backend: str
    device: str
    normalisation: str = "Gy per primary"
    edep_mev_zyx: np.ndarray | None = None

    def integrated_depth_dose(self, axis: str = "z") -> tuple[np.ndarray, np.ndarray]:
        """(depth of voxel centres in mm, IDD in MeV cm2/(g primary)): the energy deposited per unit
        depth per unit density summed over the plane perpendicular to ``axis``, comparable with the TOPAS
        IDDs in validation/.  Always per primary."""
        g = self.geometry
        k = "xyz".index(axis)
        ax = 2 - k
        edep = self.edep_mev_zyx if self.edep_mev_zyx is not None else np.zeros(g.shape_zyx)
        rho = g.density_g_cm3_zyx.astype(np.float64)
        d_cm = g.voxel_size_mm[k] / 10.0
        with np.errstate(divide="ignore", invalid="ignore"):
            per_rho = np.where(rho > 0, edep / rho, 0.0)
        other = tuple(i for i in range(3) if i != ax)
        idd = per_rho.sum(axis=other) / d_cm  # edep_mev_zyx is already per primary
        depth_mm = g.axis_mm(axis) - (g.origin_mm[k] - g.voxel_size_mm[k] / 2)  # from the grid's front face
        return depth_mm, idd

    def depth_axis_mm(self, axis: str = "z") -> np.ndarray:
        return self.geometry.axis_mm(axis)

    def save(self, path: str | Path) -> Path:
        """Write the result to the HDF5 file ``path`` (atomically: complete or not at all) in the versioned
        layout ``mcproton-dose/1`` (README "Output (HDF5)", mcproton/_io/hdf5.py), with the geometry's full
        material definitions and the deposited energy, so that :meth:`load` gives the result back."""
        from ._io.hdf5 import write_result_hdf5

        return write_result_hdf5(self, path, edep=True)

    @classmethod
    def load(cls, path: str | Path) -> "DoseResult":
        """The result saved in ``path`` by :meth:`save` (or written by ``mcproton run``): the dose, dose to water,
        LET_d, uncertainty and deposited-energy arrays, the geometry (voxel size, origin, densities, materials,
        labels), normalisation, ledger and provenance.  Dose and deposited energy come back bitwise; dose to
        water, LET_d and uncertainty are stored (and come back) as float32.

        A file of an unknown format version (a newer mcproton) or not written by mcproton raises
        ``mcproton._io.hdf5.DoseFileError`` (a ``ValueError``).  A file written before the format had a version
        is read as version 0 with a warning: it lacks the deposited energy (``edep_mev_zyx`` is None,
        ``integrated_depth_dose`` gives zeros), primaries, wall time and backend (taken from the provenance)
        and the definitions of materials that are not in the database (placeholders by name, not for
        transport)."""
        from ._io.hdf5 import load_result

        return load_result(path)


def _progress_printer(total: int) -> Callable[[int, float], None]:
    start = time.perf_counter()

    def show(done: int, _pps: float) -> None:
        el = time.perf_counter() - start
        rate = done / el if el > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        bar = "#" * int(30 * done / total)
        sys.stderr.write(f"\r  [{bar:<30}] {done:>12,d}/{total:,d} protons  {rate:,.0f} p/s  ETA {eta:6.1f} s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


class Simulation:
    """A prepared simulation: tables, geometry and source on the backend.  ``run_histories`` can be called
    repeatedly with disjoint history ranges (used by batching, checkpointing and distributed runs)."""

    def __init__(self, geometry: VoxelGeometry, beam: Beam, settings: RunSettings | None = None,
                 tables: PhysicsTables | None = None, beam_index: int = 0) -> None:
        self.settings = settings or RunSettings()
        # Each beam of a plan gets its own disjoint range of history indices (2^40 apart; a run has fewer
        # primaries), so the beams' random numbers - and their statistical errors - are independent.
        self.history_offset = int(beam_index) << 40
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
        # contending for one cache line than with a single tally).  The GPU has one shared tally with atomic adds.
        self.slots = 1
        threads = int(getattr(b, "threads", 1)) if b.name == "cpu" else 1
        if threads > 1:
            slot_bytes = -(-self.n_vox >> TOUCH_SHIFT << TOUCH_SHIFT) * 4 * 8
            self.slots = int(min(threads, max(1, PRIVATE_TALLY_BYTES // slot_bytes)))
        # Tallies padded to whole blocks of 2**TOUCH_SHIFT (32) voxels; the kernel flags every block it scores into
        # (``touched``), so that a batch on a large, mostly empty grid (a patient CT) costs the host work of its
        # dose footprint, not of the grid (run_histories_sparse).
        self.n_blocks = -(-self.n_vox >> TOUCH_SHIFT)
        self.n_pad = self.n_blocks << TOUCH_SHIFT
        self.tally = {k: b.zeros((self.slots, self.n_pad), np.int64)
                      for k in ("edep", "edep_water", "edep_proton", "let_num")}
        self.touched = b.zeros(self.n_blocks, np.uint8)
        self._tallies_zero = True   # invariant of run_histories_sparse: tallies and flags are all 0 between batches
        self.ledger_dev = b.zeros(N_LEDGER, np.int64)
        p = new_params()   # struct Params, filled by field name (kernels/params.h)
        for k, a in {**self._keep, **self.tally, "ledger": self.ledger_dev, "touched": self.touched}.items():
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
        next call overwrites, to be summed (DeviceAccumulator.add) before it; the ledger is always a host copy."""
        b = self.backend
        nv = self.n_vox
        with b.device_context():
            self._zero_tallies()
            self.ledger_dev.fill(0)
            self._tallies_zero = False
            b.launch("mcp_transport", n, self.params_dev, first + self.history_offset, n)
            b.synchronize()
            if on_device and self.keeps_tallies_on_device:
                out = {k: a[0, :nv] for k, a in self.tally.items()}   # no copy: consumed before the next batch
            else:
                out = {k: self._reduce_slots(b.to_host(a))[:nv] for k, a in self.tally.items()}
            out["ledger"] = b.to_host(self.ledger_dev).copy()
        return out

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
        "let_num": ... (values at those voxels), "ledger": ...}``, which Accumulator.add takes like a dense batch
        (bitwise the same sums).  Only those blocks are read and zeroed again, so the host work per batch scales
        with the dose footprint, not with the grid: on a 512 x 512 x 200 grid a pencil-beam batch touches ~2 %
        of the blocks.  CPU backend (the GPU sums whole batches on the device, DeviceAccumulator)."""
        if not self.sparse_batches:
            raise RuntimeError("run_histories_sparse needs the cpu backend; use run_histories")
        b = self.backend
        if not self._tallies_zero:
            self._zero_tallies()
        self._tallies_zero = False   # until the touched blocks are read and cleared below (an error in between
        self.ledger_dev.fill(0)      # must not leave this batch's deposits for the next one)
        b.launch("mcp_transport", n, self.params_dev, first + self.history_offset, n)
        b.synchronize()
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
        out["ledger"] = self.ledger_dev.copy()
        self._tallies_zero = True
        return out


class Accumulator:
    """Running integer sums of the tallies over batches, and the float sum of squared batch dose."""

    def __init__(self, n_vox: int) -> None:
        self.sums = {k: np.zeros(n_vox, np.int64) for k in ("edep", "edep_water", "edep_proton", "let_num")}
        self.ledger = np.zeros(N_LEDGER, np.int64)
        self.sum_x2 = np.zeros(n_vox, np.float64)   # sum over batches of (edep_b / n_b)^2, MeV^2
        self.sum_x = np.zeros(n_vox, np.float64)    # sum over batches of edep_b / n_b, MeV
        self.batches = 0
        self.primaries = 0

    def touch(self) -> None:
        """Write every page of the sums once (np.zeros maps them lazily; the first write to each page then
        costs a page fault, which would otherwise fall on the first batch)."""
        for a in (*self.sums.values(), self.sum_x, self.sum_x2):
            a.fill(0)

    def add(self, batch: dict[str, np.ndarray], n: int) -> None:
        """Add one batch of ``n`` histories: whole tallies (run_histories) or, with a ``"voxels"`` entry, the
        values at those voxels only (run_histories_sparse); both give bitwise the same sums."""
        vox = batch.get("voxels")
        for k in self.sums:
            if vox is None:
                self.sums[k] += batch[k]
                top = self.sums[k].max(initial=0)
            else:
                self.sums[k][vox] += batch[k]
                top = self.sums[k][vox].max(initial=0)
            if top > 2**62:
                raise OverflowError("a voxel tally approaches the 64-bit limit; split the run into several")
        self.ledger += batch["ledger"]
        nz = np.flatnonzero(batch["edep"])
        idx = nz if vox is None else vox[nz]
        x = batch["edep"][nz].astype(np.float64) / TALLY_SCALE / n
        self.sum_x[idx] += x
        self.sum_x2[idx] += x * x
        self.batches += 1
        self.primaries += n


class DeviceAccumulator:
    """The Accumulator's sums kept in GPU memory while a run streams its batches (``xp`` = cupy): a batch then
    costs a few device additions instead of copying four tallies to the host and summing them there.
    ``host()`` returns an ordinary Accumulator (for checkpoints, the uncertainty criterion and the result);
    the sums are integers, so the dose is bitwise the same as with host accumulation."""

    def __init__(self, acc: Accumulator, xp: Any, device_context: Callable[[], Any] | None = None) -> None:
        import contextlib

        self.xp = xp
        self._ctx = device_context or contextlib.nullcontext   # the GPU the sums live on, made current
        with self._ctx():
            self.sums = {k: xp.asarray(v) for k, v in acc.sums.items()}
            self.sum_x = xp.asarray(acc.sum_x)
            self.sum_x2 = xp.asarray(acc.sum_x2)
        self.ledger = acc.ledger.copy()
        self.batches = acc.batches
        self.primaries = acc.primaries

    def add(self, batch: dict[str, Any], n: int) -> None:
        with self._ctx():
            self._add(batch, n)

    def _add(self, batch: dict[str, Any], n: int) -> None:
        for k in self.sums:
            self.sums[k] += batch[k]
            if int(self.sums[k].max()) > 2**62:
                raise OverflowError("a voxel tally approaches the 64-bit limit; split the run into several")
        self.ledger += np.asarray(batch["ledger"])
        x = batch["edep"].astype(np.float64) / TALLY_SCALE / n   # the same rounding as Accumulator.add
        self.sum_x += x
        self.sum_x2 += x * x
        self.batches += 1
        self.primaries += n

    def mean_rel_uncertainty_50(self, inv_mass: np.ndarray, density: np.ndarray) -> float:
        """``mean_uncertainty_above_half_max`` of the running sums, evaluated on the device (no host copy of the
        grid per batch when a run stops at a target uncertainty).  The same rule as the host version."""
        with self._ctx():
            return self._mean_rel_uncertainty_50(inv_mass, density)

    def _mean_rel_uncertainty_50(self, inv_mass: np.ndarray, density: np.ndarray) -> float:
        B = self.batches
        if B < 2:
            return float("nan")
        if getattr(self, "_dev_mass", None) is None:
            tissue = (np.asarray(density).reshape(-1) >= UNCERTAINTY_MIN_DENSITY).astype(np.float64)
            self._dev_mass = self.xp.asarray(inv_mass * tissue)   # 0 outside tissue
        unc = batch_rel_uncertainty(self.sum_x, self.sum_x2, B)
        dose = self.sums["edep"] * self._dev_mass
        dmax = float(dose.max())
        if dmax <= 0:
            return float("nan")
        hi = dose >= 0.5 * dmax
        return float((unc * hi).sum() / hi.sum())

    def host(self) -> Accumulator:
        out = Accumulator(len(self.sum_x))
        with self._ctx():
            out.sums = {k: self.xp.asnumpy(v) for k, v in self.sums.items()}
            out.sum_x = self.xp.asnumpy(self.sum_x)
            out.sum_x2 = self.xp.asnumpy(self.sum_x2)
        out.ledger = self.ledger.copy()
        out.batches, out.primaries = self.batches, self.primaries
        return out


def batch_plan(primaries: int, batches: int) -> list[tuple[int, int]]:
    """(first history, count) of each batch: consecutive, disjoint, covering 0..primaries-1."""
    base, rem = divmod(primaries, batches)
    out, first = [], 0
    for b in range(batches):
        n = base + (1 if b < rem else 0)
        if n:
            out.append((first, n))
        first += n
    return out


def scored_voxels(acc: Accumulator) -> np.ndarray:
    """Flat indices of the voxels where any running sum is non-zero (every result array is 0 elsewhere)."""
    used = acc.sum_x != 0
    for v in (*acc.sums.values(), acc.sum_x2):
        used |= v != 0
    return np.flatnonzero(used)


def finish(sim: Simulation, acc: Accumulator, wall_s: float) -> DoseResult:
    """The result arrays of the running sums.  Computed on the scored voxels only (on a patient-CT grid a
    fraction of the voxels) and placed into zero arrays: bitwise what the same formulas give on the whole grid."""
    g = sim.geometry
    shape = g.shape_zyx
    n = acc.primaries
    nv = int(np.prod(shape))
    idx = scored_voxels(acc)

    def full(values: np.ndarray) -> np.ndarray:
        out = np.zeros(nv, np.float64)
        out[idx] = values
        return out.reshape(shape)

    mass_g = g.density_g_cm3_zyx.reshape(-1)[idx].astype(np.float64) * g.voxel_volume_cm3
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_mass = np.where(mass_g > 0, 1.0 / mass_g, 0.0)
        edep = acc.sums["edep"][idx] / TALLY_SCALE
        dose = edep * inv_mass * MEV_PER_G_TO_GY / n
        dose_w = acc.sums["edep_water"][idx] / TALLY_SCALE * inv_mass * MEV_PER_G_TO_GY / n
        ep = acc.sums["edep_proton"][idx] / TALLY_SCALE
        let_d = np.where(ep > 0, acc.sums["let_num"][idx] / LET_SCALE / np.where(ep > 0, ep, 1), 0.0)
        B = acc.batches
        sx = acc.sum_x[idx]
        unc = batch_rel_uncertainty(sx, acc.sum_x2[idx], B)
        if B < 2:  # one batch (batch_size >= primaries, an early stop): no uncertainty estimate, not 0
            unc = np.where(sx > 0, np.nan, 0.0)
    scale = 1.0
    norm = "Gy per primary"
    if sim.beam.total_protons:
        scale = float(sim.beam.total_protons)
        norm = f"Gy for {scale:.6g} protons"
    mean_unc = mean_uncertainty_above_half_max(dose, unc, g.density_g_cm3_zyx.reshape(-1)[idx])
    # every ledger entry of kernels/params.h (MCP_LEDGER_ENTRIES): energies in MeV, counts as integers; the kernel
    # leaves "deposited" at 0, it is the sum of the dose tally
    ledger = acc.ledger.copy()
    ledger[LEDGER["deposited"]] = acc.sums["edep"][idx].sum()
    led = {e.name: int(ledger[e.index]) if e.kind == "count" else float(ledger[e.index]) / TALLY_SCALE
           for e in LEDGER_ENTRIES}
    e_in = sum(led[e.name] for e in LEDGER_ENTRIES if e.kind == "energy_in")
    out_e = sum(led[e.name] for e in LEDGER_ENTRIES if e.kind == "energy_out")
    led["imbalance_rel"] = (e_in - out_e) / e_in if e_in > 0 else 0.0
    pps = n / wall_s if wall_s > 0 else float("nan")
    b = sim.backend
    prov = {
        "package": "mcproton", "version": __version__,
        "kernel_hash": source_hash("transport.cu"),
        "compile_options": " ".join(b.compile_options), "compiler": b.compiler,
        "backend": b.name, "device": b.device,
        "seed": sim.settings.seed, "primaries": n, "batches": acc.batches,
        "physics": asdict(sim.settings.physics),
        "tables": sim.tables.meta,
        "materials": [m.name for m in g.materials],
        "range_shifters": sorted({f"{s.range_shifter.id or '?'}: {s.range_shifter.material_name} "
                                  f"{s.range_shifter.thickness_mm:.2f} mm" for s in sim.beam.spots
                                  if s.range_shifter is not None}),
        "range_shifter_model": sim.beam.meta.get("range_shifter_model", "transport"),
        "beam": {"name": sim.beam.name, "spots": len(sim.beam.spots), "total_protons": sim.beam.total_protons},
        "wall_s": wall_s, "protons_per_second": pps,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "python": platform.python_version(), "numpy": np.__version__,
        "normalisation": norm,
    }
    if led["errors"]:
        import warnings

        warnings.warn(f"{led['errors']} track(s) stopped on a numerical error (step limit); their energy was "
                      "deposited locally. Please report this with the input.", RuntimeWarning, stacklevel=2)
    return DoseResult(
        dose_gy_zyx=full(dose * scale), dose_to_water_gy_zyx=full(dose_w * scale),
        let_d_kev_um_zyx=full(let_d), uncertainty_rel_zyx=full(unc),
        mean_rel_uncertainty_50=mean_unc, geometry=g, ledger=led, provenance=prov, primaries=n,
        wall_s=wall_s, protons_per_second=pps, backend=b.name, device=b.device, normalisation=norm,
        edep_mev_zyx=full(edep / n))


def simulate(geometry: VoxelGeometry, beam: Beam, settings: RunSettings | None = None,
             progress: bool | Callable[[int, float], None] = False) -> DoseResult:
    """Transport ``settings.primaries`` protons of ``beam`` through ``geometry``.

    Parameters
    ----------
    progress : True for a progress bar on stderr, or a callable ``f(done_primaries, protons_per_second)``.
    """
    settings = settings or RunSettings()
    sim = Simulation(geometry, beam, settings)
    sim.backend.compile()
    acc = Accumulator(sim.n_vox)
    show = _progress_printer(settings.primaries) if progress is True else (progress or None)
    # streaming batches (bounded memory, GPU out-of-memory -> smaller batches, stop at run.primaries,
    # run.target_uncertainty or run.time_limit_s): mcproton/_run/streaming.py
    from ._run.streaming import BatchPlan, LocalExecutor, stream

    plan = BatchPlan.from_settings(settings, sim.backend.name)
    res = stream(acc, plan, LocalExecutor(sim, plan), settings, geometry, progress=show)
    if show is not None and progress is True and acc.primaries < settings.primaries:
        sys.stderr.write("\n")
    out = finish(sim, acc, res.elapsed_s)
    out.provenance["stop_reason"] = res.stop_reason
    return out


def sum_results(results: list[DoseResult]) -> DoseResult:
    """The sum of the DoseResults of several beams on the same geometry (e.g. the beams of a plan).

    Dose and dose to water add; LET_d is the dose-weighted mean of the beams' LET_d; the relative
    uncertainty combines the beams' absolute standard errors in quadrature; the ledger energies, primaries
    and wall time add.  All results must be absolute (``Gy for N protons``) or all per primary.
    """
    if not results:
        raise ValueError("sum_results needs at least one DoseResult")
    if len(results) == 1:
        return results[0]
    g = results[0].geometry
    for r in results[1:]:
        rg = r.geometry
        if (rg.shape_zyx != g.shape_zyx or not np.allclose(rg.voxel_size_mm, g.voxel_size_mm)
                or not np.allclose(rg.origin_mm, g.origin_mm)):
            raise ValueError("sum_results: the results have different dose grids; resample them first")
    per_primary = [r.normalisation == "Gy per primary" for r in results]
    if any(per_primary) and not all(per_primary):
        raise ValueError("sum_results: cannot add a per-primary dose to an absolute dose; give every beam "
                         "total_protons (plans do)")
    def total(term: Callable[[DoseResult], np.ndarray]) -> np.ndarray:
        # beam by beam into one array (np.sum over a list would stack every beam's grid first: on a patient-CT
        # grid several GB); the same additions in the same order, so bitwise np.sum(..., axis=0)
        out = np.array(term(results[0]), dtype=np.float64)
        for r in results[1:]:
            out += term(r)
        return out

    dose = total(lambda r: r.dose_gy_zyx)
    dose_w = total(lambda r: r.dose_to_water_gy_zyx)
    var = total(lambda r: (r.uncertainty_rel_zyx * r.dose_gy_zyx) ** 2)
    wlet = total(lambda r: r.let_d_kev_um_zyx * r.dose_gy_zyx)
    with np.errstate(divide="ignore", invalid="ignore"):
        unc = np.where(dose > 0, np.sqrt(var) / np.where(dose > 0, dose, 1.0), 0.0)
        let_d = np.where(dose > 0, wlet / np.where(dose > 0, dose, 1.0), 0.0)
    mean_unc = mean_uncertainty_above_half_max(dose, unc, g.density_g_cm3_zyx)
    n = int(sum(r.primaries for r in results))
    edep = None
    if all(r.edep_mev_zyx is not None for r in results):
        edep = total(lambda r: r.edep_mev_zyx * r.primaries) / n
    led: dict = {}
    for r in results:
        for k, v in r.ledger.items():
            if k != "imbalance_rel":
                led[k] = led.get(k, 0) + v
    if "incident" in led:
        e_in = sum(led.get(e.name, 0.0) for e in LEDGER_ENTRIES if e.kind == "energy_in")
        out_e = sum(led.get(e.name, 0.0) for e in LEDGER_ENTRIES if e.kind == "energy_out")
        led["imbalance_rel"] = (e_in - out_e) / e_in if e_in > 0 else 0.0
    wall = float(sum(r.wall_s for r in results))
    pps = n / wall if wall > 0 else float("nan")
    norm = ("Gy per primary (sum over beams)" if all(per_primary)
            else f"Gy (sum of {len(results)} beams: " + "; ".join(r.normalisation for r in results) + ")")
    prov = dict(results[0].provenance)
    prov.update({"primaries": n, "wall_s": wall, "protons_per_second": pps, "normalisation": norm,
                 "summed_beams": [r.provenance.get("beam", {}) for r in results],
                 "summed_primaries": [r.primaries for r in results]})
    prov.pop("beam", None)
    return DoseResult(
        dose_gy_zyx=dose, dose_to_water_gy_zyx=dose_w, let_d_kev_um_zyx=let_d, uncertainty_rel_zyx=unc,
        mean_rel_uncertainty_50=mean_unc, geometry=g, ledger=led, provenance=prov, primaries=n, wall_s=wall,
        protons_per_second=pps, backend=results[0].backend, device=results[0].device, normalisation=norm,
        edep_mev_zyx=edep)

"""The comparisons of ``mcproton check``: 3-D gamma (pymedphys), the dose-difference distribution, dose
statistics per structure, and the distal-range (R80) agreement along each beam.

Gamma.  ``pymedphys.gamma`` with the TPS dose as reference and the MC dose as evaluation; the global criteria are
normalised to the TPS dose's near-maximum inside the body (:func:`normalisation_dose`: the dose that at least 8
body voxels receive, its 8th-largest body voxel, so that a few isolated hot voxels do not loosen them); points below the
threshold (10 % of that dose) and outside the body are not evaluated (their reference dose is set to zero; the MC
dose is searched everywhere).  To bound the time on large grids the evaluated points are a random subset
(``gamma_points``, default 10 000, seeded; the pass rate's binomial standard error, at most 0.5 %, is given with it:
:func:`pass_rate_se`), the search stops at gamma = ``max_gamma`` (1.5) and the evaluation dose is interpolated to
1/``interp_fraction`` (5) of the distance criterion, the points that this leaves above 1 searched again finer
(:func:`refine_gammas`: pymedphys's steps overstate a gamma, never understate it).  (30 000 points and max_gamma 2
took 312 s for the six gammas of a failing 107^3 case on 16 cores.)  All are stated in the report.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .._cpus import usable_cpus
from ..dvh import SMALL_STRUCTURE_VOXELS   # the few-voxel rule, shared with run's HDF5 DVH

#: The gamma criteria of the check: (name, dose %, distance mm, local).
GAMMA_CRITERIA = (("3%/2mm", 3.0, 2.0, False), ("2%/2mm", 2.0, 2.0, False), ("1%/1mm", 1.0, 1.0, False),
                  ("2%/2mm local", 2.0, 2.0, True))
OAR_TYPES = ("ORGAN", "OAR", "AVOIDANCE")


def _interp_algo() -> str:
    """pymedphys's own (numba, parallel) interpolation where numba is installed, else scipy's (slower)."""
    import importlib.util

    return "pymedphys" if importlib.util.find_spec("numba") is not None else "scipy"


#: the logger that pymedphys's gamma code logs to while mcproton runs a gamma in that thread: its own (not the root
#: logger's module functions, which call ``logging.basicConfig()``), not propagated, with a NullHandler (so that
#: neither the caller's handlers nor ``logging.lastResort`` get its lines)
_PYMEDPHYS_LOGGER = logging.getLogger("mcproton.check.pymedphys_gamma")
_PYMEDPHYS_LOGGER.propagate = False
_PYMEDPHYS_LOGGER.addHandler(logging.NullHandler())
#: the modules of pymedphys whose module-level ``logging.info`` ... a gamma runs (pymedphys 0.41)
_PYMEDPHYS_LOGGING_MODULES = ("pymedphys._gamma.implementation.shell",)
#: per thread, how many :func:`_pymedphys_logging_kept_in` it is inside (``depth``)
_IN_GAMMA = threading.local()
_SHIM_LOCK = threading.Lock()


class _LoggingForPymedphys:
    """Stands in for the ``logging`` module in pymedphys's gamma code (:data:`_PYMEDPHYS_LOGGING_MODULES`): in a
    thread inside :func:`_pymedphys_logging_kept_in`, its log functions (``logging.info`` ...) are those of
    :data:`_PYMEDPHYS_LOGGER`; in every other thread, and for every other name, the logging module's own, so that
    pymedphys called by the caller itself logs as before."""

    _FUNCTIONS = {"debug": "debug", "info": "info", "warning": "warning", "warn": "warning", "error": "error",
                  "exception": "exception", "critical": "critical", "fatal": "critical", "log": "log"}

    def __getattr__(self, name: str) -> Any:
        if name in self._FUNCTIONS and getattr(_IN_GAMMA, "depth", 0):
            return getattr(_PYMEDPHYS_LOGGER, self._FUNCTIONS[name])
        return getattr(logging, name)


_LOGGING_FOR_PYMEDPHYS = _LoggingForPymedphys()


def _after_fork_in_child() -> None:
    """A forked child (a gamma worker, a figure process) gets a lock of its own: the parent's may have been held by
    another thread at the fork."""
    global _SHIM_LOCK
    _SHIM_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _route_pymedphys_logging() -> None:
    """Put :class:`_LoggingForPymedphys` in place of ``logging`` in pymedphys's gamma modules (once; it stays, and
    outside a gamma of mcproton it is the logging module itself)."""
    import importlib

    with _SHIM_LOCK:
        for name in _PYMEDPHYS_LOGGING_MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError:   # another pymedphys: the gammas run, their logging is not kept in
                continue
            if getattr(mod, "logging", None) is logging:
                mod.logging = _LOGGING_FOR_PYMEDPHYS   # type: ignore[attr-defined]


@contextlib.contextmanager
def _pymedphys_logging_kept_in() -> Iterator[None]:
    """``with _pymedphys_logging_kept_in(): pymedphys.gamma(...)``: the caller's logging as it was.  pymedphys logs
    through the root logger's module functions (``logging.info``, pymedphys/_gamma/implementation/shell.py), which
    call ``logging.basicConfig()`` where the root logger has no handler: a script's or notebook's own
    ``logging.basicConfig(filename=...)`` after a check did nothing; and under the caller's INFO logging each gamma
    printed pymedphys's lines and, with several dose criteria in one search (``gamma_3d_multi``), a "--- Logging error
    ---" traceback (arrays formatted with "%.3f"), three per check (in-process audit 25, F3).  Here those calls go,
    in this thread only, to a logger of their own (:data:`_PYMEDPHYS_LOGGER`): the root logger is not touched.
    (Before the review of 2026-12-07, R3, the root logger got a NullHandler and a filter while any gamma ran: other
    threads' records were lost instead of reaching ``logging.lastResort``, their ``logging.basicConfig()`` did
    nothing, and a child forked meanwhile kept both.)"""
    _route_pymedphys_logging()
    _IN_GAMMA.depth = getattr(_IN_GAMMA, "depth", 0) + 1
    try:
        yield
    finally:
        _IN_GAMMA.depth = max(0, _IN_GAMMA.depth - 1)


#: The gammas' and the dose difference's normalisation (:func:`normalisation_dose`) is the dose that at least this
#: many of the body's voxels receive (the NEAR_MAX_VOXELS th largest): a near-maximum in the sense of ICRU Report 83
#: (2010), which reports a near-maximum dose (D2%) rather than the maximum of one point, as that is not reliably
#: computed or reproduced -- here of the body's voxels and as a fixed count, since a gamma's normalisation has no
#: structure to take a volume fraction of.  A count, not a share of the dosed voxels: the 99.9th
#: percentile used before (review d of 2026-12-07, R1) counted every dosed body voxel, so that for a small target in a
#: large grid with dose everywhere (a low-dose halo, an MC planning dose) 0.1 % of them exceeded the target: 216
#: target voxels at 2 Gy among 10^6 dosed voxels gave 0.30 Gy.  Eight voxels exclude a few isolated hot voxels (the
#: CSI audit's one voxel at 5.7 x the plateau, gamma audit 28 F1) and are fewer than any target's (8 voxels of 2 mm
#: are 0.064 cm^3, of 1 mm 0.008 cm^3).  A count independent of the voxel size: normalisation_dose takes no grid.
#: Eight or more hot voxels set it: the warning (:func:`normalisation_note`) then says so, where the voxel that sets
#: it lies more than 1.2 x above all its neighbours (:func:`_isolated_near_max`; re-read of the check, F1).
NEAR_MAX_VOXELS = 8


def normalisation_dose(ref: np.ndarray, body: np.ndarray, planned: np.ndarray | None = None) -> float:
    """The dose that the global gammas, their lower dose cutoff and the dose difference are in % of
    (:data:`NORMALISATION_TEXT`): the TPS dose's near-maximum in the body, the dose that at least
    :data:`NEAR_MAX_VOXELS` of the body's voxels receive (its :data:`NEAR_MAX_VOXELS` th largest; the smallest where
    fewer voxels have dose); 0 where none has dose.  Where that is set by a hot cluster too small or thin to be a
    high-dose region, the high-dose region's near-maximum instead (:func:`_plateau_near_max`; audit 31, norm F1: 8
    or 20 voxels at 1.3 x a 2 Gy field set it to 2.6 Gy and an MC 2.5 % low passed 2 %/2 mm, with no warning).
    Until 2026-12-07 it was the single largest voxel: one TPS voxel
    at 5.7 x the plateau (a low-density voxel of a noisy planning MC, as the CSI audit saw) made the 2 % criterion
    11.4 % of the plateau and the 10 % cut 57 % of it, and an MC 10 % low passed gamma 2 %/2 mm at 99.98 % (gamma
    audit 28, F1).  Then, until review d of 2026-12-07 (R1), the 99.9th percentile of the body's voxels with dose
    (:func:`percentile_max`, still used elsewhere): for a small target in a large dosed region it fell to the low dose
    (0.30 Gy for a 2 Gy target of 216 voxels among 10^6), making the criteria far too strict.  A TPS maximum well
    above the near-maximum is warned of (:func:`normalisation_note`).  Computed without a copy of the body's voxels
    (:func:`_percentile_of_dose` with ``kth``: the gammas' worker processes each take it; ``ref[body]`` made a float
    copy of ~60 MB on a 1 mm head grid, the review of 2026-12-07, F8).

    With ``planned`` (the union of the check's typed targets, api.check), the near-maximum is kept where at least half
    of the voxels at or above it lie in or next to a target (:func:`_near_max_is_planned`): that high dose is
    planned, a small target on a coarse grid (review a of audit 31, R1: a uniform 2 Gy sphere of 10 mm on a 4 mm
    grid, whose 3 x 3 x 3 medians cannot reach its dose, was taken for a hot cluster and the normalisation fell
    1.4-2.9 x, the criteria that much stricter); a hot region inside a target is bounded only by the comparison with
    a stated prescription (:data:`NORMALISATION_TARGET_RATIO`).  api.check decides it once, with the masks, and hands
    the value to every consumer (``norm_gy``)."""
    return normalisation_doses(ref, body, planned)[0]


def normalisation_doses(ref: np.ndarray, body: np.ndarray, planned: np.ndarray | None = None) -> tuple[float, float]:
    """:func:`normalisation_dose` with ``planned``, and without it (the two differ where the near-maximum was kept as
    a small target's planned dose: api.check says so, review c of audit 31, C3), from one pass of the medians."""
    norm = _near_max_voxel(ref, body)
    plateau = _plateau_near_max(ref, body, norm)
    plain = norm if plateau is None else plateau
    if plateau is not None and planned is not None and _near_max_is_planned(ref, body, norm, planned):
        return norm, plain
    return plain, plain


def small_targets(masks: Mapping[str, np.ndarray], targets: Sequence[str]) -> np.ndarray | None:
    """The union of the typed ``targets`` too small for :func:`_plateau_near_max`'s median box
    (:func:`small_target_names`); None where no target is.  The :func:`normalisation_dose` ``planned`` of
    api.check."""
    return masks_union(masks, small_target_names(masks, targets))


def masks_union(masks: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray | None:
    """The union of the masks ``names`` of ``masks``; None where ``names`` is empty."""
    union = None
    for nm in names:
        m = np.asarray(masks[nm], bool)
        union = m.copy() if union is None else union | m
    return union


def small_target_names(masks: Mapping[str, np.ndarray], targets: Sequence[str]) -> list[str]:
    """The typed ``targets`` too small for :func:`_plateau_near_max`'s median box: fewer than
    :data:`NEAR_MAX_VOXELS` of their voxels have their whole :data:`PLATEAU_SIZE` ^3 box inside the target, so their
    planned dose, uniform as it may be, has too few 3 x 3 x 3 medians at it (a 10 mm target on a 3-4 mm grid: review a
    of audit 31, R1).  A larger target has room for its dose's medians: a hot cluster inside it (a planning MC's
    noise, an artefact) is still replaced.  Each target eroded in its own bounding box (no grid-sized temporaries per
    target)."""
    from scipy.ndimage import binary_erosion

    small = []
    for nm in targets:
        m = np.asarray(masks[nm], bool)
        # its bounding box from the projections on each axis (np.argwhere made an index array of 24 bytes a voxel:
        # ~350 MB for a large target on a 512 x 512 x 200 grid, review c of audit 31)
        along = [np.flatnonzero(m.any(axis=tuple(j for j in range(m.ndim) if j != k))) for k in range(m.ndim)]
        if any(a.size == 0 for a in along):
            continue
        box = tuple(slice(max(int(a[0]) - 1, 0), int(a[-1]) + 2) for a in along)
        inner = binary_erosion(m[box], np.ones((PLATEAU_SIZE,) * m.ndim, bool), border_value=0)
        if np.count_nonzero(inner) < NEAR_MAX_VOXELS:
            small.append(nm)
    return small


def small_target_prescription(tps: np.ndarray, body: np.ndarray, masks: Mapping[str, np.ndarray],
                              small: Sequence[str], prescriptions: Mapping[str, float]) -> tuple[float, str] | None:
    """The dose a near-maximum kept as the small targets' ``small`` (:func:`small_target_names`) planned dose may lie
    at most :data:`PLATEAU_RATIO` x above (api.check; C3 of review c of audit 31, audit 32 c3): the highest of their
    stated prescriptions (``prescriptions``, in the TPS dose's quantity and fractions), with what it is, where every
    one of them has a prescription consistent with its TPS median in the body (:func:`consistent_prescription`); None
    otherwise (a small target of unknown dose may be a boost: nothing then tells its planned dose from a hot
    cluster).  Where the target's TPS median lies above its prescription (consistent: within 5 %), the median is the
    level (review c of audit 32, R1: a correct small target at +4 % with a +-6 % gradient was held to the
    prescription, the normalisation 0.96 x its own median, the criteria 7.7 % stricter, its dose called a hot
    cluster)."""
    best: tuple[float, str] | None = None
    for nm in small:
        m = np.asarray(masks[nm], bool) & body
        if not m.any():   # outside the body: it holds no near-maximum of the body
            continue
        of = consistent_prescription(tps, m, prescriptions.get(nm))
        if of is None:
            return None
        level = max(of)
        if best is None or level > best[0]:
            best = (level, f"the prescription of {nm!r}, its TPS median {of[1] / of[0] - 1:+.1%} of it"
                    if of[1] <= of[0] else
                    f"the TPS median of {nm!r}, {of[1] / of[0] - 1:+.1%} of its stated prescription {of[0]:.4g}")
    return best


def consistent_prescription(tps: np.ndarray, mask: np.ndarray, rx: float | None) -> tuple[float, float] | None:
    """(``rx``, the TPS median in ``mask``) where the stated prescription ``rx`` of a target (``mask``: its voxels in
    the body, some) lies within :data:`PRESCRIPTION_CONSISTENT` of its TPS median; None where it does not or none is
    stated."""
    rx = float(rx or 0.0)
    median = float(np.median(tps[mask]))
    return (rx, median) if rx > 0 and abs(median / rx - 1.0) <= PRESCRIPTION_CONSISTENT else None


def _near_max_is_planned(ref: np.ndarray, body: np.ndarray, norm: float, planned: np.ndarray) -> bool:
    """Whether at least half of the body voxels at or above the near-maximum ``norm`` lie in ``planned`` (the typed
    targets) or next to it (in the :data:`PLATEAU_SIZE` ^3 box around one of its voxels: a 10 mm target's fall-off
    voxels on a 4 mm grid carry its near-maximum too): :func:`normalisation_dose` keeps the near-maximum there
    (review a of audit 31, R1).  Only the voxels at or above ``norm`` are looked at (no copy of the grid)."""
    p = np.asarray(planned, bool)
    idx = np.argwhere(np.asarray(body, bool) & (np.asarray(ref) >= norm))
    if idx.size == 0 or p.shape != np.shape(ref):
        return False
    near = np.zeros(len(idx), bool)
    hi = np.array(p.shape) - 1
    for off in np.ndindex(*(PLATEAU_SIZE,) * p.ndim):
        at = np.clip(idx + np.array(off) - PLATEAU_SIZE // 2, 0, hi)
        near |= p[tuple(at.T)]
    return 2 * int(np.count_nonzero(near)) >= len(idx)


def normalisation_is_plateau(ref: np.ndarray, body: np.ndarray, norm: float) -> bool:
    """Whether ``norm`` (:func:`normalisation_dose` of ``ref`` in ``body``) is the high-dose region's near-maximum
    that replaced a hot cluster's (:func:`_plateau_near_max`), not the :data:`NEAR_MAX_VOXELS` th-largest voxel: the
    rows and the report say which (review a of audit 31, R2: they named the 8th-largest voxel either way)."""
    return bool(norm > 0) and norm < _near_max_voxel(ref, body)


#: How the rows name the normalisation where :func:`normalisation_is_plateau` (the 8th-largest voxel otherwise).
NORMALISATION_PLATEAU_TEXT = ("the near-maximum of its 3 x 3 x 3 medians (or a small target's stated prescription or "
                              f"TPS median), as a hot cluster set its {NEAR_MAX_VOXELS}th-largest voxel: "
                              "see the warning")


def _near_max_voxel(ref: np.ndarray, body: np.ndarray) -> float:
    """The TPS dose's :data:`NEAR_MAX_VOXELS` th largest body voxel (the smallest where fewer have dose; 0 where none
    has): :func:`normalisation_dose` where no hot cluster sets it (:func:`_plateau_near_max`)."""
    return _percentile_of_dose(ref, body, 100.0, kth=NEAR_MAX_VOXELS)


#: The near-maximum (:func:`normalisation_dose`) must be the dose of a high-dose region, not of a hot cluster (AAPM
#: TG-218, Miften et al. 2018, Med Phys 45(4) e53-e83, normalises a global gamma to the prescription or to the maximum
#: dose in a high-dose, low-gradient region): the near-maximum of the TPS dose's median over each voxel's
#: PLATEAU_SIZE^3 (3 x 3 x 3) neighbourhood, its :data:`NEAR_MAX_VOXELS` th largest, must reach 1 / PLATEAU_RATIO of
#: it.  Where it does not, the near-maximum is set by a hot cluster that fills under half of the 3 x 3 x 3 blocks
#: around it (a TPS spike at a metal or air-cavity edge, a noisy planning MC's low-density voxels: compact clusters of
#: up to about 27 voxels, thin ones of any size) and is replaced by that median near-maximum
#: (:func:`_plateau_near_max`).  Before (audit 31, norm F1), 8 voxels at 1.3 x a 2 Gy field made the normalisation
#: 2.6 Gy with no word, and an MC 2.5 % low passed 2 %/2 mm at 99.9 % (88.9 % without them); 8 at 2.5 x passed an MC
#: 5 % low at 99.8 % (79.8 %).  Compact balls of 8, 20 and 27 voxels leave 0, 5 and 7 voxels whose median is theirs,
#: one of 40 leaves 20 (not caught here: a region that size is a plausible boost; the check's comparison with the
#: highest target dose, :data:`NORMALISATION_TARGET_RATIO`, is what catches a larger one).  A median, not a minimum:
#: a noisy planning MC's 3 x 3 x 3 minimum lay 12.5 % below the near-maximum (the OpenTPS head), its median 4.7 %.
PLATEAU_SIZE = 3
#: How far (factor) the near-maximum may lie above the near-maximum of the 3 x 3 x 3 medians before it is replaced:
#: the real TPS doses lie at 1.017-1.047 (audit 31, norm; audit 32, norm2: APTG plan03's RayStation plan dose 1.029
#: and beam-2 dose 1.046, its full-plan dose 1.030, plan06's beam-1 dose 1.017, the OpenTPS head's MCsquare dose
#: 1.047: a SOBP's gradient over a voxel and the planning MC's noise), the mcproton 'TPS' plan doses of
#: tests/check/test_check.py 1.044-1.045, a noise-free field 1.000; 1.07 is 1.5 x the largest excess.  Until audit
#: 32 (norm2 F1; review a of audit 31, R3) it was 1.10: 20 voxels at 1.09 x a 2 Gy field set the normalisation to
#: 2.18 Gy with no word and an MC 2.1 % low passed 2 %/2 mm at 99.7 % (89.0 % of 2 Gy).  Noise alone raises the
#: near-maximum by ~2.5-2.8 sigma on a plateau of ~10^5 voxels: a TPS dose with ~2.5-3 % independent noise a voxel
#: or more (review a of audit 32, R5: a 9 cm box of 2 mm voxels, 0 of 3 seeds at 2.5 %, 2 of 3 at 2.75 %, 3 of 3 at
#: 3 %; >= ~3.5 % correlated over a voxel) is normalised to its medians' near-maximum, the truer plateau (2.05 Gy on
#: the 2 Gy box against 2.19-2.22 Gy), its criteria stricter by the ratio itself, so by more than 7 % (7.3-7.9 %
#: measured); such a dose fails 3 %/2 mm against a correct MC at either normalisation (87.7-90.4 % at its
#: 8th-largest voxel).  At 1.10, from 3.5 %.  Below 1.07 a cluster cannot be told from that spread: 20 voxels
#: at 1.05 x still let an MC 2.1 % low pass (docs/check.md says so).
PLATEAU_RATIO = 1.07


def _plateau_near_max(ref: np.ndarray, body: np.ndarray, norm: float) -> float | None:
    """Where the near-maximum ``norm`` is not the dose of a high-dose region (:data:`PLATEAU_RATIO`): the plateau
    near-maximum, the :data:`NEAR_MAX_VOXELS` th largest body voxel of the TPS dose's median over each voxel's
    :data:`PLATEAU_SIZE` ^3 neighbourhood (dose outside the body or the grid counted as none); None where it is (or
    there is no dose, or the dose is not 3-D), and where the largest voxel is the summit of a genuine peak
    (:func:`_summits`: a pristine Bragg peak or a spot-pattern field, whose dose falls away over two voxels on every
    side).  Slab by slab, without a copy of the grid (the gammas' worker processes each compute it: the review of
    2026-12-07, F8), and only in the box around the voxels at or above a level (a voxel's median reaches a level only
    within one voxel of a voxel that does: exact), the level lowered until enough medians reach it."""
    d = np.asarray(ref)
    b = np.asarray(body, bool)
    if not norm > 0 or d.ndim != 3:
        return None
    k = NEAR_MAX_VOXELS
    per = max(1, _MEDIAN_SLAB_VOXELS // max(1, d.shape[1] * d.shape[2]))   # rows of the first axis a slab
    if _top_medians(d, b, norm / PLATEAU_RATIO, per).size >= k:
        return None
    top = np.array(_argmax_in(d, b, per))[:, None]
    # a genuine peak falls away from its top voxel itself, a hot cluster's top has hot neighbours (a compact ball of
    # 20 voxels at 1.3 x is a summit by _summits alone: its neighbours lie 1.3 x above the voxels beyond them)
    step = [np.eye(d.ndim, dtype=np.int64)[:, [a]] * sg for a in range(d.ndim) for sg in (-1, 1)]
    falls = all(float(d[tuple(top[:, 0])]) >= PEAK_DESCENT * float(_body_dose_at_voxels(d, b, top + st)[0])
                for st in step)
    if falls and bool(_summits(d, b, top)[0]):
        return None
    for f in (1 / PLATEAU_RATIO ** 2, 0.5, 0.25, 0.1, 0.0):
        m = _top_medians(d, b, f * norm if f > 0 else float(np.nextafter(0.0, 1.0)), per)
        if m.size >= k:
            return float(np.min(m))
    return None


#: Voxels per slab of :func:`_plateau_near_max`'s median filter (its temporaries are of one slab and its two rows
#: beside it: ~0.1-0.5 MB each)
_MEDIAN_SLAB_VOXELS = 1 << 15


def _argmax_in(d: np.ndarray, b: np.ndarray, per: int) -> tuple[int, ...]:
    """The index of the largest voxel of ``d`` in ``b`` (which has one), slab by slab of ``per`` rows."""
    best, at = -np.inf, (0,) * d.ndim
    for i in range(0, d.shape[0], per):
        w = b[i:i + per]
        if w.any():
            s = np.where(w, d[i:i + per], -np.inf)
            j = np.unravel_index(int(np.argmax(s)), s.shape)
            if float(s[j]) > best:
                best, at = float(s[j]), (i + int(j[0]), *(int(x) for x in j[1:]))
    return at


def _top_medians(d: np.ndarray, b: np.ndarray, level: float, per: int) -> np.ndarray:
    """The :data:`NEAR_MAX_VOXELS` largest of the 3 x 3 x 3 medians (:data:`PLATEAU_SIZE`) of ``d`` in the body ``b``
    (dose outside it counted as none) that reach ``level``: fewer where fewer do.  The medians are taken in the box
    around the body voxels at or above ``level`` only, slab by slab of ``per`` rows with one row of either side."""
    from scipy.ndimage import median_filter

    k = NEAR_MAX_VOXELS
    rows, ys, xs = [], np.zeros(d.shape[1], bool), np.zeros(d.shape[2], bool)
    for i in range(0, d.shape[0], per):
        hi = b[i:i + per] & (d[i:i + per] >= level)
        if hi.any():
            rows.append(i + np.flatnonzero(hi.any(axis=(1, 2))))
            ys |= hi.any(axis=(0, 2))
            xs |= hi.any(axis=(0, 1))
    if not rows:
        return np.zeros(0)
    z, y, x = np.concatenate(rows), np.flatnonzero(ys), np.flatnonzero(xs)
    z0, z1 = max(0, int(z[0]) - 1), min(d.shape[0], int(z[-1]) + 2)
    yb, xb = slice(max(0, int(y[0]) - 1), int(y[-1]) + 2), slice(max(0, int(x[0]) - 1), int(x[-1]) + 2)
    best = np.zeros(0)
    for i in range(z0, z1, per):
        lo, up = max(0, i - 1), min(d.shape[0], i + per + 1)
        sl = (slice(lo, up), yb, xb)
        w = b[sl]
        # float32: a median is one of the voxels' own values, rounded to 6e-8 of itself; half the memory
        m = median_filter(np.where(w, d[sl], 0.0).astype(np.float32), size=PLATEAU_SIZE, mode="constant", cval=0.0)
        inner = slice(i - lo, i - lo + min(per, z1 - i))
        v = m[inner][w[inner] & (m[inner] >= level)].astype(np.float64)
        best = np.concatenate([best, v])
        if best.size > k:
            best = np.partition(best, best.size - k)[-k:]
    return best


#: Voxels per slab of the passes of :func:`_percentile_of_dose` (its temporaries are of one slab).
_SLAB_VOXELS = 1 << 15
#: Values that :func:`_percentile_of_dose` copies and sorts at most, beside the histogram passes that find them.
_PERCENTILE_GATHER = 1 << 12


def _percentile_of_dose(dose: np.ndarray, where: np.ndarray, q: float, kth: int | None = None) -> float:
    """``np.percentile(dose[where & (dose > 0)], q)`` (linear interpolation; 0 where no voxel has dose), or with
    ``kth`` the kth largest of those values instead (the smallest where fewer have dose; ``q`` is then unused), without
    a copy of those voxels: slab by slab (:data:`_SLAB_VOXELS`), the count, then histograms of 1024 bins narrowed to
    the two order statistics the percentile interpolates between, until at most :data:`_PERCENTILE_GATHER` values lie
    there; those are copied and sorted.  Equal to np.percentile to rounding (tested), float32 or integer doses too
    (each slab read as float64)."""
    d = np.atleast_1d(np.asarray(dose))
    w = np.atleast_1d(np.asarray(where, bool))
    per = max(1, _SLAB_VOXELS // max(1, int(np.prod(d.shape[1:], dtype=np.int64))))   # rows of the first axis
    slabs = [slice(i, i + per) for i in range(0, d.shape[0], per)]

    def slab(s: slice) -> np.ndarray:   # a slab's doses as float64: under numpy 2 (NEP 50) a float32 slab compared
        # with the float64 bounds below casts them to float32, nextafter(top) rounds back to top, and the top values
        # were left out (a wrong value or an IndexError; re-read of the check, F2)
        return d[s].astype(np.float64, copy=False)

    def values(s: slice, a: float, b: float) -> np.ndarray:   # the slab's values with dose in [a, b)
        v = slab(s)
        return v[w[s] & (v > 0) & (v >= a) & (v < b)]

    n, top = 0, -np.inf
    for s in slabs:
        v = slab(s)
        m = w[s] & (v > 0)
        n += int(np.count_nonzero(m))
        top = max(top, float(np.max(v, where=m, initial=-np.inf)))
    if n == 0:
        return 0.0
    if kth is not None:   # the kth largest: the order statistic n - kth, no interpolation
        lo, frac = max(0, n - int(kth)), 0.0
    else:
        r = (n - 1) * float(q) / 100.0
        lo = min(int(math.floor(r)), n - 1)
        frac = r - lo
    ks = (n - lo, max(1, n - lo - 1))   # the order statistics lo and lo + 1 as the k-th largest values
    a, b, above = 0.0, float(np.nextafter(top, np.inf)), 0   # ks lie in [a, b); ``above`` values >= b
    inside = n
    # a first bound from below, of a high percentile mostly: the highest of a few fractions of the maximum that
    # as many values reach (one pass; the histograms then see those values only)
    fractions = (0.9, 0.75, 0.5) + tuple(2.0 ** -j for j in range(2, 11))
    reach = np.zeros(len(fractions), np.int64)
    for s in slabs:
        v = slab(s)
        m = w[s] & (v > 0)
        for i, f in enumerate(fractions):
            reach[i] += int(np.count_nonzero(m & (v >= f * top)))
    for f, c in zip(fractions, reach):
        if c >= ks[0]:
            a, inside = f * top, int(c)
            break
    for _ in range(8):
        if inside <= _PERCENTILE_GATHER:
            break
        edges = np.linspace(a, b, 1025)
        counts = np.zeros(1024, np.int64)
        for s in slabs:
            x = values(s, a, b)
            if x.size:
                counts += np.bincount(np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 1023), minlength=1024)
        from_top = above + np.cumsum(counts[::-1])   # from_top[j]: values >= edges[1023 - j]
        k_lo, k_hi = (1023 - int(np.searchsorted(from_top, k)) for k in ks)
        a, b = float(edges[k_lo]), (float(edges[k_hi + 1]) if k_hi < 1023 else b)
        above += int(counts[k_hi + 1:].sum())
        inside = int(counts[k_lo:k_hi + 1].sum())
        if not b > a:
            break
    vals = np.sort(np.concatenate([values(s, a, b) for s in slabs]))
    x_lo, x_hi = float(vals[-(ks[0] - above)]), float(vals[-(ks[1] - above)])
    diff = x_hi - x_lo   # numpy's linear interpolation (its _lerp), for the same rounding
    return x_hi - diff * (1 - frac) if frac >= 0.5 else x_lo + diff * frac


def _gamma_cut(ref: np.ndarray, body: np.ndarray, threshold_pct: float,
               norm_gy: float | None = None) -> tuple[float, float]:
    """The global normalisation of a gamma (``norm_gy`` where given: api.check's, decided once with the targets;
    else :func:`normalisation_dose`; 0 without dose in the body) and its lower dose cutoff (pymedphys's
    lower_dose_cutoff, the same expression)."""
    norm = float(norm_gy) if norm_gy is not None else normalisation_dose(ref, body) if body.any() else 0.0
    return norm, threshold_pct / 100 * norm


def gamma_evaluable_points(ref: np.ndarray, body: np.ndarray, threshold_pct: float = 10.0,
                           norm_gy: float | None = None) -> int:
    """The points a gamma of the reference ``ref`` in ``body`` evaluates with every point (``points`` None): those
    in the body at or above ``threshold_pct`` % of its maximum there (:func:`_gamma_reference`'s evaluable points;
    0 where the reference has no dose), counted without a copy of the grid; ``norm_gy``: as :func:`_gamma_cut`."""
    norm, cut = _gamma_cut(ref, body, threshold_pct, norm_gy)
    return int(np.count_nonzero(body & (ref >= cut))) if norm > 0 else 0


#: CPU seconds per point and gamma search (one gamma_3d_multi job: pymedphys with numba, max_gamma 1.5,
#: interp_fraction 5), low and high, for the time said before a check's gammas with every point: measured by the
#: scale audit of 2026-12-07 (2-core VM, 2 worker processes) from its checks' gamma_workers_cpu_s: on a 2 mm TPS grid
#: (177 x 123 x 270) three searches of all 66,485 points took 54.9 CPU s and of 10,000-point subsets 13.1 s (0.25 ms
#: a point beyond ~6 s of start-up); on a 1 mm grid (353 x 245 x 181) three 10,000-point subsets took 28.8 s (~0.8
#: ms a point).  It grows with the failing points (their search goes out to max_gamma) and a slower CPU.
GAMMA_CPU_S_PER_POINT = (0.25e-3, 0.8e-3)
#: Above this many points in all, a check whose gammas evaluate every point says how long they may take.
GAMMA_ESTIMATE_POINTS = 100_000


def _shares(n_jobs: int, workers: int) -> list[list[int]]:
    """The jobs (by index) of each of ``workers`` gamma worker processes: every ``workers``-th, in order."""
    return [list(range(n_jobs))[i::workers] for i in range(workers)]


def gamma_time_estimate(points: Sequence[int], workers: int) -> tuple[float, float, int]:
    """(low, high) wall seconds of gamma jobs of ``points`` points each (:func:`gamma_evaluable_points`) in
    ``workers`` processes (:class:`GammaRun`'s shares; 1: one after the other), at :data:`GAMMA_CPU_S_PER_POINT`,
    and the points of the busiest process."""
    w = max(1, min(int(workers), len(points))) if points else 1
    busiest = max(sum(points[i] for i in idx) for idx in _shares(len(points), w)) if points else 0
    return busiest * GAMMA_CPU_S_PER_POINT[0], busiest * GAMMA_CPU_S_PER_POINT[1], busiest


def _gamma_reference(ref: np.ndarray, body: np.ndarray, threshold_pct: float, points: int | None,
                     seed: int, norm_gy: float | None = None) -> tuple[np.ndarray, float, int, int | None]:
    """The reference dose that pymedphys evaluates: the TPS dose in the body, and with a random subset only the
    subset's points above the threshold (the others set below it, so pymedphys does not evaluate them).

    The subset is pymedphys's own ``random_subset`` draw (``np.random.seed(seed)``, then ``np.random.shuffle`` of
    the flat indices above the threshold, the first ``points`` kept), reproduced with a private
    ``RandomState(seed)``: the same points (tested), without touching numpy's global random state, so gammas can
    run concurrently.  The reference dose at a point that is not evaluated is never read by pymedphys (the
    normalisation is given), so the gamma values are the same.  Returns (reference, normalisation, evaluable
    points, subset size or None); ``norm_gy``: as :func:`_gamma_cut`."""
    norm, cut = _gamma_cut(ref, body, threshold_pct, norm_gy)
    r = np.where(body, ref, 0.0)
    above = np.ravel(r >= cut)
    n_eval = int(np.count_nonzero(above))
    subset = points if points and n_eval > points else None
    if subset is not None and norm > 0:
        idx = np.flatnonzero(above)
        np.random.RandomState(seed).shuffle(idx)
        keep = np.zeros(r.size, bool)
        keep[idx[:subset]] = True
        r = np.where(keep.reshape(r.shape), r, min(cut, 0.0) - 1.0)
    return r, norm, n_eval, subset


#: The points whose gamma pymedphys gives above 1 are searched again (:func:`refine_gammas`): pymedphys searches
#: the evaluation dose on spheres at steps of 1/``interp_fraction`` (5) of the distance criterion, each sampled at
#: about that spacing, so a displacement between two steps is charged the dose gradient times the distance missed:
#: on a 10 %/mm ramp shifted 1.9 mm, whose gamma 2 %/2 mm is 0.945 everywhere, 27 % of the points read 1.03, and
#: in a proton field shifted 1.9 mm along the beam 96 % passed instead of 100 % (gamma audit 28, F2; always too
#: high, never too low).  At most this many points per gamma and dose criterion are searched again, those nearest
#: 1 first (``refine_left`` counts the rest, which keep pymedphys's value: their pass rate can only be too low).
#: Cost, measured on 2 shared cores: ~0.2-0.3 ms a point (as much as pymedphys's own search of a point), so up to
#: ~5 s per criterion at the cap; a passing plan has few such points.
GAMMA_REFINE_MAX_POINTS = 20_000
#: The search again (:func:`refine_gammas`): a cubic lattice of offsets at this fraction of the distance criterion,
#: then Gauss-Newton steps on the multilinear evaluation dose from its best :data:`GAMMA_REFINE_STARTS` nodes.
GAMMA_REFINE_LATTICE = 1 / 3
GAMMA_REFINE_STARTS = 8
GAMMA_REFINE_STEPS = 8


def _grid_index(axes: Sequence[np.ndarray], pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fractional grid indices (ndim, P) of the positions ``pos`` (P, ndim; mm, the axes' order) and whether each
    lies on the grid (between the first and last voxel centre of every axis: pymedphys's evaluation dose is
    undefined beyond, infinite).  Piecewise linear per axis, so a multilinear interpolation in these indices is the
    multilinear interpolation of the dose on any monotonic axes (scipy's RegularGridInterpolator's, pymedphys's)."""
    u = np.empty((len(axes), pos.shape[0]))
    inside = np.ones(pos.shape[0], bool)
    for k, a in enumerate(axes):
        a = np.asarray(a, float)
        x = pos[:, k]
        inside &= (x >= a.min()) & (x <= a.max())
        if a.size > 1 and a[0] > a[-1]:
            u[k] = a.size - 1 - np.interp(x, a[::-1], np.arange(a.size, dtype=float))
        else:
            u[k] = np.interp(x, a, np.arange(a.size, dtype=float))
    return u, inside


def _dose_at(ev: np.ndarray, axes: Sequence[np.ndarray], pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The multilinear interpolation of ``ev`` at ``pos`` (P, ndim; mm) and whether each lies on the grid."""
    from scipy.ndimage import map_coordinates

    u, inside = _grid_index(axes, pos)
    return map_coordinates(ev, u, order=1, mode="nearest"), inside


def _dose_gradient(ev: np.ndarray, axes: Sequence[np.ndarray], pos: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """The gradient (dose per mm, P x ndim) of the multilinear interpolation of ``ev`` at ``pos``: central
    differences of ``eps`` voxel (one-sided at the grid's edge; the mean of the two cells' slopes on a face)."""
    from scipy.ndimage import map_coordinates

    u, _ = _grid_index(axes, pos)
    g = np.zeros(pos.shape)
    for k, a in enumerate(axes):
        a = np.asarray(a, float)
        if a.size < 2:
            continue
        up, dn = u.copy(), u.copy()
        up[k] = np.minimum(u[k] + eps, a.size - 1)
        dn[k] = np.maximum(u[k] - eps, 0.0)
        j = np.clip(np.floor(u[k]).astype(np.intp), 0, a.size - 2)
        dx = (a[j + 1] - a[j]) * (up[k] - dn[k])
        g[:, k] = (map_coordinates(ev, up, order=1, mode="nearest")
                   - map_coordinates(ev, dn, order=1, mode="nearest")) / np.where(dx == 0, 1.0, dx)
    return g


def _offset_lattice(radius: float, step: float, ndim: int) -> np.ndarray:
    """The offsets (L, ndim) of a cubic lattice of ``step`` inside the sphere of ``radius``, the centre first."""
    n = int(math.ceil(radius / step))
    g = np.arange(-n, n + 1) * step
    o = np.stack([m.ravel() for m in np.meshgrid(*([g] * ndim), indexing="ij")], 1)
    o = o[np.sum(o * o, 1) <= radius * radius * (1 + 1e-12)]
    return o[np.argsort(np.sum(o * o, 1), kind="stable")]


def refine_gammas(axes: Sequence[np.ndarray], ev: np.ndarray, pos: np.ndarray, ref_dose: np.ndarray,
                  delta: np.ndarray, dist_mm: float, gamma: np.ndarray, max_gamma: float) -> np.ndarray:
    """The gammas of reference points searched again, finer than pymedphys (:func:`_refined` chooses them): at
    ``pos`` (K x ndim, mm, the axes' order), reference doses ``ref_dose`` and dose criteria ``delta`` (dose, per
    point: global or local), with pymedphys's gammas ``gamma``; returns gammas that are never above those (each
    value is the gamma at an offset actually evaluated, so never below the true minimum over the multilinear
    evaluation dose ``ev`` either).  The search: the offsets of a cubic lattice of :data:`GAMMA_REFINE_LATTICE` x
    the distance criterion within min(gamma, max_gamma) x the distance criterion (no point farther can give less),
    then from its :data:`GAMMA_REFINE_STARTS` best nodes Gauss-Newton steps (the dose linear around the point: the
    closed-form minimum of (distance / DTA)^2 + (dose difference / delta)^2, halved until it lowers the gamma, kept
    inside the sphere).  Tested against a brute-force search and closed forms (tests/check/test_check_gamma.py)."""
    pos = np.asarray(pos, float)
    k_pts, nd = pos.shape
    out = np.minimum(np.asarray(gamma, float), max_gamma)
    if k_pts == 0:
        return out
    dta2 = float(dist_mm) ** 2
    lat = _offset_lattice(max_gamma * dist_mm, GAMMA_REFINE_LATTICE * dist_mm, nd)
    l2 = np.sum(lat * lat, 1)
    chunk = max(1, 400_000 // len(lat))   # ~10 MB of positions at a time
    for s in range(0, k_pts, chunk):
        p, r, dl = pos[s:s + chunk], ref_dose[s:s + chunk], delta[s:s + chunk]
        reach2 = (out[s:s + chunk] * dist_mm) ** 2
        n = len(p)
        v, inside = _dose_at(ev, axes, (p[:, None, :] + lat[None]).reshape(-1, nd))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            g2 = l2[None] / dta2 + ((v.reshape(n, -1) - r[:, None]) / dl[:, None]) ** 2
        g2[~inside.reshape(n, -1) | (l2[None] > reach2[:, None]) | ~np.isfinite(g2)] = np.inf
        m = min(GAMMA_REFINE_STARTS, g2.shape[1])
        top = np.argpartition(g2, m - 1, axis=1)[:, :m] if g2.shape[1] > m else np.argsort(g2, axis=1)
        o = lat[top].reshape(-1, nd)
        f = np.take_along_axis(g2, top, 1).ravel()
        pp, rr, dd = (np.repeat(a, m, 0) for a in (p, r, dl))
        reach = np.sqrt(np.repeat(reach2, m))
        live = np.isfinite(f)
        for _ in range(GAMMA_REFINE_STEPS):
            val, _ = _dose_at(ev, axes, pp + o)
            gr = _dose_gradient(ev, axes, pp + o)
            c = val - np.sum(gr * o, 1) - rr   # the dose difference at o + x ~ c + gr . (o + x)
            with np.errstate(invalid="ignore", divide="ignore"):
                step = -(c * dta2 / (dd * dd + np.sum(gr * gr, 1) * dta2))[:, None] * gr
                norm = np.sqrt(np.sum(step * step, 1))
                step *= np.where(norm > reach, reach / np.where(norm > 0, norm, 1.0), 1.0)[:, None]
            moved = np.zeros(len(o), bool)
            for _h in range(4):   # halved towards the current offset until it is lower
                v2, in2 = _dose_at(ev, axes, pp + step)
                with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                    f2 = np.sum(step * step, 1) / dta2 + ((v2 - rr) / dd) ** 2
                better = in2 & live & np.isfinite(f2) & (f2 < f)
                o[better], f[better] = step[better], f2[better]
                moved |= better
                step = 0.5 * (o + step)
            if not moved.any():
                break
        best = np.minimum(g2.min(axis=1), f.reshape(n, m).min(axis=1))
        out[s:s + chunk] = np.minimum(out[s:s + chunk], np.sqrt(best))
    return out


def _refined(axes: Sequence[np.ndarray], ref: np.ndarray, ev: np.ndarray, gmap: np.ndarray, dose_pct: float,
             dist_mm: float, local: bool, norm: float, max_gamma: float) -> tuple[np.ndarray, dict[str, int]]:
    """pymedphys's gamma map ``gmap`` (NaN where not evaluated) with its points above 1 searched again
    (:func:`refine_gammas`; at most :data:`GAMMA_REFINE_MAX_POINTS`, those nearest 1 first), and the counts:
    ``refined_points`` (searched again), ``refined_to_pass`` (of them now <= 1), ``refine_left`` (above 1, not
    searched again)."""
    g = np.array(gmap, float)
    flat = g.ravel()
    cand = np.flatnonzero(np.isfinite(flat) & (flat > 1.0))
    cand = cand[np.argsort(flat[cand], kind="stable")]
    left = max(0, cand.size - GAMMA_REFINE_MAX_POINTS)
    cand = cand[:GAMMA_REFINE_MAX_POINTS]
    if cand.size:
        ij = np.unravel_index(cand, g.shape)
        pos = np.stack([np.asarray(a, float)[i] for a, i in zip(axes, ij)], 1)
        r = np.asarray(ref, float).ravel()[cand]
        delta = dose_pct / 100 * (r if local else np.full(r.shape, norm))
        new = refine_gammas(axes, np.asarray(ev, float), pos, r, delta, dist_mm, flat[cand], max_gamma)
        flat[cand] = new
        to_pass = int(np.count_nonzero(new <= 1.0))
    else:
        to_pass = 0
    return g, {"refined_points": int(cand.size), "refined_to_pass": to_pass, "refine_left": left}


def pass_rate_se(pass_rate: float, points: int, evaluable: int, subset: int | None) -> float:
    """The standard error of a gamma pass rate (a fraction) from its random subset of points: binomial, with the
    finite-population correction, sqrt(p (1 - p) / n x (1 - n / N)) for ``points`` n of ``evaluable`` N; 0 where
    every point was evaluated (``subset`` None: the rate is the rate of all of them), NaN without points."""
    if not points or not math.isfinite(pass_rate):
        return float("nan")
    if subset is None or evaluable <= points:
        return 0.0
    return math.sqrt(max(0.0, pass_rate * (1 - pass_rate)) / points * (1 - points / evaluable))


def gamma_3d_multi(axes_zyx: Sequence[np.ndarray], ref: np.ndarray, ev: np.ndarray, body: np.ndarray, *,
                   dose_pcts: Sequence[float], dist_mm: float, local: bool = False, threshold_pct: float = 10.0,
                   max_gamma: float = 1.5, points: int | None = 10000, interp_fraction: int = 5,
                   seed: int = 0, refine: bool = True, norm_gy: float | None = None) -> list[dict[str, Any]]:
    """Gammas of ``ev`` against ``ref`` for several dose criteria with one distance criterion, in one pymedphys
    search (the evaluation dose interpolated once per shell for all of them); one dict per dose criterion, each
    the same as ``gamma_3d`` of that criterion alone (the search distances depend on the distance criterion only,
    and a point's gamma for a criterion it has settled cannot decrease at larger distances; tested bit for bit).

    Each dict: ``pass_rate`` (a fraction), ``points`` (evaluated), ``evaluable_points``, ``subset`` (None: every
    point), ``pass_rate_se`` (:func:`pass_rate_se`: 0 with every point), ``normalisation_gy``
    (:func:`normalisation_dose`) and ``threshold_gy`` (the lower dose cutoff), ``gamma`` (the values), and with
    ``refine`` (default) the points above 1 searched again (:func:`_refined`: ``refined_points``,
    ``refined_to_pass``, ``refine_left``); ``refine=False``: pymedphys's values as they are.  ``norm_gy``: the
    normalisation decided by api.check with the targets (:func:`normalisation_dose` with ``planned``), a scalar so
    that no mask goes to the worker processes; None: :func:`normalisation_dose` of ``ref`` in ``body``.
    """
    import pymedphys

    r, norm, n_eval, subset = _gamma_reference(ref, body, threshold_pct, points, seed, norm_gy)
    if norm <= 0:
        return [{"pass_rate": float("nan"), "points": 0, "gamma": np.zeros(0)} for _ in dose_pcts]
    dps = [float(d) for d in dose_pcts]
    plateau = normalisation_is_plateau(ref, body, norm)
    with warnings.catch_warnings(), _pymedphys_logging_kept_in():   # pymedphys 0.41: `quiet` will be deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        g = pymedphys.gamma(tuple(axes_zyx), r, tuple(axes_zyx), ev, dps if len(dps) > 1 else dps[0], dist_mm,
                            lower_percent_dose_cutoff=threshold_pct, interp_fraction=interp_fraction,
                            max_gamma=max_gamma, local_gamma=local, global_normalisation=norm,
                            quiet=True, interp_algo=_interp_algo(),
                            ram_available=2 ** 27)   # working memory in chunks (default: 80 % of the RAM)
    maps = [g[(d, float(dist_mm))] for d in dps] if len(dps) > 1 else [g]
    out = []
    for dp, m in zip(dps, maps):
        counts: dict[str, int] = {}
        if refine:
            m, counts = _refined(axes_zyx, r, ev, m, dp, dist_mm, local, norm, max_gamma)
        vals = m[np.isfinite(m)]
        rate = float(np.mean(vals <= 1.0)) if vals.size else float("nan")
        out.append({"pass_rate": rate, "points": int(vals.size), "evaluable_points": n_eval, "subset": subset,
                    "pass_rate_se": pass_rate_se(rate, int(vals.size), n_eval, subset),
                    "normalisation_gy": norm, "normalisation_plateau": plateau,
                    "threshold_gy": threshold_pct / 100 * norm, **counts,
                    "gamma": vals})
    return out


def gamma_3d(axes_zyx: Sequence[np.ndarray], ref: np.ndarray, ev: np.ndarray, body: np.ndarray, *,
             dose_pct: float, dist_mm: float, local: bool = False, threshold_pct: float = 10.0,
             max_gamma: float = 1.5, points: int | None = 10000, interp_fraction: int = 5,
             seed: int = 0, refine: bool = True, norm_gy: float | None = None) -> dict[str, Any]:
    """Gamma of ``ev`` against ``ref`` in the body (:func:`gamma_3d_multi` of one dose criterion); returns the pass
    rate, the number of points, its standard error, the normalisation and the gamma values."""
    return gamma_3d_multi(axes_zyx, ref, ev, body, dose_pcts=[dose_pct], dist_mm=dist_mm, local=local,
                          threshold_pct=threshold_pct, max_gamma=max_gamma, points=points,
                          interp_fraction=interp_fraction, seed=seed, refine=refine, norm_gy=norm_gy)[0]


#: exit status of a gamma worker whose caller went away (stdin cut short, stdout closed): it ends without a word
WORKER_CALLER_GONE = 3


def _gamma_worker_main() -> None:
    """A gamma worker process (``gamma_many``): reads (jobs, threads) pickled from stdin, writes [(results, CPU
    seconds)] pickled to stdout.  SIGINT is ignored (set before this module is imported: GammaRun._start): a Ctrl-C
    in a terminal reaches every process of its group, and the caller stops its workers itself (GammaRun.close);
    a caller that went away (stopped while sending the jobs, or before reading the answer) ends the worker with
    :data:`WORKER_CALLER_GONE` and no traceback (the long-runs audit, F7: "pickle data was truncated" tracebacks
    from the workers of a check stopped by SIGTERM)."""
    import importlib.util
    import os
    import pickle
    import sys
    import time

    try:
        jobs, threads = pickle.load(sys.stdin.buffer)
    except (EOFError, pickle.UnpicklingError, OSError):
        os._exit(WORKER_CALLER_GONE)
    if importlib.util.find_spec("numba") is not None:   # numba's parallel interpolation on this worker's share
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    out = []
    for args, kwargs in jobs:
        c = time.process_time()
        out.append((gamma_3d_multi(*args, **kwargs), time.process_time() - c))
    try:
        pickle.dump(out, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
        sys.stdout.flush()
    except OSError:   # BrokenPipeError: no one reads the answer any more
        os._exit(WORKER_CALLER_GONE)


class GammaRun:
    """Independent ``gamma_3d_multi(*args, **kwargs)`` jobs under way (``start_gammas``): with ``workers`` > 1 they
    run in that many worker processes from the start while the caller goes on (``mcproton check`` computes the
    structure statistics, the ranges and the figures that do not need them meanwhile); with one they are computed
    by ``result()``, here, one after the other.

    The workers are fresh interpreters (``python -c``, this mcproton package): they inherit no thread, OpenMP pool
    or GPU context of the caller and do not import the caller's main module (no ``__main__`` guard needed).  A
    thread per worker feeds it its jobs and reads its answer, so starting returns at once.  Each job is a pure
    function of its arrays (no global random state), so the results are those of running them one after the other
    here (tested).  A worker that fails (it cannot start, exits with an error - its traceback on stderr - or
    answers nothing readable) makes ``result()`` log it and compute all the jobs here, where an error in the gamma
    itself is raised to the caller.  ``close()`` stops workers still running (the caller's own error came first:
    no orphan process); ``with start_gammas(...) as run:`` does it on the way out."""

    def __init__(self, jobs: Sequence[tuple[tuple, dict]], workers: int = 1, log: Any = None) -> None:
        self.jobs = list(jobs)
        self.log = log
        self.workers = max(1, min(int(workers), len(self.jobs))) if self.jobs else 1
        self._procs: list[Any] = []
        self._threads: list[Any] = []
        self._answers: list[Any] = []
        self._order: list[list[int]] = []
        self._failed: BaseException | None = None
        self._done: tuple[list[list[dict[str, Any]]], float, int] | None = None
        if self.workers > 1:
            try:
                self._start()
            except OSError as exc:
                self._failed = exc
                self.close()

    def _start(self) -> None:
        import subprocess
        import sys
        import threading
        from pathlib import Path

        root = str(Path(__file__).resolve().parents[2])   # the folder holding this mcproton package
        # SIGINT ignored first of all (a terminal's Ctrl-C reaches the workers too; close() stops them)
        code = (f"import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); import sys; "
                f"sys.path.insert(0, {root!r}); "
                "from mcproton._check.compare import _gamma_worker_main; _gamma_worker_main()")
        self._order = _shares(len(self.jobs), self.workers)
        threads = max(1, usable_cpus() // self.workers)   # the CPUs this process may run on, shared
        for k, idx in enumerate(self._order):
            pr = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._procs.append(pr)
            self._answers.append(None)
            th = threading.Thread(target=self._talk, args=(k, pr, ([self.jobs[i] for i in idx], threads)),
                                  name=f"mcproton-gamma-worker-{k}", daemon=True)
            self._threads.append(th)
            th.start()

    def _talk(self, k: int, pr: Any, message: tuple) -> None:
        """One worker's exchange (in its thread): its jobs pickled to its stdin, its answer read to the end."""
        import pickle

        try:
            with pr.stdin:
                pickle.dump(message, pr.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            data = pr.stdout.read()
            self._answers[k] = (pr.wait(), data)
        except Exception as exc:  # noqa: BLE001 - handed to result(), which falls back to computing here
            self._answers[k] = exc

    def waiting(self) -> str:
        """What :meth:`result` would wait for now: "workers" (still computing), "here" (it computes the jobs itself,
        one after the other) or "" (the results are in)."""
        if self._done is not None:
            return ""
        if self._procs and self._failed is None:
            return "workers" if any(th.is_alive() for th in self._threads) else ""
        return "here"

    def result(self) -> tuple[list[list[dict[str, Any]]], float, int]:
        """The results in the jobs' order, the CPU seconds the jobs took in worker processes (0 when computed
        here: then they are in this process's CPU time) and the number of worker processes used (0: here).
        Waits for the workers."""
        import pickle

        if self._done is not None:
            return self._done
        if self._procs:
            try:
                for th in self._threads:
                    th.join()
                results: list[Any] = [None] * len(self.jobs)
                cpu = 0.0
                for idx, answer in zip(self._order, self._answers):
                    if not isinstance(answer, tuple):
                        raise RuntimeError(f"talking to a gamma worker: {type(answer).__name__}: {answer}")
                    status, data = answer
                    if status != 0:
                        raise RuntimeError(f"a gamma worker exited with status {status}")
                    for i, (r, c) in zip(idx, pickle.loads(data)):
                        results[i] = r
                        cpu += c
                self._done = (results, cpu, self.workers)
                return self._done
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
                self._failed = exc
                self.close()
        if self._failed is not None and self.log is not None:
            self.log(f"mcproton check: the gamma worker processes failed ({self._failed}); computing the gammas here")
        self._done = ([gamma_3d_multi(*args, **kwargs) for args, kwargs in self.jobs], 0.0, 0)
        return self._done

    def close(self) -> None:
        """Stop the worker processes still running (none once ``result()`` has their answers)."""
        for pr in self._procs:
            if pr.poll() is None:
                pr.kill()
            pr.wait()
        for th in self._threads:
            th.join()
        self._procs, self._threads = [], []

    def __enter__(self) -> GammaRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The memory one gamma worker process (GammaRun, a fresh interpreter) needs (audit 25 memory: the check's memory
#: check did not count them): its imports, pymedphys' working chunks (ram_available, 128 MB) and the arrays it is
#: sent.  Measured on the OpenTPS head (TPS grid 0.87 M voxels): 0.24 GB of its own (USS) per worker, of which about
#: 0.19 GB does not grow with the grid (imports 61 MB, the 128 MB chunk); with a margin: GAMMA_WORKER_MB plus
#: GAMMA_WORKER_GRIDS float64 grids of the TPS grid's size (the reference, the evaluated dose, the mask and the
#: gamma's interpolation: 57 bytes per voxel measured).  Measured at one grid size only: the per-voxel part is a
#: bound from it, not a fit.
GAMMA_WORKER_MB = 200.0
GAMMA_WORKER_GRIDS = 8
#: The share of the memory available (mcproton._run.inputs.available_memory), less what the report's figure workers
#: take, that the gamma workers may take together.
GAMMA_WORKER_MEMORY_SHARE = 0.8


def gamma_worker_count(workers: int, grid_voxels: int, reserved_bytes: float = 0.0) -> int:
    """How many gamma worker processes run (at least 1: the gammas then run in this process, one after the other):
    ``workers`` (one per gamma up to the CPUs), at most as many as GAMMA_WORKER_MEMORY_SHARE of the memory available
    holds after ``reserved_bytes`` (the figure workers'), GAMMA_WORKER_MB and GAMMA_WORKER_GRIDS grids of
    ``grid_voxels`` each.  Before (audit 25 memory), one per gamma up to the cores whatever the memory: 0.81 GB for
    the process tree of a check whose memory check counted 0.42 GB."""
    from .._run.inputs import available_memory

    n = int(workers)
    mem = available_memory()
    if n > 1 and mem is not None:
        each = GAMMA_WORKER_MB * 1e6 + GAMMA_WORKER_GRIDS * 8 * int(grid_voxels)
        n = min(n, int(max(0.0, GAMMA_WORKER_MEMORY_SHARE * mem.available - reserved_bytes) // each))
    return max(1, n)


def start_gammas(jobs: Sequence[tuple[tuple, dict]], workers: int = 1, log: Any = None) -> GammaRun:
    """Start the gamma jobs (``GammaRun``): in ``workers`` worker processes when more than one."""
    return GammaRun(jobs, workers, log)


def gamma_many(jobs: Sequence[tuple[tuple, dict]], workers: int = 1,
               log: Any = None) -> tuple[list[list[dict[str, Any]]], float, int]:
    """Run independent ``gamma_3d_multi(*args, **kwargs)`` jobs, in ``workers`` worker processes when more than
    one, and wait for them: ``GammaRun.result()`` (the results in the jobs' order, the workers' CPU seconds, the
    number of workers used)."""
    with start_gammas(jobs, workers, log) as run:
        return run.result()


def gamma_plane(ax2: Sequence[np.ndarray], ref2: np.ndarray, ev2: np.ndarray, body2: np.ndarray, norm: float,
                dose_pct: float = 2.0, dist_mm: float = 2.0, threshold_pct: float = 10.0) -> np.ndarray:
    """2-D gamma map of one plane (for the figures; NaN where not evaluated), its points above 1 searched again as
    the 3-D gammas' (:func:`_refined`); ``norm``: :func:`normalisation_dose` of the 3-D TPS dose, as theirs."""
    import pymedphys

    r = np.where(body2, ref2, 0.0)
    if norm <= 0 or not (r >= threshold_pct / 100 * norm).any():
        return np.full(ref2.shape, np.nan)
    with warnings.catch_warnings(), _pymedphys_logging_kept_in():
        warnings.simplefilter("ignore", DeprecationWarning)
        g = pymedphys.gamma(tuple(ax2), r, tuple(ax2), ev2, dose_pct, dist_mm,
                            lower_percent_dose_cutoff=threshold_pct, interp_fraction=5, max_gamma=1.5,
                            global_normalisation=norm, quiet=True, interp_algo=_interp_algo())
    return _refined(ax2, r, ev2, g, dose_pct, dist_mm, False, norm, 1.5)[0]   # as the 3-D gammas' points


def dose_difference(ref: np.ndarray, ev: np.ndarray, body: np.ndarray, threshold_pct: float = 10.0,
                    norm_gy: float | None = None) -> dict:
    """(MC - TPS) in % of :func:`normalisation_dose` (the TPS's near-maximum in the body, ``normalisation_gy``)
    over the body voxels at or above the threshold (% of it), as the gammas; ``norm_gy``: as :func:`_gamma_cut`."""
    norm = _gamma_cut(ref, body, threshold_pct, norm_gy)[0]
    sel = body & (ref >= threshold_pct / 100 * norm)
    d = (ev[sel] - ref[sel]) / norm * 100 if norm > 0 else np.zeros(0)
    if d.size == 0:
        return {"voxels": 0}
    q = np.percentile(d, [1, 5, 25, 50, 75, 95, 99])
    ratio = float(ev[sel].sum() / ref[sel].sum()) if ref[sel].sum() > 0 else float("nan")
    return {"voxels": int(d.size), "mean_pct": float(d.mean()), "sd_pct": float(d.std()),
            "percentiles_pct": dict(zip(("p1", "p5", "p25", "p50", "p75", "p95", "p99"), map(float, q))),
            "within_2pct": float(np.mean(np.abs(d) <= 2)), "within_3pct": float(np.mean(np.abs(d) <= 3)),
            "integral_ratio_mc_tps": ratio, "normalisation_gy": norm,
            "normalisation_plateau": normalisation_is_plateau(ref, body, norm), "values_pct": d,
            "pct_of": f"{NORMALISATION_TEXT} (normalisation_gy)"}


#: RTROIInterpretedType values (PS3.3 C.8.8.8) of ROIs that are neither targets, the body nor organs: no metrics.
OTHER_TYPES = ("MARKER", "ISOCENTER", "REGISTRATION", "CONTROL", "SUPPORT", "FIXATION", "BOLUS", "DOSE_REGION")


def classify(name: str, roi_type: str) -> str:
    """What an ROI is to the check: "target" (mcproton.body.target_basis, the rule of ``mcproton run`` too: typed
    PTV/CTV/GTV/ITV, or untyped / ORGAN with such a name prefix; the type first, so "PTV_flash" typed CONTROL is
    not one), "external" (typed EXTERNAL, or named as mcproton.body.BODY_NAMES), "other" (OTHER_TYPES: no
    metrics) or "oar"."""
    from ..body import is_body_name, target_basis

    t = (roi_type or "").upper()
    if target_basis(name, t):
        return "target"
    if t == "EXTERNAL" or is_body_name(name):
        return "external"
    if t in OTHER_TYPES:
        return "other"
    return "oar"



#: Realisations of the MC's noise added to the TPS dose for the noise-matched structure metrics
#: (:func:`structure_stats`) of the organs and the body; their standard error is reported (``noise_shift_se_pct``).
NOISE_REALISATIONS = 4
#: Those of the targets, whose D95 the check judges (:func:`d95_verdict`), drawn on the targets' voxels alone.  The
#: MC-side shift is the mean of these draws' shifts divided by (sqrt(2) - 1) (:data:`MC_SIDE_SCALE`), so their error
#: is multiplied by 2.41: with 4 draws the MC-corrected D95 of a correct plan at 1 % spread by 1.97 % (1 sd) over 22
#: seeds, and failed the 3 % level in 6 (statistics audit 2026-12-06, F1; its MC-side shift alone spread by 1.39 %).
#: With 64 it spreads by 0.4 % of its own (the shift's standard error, ``mc_noise_shift_se_pct``: ~0.15-0.3 % at
#: 1 % on the audit's 768-voxel box PTV, smaller for larger targets: 0.02 % on the OpenTPS head's CTV, 23.6 cm3 at
#: 2 mm).  Cost, measured on one shared core: a 97 k-voxel target (330 cm3 at 1.5 mm: a large head target) took
#: 4 s more than 4 draws, a 20 k-voxel one 0.2 s.
TARGET_NOISE_REALISATIONS = 64
#: The MC-corrected D95 fails the level only beyond the level plus this many of its standard errors (the draws'
#: error of its MC-side shift): the estimator's own noise does not decide a FAIL (audit F1); at 1 % noise that
#: standard error is ~0.2 % on a 768-voxel target, so the margin is ~0.4 % of a 3 % level there; it shrinks with
#: the target's size (0.02 % on the OpenTPS head's 23.6 cm3 CTV: a margin of 0.04 %).
D95_CORRECTED_SE_MULTIPLE = 2.0
#: The sign of the noise shift of a dose-at-volume metric: zero-mean noise widens a structure's dose distribution, so
#: its low percentiles go down and its high ones up (Kawrakow 2004, Phys Med Biol 49:1549).  An MC-side shift of the
#: other sign is the draws' error, not what the noise did: it is taken as 0 (``mc_noise_shift_implausible``; the
#: measured value kept as ``mc_noise_shift_measured_pct``), so the MC-corrected value is then the raw one.
NOISE_SHIFT_SIGN = {"D98": -1.0, "D95": -1.0, "D2": 1.0, "Dmax": 1.0}
#: Seed offset of those realisations (with the check's seed: deterministic, independent of the MC's own streams).
NOISE_SEED_OFFSET = 0xD95
#: The factor by which the spread of a structure's Dmean or V95/V100 over the independent-voxel realisations
#: (:func:`noisy_like_mc`) is multiplied to give its ``noise_sd_pct`` / ``noise_sd_points``.  An MC's voxel errors are
#: positively correlated far beyond neighbours (a proton deposits along its whole track; a spot's proton count moves
#: its whole footprint), so a mean over many voxels is noisier than independent voxels say.  Measured (statistics
#: audit 2026-12-06, F1; 10 seeds of ``mcproton check`` at 3 %, each ratio +-24 % (1 sd)): true seed-to-seed spread /
#: independent-voxel spread = 1.5-3.5 for the Dmean of 7 structures (target 2.2, brain 3.5, median 1.8), 1.35 for the
#: target's V95 and 2.8 for its V100; over 12 demo seeds 3.0 for the CTV's mean dose.  3 covers all but the largest
#: one: an upper estimate, about 1.7 x the truth for a typical structure.  The independent-voxel spread (a lower
#: bound) is kept beside it (``noise_sd_independent_pct`` / ``_points``).  The dose-at-volume metrics (D98 ... D2,
#: Dmax) are not scaled: their independent-voxel spread measured 0.6-1.9 x the true one (median 0.8).
AGGREGATE_NOISE_FACTOR = 3.0
#: The metrics whose noise spread is scaled by :data:`AGGREGATE_NOISE_FACTOR` (V95/V100 are keyed by their dose).
AGGREGATE_METRICS = ("Dmean",)


def noisy_like_mc(ref: np.ndarray, rel_unc: np.ndarray, rng: np.random.Generator,
                  where: np.ndarray | None = None, *, mc: np.ndarray | None = None) -> np.ndarray:
    """The TPS dose ``ref`` with one realisation of the MC's statistical noise: in each voxel (of ``where``, else
    all) a Gaussian of standard deviation ``mc`` x ``rel_unc`` (the MC's own standard error of that voxel: its
    dose times its relative uncertainty; ``mc`` None: ``ref`` x ``rel_unc``), independent between voxels, the result
    clipped at 0 (an MC dose is never negative).

    Why this model: an MC voxel dose is a mean over many independent histories, so its error is Gaussian by the
    central limit theorem, with the standard error the MC estimates.  The MC's own absolute error, not the TPS dose
    times the MC's relative one: the two agree where MC and TPS agree, but where the TPS has dose the MC lacks (a
    range error: beyond the MC's distal edge its relative uncertainty is up to 100 %) the relative one would put
    100 % noise on the TPS's dose there and hide the error in the noise floor.  Neighbouring voxels' errors are
    taken as independent; they are not (a proton deposits in many voxels: correlation +0.47 and +0.28 between
    neighbours along the beam, measured over 16 seeds, noise-matching audit 2026-12-05, F2), so on an interpolated
    TPS grid the propagated noise (compute.uncertainty_to_tps_grid) is about 25 % low and a quarter of the noise
    shift stays in the noise-matched values (D95 -0.4 % at 2 %): the safe direction, as the raw value is judged
    too.  Checked against a real MC (APTG plan03, 2.41 %, docs/check.md): the noise-matched target D95/D98/D2
    differences agree with the Dmean difference (the true offset, which noise does not bias) to 0.2-0.3 %, while
    the raw ones were 2.3-3 % off."""
    out = np.array(ref, dtype=np.float64, copy=True)
    if where is None:
        sd = np.nan_to_num(np.asarray(rel_unc, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = out if mc is None else np.asarray(mc, dtype=np.float64)
        out += rng.standard_normal(out.shape) * scale * sd
    else:   # the voxels of ``where`` only: no float64 copies of the whole grid (structure_stats calls it 8 times)
        i = np.flatnonzero(where)
        sd = np.nan_to_num(np.asarray(rel_unc).ravel()[i].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = out.flat[i] if mc is None else np.asarray(mc).ravel()[i].astype(np.float64)
        out.flat[i] += rng.standard_normal(i.size) * scale * sd
    return np.clip(out, 0.0, None, out=out)


#: The MC side of the noise matching (structure_stats): the MC's dose with its noise added once more carries
#: sqrt(2) sigma; for a metric shifted linearly in sigma (a flat dose: D95 = mean - 1.645 sigma) the shift from sigma
#: to sqrt(2) sigma is (sqrt(2) - 1) x the shift from 0 to sigma, so the measured one is divided by this.
MC_SIDE_SCALE = float(np.sqrt(2.0) - 1.0)


def _value(met: dict) -> float:
    """The MC's value of a metric dict of structure_stats (Gy, or a volume fraction for V95/V100)."""
    return float(met["mc_gy"] if "mc_gy" in met else met["mc"])


def _metric(d: np.ndarray, m: np.ndarray, k: str | float) -> float:
    """One metric of the dose ``d`` in the mask ``m``: "Dmean", "Dmax", "D<x>" (ICRU 83: the highest dose received by
    at least x % of the volume, :func:`mcproton.dvh.dose_at_volume`), or a dose level (Gy, a float): the fraction of
    the volume at or above it."""
    from ..dvh import dose_at_volume

    if not isinstance(k, str):
        return float(np.mean(d[m] >= k))
    if k == "Dmean":
        return float(d[m].mean())
    if k == "Dmax":
        return float(d[m].max())
    return dose_at_volume(d, m, float(k[1:]))


def _metric_of(v: np.ndarray, k: str | float) -> float:
    """:func:`_metric` of a structure's doses ``v`` (1-D: ``d[m]``, in the same order): the same value."""
    return _metric(v, np.ones(v.shape, bool), k)


def _metrics_of(v: np.ndarray, keys: Sequence[str | float]) -> list[float]:
    """:func:`_metric_of` of each of ``keys`` on one structure's doses ``v``: the same numbers, its dose-at-volume
    metrics (D98 ... D2) all read from one ``np.sort`` of ``v`` (:func:`mcproton.dvh.dose_at_volume`'s ranks)
    instead of an ``np.partition`` each.  Besides the repeated work (a target's four per noise draw), numpy's
    partition slows down on many equal values: on the scale audit's External (2.4 M voxels, 88 % of them at 0 Gy)
    it took 1.0 s per call where the sort takes 0.07-0.2 s (2026-12-07)."""
    from ..dvh import _nth_largest, _rank_percent, _refuse_nan

    ranked = [isinstance(k, str) and k not in ("Dmean", "Dmax") for k in keys]
    s = None
    if any(ranked) and v.size:
        d = np.asarray(v, dtype=np.float64)   # as dose_at_volume reads them
        s = np.sort(d)
        _refuse_nan(d, s)
    return [(_nth_largest(v, _rank_percent(v.size, float(str(k)[1:])), s) if s is not None else float("nan"))
            if r else _metric_of(v, k) for k, r in zip(keys, ranked)]


def _positions(masks: Sequence[np.ndarray], idx: np.ndarray) -> list[np.ndarray | slice]:
    """For each mask (a structure's, on the grid), the positions of its voxels within ``idx`` (the flat indices of
    the union of the masks), ascending (so ``v[pos]`` is ``grid[mask]`` of ``v = grid.ravel()[idx]``, in order): one
    array per structure, shared by the masks that are one object (a structure's metrics), the size of the
    structure (int32 where ``idx`` allows); a structure that is the whole union (the External): ``slice(None)``."""
    known: dict[int, np.ndarray | slice] = {}
    out: list[np.ndarray | slice] = []
    small = idx.size < 2 ** 31
    for m in masks:
        if id(m) not in known:
            p = np.flatnonzero(np.asarray(m).ravel()[idx])
            known[id(m)] = slice(None) if p.size == idx.size else (p.astype(np.int32) if small else p)
        out.append(known[id(m)])
    return out


def structure_stats(ref: np.ndarray, ev: np.ndarray, masks: Mapping[str, np.ndarray],
                    types: Mapping[str, str], voxel_volume_cm3: float,
                    prescription_gy: float | Mapping[str, float] | None, *,
                    noise_rel: np.ndarray | None = None, realisations: int = NOISE_REALISATIONS,
                    target_realisations: int = TARGET_NOISE_REALISATIONS,
                    seed: int = 0, rx_of_median: bool = False) -> dict[str, dict]:
    """TPS vs MC dose statistics per structure; the difference in % of the TPS value of the metric (``diff_pct`` =
    (MC - TPS) / TPS x 100; V95/V100: absolute points of the structure's volume, ``diff_points``).
    ``prescription_gy``: one for every target, or each target's by name (a target without one gets no V95/V100).
    ``rx_of_median``: those are each target's own TPS median (the plan gives no prescription): V95/V100 are then
    labelled "of the TPS median" (``label``, ``of``), as the TPS's V100 is 50 % by construction there, not a
    coverage (its MC - TPS points say where the MC's median lies against the TPS's).

    Noise matching (``noise_rel``: the MC's relative standard error per voxel, on the grid of ``ref``).  MC noise
    widens the MC's dose distribution in a structure, so a DVH metric of the noisy MC is biased even where the MC is
    right: D95 and D98 down, D2 and Dmax up, V95 down (Kawrakow 2004, Phys Med Biol 49:1549; Sempau & Bielajew 2000,
    Phys Med Biol 45:131); at 2 % noise the D95 of a target reads about -2 % (APTG plan03).  To compare like with
    like, each metric is also evaluated on the TPS dose with the MC's noise added (:func:`noisy_like_mc`,
    ``realisations`` times, seeded by ``seed``): ``tps_noisy_gy`` (their mean), ``noise_shift_pct`` (what the noise
    alone does to the metric, % of the TPS value), ``noise_shift_se_pct`` (its standard error over the
    realisations), ``noise_sd_pct`` (the spread of the metric over the realisations: what the MC's noise spreads
    one MC's value by; for Dmean and V95/V100, means over many voxels, that spread x :data:`AGGREGATE_NOISE_FACTOR`
    for the MC's correlated noise, an upper estimate, with the independent-voxel spread, a lower bound, as
    ``noise_sd_independent_pct`` / ``_points``) and ``noise_matched_diff_pct`` = (MC - TPS with noise) / TPS x 100
    (points for V95/V100: ``tps_noisy``, ``noise_shift_points``, ``noise_sd_points``, ``noise_matched_diff_points``).
    Dmean is unbiased by zero-mean noise (its noise shift is ~0).

    The noise shift is that of the TPS's dose distribution.  Where the MC's differs in shape (a real error: a cold
    corner in a homogeneous target) its own shift is smaller, and the noise-matched difference then hides part of
    the error: a true D95 of -4.0 % read -1.3 to -2.7 % noise-matched at 1 % noise, -2.9 to -4.1 % raw (noise-matching
    audit 2026-12-05, F1); and where the TPS has the cold corner and the MC is flat, a true +4.2 % read +2.4 %
    noise-matched and +2.5 % raw (review 2026-12-05).  So the MC's side is corrected too: its own dose with its noise
    added once more (``realisations`` times) shifts the metric by (sqrt(2) - 1) x what its noise did to it
    (:data:`MC_SIDE_SCALE`, a shift linear in sigma), giving ``mc_noise_shift_pct`` and ``mc_corrected_diff_pct`` =
    (MC - its noise shift - TPS) / TPS x 100 (points for V95/V100).  Each estimate errs where the other holds (the
    TPS's shift where the shapes differ, the MC's where the shift is not linear in sigma), so the check judges the
    target D95 on all three: raw, noise-matched and MC-corrected (api.check, :func:`d95_verdict`)."""
    rows: dict[str, dict] = {}
    evals: list[tuple[dict, np.ndarray, str | float, bool]] = []   # (metric dict, mask, _metric's key, a target's)
    for nm, m in masks.items():
        kind = classify(nm, types.get(nm, ""))
        if kind in ("other",) or not m.any():
            continue
        if kind == "target":
            keys = ("Dmean", "D98", "D95", "D50", "D2")
        elif kind == "external":
            keys = ("Dmean", "D2")
        else:
            keys = ("Dmean", "Dmax", "D2")
        n_vox = int(np.count_nonzero(m))
        row: dict[str, Any] = {"kind": kind, "type": types.get(nm, ""),
                               "volume_cm3": float(n_vox * voxel_volume_cm3), "voxels": n_vox,
                               "few_voxels": n_vox < SMALL_STRUCTURE_VOXELS, "metrics": {}}
        rx = prescription_gy.get(nm) if isinstance(prescription_gy, Mapping) else prescription_gy
        levels = [lv / 100 * rx for lv in (95, 100)] if kind == "target" and rx else []
        # each dose's values in the structure once, sorted once for all its metrics (_metrics_of)
        tps_all, mc_all = (_metrics_of(np.asarray(d)[m], [*keys, *levels]) for d in (ref, ev))
        for k, tps, mc in zip(keys, tps_all, mc_all):
            row["metrics"][k] = {"tps_gy": tps, "mc_gy": mc, "diff_gy": mc - tps,
                                 "diff_pct": (mc - tps) / tps * 100 if tps > 0 else float("nan")}
            evals.append((row["metrics"][k], m, k, kind == "target"))
        if kind == "target":
            row["prescription_gy"] = rx or None
        for lv, x, tps, mc in zip((95, 100), levels, tps_all[len(keys):], mc_all[len(keys):]):
            row["metrics"][f"V{lv}"] = {"tps": tps, "mc": mc, "diff_points": (mc - tps) * 100,
                                        "of": "the TPS median" if rx_of_median else "the prescription",
                                        "label": f"V{lv} of the TPS median" if rx_of_median else f"V{lv}"}
            evals.append((row["metrics"][f"V{lv}"], m, x, True))
        rows[nm] = row
    if noise_rel is not None and evals:
        tgt = [e for e in evals if e[3]]
        rest = [e for e in evals if not e[3]]
        for group, n, stream in ((tgt, int(target_realisations), 1), (rest, int(realisations), 0)):
            if group and n > 0:
                _noise_match(ref, ev, noise_rel, group, n, seed, stream)
    return rows


def _noise_match(ref: np.ndarray, ev: np.ndarray, noise_rel: np.ndarray, evals: list, n: int, seed: int,
                 stream: int) -> None:
    """The noise-matched and MC-corrected values of structure_stats's ``evals`` (metric dict, mask, key, is a
    target's), from ``n`` draws of the MC's noise on the voxels of their masks only (a 1-D copy of those: no copy of
    the whole grid per draw), seeded by ``seed`` and ``stream`` (0: the organs', as before; 1: the targets').

    Each structure's voxels are kept once, as their positions within that 1-D copy (:func:`_positions`), not as a
    mask per metric: a mask per metric over the union of the structures (the whole body where the External is
    among them) held 3 N + 2 body-sized copies for N organs, 888 MB at the peak for 40 organs on a 4.7 M-voxel
    body, against 312 MB before the 1-D draws (check review 2026-12-06, finding 2)."""
    where = np.zeros(ref.shape, bool)
    for m in {id(m): m for _, m, _, _ in evals}.values():   # each structure's mask once, not once per metric
        where |= m
    idx = np.flatnonzero(where)
    r1, e1 = np.asarray(ref).ravel()[idx], np.asarray(ev).ravel()[idx]
    u1 = np.asarray(noise_rel).ravel()[idx]
    pos = _positions([m for _, m, _, _ in evals], idx)
    # the metrics of each structure together (its positions, one object per structure: _positions), so that each
    # draw's doses in a structure are selected and sorted once for all its metrics (_metrics_of)
    by_structure: dict[int, tuple[Any, list[int]]] = {}
    for j, p in enumerate(pos):
        by_structure.setdefault(id(p), (p, []))[1].append(j)
    groups = [(p, js, [evals[j][2] for j in js]) for p, js in by_structure.values()]

    def metrics(noisy: np.ndarray, out: np.ndarray) -> None:
        for p, js, keys in groups:
            out[js] = _metrics_of(noisy[p], keys)

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, NOISE_SEED_OFFSET] + ([stream] if stream else []))
    vals = np.empty((n, len(evals)))
    for i in range(n):
        metrics(noisy_like_mc(r1, u1, rng, mc=e1), vals[i])
    # the MC's side: its own dose with its noise added once more (noise of sqrt(2) sigma in all), whose shift
    # from the MC's is (sqrt(2) - 1) x that of sigma for a shift linear in sigma (a flat dose)
    mc_vals = np.empty((n, len(evals)))
    for i in range(n):
        metrics(noisy_like_mc(e1, u1, rng, mc=e1), mc_vals[i])
    mean = vals.mean(axis=0)
    sd = vals.std(axis=0, ddof=1) if n > 1 else np.full(len(evals), np.nan)
    se = sd / np.sqrt(n)
    mc_shift = (mc_vals.mean(axis=0) - np.array([_value(met) for met, _, _, _ in evals])) / MC_SIDE_SCALE
    mc_se = (mc_vals.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(evals), np.nan)) / MC_SIDE_SCALE
    for (met, _, k, _), mu, e, d, sh, she in zip(evals, mean, se, sd, mc_shift, mc_se):
        g = AGGREGATE_NOISE_FACTOR if (not isinstance(k, str) or k in AGGREGATE_METRICS) else 1.0
        sign = NOISE_SHIFT_SIGN.get(k) if isinstance(k, str) else None
        measured = float(sh)
        if sign is not None and sh * sign < 0:   # the wrong sign for noise: the draws' error (NOISE_SHIFT_SIGN)
            sh = 0.0
        if not isinstance(k, str):   # a V95/V100
            met.update({"tps_noisy": float(mu), "noise_shift_points": (float(mu) - met["tps"]) * 100,
                        "noise_shift_se_points": float(e) * 100, "noise_sd_points": float(d) * g * 100,
                        "noise_sd_independent_points": float(d) * 100,
                        "noise_matched_diff_points": (met["mc"] - float(mu)) * 100,
                        "mc_noise_shift_points": float(sh) * 100, "mc_noise_shift_se_points": float(she) * 100,
                        "mc_corrected_diff_points": (met["mc"] - float(sh) - met["tps"]) * 100})
        else:
            tps = met["tps_gy"]
            f = 100 / tps if tps > 0 else float("nan")
            met.update({"tps_noisy_gy": float(mu), "noise_shift_pct": (float(mu) - tps) * f,
                        "noise_shift_se_pct": float(e) * f, "noise_sd_pct": float(d) * g * f,
                        "noise_sd_independent_pct": float(d) * f,
                        "noise_matched_diff_pct": (met["mc_gy"] - float(mu)) * f,
                        "mc_noise_shift_pct": float(sh) * f, "mc_noise_shift_se_pct": float(she) * f,
                        "mc_corrected_diff_pct": (met["mc_gy"] - float(sh) - tps) * f,
                        "noise_realisations": n})
            if sign is not None:
                met.update({"mc_noise_shift_implausible": bool(sh != measured),
                            "mc_noise_shift_measured_pct": measured * f})


def d95_limits(met: Mapping[str, Any], limit_pct: float) -> dict[str, float]:
    """Each D95 estimate's own limit (:func:`d95_verdict`): ``limit_pct`` for the raw and the noise-matched values;
    for the MC-corrected one ``limit_pct`` + :data:`D95_CORRECTED_SE_MULTIPLE` x its standard error (the draws' error
    of its MC-side shift, ``mc_noise_shift_se_pct``; none known: 0), so that the estimator's own noise does not
    decide a FAIL (statistics audit 2026-12-06, F1)."""
    se = float(met.get("mc_noise_shift_se_pct", 0.0))
    se = se if math.isfinite(se) else 0.0
    out = {"raw": float(limit_pct)}
    if "noise_matched_diff_pct" in met:
        out["noise-matched"] = float(limit_pct)
    if "mc_corrected_diff_pct" in met:
        out["MC-corrected"] = float(limit_pct) + D95_CORRECTED_SE_MULTIPLE * se
    return out


def d95_verdict(met: Mapping[str, Any], limit_pct: float) -> tuple[bool, float, dict[str, float]]:
    """The target D95 action level on one metric dict of :func:`structure_stats`: (passed, the deciding value, the
    values judged).  Judged: the raw difference and, where noise matching ran, the noise-matched and the MC-corrected
    ones; it passes only when every one is finite and within its own limit (:func:`d95_limits`: the MC-corrected one
    beyond ``limit_pct`` by twice its standard error; each estimate of the noise's effect errs in a case where another
    holds: structure_stats).  The deciding value is the one largest against its own limit (a NaN first)."""
    vals = {"raw": float(met["diff_pct"])}
    for key, name in (("noise_matched_diff_pct", "noise-matched"), ("mc_corrected_diff_pct", "MC-corrected")):
        if key in met:
            vals[name] = float(met[key])
    lims = d95_limits(met, limit_pct)
    passed = all(math.isfinite(v) and abs(v) <= lims[k] for k, v in vals.items())
    value = vals[max(vals, key=lambda k: abs(vals[k]) / lims[k] if math.isfinite(vals[k]) and lims[k] > 0
                     else math.inf)]
    return passed, value, vals


def _frame(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(d, float)
    a = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, a)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    return u, v


def _r80_tops(prof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``prof`` (rays x depth samples): the top (the 95th percentile of the samples above half the row's
    maximum: a noise spike does not raise it), those samples (a boolean mask) and whether the row has dose.  The
    percentile is ``np.percentile`` of the rows with the same number of such samples, one call per number: each
    row's value bit for bit that of the row alone."""
    n, k = prof.shape
    m = prof.max(axis=1) if k else np.zeros(n)
    ok = m > 0
    sel = prof >= (0.5 * m)[:, None]
    cnt = np.count_nonzero(sel, axis=1)
    top = np.full(n, np.nan)
    for c in np.unique(cnt[ok]):
        rows = np.flatnonzero(ok & (cnt == c))
        top[rows] = np.percentile(prof[rows][sel[rows]].reshape(rows.size, int(c)), 95, axis=1)
    return top, sel, ok


def _crossing_rows(t: np.ndarray, prof: np.ndarray, level: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per row: the distal-most crossing of ``level`` (the last sample at or above it and the next, linear
    interpolation; a noise dip inside the plateau is not taken for the distal edge); NaN where not ``ok``, where no
    sample reaches the level or where the last one is the grid's last (no distal fall-off inside the grid)."""
    n, k = prof.shape
    out = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):          # rows without dose: NaN level, no sample above it
        above = prof >= level[:, None]
    j = k - 1 - np.argmax(above[:, ::-1], axis=1)   # the last sample at or above the level
    r = np.flatnonzero(ok & above.any(axis=1) & (j + 1 < k))
    j = j[r]
    a, b = prof[r, j], prof[r, j + 1]
    same = a == b
    f = (a - level[r]) / np.where(same, 1.0, a - b)
    f[same] = 0.0
    out[r] = t[j] + f * (t[j + 1] - t[j])
    return out


def _distal_r80_rows(t: np.ndarray, prof: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """Distal R80 of each row of ``prof`` (rays x depth samples at the equally spaced depths ``t``): the distal-most
    crossing of 80 % of the profile's top; NaN where a profile has no dose or no distal fall-off inside the grid.

    Without ``like`` (the TPS profiles) the top is the row's own (:func:`_r80_tops`: the 95th percentile of the
    samples above half the maximum).  With ``like`` (the MC profiles, ``like`` the TPS profiles of the same rays)
    it is the TPS top times the MC/TPS dose ratio over the TPS's top samples moved by the rays' range difference
    (first estimated with the MC's own top): an MC that is the TPS times a factor, shifted in depth or not, has its
    own top as before, but the MC's noise no longer raises its level (a 95th percentile of noisy samples lies above
    their mean), which put the distal edge short: by 0.17 mm at 2.5 % noise on a flat plateau, and by 0.5 mm in a
    check of APTG plan03 at 2.45 % (tests/check/test_check_ranges.py)."""
    n, k = prof.shape
    if n == 0 or k == 0:
        return np.full(n, np.nan)
    if like is None:
        top, _, ok = _r80_tops(prof)
        return _crossing_rows(t, prof, 0.8 * top, ok)
    top_ref, sel_ref, ok_ref = _r80_tops(like)
    shift = _distal_r80_rows(t, prof) - _crossing_rows(t, like, 0.8 * top_ref, ok_ref)
    step = float(t[1] - t[0]) if k > 1 else 1.0
    d = np.rint(np.where(np.isfinite(shift), shift, 0.0) / step).astype(np.int64)
    src = np.arange(k)[None, :] - d[:, None]      # MC sample i against TPS sample i - d
    inside = (src >= 0) & (src < k)
    src = np.clip(src, 0, k - 1)
    region = inside & np.take_along_axis(sel_ref, src, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (np.where(region, prof, 0.0).sum(axis=1)
                 / np.where(region, np.take_along_axis(like, src, axis=1), 0.0).sum(axis=1))
    top = top_ref * ratio
    return _crossing_rows(t, prof, 0.8 * top, ok_ref & (prof.max(axis=1) > 0) & (top > 0))


#: The percentile of the voxels with dose that :func:`percentile_max` takes as a dose's maximum.  One outlier voxel (a
#: low-density voxel of a low-statistics MC planning dose at 5.7 x the plateau; a metal override) does not reach it
#: while the high-dose region holds more than 0.1 % of the voxels with dose: 2-38 % of them in the doses seen (APTG
#: plan03's RayStation beam doses: the 99.9th percentile 0.96 of the maximum; the OpenTPS/MCsquare head dose, dose in
#: every voxel of the grid: 0.90; the CSI audit's 4 mm per-beam doses: 0.89-0.95).  A small median filter would do
#: as well but costs 2 s per dose on a 3 M-voxel grid (a percentile: 0.05 s).
ROBUST_MAX_PERCENTILE = 99.9


def percentile_max(dose: np.ndarray, where: np.ndarray | None = None) -> float:
    """A dose's maximum that a few outlier voxels do not make: the :data:`ROBUST_MAX_PERCENTILE` th (99.9th)
    percentile of its voxels with dose (> 0; those of ``where`` where given); 0 where none has dose.  Not the
    near-maximum of the gammas and the dose difference (:func:`normalisation_dose`, the 8th-largest body voxel); the
    texts call this one "the 99.9th percentile" and that one "the near-maximum" (until audit 30, lefts F2, both
    "robust maximum"; the JSON's ``robust_max_gy`` is this one).  Used where a level is a
    fraction of "the maximum" (the rays of :func:`range_agreement`, the region of :func:`beam_dose_ratio`, the
    check's high-dose centroid): the single largest voxel made one hot voxel of a planning dose select one ray and
    fail the range level on it (CSI audit 2026-12-05, F3)."""
    d = np.asarray(dose)
    v = d[where] if where is not None else d.ravel()
    v = v[v > 0]
    return float(np.percentile(v, ROBUST_MAX_PERCENTILE)) if v.size else 0.0


#: What the global gammas and the dose difference are in % of (:func:`normalisation_dose`), as the report says it.
NORMALISATION_TEXT = (f"the TPS dose's near-maximum in the body (the dose that at least {NEAR_MAX_VOXELS} of its "
                      f"body voxels receive: its {NEAR_MAX_VOXELS}th-largest body voxel; where a hot cluster too small "
                      "to be a high-dose region sets that, the high-dose region's, a warning says so)")
#: A TPS dose whose maximum in the body exceeds its near-maximum (:func:`normalisation_dose`) by more than this
#: factor is warned of (:func:`normalisation_note`): in the doses seen the maximum is 1.04-1.12 x their 99.9th
#: percentile (APTG plan03's RayStation doses 1.04-1.08, the OpenTPS/MCsquare head 1.11, the CSI audit's 4 mm beam
#: doses 1.05-1.12), so at most that above the near-maximum (:data:`NEAR_MAX_VOXELS` th largest voxel) that replaced
#: it; the CSI audit's hot voxel was 5.7 x.
NORMALISATION_WARN_RATIO = 1.2


def _isolated_near_max(ref: np.ndarray, body: np.ndarray, norm: float) -> tuple[int, tuple, float] | None:
    """Where the near-maximum ``norm`` (:func:`normalisation_dose`) is set by an isolated voxel, one that lies more than
    :data:`NORMALISATION_WARN_RATIO` x above each of its 26 neighbours in the body: (how many of the
    :data:`NEAR_MAX_VOXELS` largest body voxels are isolated so, the index of the largest of those, the median over
    them of their highest neighbour's dose); None otherwise.  A high-dose region, however small or sharp, has
    neighbours at about its own dose, and the summit of a sharp one (a pencil beam's Bragg peak on a coarse grid)
    falls away on every side (:func:`_summits`): neither is counted.  Eight or more hot voxels of a noisy planning
    MC within 1.2 x of each other did not reach the maximum's warning and set the normalisation: an MC 5 % low
    passed gamma 2 %/2 mm at 99.6 % (84.3 % without them) with no word (re-read of the check, F1).  Only the few
    largest voxels are looked at."""
    over = np.flatnonzero(body & (ref > norm))   # fewer than NEAR_MAX_VOXELS (norm is the kth largest)
    at = np.flatnonzero(body & (ref == norm))[:max(0, NEAR_MAX_VOXELS - over.size)]
    top = np.concatenate([over, at])
    if top.size < NEAR_MAX_VOXELS:   # fewer voxels with dose than that: the maximum's warning says it
        return None
    idx = np.array(np.unravel_index(top, ref.shape))   # (ndim, k)
    offsets = [np.array(o)[:, None] - 1 for o in np.ndindex(*([3] * ref.ndim)) if any(c != 1 for c in o)]   # 26
    # each one's highest neighbour in the body
    high = np.max([_body_dose_at_voxels(ref, body, idx + o) for o in offsets], axis=0)
    own = np.ravel(ref)[top].astype(np.float64)
    iso = (high * NORMALISATION_WARN_RATIO < own) & ~_summits(ref, body, idx)
    if not np.all(iso[own == norm]):   # the voxel that sets it (each of a tie) has neighbours at about its dose
        return None
    k = tuple(int(i) for i in idx[:, np.flatnonzero(iso)[np.argmax(own[iso])]])
    return int(np.count_nonzero(iso)), k, float(np.median(high[iso]))


#: A voxel above all its neighbours is the summit of a genuine dose peak, not a hot voxel, where its dose falls away
#: from it over two voxels in each direction along the grid axes: its neighbour at least this factor above the voxel
#: beyond (:func:`_summits`).  Isolated pencil-beam peaks (a spot-pattern QA field, spots 30 mm apart) have their
#: peak voxel more than 1.2 x above every neighbour: MCsquare's 100 MeV depth dose (tests/data/dicom/opentps_box100)
#: on 2 mm voxels is 0.82 / 1.00 / 0.49 at the peak, and on 4 mm voxels 0.66 / 1.00 / 0.29; the next voxels fall on
#: by 27 % and 12 % proximally (0.645 and 0.58), a Gaussian spot of sigma 3-6 mm on 2 mm voxels by 18 % or more
#: laterally.  A hot voxel on a dose plateau has neighbours about as high as the voxels beyond them (the planning
#: MC's noise, a few %: each of the six directions falls by 5 % with a probability of a few %, all six about 10^-8),
#: and one in a penumbra has the dose rising beyond a neighbour on one side (review a of audit 29, R1).
PEAK_DESCENT = 1.05


def _summits(ref: np.ndarray, body: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """For the voxels ``idx`` ((ndim, k) indices) of ``ref``: whether each is the summit of a dose peak, its neighbour
    along each grid axis, on both sides, at least :data:`PEAK_DESCENT` x the voxel beyond it (a voxel outside the
    grid or the body counts as no dose)."""
    summit = np.ones(idx.shape[1], bool)
    for a in range(ref.ndim):
        for s in (-1, 1):
            step = np.zeros((ref.ndim, 1), np.int64)
            step[a] = s
            near, beyond = (_body_dose_at_voxels(ref, body, idx + m * step) for m in (1, 2))
            summit &= near >= PEAK_DESCENT * beyond
    return summit


def _body_dose_at_voxels(ref: np.ndarray, body: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The doses of ``ref`` (float64) at the voxels ``idx`` ((ndim, k) indices); 0 for an index outside the grid
    or a voxel outside the body."""
    on = np.all((idx >= 0) & (idx < np.array(ref.shape)[:, None]), axis=0)
    f = np.ravel_multi_index(tuple(np.where(on[None], idx, 0)), ref.shape)
    return np.where(on & np.ravel(body)[f], np.ravel(ref)[f].astype(np.float64), 0.0)


def _largest_of(ref: np.ndarray, hot: np.ndarray, axes_zyx: Sequence[np.ndarray]) -> tuple[float, tuple, int]:
    """The largest dose of ``ref`` in the voxels ``hot``, where it is ((x, y, z) in mm from the z, y, x axes) and how
    many voxels ``hot`` holds."""
    k = np.unravel_index(int(np.argmax(np.where(hot, ref, -np.inf))), ref.shape)
    z, y, x = (float(np.asarray(a)[i]) for a, i in zip(axes_zyx, k))
    return float(ref[k]), (x, y, z), int(np.count_nonzero(hot))


def normalisation_note(ref: np.ndarray, body: np.ndarray, axes_zyx: Sequence[np.ndarray], what: str,
                       unit: str = "Gy", used: float | None = None, one_beam: bool = False) -> str | None:
    """The warning where the TPS dose ``ref`` (``what``: e.g. "the TPS plan dose RD.dcm") has its maximum in the body
    more than :data:`NORMALISATION_WARN_RATIO` x its near-maximum (the gammas' and the dose difference's
    normalisation): how much, where (x, y, z in mm, the DICOM patient axes) and how many voxels; or where the
    near-maximum is itself set by isolated voxels (:func:`_isolated_near_max`: eight or more hot voxels within
    1.2 x of each other, which that ratio misses); None otherwise.  Such a maximum was the normalisation until
    2026-12-07 (gamma audit 28, F1): said so that a reader comparing with a planning system's own gamma (normalised
    to its maximum) knows why they differ.  ``used``: the normalisation api.check decided (with the targets: a small
    target's near-maximum is kept and not warned of); None: :func:`normalisation_dose`.  ``one_beam``: ``ref`` is
    one beam's dose, whose own distal Bragg peak, thin and sharp, can set the near-maximum (the hot-cluster text then
    names it first among the causes: review a of audit 32, R1: the test fixtures' correct 9-spot fields, 1.10-1.27
    x)."""
    norm = _near_max_voxel(ref, body) if body.any() else 0.0
    if not norm > 0:
        return None
    used = normalisation_dose(ref, body) if used is None else float(used)
    if used < norm:   # a hot cluster set the near-maximum: replaced by the plateau's (audit 31, norm F1)
        top, (x, y, z), n = _largest_of(ref, body & (ref >= PLATEAU_RATIO * used), axes_zyx)
        return (f"{what}: its near-maximum in the body ({NEAR_MAX_VOXELS}th-largest body voxel), {norm:.4g} {unit}, "
                f"is set by a hot cluster ({n} voxel{'' if n == 1 else 's'} above {PLATEAU_RATIO:g} x the dose used, "
                f"the largest {top:.4g} {unit} at (x, y, z) = ({x:.1f}, {y:.1f}, {z:.1f}) mm) too small or thin to "
                f"be a high-dose region (fewer than {NEAR_MAX_VOXELS} voxels whose 3 x 3 x 3 median reaches "
                f"1/{PLATEAU_RATIO:g} of it): the gammas and the dose difference are in % of the high-dose region's "
                f"near-maximum, {used:.4g} {unit}, instead ({norm / used:.2f} x lower: in % of the cluster's dose "
                "their criteria would be that much looser and a wrong MC could pass); look at the TPS dose there ("
                + ("for one beam's dose most often its own distal Bragg peak, a thin layer of a few voxels whose 3 x 3 "
                   "x 3 medians fall below it: then correct and the criteria only stricter, never looser; else "
                   if one_beam else "")
                + "a metal or air-cavity edge, a noisy planning MC)")
    isolated = _isolated_near_max(ref, body, norm)
    if isolated is not None:
        n_iso, k, neighbours = isolated
        z, y, x = (float(np.asarray(a)[i]) for a, i in zip(axes_zyx, k))
        return (f"{what}: its near-maximum in the body ({NEAR_MAX_VOXELS}th-largest body voxel), {norm:.4g} {unit}, "
                f"the dose that the gammas and the dose "
                f"difference are in % of, is set by isolated voxels: {n_iso} of its {NEAR_MAX_VOXELS} largest body "
                f"voxels (the largest at (x, y, z) = ({x:.1f}, {y:.1f}, {z:.1f}) mm) each lie more than "
                f"{NORMALISATION_WARN_RATIO:g} x above every neighbour, whose dose is at most {neighbours:.4g} {unit} "
                f"(median over them): hot voxels (low-density voxels of a noisy planning MC?), not a high-dose "
                f"region, so the gammas' dose criteria and threshold and the dose difference's % are "
                f"{norm / neighbours:.2g} x looser than of the dose around them, and an MC that is too low or too "
                "high can pass those rows; look at the TPS dose there and recompute it with less noise (or without "
                "the voxels' material) before reading the gamma and dose-difference rows")
    top = float(np.max(ref, where=body, initial=-np.inf))
    if not top > NORMALISATION_WARN_RATIO * norm:
        return None
    top, (x, y, z), n = _largest_of(ref, body & (ref > NORMALISATION_WARN_RATIO * norm), axes_zyx)
    return (f"{what}: its maximum in the body, {top:.4g} {unit} at (x, y, z) = ({x:.1f}, {y:.1f}, {z:.1f}) mm, is "
            f"{top / norm:.2f} x its near-maximum ({NEAR_MAX_VOXELS}th-largest body voxel), {norm:.4g} {unit} "
            f"({n} voxel{'' if n == 1 else 's'} above "
            f"{NORMALISATION_WARN_RATIO:g} x it): a hot voxel (a low-density voxel of a noisy planning MC?) or a "
            f"high-dose region of fewer than {NEAR_MAX_VOXELS} voxels; the gammas and the dose difference are in % "
            "of the near-maximum, where a planning system's gamma normalised to its maximum would read looser "
            "dose criteria; look at the TPS dose there")



#: The gammas' and the dose difference's normalisation (:func:`normalisation_dose`) may lie at most this factor above
#: the plan's target dose (:func:`target_dose_of_plan`) before the check refuses to PASS (api: a failed row
#: "normalisation ... / target dose"): a hot region of the TPS dose large enough to pass :func:`_plateau_near_max`
#: (40-100 voxels of 2 mm at 1.3 x a 2 Gy field: an MC 2.5 % low passed 2 %/2 mm at 98.4 % with 100; one 5 % low at
#: 2.5 x at 98.1 %; audit 31, norm F2) would otherwise loosen every global criterion by its factor.  ICRU Reports
#: 50/62 keep a target's dose within -5 % / +7 % of its prescription; 1.2 leaves the point-like near-maximum (above
#: D2 %) and a planning MC's noise room.
NORMALISATION_TARGET_RATIO = 1.2
#: A stated prescription (the plan's TargetPrescriptionDose, or ``--prescription``) is the target dose of
#: :func:`target_dose_of_plan` where its target's TPS median lies within this (relative) of it: a planned target's
#: median lies within a few % of its prescription (the demo's CTV_PF: TPS D50 1.62 Gy for 1.636 Gy, -0.7 %); one
#: further off is another quantity (a point's dose, an old prescription), and the target's own near-maximum is used.
PRESCRIPTION_CONSISTENT = 0.05


def target_dose_of_plan(tps: np.ndarray, body: np.ndarray, masks: Mapping[str, np.ndarray], targets: Sequence[str],
                        prescriptions: Mapping[str, float]) -> tuple[float, str] | None:
    """The dose the global gammas' normalisation is compared with (AAPM TG-218 normalises a global gamma to the
    prescription, or to the maximum in a high-dose, low-gradient region), with what it is: the highest over the
    ``targets`` of each one's stated prescription (``prescriptions``: in the TPS dose's quantity and fractions; none
    for the TPS medians) where its TPS median in the body lies within :data:`PRESCRIPTION_CONSISTENT` of it, else of
    its TPS near-maximum in the body (its :data:`NEAR_MAX_VOXELS` th-largest voxel, as :func:`normalisation_dose`'s:
    a hot region outside every target then still lies above it, one inside a target without a consistent
    prescription does not).  None without a target in the body."""
    best: tuple[float, str] | None = None
    for nm in targets:
        m = np.asarray(masks[nm], bool) & body
        if not m.any():
            continue
        of = consistent_prescription(tps, m, prescriptions.get(nm))
        if of is not None:
            v, what = of[0], f"the prescription of {nm!r} (its TPS median {of[1] / of[0] - 1:+.1%} of it)"
        else:
            v, what = _near_max_voxel(tps, m), f"the TPS near-maximum in {nm!r}"
        if v > 0 and (best is None or v > best[0]):
            best = (v, what)
    return best


#: The fewest beam's-eye-view rays on which the range levels are judged (:func:`range_agreement`'s ``rays``): a
#: median and a share of rays within 2 mm of fewer are not a field's range (1 ray gave a confident -27.8 mm FAIL,
#: CSI audit F3); at the 2 mm ray spacing of a 2 mm grid, 20 rays are a field of 0.8 cm2.  Fewer: "not evaluable".
MIN_RANGE_RAYS = 20

#: The fraction of a dose's 99.9th percentile (:func:`percentile_max`) that a ray must reach for that dose to have a
#: distal edge on it (:func:`range_agreement`): the rays are those where either dose reaches ``min_fraction`` (50 %)
#: of its maximum, and a ray where the other dose stays below this (outside its field, not merely in its penumbra: a
#: correct plan's doses are within a few % of each other at the field's 50 % edge, and a 50 % -> 10 % penumbra is
#: several mm wide)
#: counts as a ray with an edge in one dose only, outside every tolerance.
EDGE_FRACTION = 0.1

#: The factor from the independent-voxel standard error of :func:`beam_dose_ratio`'s median to its ``uncertainty_pct``:
#: the MC's voxel errors are correlated, so the median over a region scatters more.  Measured: 1.6 (noise-matching
#: audit 2026-12-05) and 1.45 +- 0.23 (statistics audit 2026-12-06, F2: 20 seeds of the demo CT plan, seed-to-seed sd
#: of the median ratio 0.139 % against 0.096 % independent).  Until 2026-12-06 the independent one was reported.
BEAM_RATIO_NOISE_FACTOR = 1.6

#: The region of :func:`beam_dose_ratio`: the voxels where the TPS beam dose, averaged over 3 x 3 x 3 voxels, is at
#: or above this fraction of its 99.9th percentile (:func:`percentile_max`).
BEAM_RATIO_FRACTION = 0.5


def beam_ratio_region(ref: np.ndarray, body: np.ndarray,
                      fraction: float = BEAM_RATIO_FRACTION) -> tuple[np.ndarray, float] | None:
    """The high-dose region of :func:`beam_dose_ratio` of the TPS beam dose ``ref``: (the voxel mask, the 99.9th
    percentile of the averaged dose, :func:`percentile_max`), None where the TPS beam dose has no dose in the body.
    Its 3 x 3 x 3 average is the one full-grid pass of the comparison: a caller that compares one TPS beam dose with
    several MC doses computes this once and gives it as ``region`` (check review b of audit 26, R2: each failed beam
    of a plan was compared with every other beam's MC dose, the average of its TPS dose made again each time)."""
    from scipy.ndimage import uniform_filter

    ref = np.asarray(ref, np.float64)
    has = body & (ref > 0)
    avg = uniform_filter(ref, size=3, mode="constant")
    top = percentile_max(avg, has)
    if top <= 0:
        return None
    return has & (avg >= fraction * top), top


def beam_dose_ratio(ref: np.ndarray, ev: np.ndarray, body: np.ndarray, noise_rel: np.ndarray | None = None,
                    fraction: float = BEAM_RATIO_FRACTION,
                    region: tuple[np.ndarray, float] | None = None) -> dict[str, Any]:
    """The MC/TPS dose level of one beam (``ref``: its TPS dose, ``ev``: the MC's, on one grid): the median of the
    voxel ratios MC/TPS over its high-dose region, the body voxels with TPS dose where the TPS beam dose averaged
    over 3 x 3 x 3 voxels is at or above ``fraction`` of that average's 99.9th percentile (:func:`percentile_max`).  A
    beam's MU or output error (or the beam model's protons per MU at its energies) scales every voxel of it, and the
    median reads that scale; a range or lateral difference changes the voxels at the region's edges only, which the
    median leaves out (the range and gamma rows judge those).  In a plan of several beams one beam's error is
    diluted in the plan-level rows: a 5 % output error on one of four CSI fields passed every plan-level level (CSI
    audit 2026-12-05, F1); this reads it as -4.6 % (MC/TPS 0.9541, the others 0.998-1.000).

    The region is the TPS's alone, so the MC's noise does not choose the voxels, and the median of the ratios is
    unbiased under zero-mean noise.  It is chosen on the averaged TPS dose because a noisy TPS dose (a planning
    system's own MC) chosen voxel by voxel keeps the voxels its noise raised, and with them a ratio biased low:
    -0.7 % for a correct beam of a TPS dose at about 2-3 % (the CSI audit's 'TPS', an mcproton run), -26 % for one
    at 15 % (and an MC at 12-19 %), against -0.15 % and -2.7 % on the averaged dose.

    ``uncertainty_pct``: the median's standard error from the MC's noise (``noise_rel``, the relative uncertainty
    per voxel of ``ev``): sqrt(pi/2) x the RMS relative uncertainty in the region / sqrt(voxels), the standard error
    for independent voxels (``uncertainty_independent_pct``, a lower bound), x :data:`BEAM_RATIO_NOISE_FACTOR` for
    the MC's correlated voxels (+0.47 and +0.28 between neighbours along the beam, noisy_like_mc); still far below
    the level on any region of more than a few hundred voxels (0.02-0.05 % independent on the CSI audit's 4 mm
    beams at 4 % per beam).  ``integral_ratio``: the ratio of the sums
    over the same region, for comparison (what a range or a shift moves too).  Returns {"voxels": 0} where the TPS
    beam dose has no dose in the body.  ``region``: :func:`beam_ratio_region` of ``ref`` (and ``body``, ``fraction``)
    where already computed."""
    ref = np.asarray(ref, np.float64)
    ev = np.asarray(ev, np.float64)
    found = beam_ratio_region(ref, body, fraction) if region is None else region
    if found is None:
        return {"voxels": 0}
    sel, top = found
    r, e = ref[sel], ev[sel]
    ratio = float(np.median(e / r))
    out = {"ratio": ratio, "diff_pct": 100 * (ratio - 1), "integral_ratio": float(e.sum() / r.sum()),
           "voxels": int(r.size), "threshold_gy": float(fraction * top), "robust_max_gy": top,
           "region": f"body voxels with TPS dose where the TPS beam dose averaged over 3 x 3 x 3 voxels >= "
                     f"{100 * fraction:g} % of its {ROBUST_MAX_PERCENTILE:g}th percentile over its voxels with dose "
                     "(taken as its maximum)"}
    if noise_rel is not None and np.shape(noise_rel) == ref.shape:
        u = np.nan_to_num(np.asarray(noise_rel, np.float64)[sel], nan=0.0, posinf=0.0, neginf=0.0)
        indep = float(100 * ratio * math.sqrt(math.pi / 2) * math.sqrt(float(np.mean(u ** 2))) / math.sqrt(r.size))
        out["uncertainty_pct"] = indep * BEAM_RATIO_NOISE_FACTOR
        out["uncertainty_independent_pct"] = indep
    return out


#: The order of the spline the doses are read with along the rays of :func:`range_agreement` (cubic).  Read
#: trilinearly (order 1, until 2026-12-07), a distal R80 moved with the edge's place inside a voxel: on 2 mm voxels
#: along a grid axis, the project's analytic beam of R80 40 mm (80-20 1.65 mm) read its shift wrong by -0.45 to
#: +0.49 mm, so that a true 1.4 mm range error passed the 1 mm level and a true 0.65 mm one failed it (gamma audit
#: 28, F3; an oblique beam mixes the places across its rays and the median recovers the truth, one along a grid axis
#: keeps the whole error).
RANGE_SPLINE_ORDER = 3
#: What remains of that error with the cubic spline, per voxel along the beam, for a beam along a grid axis (its
#: rays then all have the edge at the same place in a voxel, in a homogeneous region): the largest |read - true| of a
#: shift's median over the edge's place in a 2 mm voxel and shifts of 0.5-1.6 mm (the audit's r80phase2 / r80scan,
#: voxel-averaged doses as an MC scores them) was 0.36 mm (a pristine 71 MeV TOPAS peak, 80-20 0.62 mm), 0.21 mm
#: (100 MeV, 1.12 mm), 0.20 mm (the analytic beam of R80 40 mm, 1.65 mm; trilinear 0.42) and 0.04 mm (150 MeV);
#: point-sampled doses 0.28 mm (analytic, 40 mm) and 0.78 mm (71 MeV, a peak sharper than a third of a voxel).  An
#: oblique beam's rays mix the places and its median recovers the truth (audit: 30 and 135 deg within 0.06 mm).
RANGE_GRID_ERROR_PER_VOXEL = 0.2
#: A beam within this angle (degrees) of a grid axis counts as along it (:data:`RANGE_GRID_ERROR_PER_VOXEL`).
RANGE_AXIS_ALIGNED_DEG = 5.0
#: Zero voxels padded around a dose before its spline coefficients are computed (the dose is 0 beyond the grid, as
#: read trilinearly; the spline's own boundary then lies beyond every ray's samples).
_SPLINE_PAD = 4


def _ray_sampler(dose: np.ndarray, order: int = RANGE_SPLINE_ORDER) -> Any:
    """A function of voxel coordinates (a sequence of z, y, x arrays) giving ``dose`` there read with a spline of
    ``order`` (1: trilinear), 0 beyond the grid; a cubic's undershoot below 0 (beyond a steep fall-off) clipped at
    0.  The spline's coefficients are computed once here, of the box of voxels with dose padded with zeros (the dose
    is 0 around it: the same spline; a per-beam dose's box is its field's), not per call: ~0.9 s for a whole grid
    of 2.7 M voxels on a shared core."""
    from scipy.ndimage import map_coordinates, spline_filter

    if order <= 1:
        return lambda coords: map_coordinates(dose, coords, order=1, mode="constant", cval=0.0)
    d = np.asarray(dose, np.float64)
    has = d != 0
    if not has.any():
        return lambda coords: np.zeros(np.shape(coords[0]))
    lo = [int(np.argmax(has.any(axis=tuple(j for j in range(d.ndim) if j != k)))) for k in range(d.ndim)]
    hi = [d.shape[k] - int(np.argmax(has.any(axis=tuple(j for j in range(d.ndim) if j != k))[::-1]))
          for k in range(d.ndim)]
    box = d[tuple(slice(a, b) for a, b in zip(lo, hi))]
    coef = spline_filter(np.pad(box, _SPLINE_PAD), order=order, mode="mirror", output=np.float64)

    def sample(coords: Sequence[np.ndarray]) -> np.ndarray:
        v = map_coordinates(coef, [np.asarray(c) + (_SPLINE_PAD - a) for c, a in zip(coords, lo)], order=order,
                            mode="constant", cval=0.0, prefilter=False)
        return np.maximum(v, 0.0, out=v)

    return sample


def range_agreement(axes_zyx: Sequence[np.ndarray], ref: np.ndarray, ev: np.ndarray,
                    direction: Sequence[float], isocentre: Sequence[float], *,
                    ray_spacing_mm: float | None = None, step_mm: float = 0.5,
                    min_fraction: float = 0.5, chunk_samples: int = 1 << 21, noise_rel: np.ndarray | None = None,
                    seed: int = 0, stream: int = 0, body: np.ndarray | None = None,
                    field: np.ndarray | None = None, field_name: str = "the beam") -> dict[str, Any]:
    """Distal R80 of MC minus TPS along rays parallel to the beam, one per beam's-eye-view pixel where the
    TPS dose or the MC dose along the ray reaches ``min_fraction`` of its own maximum: its 99.9th percentile
    (:func:`percentile_max`, over its voxels with dose; the single largest voxel let one hot voxel
    select one ray, CSI audit F3).  On a ray, a dose has an edge where it reaches :data:`EDGE_FRACTION` of its
    maximum and has a distal R80; a ray with an edge in one dose only is counted (``rays_without_mc_edge``,
    ``rays_without_tps_edge``) and outside every tolerance.  ``evaluable``: at least :data:`MIN_RANGE_RAYS` rays
    (fewer are not judged; ``note`` says why).

    ``field``: the beam's own dose (the MC's, on the grid of ``ref``) where ``ref`` and ``ev`` are the plan's total
    doses (no per-beam TPS dose): the rays are those on which it reaches ``min_fraction`` of its 99.9th percentile,
    whatever the totals reach there (``field_name``, e.g. "beam 2" or "beams 2, 3", names it in the note).  Along
    the whole total dose the rays of a beam took every other field's dose in its direction: a CSI's cranial fields
    failed their range rows for a spinal field missing from the TPS dose, and two spinal fields of one direction on
    different isocentres gave one identical row (CSI audit 2026-12-06, F2).  The totals' 50 % is not required as well: a
    lower-dose field on its own isocentre (a nodal or elective field, a spinal segment at 40 % of the cranial
    dose) reaches nowhere 50 % of the plan's maximum and so lost every ray and both range rows (check review
    2026-12-06, finding 1).  On those rays each total still has an edge where it reaches :data:`EDGE_FRACTION` of
    its own maximum: a field missing from the TPS dose gives rays without a TPS edge (outside every tolerance).

    Noise floor (``noise_rel``: the MC's relative uncertainty per voxel of ``ev``, on the grid of ``ref``).  MC
    noise moves the distal-most 80 % crossing distally (a spike beyond the edge) and spreads the rays: on APTG
    plan03's RayStation beam (a per-beam dose that falls slowly, ~1 %/mm, to its distal edge) 2.4 % noise alone gave
    a median of +0.76 mm and 72 % of the rays within 2 mm (audit report_numbers F2).  So the same comparison is made
    of the TPS dose against itself with the MC's noise (:func:`noisy_like_mc`, one seeded realisation): its
    per-ray differences are what noise alone gives at this uncertainty.  Returned: ``noise_median_mm``,
    ``noise_p5_mm``, ``noise_p95_mm``, ``noise_within_2mm`` (the fraction of the rays that noise alone leaves within
    2 mm), ``noise_rays``, and ``noise_matched_median_mm`` = ``median_mm`` - ``noise_median_mm`` (a true range shift
    with the MC's noise shifts the median by the shift plus the noise's own shift).  On that beam (the "MC" the TPS
    dose shifted, x 1.007, with Gaussian noise of 2.4-2.8 % at the maximum): no shift at 2.4 % reads +0.79 mm raw
    and -0.02 noise-matched (71.0 % of the rays within 2 mm, noise alone 70.8 %); a -1 mm shift at 2.8 % +0.17 raw
    and -0.89 noise-matched (the noiseless shifted dose reads -0.83: the shift was made by linear interpolation); -3
    mm at 2.4 % -2.61, 51.5 % within 2 mm against 71.8 % (both levels fail; tests/check/test_check_noise.py).

    Depth (``body``: the body outline on the grid of ``ref``).  ``distal_depth_mm``: the median over the compared
    rays of the TPS's distal R80 less the ray's entry into the body (its first sample inside; the grid's edge where
    the body reaches it): how deep the beam reaches, which the range level is to be read against, since a relative
    range error moves the R80 by that fraction of it (audit 21 F1: a 3 % error at 44 mm, the OpenTPS head's PA
    beam in the check, is 1.32 mm).

    The rays are sampled together, ``chunk_samples`` depth samples at a time (memory bounded; the values do not
    depend on it): one trilinear ``map_coordinates`` per dose and chunk, then ``_distal_r80_rows``.  The doses are
    read as float64 (the check's doses are float64)."""
    from scipy.ndimage import map_coordinates

    ref = np.asarray(ref, np.float64)
    ev = np.asarray(ev, np.float64)
    z, y, x = (np.asarray(a, float) for a in axes_zyx)
    sp = np.array([x[1] - x[0] if x.size > 1 else 1.0, y[1] - y[0] if y.size > 1 else 1.0,
                   z[1] - z[0] if z.size > 1 else 1.0])
    org = np.array([x[0], y[0], z[0]])
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    u, v = _frame(d)
    iso = np.asarray(isocentre, float)
    top = percentile_max(ref)
    if top <= 0:
        return _not_evaluable({"rays": 0}, min_fraction, field_name if field is not None else None)
    top_ev = percentile_max(ev)
    # BEV extent: the voxels of either dose above min_fraction of its own maximum projected onto the BEV plane (the
    # TPS's alone: an MC field wider than the TPS's was never looked at, review B of 2026-12-06, F3)
    own = None
    if field is not None:   # the beam's own field only (its dose along the ray, as the doses' below)
        own = np.asarray(field, np.float64)
        top_own = percentile_max(own)
        if top_own <= 0:
            return _not_evaluable({"rays": 0}, min_fraction, field_name)
        hot = np.argwhere(own >= min_fraction * top_own)
    else:
        hot = np.argwhere((ref >= min_fraction * top) | ((ev >= min_fraction * top_ev) if top_ev > 0 else False))
    p = org + hot[:, ::-1] * sp - iso
    pu, pv = p @ u, p @ v
    ds = float(ray_spacing_mm or min(sp))
    us = np.arange(pu.min(), pu.max() + ds / 2, ds)
    vs = np.arange(pv.min(), pv.max() + ds / 2, ds)
    corners = np.array([[x[i], y[j], z[k]] for i in (0, -1) for j in (0, -1) for k in (0, -1)]) - iso
    tt = corners @ d
    t = np.arange(tt.min() - ds, tt.max() + ds, step_mm)
    # the rays in the order u, then v (row-major); a ray's points: iso + a u + b v + t d
    ga, gb = (g.ravel() for g in np.meshgrid(us, vs, indexing="ij"))
    start = iso + ga[:, None] * u + gb[:, None] * v           # (rays, 3)
    td = t[:, None] * d                                       # (samples, 3)
    per = max(1, int(chunk_samples) // max(1, t.size))
    keep_ab, keep_r = [], []
    # ``stream``: the beam's number, so that each beam's noise floor has its own random numbers (review 2026-12-05)
    noisy = None if noise_rel is None else noisy_like_mc(ref, noise_rel, np.random.default_rng(
        [int(seed) & 0xFFFFFFFF, NOISE_SEED_OFFSET, 1] + ([int(stream) & 0xFFFFFFFF] if stream else [])), mc=ev)
    keep_noise = []
    keep_depth = []
    # the doses read along the rays with a cubic spline (RANGE_SPLINE_ORDER; gamma audit 28, F3)
    read_ref, read_ev = _ray_sampler(ref), _ray_sampler(ev)
    read_noisy = _ray_sampler(noisy) if noisy is not None else None
    inside = None if body is None else np.asarray(body, np.float32)
    one_sided = [0, 0]   # rays with a distal R80 of the TPS but none of the MC, and the reverse
    for s0 in range(0, ga.size, per):
        # the points in voxel units, z, y, x: (rays, samples) each
        coords = [(start[s0:s0 + per, k, None] + td[None, :, k] - org[k]) / sp[k] for k in (2, 1, 0)]
        pr = read_ref(coords)
        pe = read_ev(coords)
        # a ray where either dose reaches min_fraction of its own maximum (with ``field``: where the beam's own
        # field does, alone); on it, a dose has an edge where it reaches EDGE_FRACTION of its own maximum and has a
        # distal R80 (so that a dose absent from a ray, not a dose a little lower in the other's penumbra, is
        # "without an edge")
        in_r, in_e = pr.max(axis=1), pe.max(axis=1)
        if own is not None:
            hit = map_coordinates(own, coords, order=1, mode="constant", cval=0.0).max(axis=1) >= min_fraction * top_own
        else:
            hit = (in_r >= min_fraction * top) | ((in_e >= min_fraction * top_ev) if top_ev > 0 else False)
        if not hit.any():
            continue
        pr, pe, in_r, in_e = pr[hit], pe[hit], in_r[hit], in_e[hit]
        has_r, has_e = in_r >= EDGE_FRACTION * top, in_e >= EDGE_FRACTION * top_ev
        r1 = np.where(has_r, _distal_r80_rows(t, pr), np.nan)
        # the MC's R80 at the TPS's level where the TPS has dose on the ray, else at its own top
        r2 = np.where(has_e, np.where(has_r, _distal_r80_rows(t, pe, like=pr), _distal_r80_rows(t, pe)), np.nan)
        if noisy is not None:   # the TPS against the TPS with the MC's noise, the same rays and estimator
            pn = read_noisy([c[hit] for c in coords])
            keep_noise.append(_one_edge_as_inf(np.where(has_r, _distal_r80_rows(t, pn, like=pr), np.nan), r1))
        fin = np.isfinite(r1) & np.isfinite(r2)
        if inside is not None and fin.any():   # the first sample of each compared ray inside the body
            pb = map_coordinates(inside, [c[hit][fin] for c in coords], order=0, mode="constant", cval=0.0) >= 0.5
            entry = np.where(pb.any(axis=1), t[np.argmax(pb, axis=1)], np.nan)
            keep_depth.append(r1[fin] - entry)
        sel = np.flatnonzero(hit)[fin] + s0
        keep_ab.append(np.column_stack([ga[sel], gb[sel]]))
        keep_r.append(np.column_stack([r1[fin], r2[fin]]))
        one_sided[0] += int(np.count_nonzero(np.isfinite(r1) & ~np.isfinite(r2)))
        one_sided[1] += int(np.count_nonzero(~np.isfinite(r1) & np.isfinite(r2)))
    n = sum(len(k) for k in keep_ab)
    counts = {"rays_tps": n + one_sided[0], "rays_without_mc_edge": one_sided[0],
              "rays_without_tps_edge": one_sided[1]}
    if not n:   # no ray compared; where one dose has edges, the rays are judged and all outside
        nan = float("nan")
        return _not_evaluable({"rays": 0, **counts, "robust_max_gy": top} if not sum(one_sided) else
                              {"rays": 0, **counts, "ray_spacing_mm": ds, "median_mm": nan, "mean_mm": nan,
                               "p5_mm": nan, "p95_mm": nan, "within_1mm": 0.0, "within_2mm": 0.0,
                               "values_mm": np.zeros(0), "bev_uv_mm": np.zeros((0, 2)), "robust_max_gy": top},
                              min_fraction, field_name if own is not None else None)
    arr = np.column_stack([np.concatenate(keep_ab), np.concatenate(keep_r)])
    diff = arr[:, 3] - arr[:, 2]
    judged = n + sum(one_sided)   # a ray with an edge in one dose only is outside every tolerance
    out = {"rays": len(arr), **counts, "ray_spacing_mm": ds, **_grid_along(d, sp), "median_mm": float(np.median(diff)),
           "mean_mm": float(diff.mean()), "p5_mm": float(np.percentile(diff, 5)),
           "p95_mm": float(np.percentile(diff, 95)), "within_1mm": float(np.sum(np.abs(diff) <= 1.0) / judged),
           "within_2mm": float(np.sum(np.abs(diff) <= 2.0) / judged), "values_mm": diff, "bev_uv_mm": arr[:, :2],
           "robust_max_gy": top}
    depth = np.concatenate(keep_depth) if keep_depth else np.zeros(0)
    if np.isfinite(depth).any():
        out["distal_depth_mm"] = float(np.median(depth[np.isfinite(depth)]))
    dn = np.concatenate(keep_noise) if keep_noise else np.zeros(0)
    fin_n = np.isfinite(dn)
    if fin_n.any():   # the noise floor's median of its compared rays, its share within 2 mm of all (as above)
        out.update({"noise_rays": int(fin_n.sum()), "noise_median_mm": float(np.median(dn[fin_n])),
                    "noise_p5_mm": float(np.percentile(dn[fin_n], 5)),
                    "noise_p95_mm": float(np.percentile(dn[fin_n], 95)),
                    "noise_within_2mm": float(np.mean(np.abs(dn) <= 2.0)),
                    "noise_matched_median_mm": float(np.median(diff) - np.median(dn[fin_n]))})
    return _not_evaluable(out, min_fraction, field_name if own is not None else None)


def _grid_along(d: np.ndarray, sp: np.ndarray) -> dict[str, Any]:
    """The grid along a beam of unit direction ``d`` (x, y, z) on voxels of ``sp`` (x, y, z mm): ``grid_along_beam_mm``
    (the voxel size along the grid axis nearest the beam) and ``grid_error_mm``, the R80's grid error of a beam
    along that axis (within :data:`RANGE_AXIS_ALIGNED_DEG`: :data:`RANGE_GRID_ERROR_PER_VOXEL` x that size; None for
    an oblique beam, whose rays mix the edge's places in a voxel)."""
    k = int(np.argmax(np.abs(d)))
    h = float(sp[k])
    aligned = abs(float(d[k])) >= math.cos(math.radians(RANGE_AXIS_ALIGNED_DEG))
    return {"grid_along_beam_mm": h, "grid_error_mm": RANGE_GRID_ERROR_PER_VOXEL * h if aligned else None}


def _one_edge_as_inf(r2: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """``r2 - r1`` of the rays with a distal R80 in either (NaN in both: left out), a ray with one edge only as
    infinite: outside every tolerance."""
    either = np.isfinite(r1) | np.isfinite(r2)
    d = r2[either] - r1[either]
    d[~np.isfinite(d)] = np.inf
    return d


def _not_evaluable(out: dict[str, Any], min_fraction: float, field_name: str | None = None) -> dict[str, Any]:
    """``out`` (a range_agreement result) with ``evaluable`` and, below :data:`MIN_RANGE_RAYS` rays with a distal
    R80 in either dose (those compared and those with an edge in one dose only), the ``note``; ``field_name``: the
    rays were those through a beam's own field (range_agreement's ``field``), which the note then names."""
    n = int(out.get("rays", 0)) + int(out.get("rays_without_mc_edge", 0)) + int(out.get("rays_without_tps_edge", 0))
    out["evaluable"] = n >= MIN_RANGE_RAYS
    if not out["evaluable"]:
        where = (f"reach {100 * min_fraction:g} % of the TPS's or the MC's 99.9th-percentile dose" if field_name is None
                 else f"cross {field_name}'s own field (where the MC's dose of {field_name} reaches "
                 f"{100 * min_fraction:g} % of its 99.9th-percentile dose)")
        out["note"] = (f"not evaluable ({n} ray{'' if n == 1 else 's'}): fewer than {MIN_RANGE_RAYS} beam's-eye-view "
                       f"rays {where} with a distal fall-off on the grid, too few for a field's range; the range "
                       "levels are not judged (look at the beam's dose maps)")
    return out


def beam_summary(beam_meta: Mapping[int, Mapping[str, Any]], tps_beams: Mapping[int, Any]) -> dict[int, dict]:
    """One row per beam of the plan for the report and the JSON: geometry, meterset, the MC's primaries, mean
    relative uncertainty above 50 % of the beam's maximum, why it stopped, its wall time, and the TPS dose
    compared.  The meterset: ``total_meterset`` in ``meterset_unit`` (the beam's PrimaryDosimeterUnit: MU, or NP for
    protons) and ``total_mu``, the same for an MU beam and None for an NP one (audit 27, spotsem F2: an NP beam's
    protons were given as ``total_mu``)."""
    keys = ("gantry_angle_deg", "couch_angle_deg", "table_top_eccentric_angle_deg", "total_mu", "total_meterset",
            "meterset_unit", "primaries", "mean_rel_uncertainty_50", "stop_reason", "wall_s")
    return {b: {**{k: m.get(k) for k in keys},
                "tps_dose": "per-beam RT Dose" if b in tps_beams else "plan dose (no per-beam RT Dose)"}
            for b, m in sorted(beam_meta.items())}

"""``mcproton demo``: the built-in default job, a paediatric posterior-fossa proton boost.

A 5-year-old head phantom (``mcproton.phantoms``, 2 mm voxels), a posterior-fossa (medulloblastoma
tumour-bed) CTV, a three-field PBS plan (PA + two posterior obliques) on the shipped clinical beam model
(DCPT ProBeam, dcpt_v5: 70-244 MeV, its spot sizes) with its 34.3 mm WET range shifter RS_3CM in every field
(the target starts shallower than the 41 mm range of 70 MeV, as in most paediatric plans), optimised on an
analytical pencil-beam model that accounts for the shifter (mcproton/planning ``FieldMachine``) to 1.8 Gy(RBE)
= 1.636 Gy physical per fraction (RBE 1.1), and its full Monte Carlo dose (the shifter transported as a slab)
on the GPU if there is one (else the CPU: about a minute on 2 cores).  Writes to ``--out``:

* ``ct/`` (the phantom as a DICOM CT series), ``rtstruct.dcm`` (labels + CTV + the EXTERNAL "body" outline),
  ``rtplan.dcm`` (the plan as a DICOM RT Ion Plan: three beams on the beam model's machine with RS_3CM, the spots'
  MU, FRACTIONS_PLANNED fractions; ``mcproton.dicom.load_rtplan`` + ``plan_to_beams`` give back the simulated
  beams), ``rtdose.dcm`` (one fraction, FRACTION_SESSION, 0 outside the body, referencing the plan; all four in
  one study and frame of reference), ``dose.h5`` (mcproton HDF5 with the label map and the CTV mask, the CT's
  study, the plan and its beams: ``DoseResult.load`` + ``write_result_rtdose`` give the same patient, study, frame
  and plan as ``rtdose.dcm``),
* ``dose_planes.png`` (dose, isodoses and structures in three planes through the target), ``dvh.png``,
* ``summary.json`` (also printed): target dose statistics, OAR doses, uncertainty, speed, backend, times.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ._forked import _PARENT_ENDS, STOP_WAIT_S, BackgroundProcess, MessageProcess  # noqa: F401
from ._io.atomic import TEMP_PREFIX, name_tag
from ._io.errors import OutputWriteError
from ._io.lock import locks_output

PRESCRIPTION_GY_RBE = 1.8
#: NumberOfFractionsPlanned of the demo's RT Ion Plan: a posterior-fossa boost of standard-risk medulloblastoma
#: after 23.4 Gy(RBE) craniospinal irradiation to 54 Gy(RBE) in all (COG ACNS0331), 30.6 Gy(RBE) = 17 x 1.8
FRACTIONS_PLANNED = 17
DEFAULT_PRIMARIES = {"cpu": 2_500_000, "cuda": 20_000_000}
#: the demo's default phantom: a 5-year-old head at 2 mm (--age, --voxel-mm), whose plan is shipped with mcproton
DEFAULT_AGE, DEFAULT_VOXEL_MM = 5.0, 2.0
#: the plan of the default demo, shipped with mcproton (in mcproton.phantoms: phantoms/plans/ of the repository),
#: written by scripts/make_shipped_demo_plan.py (:func:`shipped_plan_file`)
SHIPPED_PLAN_NAME = "demo_plan_5y_2mm.npz"
#: The target's mean relative uncertainty (%) above which the demo's summary says that its D95 is lowered by the
#: MC's noise: noise widens the dose distribution, so D95 reads about 1.6 sigma low for a uniform dose (the 5th
#: percentile of a normal spread; Kawrakow 2004, Phys Med Biol 49:1549); above 2 % that is over 3 %, more than the room
#: between the plan's model D95 (99.4 %) and the 95 % of d95_ok, so d95_ok false says nothing about the plan there
#: (audit 18b, F11: D95 80 % and d95_ok false at --primaries 100000, 12 % noise, without a word)
D95_NOISE_UNCERTAINTY_PCT = 2.0
#: D95's shift by noise of relative SD sigma, in sigma (see D95_NOISE_UNCERTAINTY_PCT)
D95_NOISE_SHIFT_SIGMA = 1.6
#: The relative standard error counted for a target voxel without dose in the summary's target_mean_rel_uncertainty:
#: 1 (100 %), what the batch method gives a voxel scored in one batch only.  The engine's per-voxel figure is 0 where
#: there is no dose (no estimate), so the target's mean fell as the statistics got worse (the integrator audit of
#: 2026-12-06, F7: 1.5 % at 10 primaries, 29 % at 300, 64 % at 3000); a voxel without a score knows nothing about its
#: dose, so it counts as the worst scored one, and the figure rises towards 100 % as the primaries fall.
NO_DOSE_REL_UNCERTAINTY = 1.0


def target_rel_uncertainty(unc: np.ndarray, dose: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """The mean relative standard error over the voxels of ``mask`` (the target), a voxel without dose counted as
    :data:`NO_DOSE_REL_UNCERTAINTY`, and the fraction of those voxels without dose; (NaN, NaN) for an empty mask."""
    n = int(np.count_nonzero(mask))
    if n == 0:
        return float("nan"), float("nan")
    u, no_dose = unc[mask], ~(dose[mask] > 0)
    return float(np.where(no_dose, NO_DOSE_REL_UNCERTAINTY, u).mean()), float(np.count_nonzero(no_dose) / n)


def undefined_figures(obj, prefix: str = "") -> list[str]:
    """The dotted paths of the numbers in ``obj`` (the summary) that are not finite (NaN: a homogeneity index whose
    D50 is 0, a mean over no voxel), written as null in summary.json, whose ``undefined_figures`` lists them."""
    import math

    out: list[str] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict, list, tuple)):
            out += undefined_figures(v, path)
        elif isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            out.append(path)
    return out


def d95_noise_note(target_uncertainty: float, primaries: int, d95_rel: float, model_d95_rel: float,
                   no_dose_fraction: float = 0.0) -> str | None:
    """The summary's line on a D95 lowered by the MC's noise where the target's mean relative uncertainty
    (``target_uncertainty``, a fraction: :func:`target_rel_uncertainty`) is above :data:`D95_NOISE_UNCERTAINTY_PCT`
    or not known (NaN), with the primaries that bring it to 1 % (1/sqrt(N); "at least" where some of the target's
    voxels had no dose (``no_dose_fraction``): the law holds for scored voxels only); None below it."""
    u = 100 * float(target_uncertainty)
    if u <= D95_NOISE_UNCERTAINTY_PCT:
        return None
    unscored = float(no_dose_fraction) > 0
    empty = (f", {100 * float(no_dose_fraction):.0f} % of its voxels without dose counted as "
             f"{100 * NO_DOSE_REL_UNCERTAINTY:g} %" if unscored else "")
    if u == u:   # a number: the primaries to 1 %, N x (u / 1 %)^2
        need = f"{'at least ' if unscored else 'about '}{int(primaries * u ** 2):,} primaries bring it to 1 %"
        level = (f"is {u:.1f} % (above {D95_NOISE_UNCERTAINTY_PCT:g} %{empty}), which lowers D95 by about "
                 f"{min(100.0, D95_NOISE_SHIFT_SIGMA * u):.0f} %")
    else:
        need, level = "far more primaries are needed", "not known"
    ok = "false here is the noise, not the plan" if d95_rel < 0.95 else "is noisy"
    return (f"D95 is lowered by MC noise at this --primaries: the target's mean statistical uncertainty {level}; "
            f"D95 {100 * d95_rel:.1f} % of the prescription against the plan's model D95 "
            f"{100 * model_d95_rel:.1f} %, so d95_ok {ok}; {need} (--primaries)")


def warn_d95_noise(note: str | None, d95_ok: bool) -> bool:
    """Warn (McprotonRuntimeWarning: a line on stderr, also with --quiet, as it is no progress) with the
    :func:`d95_noise_note` ``note`` where d95_ok is false: that is where the noise is mistaken for a bad plan (audit
    18b F11).  Where D95 passes, the note stays in the summary only: the default CPU demo (2.5 M primaries, its
    target at ~2.4 %) would otherwise warn on every first run.  Returns whether it warned."""
    if note is None or d95_ok:
        return False
    from ._io.errors import McprotonRuntimeWarning, warn

    warn(note, McprotonRuntimeWarning)
    return True


#: the files the demo writes into --out beside ct/ (summary key, file name): each must be new or one that mcproton
#: wrote (an earlier demo's), checked before any work (phantoms.dicom_export.check_outputs_replaceable)
OUTPUT_FILES = (("rtstruct", "rtstruct.dcm"), ("rtplan", "rtplan.dcm"), ("rtdose", "rtdose.dcm"), ("dose", "dose.h5"),
                ("dose_planes", "dose_planes.png"), ("let_planes", "let_planes.png"), ("dvh", "dvh.png"),
                ("summary", "summary.json"))


def variable_rbe_summary(res, ctv: np.ndarray, brainstem: np.ndarray | None) -> dict:
    """The plan's RBE-weighted doses with the McNamara (2015) LETd-based RBE (mcproton/rbe.py) next to the constant
    1.1: alpha/beta 10 Gy for the target, 2 Gy for the brainstem (late-responding CNS), at the result's dose (one
    fraction) and with the LETd in water (:func:`mcproton.rbe.let_d_to_water`), as the model was fitted to and as
    :func:`mcproton.rbe.mcnamara_of_result` takes it.  Before (audit 29 bio, F2) the scored LETd in the medium was
    used: 5.5 % higher in the demo's brain (1.04-1.05 g/cm3), the brainstem's D2 1.2 % higher than the library
    gives for the same run."""
    from .dvh import dose_at_volume
    from .rbe import let_d_to_water, mcnamara_rbe_weighted_dose

    out = {"model": "McNamara et al., Phys Med Biol 60 (2015) 8399", "alpha_beta_target_gy": 10.0,
           "alpha_beta_brainstem_gy": 2.0, "let": "LETd in water (mcproton.rbe.let_d_to_water)",
           "note": "research output; the clinical standard is RBE 1.1"}
    dose = res.dose_gy_zyx

    def weighted(mask: np.ndarray, alpha_beta: float) -> np.ndarray:
        # the model is voxel by voxel: evaluated on the structure's voxels only (the same numbers as on the whole
        # grid, ~0.3 s less at 1 mm)
        d = dose[mask]
        let_w = let_d_to_water(res.let_d_kev_um_zyx[mask], d, res.dose_to_water_gy_zyx[mask],
                               res.geometry.density_g_cm3_zyx[mask])
        return mcnamara_rbe_weighted_dose(d, let_w, alpha_beta)

    out["target_mean_gy_rbe"] = float(weighted(ctv, 10.0).mean())
    out["target_mean_gy_rbe_const_1.1"] = 1.1 * float(dose[ctv].mean())
    if brainstem is not None and brainstem.any():
        d_b = weighted(brainstem, 2.0)
        out["brainstem_d2_gy_rbe"] = dose_at_volume(d_b, np.ones(d_b.shape, bool), 2)
        out["brainstem_d2_gy_rbe_const_1.1"] = 1.1 * dose_at_volume(dose, brainstem, 2)
    return out


def build_parser() -> argparse.ArgumentParser:
    from ._io.cli_args import PARSER_OPTIONS, folder_name, phantom_age, phantom_voxel_mm, whole_number

    p = argparse.ArgumentParser(prog="mcproton demo",
                                description="paediatric posterior-fossa proton boost: phantom, PBS plan, MC dose",
                                **PARSER_OPTIONS)
    p.add_argument("--out", default="mcproton_demo", type=folder_name, help="output folder (default ./mcproton_demo)")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto (default: the GPU if CuPy finds one, else the CPU), cpu or cuda")
    p.add_argument("--primaries", type=whole_number, default=None,
                   help=f"Monte Carlo histories (default {DEFAULT_PRIMARIES['cpu']} on the CPU, "
                        f"{DEFAULT_PRIMARIES['cuda']} on the GPU); the absolute dose does not depend on it")
    p.add_argument("--age", type=phantom_age, default=DEFAULT_AGE,
                   help=f"phantom age in years, 0.5-18 (default {DEFAULT_AGE:g})")
    p.add_argument("--voxel-mm", type=phantom_voxel_mm, default=DEFAULT_VOXEL_MM,
                   help=f"voxel size in mm, at most 10 (default {DEFAULT_VOXEL_MM:g})")
    p.add_argument("--threads", type=whole_number, default=None,
                   help="CPU threads (default: OMP_NUM_THREADS, else all the CPUs the process may use)")
    p.add_argument("--seed", type=whole_number, default=12345,
                   help="random seed of the Monte Carlo, 0 to 2^63 - 1 (default 12345)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class Background:
    """``func()`` in a daemon thread; :meth:`join` waits, returns its result and raises its exception (nothing
    it does is lost silently); ``wall_s`` is its own wall time."""

    def __init__(self, func, what: str) -> None:
        import threading

        self.what, self.wall_s = what, 0.0
        self._result = self._error = None

        def target() -> None:
            t = time.perf_counter()
            try:
                self._result = func()
            except BaseException as exc:   # re-raised by join
                self._error = exc
            finally:
                self.wall_s = time.perf_counter() - t

        self._thread = threading.Thread(target=target, name=f"mcproton-demo: {what}", daemon=True)
        self._thread.start()

    def join(self, raise_error: bool = True):
        self._thread.join()
        if self._error is not None and raise_error:
            raise RuntimeError(f"writing {self.what} failed ({type(self._error).__name__}: {self._error})") \
                from self._error
        return self._result


#: the forked helpers, shared with ``mcproton check``'s report figures (mcproton._forked); PlanesProcess: the
#: plane figures' helper by its name here
PlanesProcess = MessageProcess
#: how long the CT and RT Struct writer may go on after an error or an interrupt in the parent before it is ended
#: (s): its whole work is ~1 s at 2 mm on 2 cores (summary ``ct_rtstruct_background_s``), and a series left half
#: written would make the next demo into the same --out refuse its CT folder (files that are not whole slices)
WRITER_GRACE_S = 5.0


def _stop_helpers(writer, planes: list[PlanesProcess]) -> None:
    """The demo's helpers after an error or an interrupt in the parent: the plane-figure processes ended, the CT
    and RT Struct writer given :data:`WRITER_GRACE_S` to finish and then ended (a thread, where there is no fork,
    is waited for: it cannot be ended, and it ends with its series); each step bounded, every helper seen to even
    if one step raises (a second Ctrl-C)."""
    try:
        for p in planes:
            p.stop()
    finally:
        if isinstance(writer, BackgroundProcess):
            writer.stop(WRITER_GRACE_S)
        else:
            writer.join(raise_error=False)


def _clean_after_failure(out: Path, n_slices: int) -> None:
    """After an error or an interrupt, once the helpers are stopped: the temporary files that the plane-figure
    processes (ended mid-write) and the other outputs' atomic writes left in ``out`` are removed, and so is the
    temporary folder of a CT series that the writer did not finish (a full disk, ended after its grace time: the
    series is written into it and renamed to ``ct/`` once whole), said to be; a series cut short in ``ct/`` itself
    (written there by an mcproton before 2026-12-07) is removed too, so that no hidden ``.mcp-*.tmp`` files and no
    shorter series that loads as a shorter head are left (the environment audit of 2026-12-06, F6)."""
    import contextlib

    from ._io.console import write_stderr
    from ._io.lock import remove_stale_temporaries

    ct = out / "ct"
    gone = remove_stale_temporaries([*(out / name for _, name in OUTPUT_FILES), ct])
    unfinished = [p for p in gone if p.name.startswith(f"{TEMP_PREFIX}{name_tag(ct.name)}-")]
    slices = sorted(ct.glob("CT_*.dcm")) if ct.is_dir() else []
    if 0 < len(slices) < n_slices:
        for f in slices:
            with contextlib.suppress(OSError):
                f.unlink()
        write_stderr(f"mcproton: the CT series in {ct} was cut short ({len(slices)} of {n_slices} slices written when "
                     "the demo stopped): it was removed, and the outputs in that folder are incomplete\n")
    elif unfinished and not slices:
        write_stderr(f"mcproton: the CT series being written to {ct} was not finished when the demo stopped: its "
                     "slices (in a temporary folder) were removed, and the outputs in that folder are incomplete\n")


def shipped_plan_file() -> Path:
    """The plan of the default demo (:data:`DEFAULT_AGE`, :data:`DEFAULT_VOXEL_MM`) shipped with mcproton:
    ``plans/`` + :data:`SHIPPED_PLAN_NAME` in ``mcproton.phantoms`` (phantoms/plans/ of the repository)."""
    from . import phantoms

    return Path(phantoms.__file__).resolve().parent / "plans" / SHIPPED_PLAN_NAME


def plan_inputs(posterior_fossa_plan, g, ctv) -> tuple[dict, dict, object]:
    """(the planner's arguments, its settings as the plan cache keys them, the beam model loaded from its name or
    file, or None) of the demo's plan ``posterior_fossa_plan(g, prescription_gy_rbe=PRESCRIPTION_GY_RBE,
    target=ctv)``: what :func:`_demo_plan` plans with, and scripts/make_shipped_demo_plan.py and the shipped plan's
    tests too."""
    from ._io.beam_model import load_beam_model
    from .planning._plan_cache import plan_settings

    kwargs = {"prescription_gy_rbe": PRESCRIPTION_GY_RBE, "target": ctv}
    settings = plan_settings(posterior_fossa_plan, kwargs, skip=("geometry", "target"))
    model = settings.get("beam_model")
    make = kwargs
    if isinstance(model, (str, Path)):
        model = load_beam_model(model)        # as the plan loads it: its files' SHA-256 key the entry
        # planned on as loaded (settings, the key's, keep its name), not loaded a second time on a cache miss; a model
        # whose loading warned is loaded again in the making, whose warnings keep the plan out of the cache
        if not model.made_with_warnings:
            make = {**kwargs, "beam_model": model}
    return make, settings, model


def demo_phantom_and_target(age: float, voxel_mm: float) -> tuple:
    """(the phantom, the plan's target mask) of a demo of ``age`` and ``voxel_mm``: the head phantom and its
    posterior-fossa boost CTV.  The one place they are made, for :func:`run_demo`, :func:`default_plan_inputs` (the
    shipped plan's recipe) and the tests' demo plan (tests/conftest.py), so that the shipped plan is made and checked
    from the phantom and target the demo plans on (the review of 2026-12-07's shipped plan, R4)."""
    from .phantoms import make_head_phantom
    from .phantoms.reference_plans import posterior_fossa_target

    g = make_head_phantom(age, voxel_mm, region="head")
    return g, posterior_fossa_target(g)


def default_plan_inputs() -> tuple:
    """(geometry, target, planner, its arguments, its settings, the beam model) of the default demo's plan, made as
    :func:`run_demo` makes them (:func:`demo_phantom_and_target` at :data:`DEFAULT_AGE` and
    :data:`DEFAULT_VOXEL_MM`, :func:`plan_inputs`): what the shipped plan (:func:`shipped_plan_file`) is made from by
    scripts/make_shipped_demo_plan.py and checked against by tests/phantoms/test_shipped_plan.py."""
    from .phantoms.reference_plans import posterior_fossa_plan

    g, ctv = demo_phantom_and_target(DEFAULT_AGE, DEFAULT_VOXEL_MM)
    return (g, ctv, posterior_fossa_plan, *plan_inputs(posterior_fossa_plan, g, ctv))


def _demo_plan(posterior_fossa_plan, g, ctv, shipped: Path | None = None) -> tuple:
    """The demo's plan, ``posterior_fossa_plan(g, prescription_gy_rbe=PRESCRIPTION_GY_RBE, target=ctv)``, read from
    the plan cache where an earlier demo stored it under the same key (the phantom, the target, every setting of
    the plan, the beam model's files, the code, NumPy, SciPy, their BLAS and the CPU:
    :mod:`mcproton.planning._plan_cache`), else the plan shipped with mcproton in the file ``shipped`` (the default
    demo's: :func:`shipped_plan_file`) where its recipe (the phantom, the target, the settings, the beam model, the
    physics data and the planner's code) is this one, else optimised and stored: the plan read is the plan stored, to
    the bit.  Optimising it was 75-83 % of a CPU demo's wall time at 2 mm (11-15 s on 2 loaded cores) and 2.7 x
    the Monte Carlo on an H200 (the host-time audit of 2026-12-07, F1).  ``MCPROTON_PLAN_CACHE=0`` optimises it (no
    cache, no shipped plan).  Returns (plan, the cache's record for the summary's ``plan_cache``)."""
    from ._io.console import write_stderr
    from .planning._plan_cache import cached_plan

    kwargs, settings, model = plan_inputs(posterior_fossa_plan, g, ctv)
    return cached_plan(lambda: posterior_fossa_plan(g, **kwargs), g, ctv, settings, beam_model=model,
                       note=lambda text: write_stderr(f"mcproton: note: {text}\n"), shipped=shipped)


def _plan_cache_said(record: dict) -> str:
    """Where the demo's plan came from, as its progress line, the summary's ``plan_origin`` and dose.h5's say it, from
    the plan cache's ``record`` (:func:`mcproton.planning._plan_cache.cached_plan`): with why the plan shipped with
    mcproton was not used, where it was offered (the default demo) and not used (``shipped_not_used``)."""
    if record["plan_from_cache"]:
        return f"the plan read from the plan cache ({record['file']})"
    shipped = record.get("shipped")
    if shipped:
        return (f"the plan shipped with mcproton ({shipped['file']}), optimised {shipped['optimised']} on "
                f"{shipped['platform']} ({shipped['cpu_model']}), mcproton {shipped['mcproton_version']}, code "
                f"{str(shipped['code_sha256'])[:12]}: its phantom, target, settings, beam model, physics data and "
                "planner's code are this demo's (MCPROTON_PLAN_CACHE=0 optimises it here)")
    why = f"; {record['shipped_not_used']}" if record.get("shipped_not_used") else ""
    if record["cache"] == "stored":
        return f"the plan optimised here and stored in the plan cache ({record['file']}){why}"
    return f"the plan optimised here (plan cache: {record['cache']}){why}"


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[demo] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return 0 if run_demo(args.out, backend=args.backend, primaries=args.primaries, age=args.age,
                         voxel_mm=args.voxel_mm, threads=args.threads, seed=args.seed, quiet=args.quiet) else 1


def _stops_cleanly(fn):
    """Decorator of :func:`run_demo`: a SIGINT, SIGTERM or SIGHUP (:func:`mcproton._signals.stop_signals`) ends the
    demo with :class:`~mcproton.errors.RunInterrupted` (exit status 128 + the signal on the command line) whose
    message says what ``out`` holds (:func:`_stopped`), once its helpers are ended and its unfinished files removed
    (run_demo's ``except BaseException``).  Before, only Ctrl-C was handled: SIGTERM and SIGHUP ended the demo at once,
    its plane-figure processes printed BrokenPipeError tracebacks and its CT writer went on writing alone (the
    concurrency audit of 2026-12-07, F5)."""
    import functools

    @functools.wraps(fn)
    def wrapper(out, **kwargs):
        from ._signals import RaiseOnStopSignals, RunInterrupted, StopSignal

        started = time.time()
        with RaiseOnStopSignals() as stop:
            try:
                stop.deliver_deferred()   # a signal that came as the command line started (audit 26 exitcodes, F2)
                return fn(out, **kwargs)
            except StopSignal as exc:
                raise RunInterrupted(_stopped(exc.signum, Path(out), started), 128 + exc.signum) from None
            except (OSError, OutputWriteError) as exc:   # a full disk: what --out holds, as a stop says it
                from .errors import status_of

                if status_of(exc) != "environment_error":
                    raise
                raise _write_failed(exc, Path(out), started) from exc

    return wrapper


def _write_failed(exc: BaseException, out: Path, started: float) -> OutputWriteError:
    """The error of a demo whose output could not be written (a full disk, a quota; exit status 3): ``exc``'s text,
    what ``out`` holds (:func:`_held`) and what to do (before, "[Errno 28] No space left on device:
    'fs/d/dose.h5'" alone, the Monte Carlo's dose lost without a word on what the folder held: audit 26 exitcodes,
    F11)."""
    from ._io.atomic import failed_write_text, is_no_space

    what = failed_write_text(exc) if isinstance(exc, OSError) else " ".join(str(exc).split())
    fix = "free disk space" if is_no_space(exc) else "remove the cause named above"
    return OutputWriteError(f"the demo stopped: {what}; {_held(out, started)}; {fix} and run it again",
                            no_space=is_no_space(exc))


def _stopped(signum: int, out: Path, started: float) -> str:
    """The message of a demo stopped by ``signum``: what of it ``out`` holds (the files written since ``started``;
    each whole: written to a temporary file or folder and renamed) and what not."""
    import signal

    name = signal.Signals(signum).name
    return f"interrupted by {name}: {_held(out, started)}; run it again"


def _held(out: Path, started: float) -> str:
    """What ``out`` holds of a demo that did not complete: the files written since ``started`` (each whole: written
    to a temporary file or folder and renamed), and what not."""
    names = [("ct", "ct/"), *((n, n) for _, n in OUTPUT_FILES)]
    ours = []
    for path, shown in names:
        try:   # ct/: only a series (an earlier demo's emptied ct/ folder is no CT)
            if (out / path).stat().st_mtime >= started - 1 and (path != "ct" or any((out / path).glob("CT_*.dcm"))):
                ours.append(shown)
        except OSError:
            pass
    if not ours:
        return f"nothing of this demo was written to --out {out}"
    missing = [shown for _, shown in names if shown not in ours]
    return (f"--out {out} holds this demo's {', '.join(ours)} (each whole); not written: {', '.join(missing)}: the "
            "demo's outputs are incomplete (no earlier demo's file is left beside them: those were removed as it "
            "started)")


@_stops_cleanly
@locks_output()
def run_demo(out, *, backend: str = "auto", primaries: int | None = None, age: float = DEFAULT_AGE,
             voxel_mm: float = DEFAULT_VOXEL_MM, threads: int | None = None, seed: int = 12345,
             quiet: bool = False) -> dict:
    """Run the demo; returns the summary dict (also written to ``out/summary.json``).  ``quiet`` takes True or
    False only (text such as "false" is refused).

    It holds the lock of ``out`` (a second demo, validation or phantom on the folder is refused: OutputLockedError,
    exit status 3; before, two demos both exited 0 and one's summary named the other's files: the concurrency audit
    of 2026-12-07, F3), makes every refusal (its options, the machine, the files in ``out`` it would replace, the
    phantom's age and voxel size) before it removes anything there, then removes an earlier demo's files there in
    one step just before it writes its first (the folder then holds one demo, whole or in part, never two mixed: F5;
    a refused demo leaves the earlier one as it was: review 2a of 2026-12-07, R1), writes every file whole (a
    temporary file, the CT series a temporary folder, renamed into place), and a stop signal ends it with
    RunInterrupted (:func:`_stops_cleanly`)."""
    from ._backend import CPU_BY_OPTION, get_backend, refuse_unusable
    from ._io.cli_args import phantom_age, phantom_voxel_mm
    from ._io.atomic import write_bytes_atomic
    from ._io.hdf5 import result_hdf5_buffer
    from .dicom import result_dose_contents, write_result_rtdose, write_rtplan
    from .body import apply_body_outline, body_from_labels, dose_summary
    from .dvh import dvh_table, plot_dvh
    from .phantoms import label_map_to_masks
    from .phantoms.dicom_export import write_phantom_ct, write_rtstruct
    from .phantoms.reference_plans import posterior_fossa_plan
    from .planning import verify_plan
    from .plots import let_colour_top, plane_slices, plot_dose_planes, plot_let_planes, require_matplotlib
    from .settings import RunSettings, _switch

    from .phantoms.dicom_export import check_new_ct_dir, check_outputs_replaceable, earlier_phantom_ct, \
        phantom_study, remove_earlier_outputs
    from ._io.console import write_stderr
    from ._io.lock import remove_stale_temporaries
    from pydicom.uid import generate_uid

    # options refused before any work (--primaries 0 ran the default count; the others failed after the plan)
    quiet = _switch("run_demo quiet", quiet)
    if primaries is not None and (isinstance(primaries, bool) or int(primaries) != primaries or primaries < 1):
        raise ValueError(f"--primaries must be a positive whole number of histories; got {primaries} (leave it out "
                         f"for the default: {DEFAULT_PRIMARIES['cpu']:,} on the CPU, {DEFAULT_PRIMARIES['cuda']:,} "
                         "on the GPU)")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1 (or left out: all the CPUs it may use); got {threads}")
    try:   # the thread count (and OMP_NUM_THREADS, its default) as a run's, refused now and named as the demo names
        # it: "run.threads = 1000" came after the plan was made; so the seed and the primaries' upper limit (--seed -1
        # was refused as "run.seed" once the earlier demo in --out was removed and the CT, RT Struct and plan were
        # written: the CLI-help audit of 2026-12-07, F2)
        RunSettings(backend=backend, threads=threads, seed=seed,
                    **({} if primaries is None else {"primaries": primaries}))
    except ValueError as exc:
        msg = str(exc)
        for key, opt in (("threads", "--threads"), ("backend", "--backend"), ("seed", "--seed"),
                         ("primaries", "--primaries")):
            msg = msg.replace(f"run.{key}", opt)
        raise ValueError(msg) from None
    t0, cpu0 = time.perf_counter(), time.process_time()
    times: dict[str, float] = {}
    out = Path(out)
    # every refusal before anything in --out is removed (review 2a of 2026-12-07, R1: the earlier demo's CT, and
    # then its other files, were removed before a refused --age 200, a --backend cuda without CuPy, a matplotlib
    # too old or a compiler without OpenMP, leaving the earlier plan, RT Dose and summary of a CT that was gone).
    # A folder or files there that the demo would replace and did not write: refused (an earlier demo's CT series
    # is replaced whole; a planning system's structure set or plan saved there is not: phantom audit F4)
    earlier_phantom_ct(out / "ct", "the demo's CT folder (in --out)")
    check_outputs_replaceable(out, [name for _, name in OUTPUT_FILES], "the demo's output folder (--out)")
    # what the machine lacks, refused before the phantom and before --out is made (the packaging audit of 2026-12-07:
    # F1, a matplotlib too old for the figures failed after the Monte Carlo; F5, a backend that cannot run here was
    # refused after the phantom, a compiler that cannot build the CPU kernel after the plan, leaving the CT series,
    # the RT Struct and the plan in --out): the figures' matplotlib, and the backend (the CPU kernel loaded, built
    # once into the kernel cache; CuPy for cuda), without a CUDA call, before the helpers are forked
    require_matplotlib()
    refuse_unusable(backend, threads, cpu_choice=CPU_BY_OPTION)

    # the phantom's age and voxel size, in the options' words before the phantom is announced (the error-message audit
    # 27, F9); then the phantom (in memory only): refused before anything is removed
    for option, check, value in (("--age", phantom_age, age), ("--voxel-mm", phantom_voxel_mm, voxel_mm)):
        try:
            check(value)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{option} {exc}") from None
    _log(f"phantom: {age:g}-year-old head, {voxel_mm:g} mm voxels", quiet)
    t = time.perf_counter()
    g, ctv = demo_phantom_and_target(age, voxel_mm)   # and the plan's target (passed to it): default_plan_inputs' too
    times["phantom_s"] = time.perf_counter() - t

    t = time.perf_counter()
    organs = label_map_to_masks(g)
    outline = body_from_labels(g.labels_zyx)   # the body: every labelled voxel (mcproton/body.py)
    times["structures_s"] = time.perf_counter() - t

    # the study and frame of reference of every file, and the RT Struct's UID, chosen here: the RT Ion Plan
    # (written by this process) references the RT Struct that the writer (a forked process) writes meanwhile
    study = phantom_study(g).resolved()   # the phantom's own patient ID, sex and age
    rtstruct_uid = str(generate_uid())

    out.mkdir(parents=True, exist_ok=True)
    # what a demo killed with SIGKILL left (the temporary folder of its CT series, temporary files), and an earlier
    # demo's files, removed in one step just before the first new file (the CT writer, forked below), so that a demo
    # stopped part-way leaves its own files beside none of an earlier one's (F5: a new CT and RT Struct beside the
    # earlier plan, RT Dose and summary)
    remove_stale_temporaries([out / "ct", *(out / name for _, name in OUTPUT_FILES)],
                             log=lambda m: write_stderr(m + "\n"))
    earlier_ct = check_new_ct_dir(out / "ct", "the demo's CT folder (in --out)")
    gone = ([f"ct/ ({len(earlier_ct)} slices)"] if earlier_ct else []) \
        + remove_earlier_outputs(out, [name for _, name in OUTPUT_FILES])
    if gone:
        write_stderr(f"mcproton demo: note: removed the earlier demo's outputs in {out} ({', '.join(gone)}): this "
                     "demo writes its own\n")

    def write_ct_and_rtstruct():
        t_ct = time.perf_counter()
        ct = write_phantom_ct(g, out / "ct", study=study, series_description=f"mcproton phantom {age:g} y")
        t_rs = time.perf_counter()
        # "body" is the EXTERNAL ROI, the whole outline (the label "body" alone: the soft tissue of the head)
        write_rtstruct({"CTV_PF": ctv, **organs, "body": outline.mask}, g, ct, out / "rtstruct.dcm",
                       label="PF boost", sop_instance_uid=rtstruct_uid)
        return ct, t_rs - t_ct, time.perf_counter() - t_rs

    def import_matplotlib():
        try:   # matplotlib's import (~0.4 s) off the outputs' path (the plots import it again if it failed)
            from .plots import _plt

            _plt()
        except Exception:
            pass

    oar_names = ["brainstem", "cochlea_left", "cochlea_right", "spinal_cord"]
    dvh_masks = {"CTV_PF": ctv, **{n: organs[n] for n in oar_names if n in organs}}
    centre = tuple(int(round(float(a.mean()))) for a in np.nonzero(ctv))   # of the target
    body = g.density_g_cm3_zyx > 0.5

    def draw_dose_planes(result, pres: float, let_top: float | None = None) -> None:
        plot_dose_planes(result, out / "dose_planes.png", centre,
                         title=f"posterior-fossa boost, {age:g}-year-old phantom, {PRESCRIPTION_GY_RBE} Gy(RBE) "
                               f"= {pres:.3f} Gy physical per fraction",
                         structures={n: m for n, m in dvh_masks.items()}, reference_gy=pres,
                         body_mask=outline.mask, reference_name="the physical prescription")

    def draw_let_planes(result, pres: float, let_top: float | None = None) -> None:
        plot_let_planes(result, out / "let_planes.png", centre,
                        title=f"dose-averaged LET of protons, posterior-fossa boost, {age:g}-year-old phantom",
                        structures={n: m for n, m in dvh_masks.items()}, reference_gy=pres, body_mask=body,
                        vmax=let_top, reference_name="the physical prescription")

    def from_planes(draw):
        def draw_from(message: dict) -> float:
            """In the child: the figure from the three planes' values (the rest of the grid is not drawn) and
            the LET colour scale the parent computed over the grid: the same PNG bytes as from the result."""
            from types import SimpleNamespace

            t_draw = time.perf_counter()
            grids = {}
            for key in ("dose", "let"):
                grids[key] = np.zeros(g.shape_zyx, message[key][0].dtype)
                for sl, values in zip(plane_slices(centre), message[key]):
                    grids[key][sl] = values
            draw(SimpleNamespace(dose_gy_zyx=grids["dose"], let_d_kev_um_zyx=grids["let"], geometry=g,
                                 normalisation=message["normalisation"]), message["pres"], message["let_top"])
            return time.perf_counter() - t_draw
        return draw_from

    # The CT series and the RT Struct are written while the plan is made and the Monte Carlo runs (the RT Dose
    # needs the CT's UIDs: joined before it).  In a forked process where there is fork (Linux): pydicom's
    # Python work then does not take turns with the plan's for the interpreter lock (a thread added its whole
    # ~1 s to the plan at 2 mm); the child is started before any thread or GPU context exists here.
    # (forked just before the block that ends it on an error or a stop signal)
    in_process = BackgroundProcess.available()
    if in_process:
        # own_signals: SIGINT ignored, SIGTERM ends it, and it ends with this process (mcproton._forked)
        writer: Background | BackgroundProcess = BackgroundProcess(write_ct_and_rtstruct,
                                                                   "the phantom's CT series and RT Struct",
                                                                   own_signals=True)
    else:
        writer = Background(lambda: (write_ct_and_rtstruct(), import_matplotlib())[0],
                            "the phantom's CT series and RT Struct")

    # each plane figure (~0.3 s of matplotlib at 2 mm) in a forked process of its own, drawn while the parent
    # writes the other outputs
    planes: list[PlanesProcess] = []
    # from here on an error or an interrupt (KeyboardInterrupt; a SIGINT to this process only, as a batch system or
    # a wrapper sends it, does not reach the helpers) ends the helpers before it is raised: none is left writing
    # behind it, and none is waited for without bound (the deployment audit, F1)
    try:
        if in_process:
            for draw, what in ((draw_dose_planes, "dose"), (draw_let_planes, "LET")):
                planes.append(PlanesProcess(from_planes(draw), import_matplotlib, f"the {what} plane figure",
                                            own_signals=True))
        be = get_backend(backend, threads, cpu_choice=CPU_BY_OPTION)
        n_prim = int(primaries or DEFAULT_PRIMARIES.get(be.name, DEFAULT_PRIMARIES["cpu"]))

        _log("plan: posterior-fossa boost, 3 fields on the DCPT beam model with a range shifter, spot generation + "
             "NNLS optimisation (or the plan an earlier demo stored in the plan cache, or the default demo's plan "
             "shipped with mcproton)", quiet)
        t = time.perf_counter()
        default = (float(age), float(voxel_mm)) == (DEFAULT_AGE, DEFAULT_VOXEL_MM)
        plan, plan_cache = _demo_plan(posterior_fossa_plan, g, ctv, shipped=shipped_plan_file() if default else None)
        times["plan_s"] = time.perf_counter() - t
        plan_origin = _plan_cache_said(plan_cache)
        _log(f"  {plan_origin}", quiet)
        t = time.perf_counter()
        rtplan = write_rtplan(plan, out / "rtplan.dcm", study=study, fractions=FRACTIONS_PLANNED, label="PF boost",
                              structure_set_sop_instance_uid=rtstruct_uid,
                              target_roi_number=1)      # CTV_PF: the structure set's first ROI (write_rtstruct)
        times["rtplan_s"] = time.perf_counter() - t
        _log(f"  {sum(f.n_spots for f in plan.fields)} spots, {plan.total_protons:.3g} protons per fraction; "
             f"model D95 {100 * plan.model_stats['d95_rel']:.1f} %", quiet)

        mpl = Background(import_matplotlib, "matplotlib's import") if in_process else None
        _log(f"Monte Carlo: {n_prim:,} protons on {be.name} ({be.device}); the CT and RT Struct are written "
             "meanwhile", quiet)
        t = time.perf_counter()
        settings = RunSettings(primaries=n_prim, seed=seed, backend=be.name, threads=threads)
        try:
            res, st = verify_plan(plan, g, settings, progress=not quiet)
        finally:
            if mpl is not None:
                mpl.join(raise_error=False)
        times["monte_carlo_s"] = time.perf_counter() - t

        t = time.perf_counter()
        apply_body_outline(res, outline)   # no dose outside the head; dose.h5 keeps dose_raw and body_mask
        pres = plan.prescription_gy
        if planes:
            message = {"dose": [res.dose_gy_zyx[sl] for sl in plane_slices(centre)],
                       "let": [res.let_d_kev_um_zyx[sl] for sl in plane_slices(centre)],
                       "normalisation": res.normalisation, "pres": pres,
                       "let_top": let_colour_top(res, pres, body_mask=body)}
            for p in planes:
                p.send(message)
        extra = {"plan": plan.summary(), "plan_origin": plan_origin, "prescription_gy": pres,
                 "prescription_gy_rbe": PRESCRIPTION_GY_RBE, "rbe": 1.1}
        # one fraction of the plan's FRACTIONS_PLANNED, said in dose.h5 as mcproton run says it
        # (_io/hdf5.plan_fractions), with the plan written (rtplan.dcm) and its beams, as plan_to_beams records them
        # for mcproton run; and the CT's patient, study and frame of reference (the CT written meanwhile: `study`),
        # so that dose.h5 loaded and written as an RT Dose (write_result_rtdose) is the CT's and the plan's as
        # rtdose.dcm is (before, it lay in a new frame of reference with no patient: roundtrip audit F1)
        beam_numbers = [int(b["number"]) for b in rtplan["beams"]]
        res.provenance.setdefault("beam", {}).update(fractions=1, fractions_planned=FRACTIONS_PLANNED,
                                                     plan_beam_numbers=beam_numbers,
                                                     plan_sop_instance_uid=rtplan["sop_instance_uid"])
        res.geometry.study = study.replace(plan_sop_instance_uid=rtplan["sop_instance_uid"])
        import h5py

        buf = result_hdf5_buffer(res, extra_attrs=extra)   # with the CTV, then written whole (not opened again)
        with h5py.File(buf, "a") as f:
            f.create_dataset("ctv", data=ctv.astype(np.uint8), compression="gzip").attrs["name"] = "CTV_PF"
        write_bytes_atomic(out / "dose.h5", buf.getbuffer())
        t_wait = time.perf_counter()
        _, ct_s, rtstruct_s = writer.join()   # its error, if any, is raised here (the CT: in `study`)
        times["ct_rtstruct_wait_s"] = time.perf_counter() - t_wait
        times["ct_rtstruct_background_s"] = ct_s + rtstruct_s
        # one fraction of the plan written (rtplan.dcm): FRACTION_SESSION, referencing it and its beams, in the
        # result's study (the CT's), what dose.h5 gives back (result_dose_contents of its provenance)
        contents = result_dose_contents(res, summation="fraction")
        write_result_rtdose(res, out / "rtdose.dcm", contents=contents, series_description="mcproton PF boost")
        table = dvh_table(res.dose_gy_zyx, dvh_masks, g.voxel_volume_cm3, {"CTV_PF": pres})
        plot_dvh(res.dose_gy_zyx, dvh_masks, out / "dvh.png", prescription_gy=pres,
                 title=f"PF boost, {age:g} y phantom: {n_prim:,} protons ({res.backend})",
                 dose_label="physical dose to medium per fraction (Gy)")
        if not planes:
            draw_dose_planes(res, pres)
            draw_let_planes(res, pres)
        else:
            t_wait = time.perf_counter()
            times["planes_draw_s"] = max(p.join() for p in planes)   # an error is raised here
            times["planes_wait_s"] = time.perf_counter() - t_wait
    except BaseException:
        _stop_helpers(writer, planes)
        _clean_after_failure(out, int(g.shape_zyx[0]))
        raise
    times["outputs_s"] = time.perf_counter() - t - times["ct_rtstruct_wait_s"]

    unc = res.uncertainty_rel_zyx
    hi_body = body & (res.dose_gy_zyx >= 0.5 * pres)

    def let_d(mask) -> float | None:
        """Dose-averaged LET of protons over a structure (keV/um): the voxel LETd weighted by the energy the
        voxel received, so that the nearly undosed, noisy voxels count for little."""
        if mask is None or not mask.any():
            return None
        w = res.dose_gy_zyx[mask] * g.density_g_cm3_zyx[mask]
        return float((res.let_d_kev_um_zyx[mask] * w).sum() / w.sum()) if w.sum() > 0 else None

    c = table["CTV_PF"]
    target_unc, no_dose = target_rel_uncertainty(unc, res.dose_gy_zyx, ctv)
    summary = {
        "schema_version": DEMO_SUMMARY_SCHEMA, **_demo_identity(seed),
        "case": f"posterior-fossa boost, {age:g}-year-old head phantom, {voxel_mm:g} mm voxels",
        "prescription_gy_rbe": PRESCRIPTION_GY_RBE, "rbe": 1.1, "prescription_gy": pres,
        "target_volume_cm3": c["volume_cm3"],
        "target_mean_gy": c["dmean"], "target_d95_gy": c["d95"], "target_d95_rel": c["d95"] / pres,
        "target_d98_gy": c["d98"], "target_d2_gy": c["d2"], "target_within_5pct": c["within_5pct"],
        "target_v95": c["v95"], "target_homogeneity_index": c["homogeneity_index"],
        "d95_ok": bool(c["d95"] >= 0.95 * pres),
        "brainstem_d2_gy": table.get("brainstem", {}).get("d2"),
        "brainstem_mean_gy": table.get("brainstem", {}).get("dmean"),
        "cochlea_left_mean_gy": table.get("cochlea_left", {}).get("dmean"),
        "cochlea_right_mean_gy": table.get("cochlea_right", {}).get("dmean"),
        "spinal_cord_d2_gy": table.get("spinal_cord", {}).get("d2"),
        "target_let_d_kev_um": let_d(ctv),
        "brainstem_let_d_kev_um": let_d(organs.get("brainstem")),
        "variable_rbe_mcnamara": variable_rbe_summary(res, ctv, organs.get("brainstem")),
        "mc_over_model_target_mean": st["mc_over_model_mean"],
        "model_d95_rel": plan.model_stats["d95_rel"],
        "mean_rel_uncertainty_50": res.mean_rel_uncertainty_50,
        "mean_rel_uncertainty_50_body": float(unc[hi_body].mean()) if hi_body.any() else float("nan"),
        "target_mean_rel_uncertainty": target_unc,
        "target_voxels_without_dose_fraction": no_dose,
        "primaries": res.primaries, "total_protons_per_fraction": plan.total_protons,
        "spots": int(sum(f.n_spots for f in plan.fields)),
        "beam_model": sorted({f.machine.model.name for f in plan.fields if f.machine is not None}),
        "range_shifters": {f.name: (f.machine.describe().get("range_shifter") if f.machine is not None else None)
                           for f in plan.fields},
        "fields": plan.summary()["fields"],
        "protons_per_second": res.protons_per_second, "backend": res.backend, "device": res.device,
        "plan_origin": plan_origin, "plan_cache": plan_cache,
        "mc_wall_s": res.wall_s, "times_s": {k: round(v, 2) for k, v in times.items()},
        "times_note": "times_s: wall time per phase (plan_s: read from the plan cache where plan_cache."
                      "plan_from_cache is true, from the plan shipped with mcproton where plan_cache.shipped is "
                      "not null, else optimised here: plan_origin); ct_rtstruct_background_s ran in a forked "
                      "process (else a thread) during the plan, Monte Carlo and outputs and is not part of their "
                      "sum: only ct_rtstruct_wait_s (waiting for it to finish) is; phantom + structures + plan + "
                      "rtplan + monte_carlo + outputs + wait ~ wall_s; the two plane figures are drawn in forked "
                      "processes during the outputs (planes_draw_s: the longer drawing; planes_wait_s: waiting for "
                      "them, part of outputs_s); cpu_s: all threads and processes (writer_cpu_s, planes_cpu_s of it)",
        "wall_s": time.perf_counter() - t0,
        # all threads and the writer process; a shared machine's wall time includes waiting
        "cpu_s": time.process_time() - cpu0 + getattr(writer, "cpu_s", 0.0) + sum(p.process.cpu_s for p in planes),
        "writer_cpu_s": getattr(writer, "cpu_s", None), "writer": "process" if in_process else "thread",
        "planes_cpu_s": [p.process.cpu_s for p in planes] or None,
        "dose": dose_summary(res, outline),
        "rtdose_contents": contents.as_dict(),
        "rtplan": rtplan,
        "dvh": table,
        "files": {k: str(out / v) for k, v in (("ct", "ct"), *OUTPUT_FILES)},
        "notes": "dose = physical dose to medium per fraction (Gy), 0 outside the body outline (the phantom's "
                 "labelled voxels; dose.h5 keeps dose_raw); dose.max_dose_gy leaves out voxels below 0.05 g/cm3 "
                 "(sinus air); *_let_d_kev_um = dose-averaged LET of protons "
                 "over the structure (validated against four MC codes in validation/dcpt_plan02); "
                 "mean_rel_uncertainty_50 is the engine's "
                 "mean relative standard error over voxels >= 50 % of Dmax (voxels below 0.05 g/cm3 left out); "
                 "mean_rel_uncertainty_50_body restricts it to tissue (density > 0.5 g/cm3) with dose >= 50 % "
                 "of the prescription; target_mean_rel_uncertainty is the mean over every target voxel, one "
                 "without dose counted as 100 % (target_voxels_without_dose_fraction of them): it rises as the "
                 "primaries fall; files are relative to working_directory where --out is",
    }
    noise = d95_noise_note(target_unc, int(res.primaries), summary["target_d95_rel"], summary["model_d95_rel"],
                           no_dose)
    summary["d95_lowered_by_noise"] = noise is not None
    summary["d95_noise_note"] = noise
    warn_d95_noise(noise, bool(summary["d95_ok"]))
    # strict JSON (NaN is not JSON: a strict parser refuses the whole file; the integrator audit of 2026-12-06, F7):
    # a figure that is not defined at this run is null, and undefined_figures names them
    summary["undefined_figures"] = undefined_figures(summary)
    summary["undefined_figures_note"] = (
        "these figures are null: not defined for this run (NaN: e.g. a homogeneity index whose D50 is 0, a mean "
        "over no voxel, as at a very small --primaries)" if summary["undefined_figures"] else None)
    from ._io.json_out import json_text

    text = json_text(summary)
    write_bytes_atomic(out / "summary.json", (text + "\n").encode())
    print(json_text(stdout_digest(summary, out / "summary.json")))
    return summary


#: the tables of summary.json left out of the demo's stdout (a terminal page, not 450 lines: the first command a new
#: user runs); summary.json holds them
DIGEST_LEFT_OUT = ("dvh", "fields", "files", "notes", "rtplan", "variable_rbe_mcnamara")


def stdout_digest(summary: dict, path: Path) -> dict:
    """What the demo prints: summary.json's figures as written (not rounded: the same values, strict JSON), without
    its tables (:data:`DIGEST_LEFT_OUT`), and ``summary_json``, the file that holds them all.  Before 2026-12-06 the
    printed figures were rounded to 4 places (the integrator audit, F13)."""
    return {**{k: v for k, v in summary.items() if k not in DIGEST_LEFT_OUT}, "summary_json": str(path)}


#: the format version of the demo's summary.json (and its stdout): raised when a key is removed or changes meaning
#: (new keys do not raise it).  1: the first numbered one (2026-12-06; the integrator audit, F10).  2 (2026-12-07):
#: variable_rbe_mcnamara's figures take the LETd in water, not the scored LETd in the medium (audit 29 bio, F2: the
#: brainstem's D2 2.24 Gy(RBE), 2.27 before), said in its new key "let"
DEMO_SUMMARY_SCHEMA = 2


def _demo_identity(seed: int) -> dict:
    """What computed the demo, when and where, for its summary (the integrator audit of 2026-12-06, F10):
    ``mcproton_version``, ``build`` (:func:`mcproton._build.result_build_identity`: the version, the kernel's, the
    physics data's and the code's SHA-256, as its dose.h5's ``provenance["build"]`` and ``mcproton run``'s summary;
    before, review 2b R4, without the code), ``seed``, ``created`` (local time with its UTC offset) and
    ``working_directory`` (the folder the relative paths of ``files`` are relative to)."""
    import datetime as _dt
    import os

    from . import __version__
    from ._build import result_build_identity

    return {"mcproton_version": __version__, "build": result_build_identity(), "seed": int(seed),
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "working_directory": os.getcwd()}

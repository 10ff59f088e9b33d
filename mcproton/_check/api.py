"""``mcproton.check(...)``: the independent Monte Carlo check of a plan against its planning-system dose."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..dvh import MASK_CONTOUR_RATIO_RANGE, SMALL_STRUCTURE_VOXELS
from .compare import (AGGREGATE_NOISE_FACTOR, D95_CORRECTED_SE_MULTIPLE, GAMMA_CPU_S_PER_POINT, GAMMA_CRITERIA,
                      GAMMA_ESTIMATE_POINTS, MIN_RANGE_RAYS, NEAR_MAX_VOXELS, NORMALISATION_PLATEAU_TEXT,
                      NORMALISATION_TEXT, NOISE_REALISATIONS, PLATEAU_RATIO,
                      NOISE_SEED_OFFSET, TARGET_NOISE_REALISATIONS, beam_dose_ratio, beam_ratio_region, beam_summary,
                      NORMALISATION_TARGET_RATIO, classify, d95_limits, d95_verdict, dose_difference,
                      gamma_evaluable_points, gamma_time_estimate, normalisation_doses, normalisation_note,
                      percentile_max, range_agreement,
                      masks_union, small_target_names, small_target_prescription, start_gammas,
                      structure_stats, target_dose_of_plan)
from .compute import (MCDose, build_geometry, grid_extent_mm, mc_dose_description, mc_rbe, phantom_ct_from_struct,
                      run_mc, to_tps_grid)
from .compute import plan_beams as beams_of_plan
from .._io.rtdose import CLINICAL_RBE
from .inputs import (MCPROTON_ONLY_DOSE, SINGLE_PATIENT_OPTIONS, BatchPatient, CheckInputError,
                     CheckInputs, checking_batch_patient, gather, listed, refusing_superseded_plans, way_out)
from .level_text import fixed, judged, level_decimals, level_texts, percent_or_na
from .levels import ActionLevels
from .record import (calibration_record, ct_input, dicom_input, identification, invocation, kvp_mismatch_of,
                     levels_record, now_text, plan_label)
from .prescription import given_prescriptions, median_source, plan_dose_references, plan_prescriptions
from .reference_noise import Found, JudgedAgainst, reference_d95_clause, reference_noise_notes
from .._cpus import cpu_quota, usable_cpus
from .._io.atomic import write_bytes_atomic
from .._io.console import log_line, printable
from .._io.errors import (McprotonInternalError, McprotonRuntimeWarning, McprotonWarning, recorded,
                          records_warnings, warn)
from .._io.calibration_kvp import kvp_comparison, kvp_mismatch_text, kvp_not_stated_note, kvp_warning
from .._io.json_out import json_safe, json_text
from .._io.lock import locks_output
from .._io.path_text import current_folder, refuse_unwritable_paths
from .._io.rtdose import plausible_rbe
from .._optional import require
from .stop import progress as _progress, remove_scratch, scratch_folder, stops_cleanly
from ..settings import PhysicsSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Body outline without an External ROI: CT density above this (g/cm3; lung is 0.2-0.5, air 0.0012), the
#: largest connected part with its holes filled.
BODY_DENSITY_G_CM3 = 0.1


#: What the verdict line, check.json's and batch.json's ``self_compared`` and the batch's console line and index row
#: say of a check whose every compared RT Dose mcproton wrote (audit 21 review; realcheck audit F2: a batch's row
#: read plain PASS)
SELF_COMPARED = ("against a dose mcproton wrote, not the planning system's: mcproton compared with itself, not an "
                 "independent check")


def self_compared_text(warnings: Iterable[str]) -> str:
    """:data:`SELF_COMPARED` where the check's ``warnings`` hold inputs.MCPROTON_ONLY_DOSE's warning (every RT Dose
    compared was written by mcproton), else "": the same for a fresh check and an earlier check.json read back (one
    written before its ``self_compared`` key keeps the warning)."""
    return SELF_COMPARED if any(str(w).startswith(MCPROTON_ONLY_DOSE) for w in warnings) else ""


#: what the record says of the phantom's CT of a check without an output folder (resources audit 31, F1: it named a
#: temporary folder that was left behind, ~29 MB each)
PHANTOM_CT_NOT_KEPT = ("its CT was written to a temporary folder, hashed (the record keeps its series UID, slice count "
                       "and SHA-256) and removed: give out= (--out) to keep it in phantom_ct/")
#: The words that begin the warning of a check without a structure set (:func:`no_structure_set`): the check's result
#: (api.CheckResult.no_structures) looks for them to say :data:`NO_STRUCTURES` beside its verdict
NO_STRUCT_WARNING = "no RT Struct (structure set) is used"
#: What the verdict line, check.json's and batch.json's ``no_structures``, the report under its verdict and the batch's
#: console line and index row say beside PASS or FAIL of a check without a structure set (journey audit 28, F1:
#: before, its PASS read as a full check's, 7 rows instead of 9, with no word that the target's were missing)
NO_STRUCTURES = "without a structure set: the target D95/Dmean rows were not evaluated"


def no_structure_set(inp: CheckInputs, allow_no_struct: bool) -> str:
    """Where the check found or was given no structure set (``inp.struct_path`` None; not for a phantom built from
    one, which needs it): refuse it where the plan names a structure set (its ReferencedStructureSetSequence), since
    without it the check has no target D95/Dmean rows and its PASS would not cover the target's dose, unless
    ``allow_no_struct`` (``--allow-no-struct``: check without structures); else (or so allowed) warn, in words that
    begin with :data:`NO_STRUCT_WARNING`, and return the warning (the pairing notes say it too).  "" where a structure
    set is used.  Before the journey audit 28 (F1) a check without one passed with no word about it."""
    if inp.struct_path is not None:
        return ""
    named = tuple(getattr(inp.plan, "referenced_structure_sets", ()) or ())
    skipped = (f" ({listed(inp.structs_skipped, 3)}: of another frame of reference than the plan's, skipped)"
               if inp.structs_skipped else "")
    of_frame = "of the plan's frame of reference " if skipped else ""
    without = ("without it the check has no target rows (D95, Dmean), no DVH metrics and no organ-at-risk notes, and "
               "its body outline is the CT above "
               f"{BODY_DENSITY_G_CM3:g} g/cm3, not the External")
    if named and not allow_no_struct:
        raise CheckInputError(
            f"the plan names structure set {', '.join(named)} (its ReferencedStructureSetSequence), but no RT Struct "
            f"{of_frame}was given or found{skipped}: "
            f"{without}, so its verdict would not cover the target's dose; "
            + way_out("give --struct RS.dcm (the plan's structure set), or check without structures: "
                      "--allow-no-struct (the verdict then says that the target rows were not evaluated)",
                      "put the plan's structure set into {folder}, or check without structures: --allow-no-struct "
                      "(the verdict then says that the target rows were not evaluated)"),
            single_options=("--struct",))
    asked = (f"; the plan names structure set {', '.join(named)} (its ReferencedStructureSetSequence), which is not "
             "among the inputs: checked without it, as asked (--allow-no-struct)" if named else "")
    # nor is the gammas' normalisation compared with a target dose (compare.target_dose_of_plan: a hot region of the
    # TPS dose too large for compare._plateau_near_max, a compact one of about 30 voxels or more (a ball of 29 is
    # kept, of 28 replaced: review a of audit 32, R3; "40" before), then sets it unchecked; audit 32 norm2)
    msg = (f"{NO_STRUCT_WARNING}: none {of_frame}was given or found{skipped}{asked}; {without}, and the normalisation "
           "of the gammas and the dose difference (the TPS dose's near-maximum) is compared with no target dose, so "
           "a compact hot region of the TPS dose of about 30 voxels or more sets it unchecked: the verdict does not "
           "cover the target's dose; "
           + way_out("give --struct RS.dcm (the plan's structure set) for them",
                     "put the plan's structure set into {folder} for them"))
    warn(msg, McprotonWarning)
    return msg


def no_ct(inp: CheckInputs) -> CheckInputError:
    """The refusal of a check without a CT and without --phantom-from-struct.  Said before the structure set's
    refusal (:func:`no_structure_set`), and where there is no structure set either, saying that a phantom needs one:
    a folder of a plan and its dose alone (APTG plan06 as published) took three refusals to learn both before
    (journey audit 33, F3: the structure set, then the CT, then the structure set that --phantom-from-struct needs)."""
    none = inp.struct_path is None
    return CheckInputError("no CT: " + way_out(
        "give --ct (the plan's CT series), or for a phantom whose structure set overrides the materials, "
        + ("--phantom-from-struct with that structure set (--struct RS.dcm: no RT Struct was given or found)" if none
           else "--phantom-from-struct"),
        "put the plan's CT series into {folder}, or, for a phantom whose structure set overrides the materials"
        + (" (no RT Struct is in the folder: put it there too)" if none else "")
        + ", check this patient alone with --phantom-from-struct (or the phantoms in a batch folder of their own: "
        "this batch given --phantom-from-struct would refuse every patient with a CT)"),
        single_options=("--ct",))


def no_structures_text(warnings: Iterable[str]) -> str:
    """:data:`NO_STRUCTURES` where the check's ``warnings`` hold :func:`no_structure_set`'s warning, else "": the same
    for a fresh check and an earlier check.json read back."""
    return NO_STRUCTURES if any(str(w).startswith(NO_STRUCT_WARNING) for w in warnings) else ""


def verdict_said(passed: bool, *qualifiers: str) -> str:
    """The verdict as the console, the report, a batch's line and its index say it: PASS or FAIL with what it does
    not cover in brackets after it (:data:`SELF_COMPARED`, :data:`NO_STRUCTURES`; the empty ones left out)."""
    return ("PASS" if passed else "FAIL") + "".join(f" ({q})" for q in qualifiers if q)


@dataclass
class CheckResult:
    """Everything ``mcproton check`` found (``to_dict()`` is the JSON report, ``check.json``).

    Units (docs/check.md "Units of the results"): a key ending in ``_pct`` is a percentage (``mean_pct`` 0.5
    means 0.5 %), one ending in ``_mm`` millimetres, in ``_gy`` Gy; the others are fractions in 0..1:

    * ``gamma[criterion]["pass_rate"]`` and ``beam_gamma[beam]["pass_rate"]``: fraction of the evaluated points
      with gamma <= 1 (0.9888 is 98.88 %);
    * ``dose_difference["within_2pct"]``, ``["within_3pct"]``: fraction of the voxels whose difference is within
      2 % / 3 % (the difference itself, ``mean_pct``, ``sd_pct``, ``percentiles_pct``, in %);
    * ``ranges[beam]["within_1mm"]``, ``["within_2mm"]``: fraction of the rays whose R80 difference is within
      1 mm / 2 mm, of the rays with a distal R80 in either dose (one in one dose only: outside; ``rays_tps``,
      ``rays`` compared, ``rays_without_mc_edge``, ``rays_without_tps_edge``); ``median_mm`` ... in mm, of the rays
      compared; ``["evaluable"]`` False (and ``["note"]``) below compare.MIN_RANGE_RAYS rays: the range levels
      are not judged;
    * ``beam_dose[beam]`` (beams with a per-beam TPS dose, compare.beam_dose_ratio): ``ratio`` (median MC/TPS voxel
      ratio over the TPS beam dose's high-dose region) and ``integral_ratio`` are ratios, ``diff_pct`` and
      ``uncertainty_pct`` (its standard error from the MC's noise, for correlated voxels:
      compare.BEAM_RATIO_NOISE_FACTOR x ``uncertainty_independent_pct``) in %;
    * ``structures[name]["metrics"][metric]``: ``tps_gy``, ``mc_gy``, ``diff_gy`` in Gy, ``diff_pct`` in % of the
      TPS value of the metric; noise matching (compare.structure_stats): ``tps_noisy_gy`` (the metric of the TPS dose
      with the MC's noise), ``noise_shift_pct`` (what the MC's noise alone does to it), ``noise_shift_se_pct`` and
      ``noise_sd_pct`` (its standard error and the spread over the noise draws; Dmean's, V95/V100's x
      compare.AGGREGATE_NOISE_FACTOR for the MC's correlated noise, ``noise_sd_independent_pct`` / ``_points``
      without), ``noise_matched_diff_pct`` (MC
      against the TPS with the MC's noise), ``mc_noise_shift_pct`` (what its noise did to the MC's own metric) and
      ``mc_corrected_diff_pct`` (the MC less that, against the TPS), all % of the TPS value; the target D95 action
      level needs ``diff_pct``, ``noise_matched_diff_pct`` and ``mc_corrected_diff_pct`` all within it
      (compare.d95_verdict; its row's ``value`` is the largest in size, ``noise_matched`` True);
      V95/V100: ``tps``, ``mc`` fractions, ``diff_points``, ``noise_shift_points``, ``noise_sd_points``,
      ``noise_matched_diff_points``, ``mc_noise_shift_points``, ``mc_corrected_diff_points``,
      ``label``/``of`` (of the prescription, or "V95 of the TPS median" without one);
    * ``dose_difference``: % of the TPS dose's near-maximum in the body (``normalisation_gy``, the dose that at
      least 8 body voxels receive, its 8th-largest: compare.normalisation_dose; the gammas' too, their
      ``normalisation_gy``); ``settings["percent_of"]`` says the same;
    * ``gamma[criterion]["pass_rate_se"]``: the pass rate's standard error from its random subset of points (a
      fraction; 0 with every point); a row where it decides the verdict has ``subset_decides`` and a note.

    ``checks`` (the action levels) give each ``value`` and ``limit`` in the unit of its ``value_text`` /
    ``limit_text``: percentages for the pass rates and the fractions above (98.88, not 0.9888), mm for ranges.
    In ``check.json`` the keys of ``ranges`` and ``beam_gamma`` (beam numbers, ints here) are strings ("1", "2"),
    as JSON keys are.
    """

    passed: bool
    checks: list[dict]
    gamma: dict[str, dict]
    dose_difference: dict
    structures: dict[str, dict]
    ranges: dict[int, dict]
    beam_gamma: dict[int, dict]
    diagnostics: list[str]
    pairing: list[str]
    provenance: dict
    timings_s: dict[str, float]
    settings: dict
    levels: dict
    out_dir: str | None = None
    report_html: str | None = None
    report_json: str | None = None
    # the MC doses written as RT Dose beside the report: {"plan": {"file", ...}, "beam <N>": {...}}
    mc_rtdose: dict[str, dict] = field(default_factory=dict)
    # the MC/TPS dose level of each beam with a per-beam TPS dose (compare.beam_dose_ratio)
    beam_dose: dict[int, dict] = field(default_factory=dict)
    # the field region of each beam without a per-beam TPS dose in a plan of several beams (api.field_regions):
    # voxels, own_fraction, judged (or why not), gamma_2_2, centroid_mc_minus_tps_mm (x, y, z); "mask" (a judged
    # region's, on the TPS grid) not in the JSON nor in numbers_only()
    field_regions: dict[int, dict] = field(default_factory=dict)
    # arrays (not in the JSON): the doses on the TPS grid and the body outline
    tps_gy_zyx: np.ndarray | None = field(default=None, repr=False)
    mc_gy_zyx: np.ndarray | None = field(default=None, repr=False)
    body_zyx: np.ndarray | None = field(default=None, repr=False)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    axes_zyx: tuple | None = field(default=None, repr=False)
    # the MC doses as computed, not zeroed outside the body (mc_gy_zyx is the compared total): check(mc=...) may
    # reuse them with another body outline
    mc: MCDose | None = field(default=None, repr=False)
    inputs: CheckInputs | None = field(default=None, repr=False)
    # mcproton's warnings issued during the check (as printed: a CT read with a caveat, a range shifter whose WET
    # the plan and the beam model give differently, ...), each message once, whatever the warning filters show
    warnings: list[str] = field(default_factory=list)
    # one per diagnostic, in its order: "cause" (explains a level: the MC/TPS ratio, a centroid shift, a range
    # difference, the MC's noise, a range shifter, the CT series) or "remark" (structure typing, dose in air, an
    # unchecked position, ROIs left out of the table, ...): the report shows the causes first (audit 18b F6)
    diagnostic_kinds: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    @property
    def self_compared(self) -> str:
        """"" where a planning system's dose was compared; where every RT Dose compared was written by mcproton,
        what the verdict line says after PASS or FAIL: the check compared mcproton with itself (audit 21 review:
        said only in the pairing before); check.json's ``self_compared``, batch.json's too
        (:func:`self_compared_text`)."""
        return self_compared_text(self.warnings)

    @property
    def no_structures(self) -> str:
        """"" where the check used a structure set; where it used none (:func:`no_structure_set`),
        :data:`NO_STRUCTURES`, what the verdict line says after PASS or FAIL (journey audit 28, F1); check.json's
        ``no_structures``, batch.json's too (:func:`no_structures_text`)."""
        return no_structures_text(self.warnings)

    @property
    def kvp_mismatch(self) -> str:
        """"" unless the CT's tube voltage (KVP) differs from the one its HU calibration states; then what the verdict
        line says after PASS or FAIL: "CT at 80 kVp, HU calibration stated for 120 kVp" (a check never passes
        silently with another protocol's curve); check.json's ``kvp_mismatch``, batch.json's too
        (:func:`~mcproton._check.record.kvp_mismatch_of`)."""
        return kvp_mismatch_of(self.provenance)

    def diagnostics_of(self, kind: str) -> list[str]:
        """The diagnostics of ``kind`` ("cause" or "remark"), in order; without kinds (a result of before 2026-12-06)
        every diagnostic is a cause, as the report showed them."""
        kinds = self.diagnostic_kinds if len(self.diagnostic_kinds) == len(self.diagnostics) else []
        if not kinds:
            return list(self.diagnostics) if kind == "cause" else []
        return [d for d, k in zip(self.diagnostics, kinds) if k == kind]


    def to_dict(self) -> dict:
        from .._io.json_out import json_safe

        from .out_dir import CHECK_JSON_SCHEMA

        keys = ("passed", "self_compared", "no_structures", "kvp_mismatch", "checks", "gamma", "dose_difference",
                "structures", "ranges", "beam_gamma", "diagnostics", "diagnostic_kinds", "warnings", "pairing",
                "provenance", "timings_s", "settings", "levels", "mc_rtdose", "beam_dose")
        regions = self._regions_without_masks()
        from ..errors import EXIT_FAIL, EXIT_PASS

        # schema_version, status and exit_status first: what a script reads before anything else (automation audit,
        # F10); exit_status in every check.json, a report's too (the integrators' audit of 2026-12-06, F9)
        return json_safe({"schema_version": CHECK_JSON_SCHEMA, "status": "pass" if self.passed else "fail",
                          "exit_status": EXIT_PASS if self.passed else EXIT_FAIL,
                          **{k: getattr(self, k) for k in keys}, "field_regions": regions})

    def figures(self, names: Iterable[str] | str | None = None) -> dict[str, Figure]:
        """The report's figures as matplotlib Figures, built by the report's own plotting code: {"axial",
        "coronal", "sagittal" (the planes through the target), "histograms", "dvh" (when a structure has metrics),
        "beam_<number>" per beam}, or only ``names``.

        Built anew at each call (the planes and beams compute 2-D gammas: seconds on a large grid).  They are
        ``matplotlib.figure.Figure`` objects outside pyplot: nothing to close, none is added to pyplot's open
        figures, each is freed once unreferenced (a script checking many plans accumulates none)."""
        from .report import figure_builders

        return {n: build() for n, build in figure_builders(self, names).items()}

    def save_figures(self, directory: str | Path, fmt: str = "png", *, dpi: float | None = None,
                     names: Iterable[str] | str | None = None) -> list[Path]:
        """Write the figures (``figures(names)``) as ``directory/<name>.<fmt>`` (any format matplotlib writes:
        png, pdf, svg, ...; dpi default: the report's, 90), one built and written at a time, each file written
        atomically; returns the paths in the figures' order."""
        from functools import partial

        from matplotlib.backend_bases import FigureCanvasBase

        from .._io.atomic import atomic_write
        from .report import REPORT_DPI, figure_builders

        fmt = fmt.lower().lstrip(".")
        known = FigureCanvasBase.get_supported_filetypes()
        if fmt not in known:    # refused before any figure is built
            raise ValueError(f"fmt {fmt!r}: matplotlib writes {', '.join(sorted(known))}")
        builders = figure_builders(self, names)
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, build in builders.items():
            paths.append(atomic_write(out / f"{n}.{fmt}", partial(build().savefig, format=fmt,
                                                                  dpi=REPORT_DPI if dpi is None else dpi)))
        return paths

    def numbers_only(self) -> "CheckResult":
        """A copy that keeps the numbers (everything in ``to_dict()``, the file names) and drops the dose arrays,
        masks (the structures' and the field regions'), MC dose and inputs (what a batch keeps of each patient: its
        memory is then one patient's); its ``figures()`` are refused.  The field regions' masks are full TPS-grid
        arrays, one per judged region: a batch kept them for every multi-isocentre patient (check review 2026-12-06,
        finding 3)."""
        import dataclasses

        return dataclasses.replace(self, tps_gy_zyx=None, mc_gy_zyx=None, body_zyx=None, masks={}, axes_zyx=None,
                                   mc=None, inputs=None, field_regions=self._regions_without_masks())

    def _regions_without_masks(self) -> dict[int, dict]:
        """``field_regions`` without each region's ``mask`` (a new dict per region; the result's own keep theirs)."""
        return {b: {k: v for k, v in r.items() if k != "mask"} for b, r in self.field_regions.items()}

    def summary(self) -> str:
        """The console's summary: the verdict, the action levels, the notes and warnings, one line each.  Names
        from the inputs in them (an ROI, a beam, a file) are shown with their control characters escaped
        (``printable``: an ROI "Cereb ESC[2J ESC[41mFAKE PASS" cleared the terminal and printed a red FAKE PASS in
        a FAIL's summary, a newline split a note; strings audit 19, F7); check.json and check.html keep them."""
        lines = [f"mcproton check: "
                 f"{verdict_said(self.passed, self.self_compared, self.no_structures, self.kvp_mismatch)}"]
        for c in self.checks:
            lines.append(f"  [{'pass' if c['passed'] else 'FAIL'}] {printable(c['quantity'])}: "
                         f"{printable(c['value_text'])} (action level {c['limit_text']})")
        for d in self.diagnostics_of("cause") + self.diagnostics_of("remark"):   # the causes first (audit 18b F6)
            lines.append(f"  note: {printable(d)}")
        for w in self.warnings:
            lines.append(f"  warning (during the check): {printable(w)}")
        return "\n".join(lines)


#: what the check's warning of an External's missing slices (mcproton.body.warn_body_slices_missing) says becomes of
#: them, and what to do: in its body outline (dose not compared) and, with --outside-external air, in the MC
BODY_SLICES_OUTSIDE = "both doses are set to 0 there and not compared (the check's body outline)"
BODY_SLICES_REMEDY = "contour the body on every CT slice in the planning system"
AIR_SLICES_OUTSIDE = ("--outside-external air makes the patient's material on those slices of the CT air in the MC "
                      "(slabs of air across the patient, which the beams cross: the MC dose beyond them is not the "
                      "patient's), and both doses there are set to 0 and not compared (the check's body outline)")
AIR_SLICES_REMEDY = (f"{BODY_SLICES_REMEDY}, or give --outside-external ct (the CT as it is outside the External)")


def body_outline(masks: dict[str, np.ndarray], types: dict[str, str],
                 density_zyx: np.ndarray | None, grid: Any = None, struct_path: Any = "",
                 slices_said: bool = False) -> tuple[np.ndarray, str]:
    """The body on the TPS grid: the body ROI (mcproton.body.choose_body_roi, the rule of ``mcproton run`` and of
    the check's "outside the External": typed EXTERNAL, else named as mcproton.body.BODY_NAMES; several EXTERNAL
    ROIs: a warning naming the one used) among the ROIs with a voxel on the grid, else the CT density above
    BODY_DENSITY_G_CM3 (largest connected part, holes filled slice by slice: mcproton.body.outline_from_threshold,
    as mcproton run).  With ``grid`` (the TPS grid: ``origin_mm``, ``voxel_size_mm``), a body ROI without a contour
    on some slices between its first and last is warned of (mcproton.body.warn_body_slices_missing, as mcproton run
    warns; those slices lie outside the body outline, where neither dose is compared), unless ``slices_said`` (the
    warning of --outside-external air, on the CT's slices, said it)."""
    from ..body import check_targets_inside, choose_body_roi, warn_body_slices_missing

    nm = choose_body_roi([n for n, m in masks.items() if m.any()], types,
                         remedy="rename or remove the others in the structure set (the check has no option to "
                                "name it)")
    if nm is not None:
        check_targets_inside(masks[nm], masks, types, f"External ROI {nm!r}", CheckInputError,
                             "check the structure set's ROI types (RTROIInterpretedType EXTERNAL)")
        if grid is not None and not slices_said:
            warn_body_slices_missing(masks[nm], grid, nm, str(struct_path), outcome=BODY_SLICES_OUTSIDE,
                                     remedy=BODY_SLICES_REMEDY, stacklevel=2)
        return masks[nm], f"External ROI {nm!r}"
    if density_zyx is None:
        raise CheckInputError("no body outline: give a structure set with an External ROI or a CT")
    from ..body import outline_from_threshold

    b = outline_from_threshold(density_zyx >= BODY_DENSITY_G_CM3)
    return b, f"CT density >= {BODY_DENSITY_G_CM3:g} g/cm3 (largest connected part, holes filled per slice)"


def _crop_targets_to_body(masks: dict[str, np.ndarray], types: Mapping[str, str], body: np.ndarray,
                          body_how: str) -> tuple[dict[str, float], list[str]]:
    """Each target partly outside the body outline (where both doses are set to 0) is judged on its part inside it
    (``masks`` changed in place: mask & body, as a planning system's "PTV_eval" crops a PTV to the skin), so that
    its D98/D95 are not those of the zeros (struct audit 14, F3: a PTV 8.8 % beyond the skin read D95 0.000 Gy on
    both sides and failed "n/a" with no reason).  A target wholly outside keeps its mask and is not judged.
    Returns ({name: share of its voxels outside}, the notes saying so)."""
    from ..body import target_outside_shares

    shares = target_outside_shares(body, {nm: m for nm, m in masks.items()
                                          if classify(nm, types.get(nm, "")) == "target"})
    notes = []
    for nm, f in shares.items():
        inner = masks[nm] & body
        if inner.any():
            masks[nm] = inner
            notes.append(f"target {nm!r}: {100 * f:.1f} % of its volume lies outside the body outline ({body_how}), "
                         "where both doses are set to 0: its metrics (D98, D95, Dmean, ...) and action levels are "
                         f"of its part inside the body ({nm} & body, as a planning system's PTV_eval)")
        else:
            shares[nm] = 1.0
            notes.append(f"target {nm!r} lies wholly outside the body outline ({body_how}), where both doses are set "
                         "to 0: its D95 and Dmean levels are not judged; is the body ROI the patient's outline?")
    return shares, notes


def _mark_target_rows(structs: dict[str, dict], types: Mapping[str, str], outside_body: Mapping[str, float]) -> None:
    """The target rows of the structure statistics say why they are targets (``kind_basis``: "by its type", or
    "by its name; typed ORGAN" for an ROI a name prefix promoted) and, partly outside the body outline, the share
    outside (``outside_body_fraction``) and what the metrics are of (``evaluated_on``)."""
    from ..body import target_basis

    for nm, row in structs.items():
        if row["kind"] != "target":
            continue
        t = str(types.get(nm, "") or "").upper()
        row["kind_basis"] = ("by its type" if target_basis(nm, t) == "type" else
                             f"by its name; {'typed ' + t if t else 'no type'}")
        if nm in outside_body:
            row["outside_body_fraction"] = outside_body[nm]
            row["evaluated_on"] = ("its part inside the body outline" if outside_body[nm] < 1.0 else
                                   "all of it (wholly outside the body outline: not judged)")


def _target_notes(structs: Mapping[str, dict]) -> list[str]:
    """Notes on the targets' classification and on a TPS D95 of 0 (its difference in % is not defined, so the D95
    level fails: said, not an unexplained "n/a")."""
    notes = []
    for nm, row in structs.items():
        if row["kind"] != "target":
            continue
        basis = row.get("kind_basis", "")
        if basis.startswith("by its name"):
            notes.append(f"ROI {nm!r} is judged as a target {basis} (its name starts with PTV/CTV/GTV/ITV): set its "
                         "RTROIInterpretedType in the structure set (PTV/CTV/GTV, or CONTROL for a helper ROI) to say "
                         "what it is")
        d95 = row.get("metrics", {}).get("D95", {})
        if row.get("outside_body_fraction", 0.0) < 1.0 and d95.get("tps_gy") == 0.0:
            notes.append(f"target {nm!r}: its TPS D95 is 0 (at least 5 % of its volume has no TPS dose), so its D95 "
                         "difference in % of it is not defined and the level fails; is the TPS dose this plan's, and "
                         "the structure set this CT's?")
    return notes


#: An organ at risk's noise-matched Dmean or D2 difference is named in a note (no verdict: organs at risk have no
#: action level) when it exceeds all three of these (audit 18b, F3: a +19 % / +21 % brainstem difference, an I-value
#: effect at a field's distal edge, was in the structure table only, under a PASS with 12 other notes):
#: OAR_NOTE_PCT % of its TPS value (the 3 % target dose level plus room for the DVH's voxel rounding on a small
#: organ); OAR_NOTE_RX_PCT % of the prescription (or of the target's TPS D50 where none is known), so that a large
#: relative difference of a dose far below the prescription (0.1 -> 0.12 Gy in a 60 Gy plan) is no note: the 2 % of
#: a dose gradient's clinical tolerance; and OAR_NOTE_SD noise SDs of the metric (the noise model's 1 sd,
#: compare.structure_stats), beyond which normal noise alone goes in about 1 of 370 metrics
OAR_NOTE_PCT = 5.0
OAR_NOTE_RX_PCT = 2.0
OAR_NOTE_SD = 3.0


def oar_notes(structs: Mapping[str, dict], prescription_gy: float | Mapping[str, float] | None,
              unit: str = "Gy") -> list[str]:
    """One note naming the organs at risk whose noise-matched Dmean or D2 (raw where noise matching did not run)
    differs from the TPS's beyond :data:`OAR_NOTE_PCT`, :data:`OAR_NOTE_RX_PCT` of ``prescription_gy`` (the
    highest where per target; None: the highest target TPS D50) and :data:`OAR_NOTE_SD` noise SDs; informational
    (the verdict is the action levels'), [] where none does."""
    rx = max(prescription_gy.values(), default=0.0) if isinstance(prescription_gy, Mapping) else prescription_gy
    rx_of = "the prescription"
    if not rx:
        rx = max((float(r["metrics"]["D50"]["tps_gy"]) for r in structs.values()
                  if r.get("kind") == "target" and "D50" in r.get("metrics", {})), default=0.0)
        rx_of = "the target's TPS D50"
    if not rx or not math.isfinite(rx):
        return []
    found = []
    for nm, row in structs.items():
        if row.get("kind") != "oar":
            continue
        said = []
        for k in ("Dmean", "D2"):
            m = row.get("metrics", {}).get(k)
            if not m or not m.get("tps_gy"):
                continue
            d = float(m.get("noise_matched_diff_pct", m["diff_pct"]))
            sd = float(m.get("noise_sd_pct", 0.0))
            gy = abs(d) / 100 * float(m["tps_gy"])
            if (math.isfinite(d) and abs(d) > OAR_NOTE_PCT and gy > OAR_NOTE_RX_PCT / 100 * rx
                    and not abs(d) <= OAR_NOTE_SD * sd):
                if float(m["tps_gy"]) < OAR_NOTE_RX_PCT / 100 * rx:   # % of a TPS value near 0 is noise (CSI F7)
                    said.append(f"{k} {d / 100 * float(m['tps_gy']):+.3g} {unit} ({m['tps_gy']:.3g} -> "
                                f"{m['mc_gy']:.3g} {unit}; the TPS value below {OAR_NOTE_RX_PCT:g} % of {rx_of})")
                else:
                    said.append(f"{k} {d:+.1f} % ({m['tps_gy']:.3g} -> {m['mc_gy']:.3g} {unit})")
        if said:
            found.append(f"{nm} {', '.join(said)}")
    if not found:
        return []
    return [f"organ(s) at risk whose dose differs beyond the MC's noise: {'; '.join(found)} (TPS -> MC; the "
            f"difference noise-matched, more than {OAR_NOTE_PCT:g} % of the TPS value, {OAR_NOTE_RX_PCT:g} % of "
            f"{rx_of} ({rx:.3g} {unit}) and {OAR_NOTE_SD:g} noise SD); organs at risk have no action level: review"]


def one_edge_rays_text(r: Mapping[str, Any]) -> str:
    """What a range result (compare.range_agreement) says of its rays with a distal R80 in one dose only: "of the
    118 rays with a distal R80 in the TPS dose, 53 have none in the MC's", and the reverse; "" where there are none.
    Such rays are counted outside the tolerance (``within_2mm``) and left out of the median: an MC that lost half a
    field read "100 % within 2 mm" of the half it kept (check review 2026-12-06, F2)."""
    said = []
    if r.get("rays_without_mc_edge"):
        said.append(f"of the {r['rays_tps']} rays with a distal R80 in the TPS dose, {r['rays_without_mc_edge']} "
                    "have none in the MC's")
    if r.get("rays_without_tps_edge"):
        said.append(f"{r['rays_without_tps_edge']} ray(s) with a distal R80 in the MC dose have none in the TPS's")
    return "; ".join(said)


def check_grid_covers(ref_dose: np.ndarray, body: np.ndarray, name: str, threshold_pct: float = 10.0) -> None:
    """Refuse a TPS dose grid that cuts through the irradiated body: dose above the threshold on the grid's
    faces inside the body means that dose outside the grid is missing from the comparison."""
    if not body.any():
        raise CheckInputError(f"the TPS dose grid of {name} does not overlap the body outline: the dose and the "
                              "patient do not belong together (or the grid is misplaced)")
    top = float(ref_dose[body].max())
    faces = {"z first": np.s_[0], "z last": np.s_[-1], "y first": np.s_[:, 0], "y last": np.s_[:, -1],
             "x first": np.s_[:, :, 0], "x last": np.s_[:, :, -1]}
    hit = []
    for nm, sl in faces.items():
        d = np.where(body[sl], ref_dose[sl], 0.0)
        if d.max(initial=0.0) > threshold_pct / 100 * top:
            hit.append(f"{nm} face ({100 * d.max() / top:.0f} % of the maximum)")
    if hit:
        raise CheckInputError(f"the TPS dose grid of {name} does not cover the irradiated body: there is dose above "
                              f"{threshold_pct:g} % inside the body on its {', '.join(hit)}, so dose outside the grid "
                              "would be missing from the check; export the dose on a grid that covers the body "
                              "(External) in the beams' paths")


def check_grids_cover(inp: CheckInputs, body: np.ndarray) -> None:
    """:func:`check_grid_covers` on each TPS dose the check compares: the plan dose (else the sum of the per-beam
    doses, the plan-level comparison's) and each per-beam dose against its own maximum, naming the beam.  The plan
    dose or the first beam's alone (``inp.reference``) let a grid that cuts through another beam's entrance pass
    with per-beam doses only, and that part of the beam go uncompared with no word (check review 2026-12-06, F1)."""
    beams = sorted(inp.beams.items())
    if inp.total is not None:
        check_grid_covers(inp.total.dose_gy_zyx, body, Path(inp.total.path).name)
    for b, d in beams:
        check_grid_covers(d.dose_gy_zyx, body, f"{Path(d.path).name} (beam {b}'s dose)")
    if inp.total is None and len(beams) > 1:   # overlapping beams: each within the threshold, the sum not always
        check_grid_covers(sum(d.dose_gy_zyx for _, d in beams), body,
                          f"the sum of the per-beam doses ({', '.join(Path(d.path).name for _, d in beams)})")


#: Where the D95 level fails and its raw, noise-matched and MC-corrected estimates (compare.d95_verdict) disagree
#: by more than this (percentage points), the check says the verdict is the noise's and asks for a rerun at a lower
#: uncertainty: at 1 % noise the three agree within about 1.6 (raw -1.6 % for a correct plan), at 2 % they spread by
#: 3-4 (tests/check/test_check_noise.py; the noise-matching audit's real runs).
D95_ESTIMATES_AGREE_PCT = 2.0


def d95_noise_could_decide(vals: Mapping[str, float], lims: Mapping[str, float]) -> bool:
    """Whether the MC's noise could turn a failed D95 level (:func:`compare.d95_verdict`): at least one of its
    estimates (raw, noise-matched, MC-corrected) is within its own limit (:func:`compare.d95_limits`).  Where every
    one fails, the estimates' spread is the error's (the MC-noise correction is a share of the dose, so a gross
    error spreads them too), not the noise's: no "the noise decides" note (audit 26, F1)."""
    return any(math.isfinite(x) and abs(x) <= lims[k] for k, x in vals.items())


def d95_decimals(vals: Mapping[str, float], lims: Mapping[str, float]) -> int | None:
    """The decimals of a D95 row's estimates and limits (:func:`level_text.level_decimals`, per estimate against its
    own limit: the MC-corrected one's is the level + 2 standard errors): the most any estimate needs, ``None`` (in
    full) only where one of them needs more than MAX_LEVEL_DECIMALS.  Before audit 26 (F3) each estimate's verdict
    against its own limit was tested against the level itself, so an MC-corrected +3.0247 % within its 3.42 % limit
    could not read as passing 3 % at any decimals, and the row was printed in full (+0.05293823079970631 %)."""
    decs = [level_decimals([(x, judged(x, lims[k], "|.| <="))], lims[k], "|.| <=") for k, x in vals.items()]
    return None if any(d is None for d in decs) else max(d for d in decs if d is not None)


#: How close (relative) an MC/TPS dose ratio must be to the constant RBE (1.1) or its inverse for the diagnosis to
#: name a DoseType mix-up: 1.5 %, half the 3 % dose levels, twice the ratio's noise at 1 % per voxel over the
#: high-dose region (the integral's noise is far smaller)
RBE_RATIO_TOL = 0.015


#: The constant-RBE test of a DoseType EFFECTIVE TPS dose (:func:`_variable_rbe_note`).  A TPS dose weighted with a
#: variable (LETd-dependent) RBE is higher than 1.1 x physical where the LETd is high, so its ratio to the MC's
#: 1.1 x physical dose rises with the MC's LETd.  The ratio is regressed on the LETd (dose-weighted least squares) in
#: the body voxels at or above RBE_TEST_DOSE_FRACTION of the TPS maximum where a shift of 1 mm changes the TPS dose, and
#: the MC's (smoothed over 3 voxels), by at most RBE_TEST_FLAT (|grad D| x 1 mm <= 2 % of D): there a range difference
#: or a shift moves little dose, while at the distal edges, where the LETd is highest, a 2 mm shift alone gave a slope
#: of 5-7 % per keV/um (on the TPS's flat region alone still 2.5 % for a 4 mm shift, tests/check).  On the
#: demo plan (re-measured 2026-12-06 after the track-end LET, scripts/rbe_slope_demo.py: two demo runs of 1e7
#: primaries, 2 mm voxels, about 8300 voxels qualify, the MC at 1.3 % noise): a McNamara-weighted "TPS" dose gives
#: +4.4 % per keV/um (alpha/beta 2 Gy) and +2.1 % (alpha/beta 10 Gy), standard error 0.04 %; 1.1 x physical
#: -0.02 %, shifted by 2 mm along each axis -0.4 to +0.01 %.  The MC's noise biases the slope down (its dose and
#: its LETd fluctuate together): at 5.7 % noise (5e5 primaries) by about 1.5 % per keV/um (McNamara alpha/beta 2
#: Gy then +1.5 %, 1.1 x physical -1.5 %).  The note needs the rise to exceed
#: RBE_TEST_SLOPE_PCT per keV/um (relative to the mean ratio; 1.5 x the largest constant-RBE value measured before
#: the re-measurement, 1.3 %, still 5 x the largest now, 0.4 %), and
#: RBE_TEST_SIGMAS standard errors of the slope (noise alone cannot make it: 5 sigma is 1 % at 1200 voxels, 4 %
#: noise),
#: and the LETd of the voxels to spread over RBE_TEST_LET_SPREAD keV/um (10th to 90th percentile) in at least
#: RBE_TEST_MIN_VOXELS voxels.  A variable RBE at a high alpha/beta (10 Gy) may stay below the limit (+1.9 % on the
#: test's synthetic field); the constant-RBE note (_constant_rbe_note) then still names the assumption if it fails.
RBE_TEST_DOSE_FRACTION = 0.5
RBE_TEST_FLAT = 0.02
RBE_TEST_SLOPE_PCT = 2.0
RBE_TEST_SIGMAS = 5.0
RBE_TEST_LET_SPREAD = 1.0
RBE_TEST_MIN_VOXELS = 200


def let_ratio_slope(ref: np.ndarray, mc_dose: np.ndarray, let: np.ndarray, body: np.ndarray,
                    axes: Sequence[np.ndarray]) -> dict | None:
    """The TPS/MC dose ratio regressed on the MC's LETd (keV/um) in the flat high-dose region (see
    :data:`RBE_TEST_DOSE_FRACTION`): ``slope_pct_per_kev_um`` (the slope relative to the dose-weighted mean ratio,
    in % per keV/um), its standard error ``slope_se_pct``, ``voxels`` and the LETd's 10th and 90th percentiles
    ``let_p10_p90``; None where too few voxels qualify."""
    ref = np.asarray(ref, np.float64)
    top = float(ref[body].max(initial=0.0))
    if not top > 0:
        return None
    from scipy.ndimage import uniform_filter

    def flat(d: np.ndarray) -> np.ndarray:
        """Where a shift of 1 mm changes ``d`` by at most RBE_TEST_FLAT of it."""
        grads = [np.gradient(d, np.asarray(a, float), axis=k) if d.shape[k] > 1 else np.zeros_like(d)
                 for k, a in enumerate(axes)]
        return np.sqrt(sum(gk * gk for gk in grads)) * 1.0 <= RBE_TEST_FLAT * d

    # flat in both doses (the MC's smoothed over 3 voxels against its noise): a shift of one against the other then
    # leaves no voxel of one's edge in the other's plateau
    mc_dose = np.asarray(mc_dose, np.float64)
    sel = body & (ref >= RBE_TEST_DOSE_FRACTION * top) & (mc_dose > 0) & flat(ref) & flat(uniform_filter(mc_dose, 3))
    n = int(sel.sum())
    if n < RBE_TEST_MIN_VOXELS:
        return None
    x = np.asarray(let, np.float64)[sel]
    y = ref[sel] / mc_dose[sel]
    w = np.asarray(mc_dose, np.float64)[sel]
    w = w / w.sum()
    xm, ym = float(w @ x), float(w @ y)
    sxx = float(w @ (x - xm) ** 2)
    if not sxx > 0:
        return None
    b = float(w @ ((x - xm) * (y - ym))) / sxx
    res = y - ym - b * (x - xm)
    # the weighted least squares slope's standard error (sandwich form: the residuals' own spread, not an assumed one)
    se = float(np.sqrt(np.sum((w * (x - xm) * res) ** 2))) / sxx
    p10, p90 = np.percentile(x, [10, 90])
    return {"slope_pct_per_kev_um": 100 * b / ym, "slope_se_pct": 100 * se / ym, "voxels": n,
            "let_p10_p90": [float(p10), float(p90)], "mean_ratio_tps_mc": ym}


def _variable_rbe_note(ref: np.ndarray, mc: MCDose, body: np.ndarray, axes: Sequence[np.ndarray]) -> str | None:
    """A DoseType EFFECTIVE TPS dose whose ratio to the MC's constant-RBE dose rises clearly with the MC's LETd
    (:func:`let_ratio_slope`, the limits at :data:`RBE_TEST_DOSE_FRACTION`): the note that the TPS dose may carry a
    variable RBE, which the check does not model; None otherwise, or without the MC's LETd."""
    let = getattr(mc, "let_d_kev_um_zyx", None)
    if let is None:
        return None
    fit = let_ratio_slope(ref, mc.total_gy_zyx, let, body, axes)
    if fit is None:
        return None
    s, se, (p10, p90) = fit["slope_pct_per_kev_um"], fit["slope_se_pct"], fit["let_p10_p90"]
    if not (s > RBE_TEST_SLOPE_PCT and s > RBE_TEST_SIGMAS * se and p90 - p10 >= RBE_TEST_LET_SPREAD):
        return None
    k = float((getattr(mc, "provenance", None) or {}).get("rbe") or CLINICAL_RBE)
    return (f"the TPS/MC dose ratio rises with the MC's LETd: {s:+.1f} % per keV/um (standard error {se:.1f} %) over "
            f"{fit['voxels']} voxels of the flat high-dose region, LETd {p10:.1f}-{p90:.1f} keV/um, where a shift or "
            "range difference of 1-2 mm moves little dose: the TPS's EFFECTIVE dose may have been computed with a "
            f"variable RBE model (LETd-dependent, e.g. McNamara or Wedenberg), while this check assumes a constant RBE "
            f"{k:g}; its range and dose differences then come from the RBE model, not the beam or the CT; export the "
            "physical dose from the planning system and check that (--dose-type physical), or check the plan's "
            "constant-RBE dose")


#: The water/medium test (:func:`water_medium_test`): does the TPS dose agree better with the MC's dose to medium
#: than with its dose to water (or the reverse) where the two differ?  Both are scored in every MC run (D_w = D_m x
#: s_w,m per deposit); their ratio r = D_w/D_m per voxel on the TPS grid is the MC's own, with almost no noise (both
#: from the same protons).  In the body voxels where the TPS dose and the MC dose are at least WM_TEST_DOSE_FRACTION
#: of the TPS maximum, e = ln(TPS/MC) is taken relative to its median in soft tissue (|ln r| <= WM_TEST_SOFT: water,
#: brain, muscle; a global scale or calibration offset drops out) and compared, in the voxels where the two doses
#: differ (|ln r| >= WM_TEST_BONE: bone, r 1.08-1.16, and metal; fat, 0.97, left out), with ln r: the fraction
#: f = median(e) / median(ln r) there is 0 for the right quantity and -1 (compared as water, the TPS dose to medium)
#: or +1 (compared as medium, the TPS dose to water) for the wrong one.  The mismatch is named where the TPS dose is
#: nearer the other quantity (f past WM_TEST_FRACTION = 0.5, the midpoint), in at least WM_TEST_MIN_VOXELS voxels of
#: each kind, and the bone shift median(e) exceeds WM_TEST_SIGMAS x its standard error, taken as 1.2533 x the
#: robust spread (1.4826 x MAD) of e / sqrt(voxels) of each group, combined, x AGGREGATE_NOISE_FACTOR (3) for the
#: MC's correlated voxel noise.  A correct dose cannot trip it from noise: the bone shift must reach half of the
#: water/medium ratio (>= 2.5 %, 4-7 % in bone) and 4 x 3 = 12 independent-voxel standard errors (at 3 % noise per
#: voxel and 30 voxels, 0.7 % each: 8 %); a real difference of the planning system in bone of less than half the
#: ratio (4-7 %) is not named either.  Measured on the dose-to-water audit's head case (5-year-old head, a lateral
#: field through the skull and temporal bone, MC and "TPS" each at ~2 %): its dose to medium checked as water gives
#: f = -1.07 (bone -8.9 %, standard error 0.4 %, 698 bone and 6181 soft-tissue voxels), named; checked as medium,
#: and its dose to water checked as water, f = -0.02 and -0.03; its dose to water checked as medium f = +1.00.
WM_TEST_DOSE_FRACTION = 0.5
WM_TEST_SOFT = 0.02
WM_TEST_BONE = 0.05
WM_TEST_FRACTION = 0.5
WM_TEST_SIGMAS = 4.0
WM_TEST_MIN_VOXELS = 30


def water_medium_test(ref: np.ndarray, mc_dose: np.ndarray, water_to_medium: np.ndarray, body: np.ndarray,
                      compared: str) -> dict | None:
    """The water/medium test of the TPS dose ``ref`` against the MC dose ``mc_dose`` compared as dose to ``compared``
    ("water" or "medium"), with the MC's D_w/D_m per voxel ``water_to_medium`` (see :data:`WM_TEST_DOSE_FRACTION`):
    ``fraction`` f (0: the compared quantity fits; -1 / +1: the other), ``bone_shift_pct`` (median TPS/MC in bone
    relative to soft tissue, in %), ``se_pct`` (its standard error, x the correlated-noise factor), ``voxels_bone``,
    ``voxels_soft``, ``ratio_bone`` (median D_w/D_m there, with its 5th-95th percentiles ``ratio_bone_p5_p95``) and
    ``tps_is_other``: whether the TPS dose is probably the other quantity.  None where too few voxels qualify."""
    ref = np.asarray(ref, np.float64)
    mc_dose = np.asarray(mc_dose, np.float64)
    top = float(ref[body].max(initial=0.0))
    r = np.asarray(water_to_medium, np.float64)
    if not top > 0 or r.shape != ref.shape:
        return None
    sel = body & (ref >= WM_TEST_DOSE_FRACTION * top) & (mc_dose >= WM_TEST_DOSE_FRACTION * top) & (r > 0)
    lr = np.log(np.where(sel, r, 1.0))
    soft, bone = sel & (np.abs(lr) <= WM_TEST_SOFT), sel & (np.abs(lr) >= WM_TEST_BONE)
    ns, nb = int(soft.sum()), int(bone.sum())
    if ns < WM_TEST_MIN_VOXELS or nb < WM_TEST_MIN_VOXELS:
        return None
    e = np.log(np.where(sel, ref, 1.0) / np.where(sel, mc_dose, 1.0))
    es, eb = e[soft], e[bone]
    a = float(np.median(es))
    shift, lb = float(np.median(eb - a)), float(np.median(lr[bone]))

    def se(v: np.ndarray) -> float:   # the standard error of a median, from a robust spread (normal noise)
        return 1.2533 * 1.4826 * float(np.median(np.abs(v - np.median(v)))) / math.sqrt(v.size)

    err = AGGREGATE_NOISE_FACTOR * math.hypot(se(es), se(eb))
    f = shift / lb
    sign = -1.0 if compared == "water" else 1.0
    other = sign * f >= WM_TEST_FRACTION and abs(shift) >= WM_TEST_SIGMAS * err
    p5, p95 = np.percentile(r[bone], [5, 95])
    return {"fraction": f, "bone_shift_pct": 100 * math.expm1(shift), "se_pct": 100 * err, "voxels_bone": nb,
            "voxels_soft": ns, "ratio_bone": math.exp(lb), "ratio_bone_p5_p95": [float(p5), float(p95)],
            "compared": compared, "tps_is_other": bool(other)}


def _water_medium_note(ref: np.ndarray, mc: MCDose, body: np.ndarray) -> str | None:
    """The note (and a warning) where :func:`water_medium_test` finds the TPS dose nearer the other of dose to water
    and dose to medium than the one compared; None otherwise, or without the MC's D_w/D_m (an MC dose reused from
    before 2026-12-06)."""
    r = getattr(mc, "water_to_medium_zyx", None)
    compared = str((getattr(mc, "provenance", None) or {}).get("dose_to") or "water")
    if r is None or compared not in ("water", "medium"):
        return None
    t = water_medium_test(ref, mc.total_gy_zyx, r, body, compared)
    if t is None or not t["tps_is_other"]:
        return None
    other = "medium" if compared == "water" else "water"
    p5, p95 = t["ratio_bone_p5_p95"]
    note = (f"the TPS dose is probably dose to {other}, compared here as dose to {compared}: in the "
            f"{t['voxels_bone']} voxels of bone (or metal) of the high-dose region, where the MC's dose to water is "
            f"{t['ratio_bone']:.3f} x its dose to medium (5th-95th percentile {p5:.3f}-{p95:.3f}), the TPS dose is "
            f"{t['bone_shift_pct']:+.1f} % (standard error {t['se_pct']:.1f} %) off the MC's relative to the "
            f"{t['voxels_soft']} soft-tissue voxels, {abs(t['fraction']):.2f} of the water/medium ratio (0: the "
            f"quantity compared, 1: the other); run the check again with --dose-to {other}, or export the dose to "
            f"{compared} from the planning system (DICOM does not say which it is)")
    warn(note, McprotonWarning)
    return note


def _constant_rbe_note(mc: MCDose) -> str:
    """The constant-RBE assumption, named among the possible causes where an EFFECTIVE TPS dose fails the check."""
    k = float((getattr(mc, "provenance", None) or {}).get("rbe") or CLINICAL_RBE)
    return (f"the TPS dose is DoseType EFFECTIVE (RBE-weighted), and the check compares it with the MC's physical dose "
            f"x a constant RBE {k:g}: if the planning system used a variable RBE model (DICOM does not say which), "
            "the doses differ by the RBE model, most at the distal edges (a longer biological range); export the "
            "physical dose and check that (--dose-type physical)")


def _diagnose(ref: np.ndarray, mc: MCDose, body: np.ndarray, axes: Sequence[np.ndarray], inputs: CheckInputs,
              beams_in_tps: dict[int, np.ndarray], ranges: dict[int, dict] | None = None,
              limit_mm: float = 1.0, beam_dose: dict[int, dict] | None = None,
              ratio_limit_pct: float = 3.0, noise_ok: bool = True,
              regions: Mapping[int, dict] | None = None,
              beam_regions: Mapping[int, tuple[np.ndarray, float] | None] | None = None,
              direction: tuple[list[str], set[int]] | None = None) -> list[str]:
    """Likely causes of a disagreement (a global scale, a fraction mismatch, a missing beam, a per-beam TPS dose
    along another axis than its beam (:func:`_direction_notes`: that beam's dose level, centroid and range notes are
    then left out), one beam's dose level off, a range shifter with tissue upstream of its face
    (MCDose.shifter_notes), a shift, a uniform range difference in a beam; the default calibration is named once
    the range rows are judged: :func:`generic_calibration_note`).

    ``beam_dose``: the per-beam MC/TPS dose ratios (compare.beam_dose_ratio); a beam beyond ``ratio_limit_pct`` is
    named before any centroid note (``beam_regions``: each per-beam TPS dose's compare.beam_ratio_region, where
    computed).  ``beams_in_tps``: the per-beam TPS doses; with them the high-dose centroid is
    compared per beam (:func:`_centroid_notes`), else per field region (``regions``, :func:`field_regions`:
    :func:`_field_centroid_notes`) and, where none is named, on the plan dose; not at all where the MC's
    uncertainty level failed (``noise_ok`` False: the 50 % boundary then moves with the noise).  Where a beam is
    named as missing (:func:`missing_beams`, named first) the field regions' and the plan dose's centroids are not
    compared (the missing field moves them), the per-beam ones still are (a beam with its own TPS dose: before the
    check review of 2026-12-06, finding 9, its genuine shift went unnamed there).  ``direction``: the result of
    :func:`_direction_notes` where the caller has it (check() needs its beams for the calibration note too)."""
    notes = []
    sel = body & (ref >= 0.1 * ref[body].max())
    s_ref, s_mc = float(ref[sel].sum()), float(mc.total_gy_zyx[sel].sum())
    if s_ref <= 0:
        return notes
    ratio = s_mc / s_ref
    if abs(ratio - 1) > 0.02:
        notes.append(f"the MC dose is {ratio:.3f} x the TPS dose (sum over the body voxels above 10 %)")
        decade = round(math.log10(ratio)) if ratio > 0 else 0
        if decade != 0 and abs(math.log10(ratio) - decade) < math.log10(1.1):
            notes.append(f"the ratio {ratio:.3g} is close to 10^{decade}: a unit slip, most likely in the beam "
                         "model's protons per MU (a power of ten in its protons_per_mu column) or the plan's "
                         "meterset (MU read as protons or the reverse: PrimaryDosimeterUnit)")
    # the constant RBE: a physical dose compared as RBE-weighted or the reverse (a DoseType mix-up, or the wrong
    # --dose-type) puts the two exactly 1.1 apart (rtdose audit F2)
    k = float((getattr(mc, "provenance", None) or {}).get("rbe") or 1.0)
    k = k if k > 1 else CLINICAL_RBE
    if abs(ratio - 1) > 0.02 and (abs(ratio / k - 1) < RBE_RATIO_TOL or abs(ratio * k - 1) < RBE_RATIO_TOL):
        notes.append(f"the ratio {ratio:.3g} is close to {'1/' if ratio < 1 else ''}{k:g}, the constant RBE: the "
                     f"TPS dose is probably {'RBE-weighted' if ratio < 1 else 'physical'} while compared as "
                     f"{'physical' if ratio < 1 else 'RBE-weighted'}; check the RT Dose's DoseType "
                     "and --dose-type (physical / effective) and --rbe")
    if getattr(inputs, "dose_type", None) == "EFFECTIVE" and (note := _variable_rbe_note(ref, mc, body, axes)):
        notes.append(note)   # before the centroid and range notes, which it explains (rbe audit F1)
    if (note := _water_medium_note(ref, mc, body)) is not None:
        notes.append(note)   # a bone-only difference: before the centroid and range notes (dose-to-water audit F1)
    n = inputs.fractions
    if n > 1 and (abs(ratio * n - 1) < 0.1 or abs(ratio / n - 1) < 0.1):
        notes.append(f"the ratio {ratio:.3g} is close to {'1/' if ratio < 1 else ''}{n}, the plan's number of "
                     "fractions: the TPS dose is probably of one fraction while the MC has all (or the reverse); "
                     "check DoseSummationType and use fractions = 'one' / 'all'")
    gone = [(b, lost) for b, lost in missing_beams(ref, mc, body) if b not in beams_in_tps]
    for b, lost in gone:   # before any centroid note: a missing field moves the plan dose's centroid too
        notes.append(f"the TPS dose matches the MC dose without beam {b} (voxel by voxel, far better than the MC "
                     f"total or without any other beam; over beam {b}'s high-dose region the TPS lacks "
                     f"{100 * lost:.0f} % of its MC dose): beam {b} seems to be missing from the TPS dose (or from "
                     "the plan the TPS computed)")
    notes += [f"a range shifter inside the patient: {n}" for n in getattr(mc, "shifter_notes", None) or []]
    turned, other_way = direction if direction is not None else _direction_notes(mc, body, axes, beams_in_tps)
    # (named before the notes it explains, audit 30)
    notes += turned
    notes += _swapped_beam_notes(mc, body, beams_in_tps, beam_dose or {}, inputs, ratio_limit_pct, beam_regions)
    notes += _beam_dose_notes({b: r for b, r in (beam_dose or {}).items() if b not in other_way}, ranges or {},
                              ratio_limit_pct, limit_mm)
    aimed = {b: d for b, d in beams_in_tps.items() if b not in other_way}
    if noise_ok and aimed:   # per beam, each its own TPS dose: a missing other beam moves none of them (check review
        notes += _centroid_notes(ref, mc, body, axes, aimed)   # 2026-12-06, F9); none where every one is named turned
        # or reversed: an empty dict would compare the plan dose's centroid, a "shift" the direction explains (audit 31)
    if noise_ok and not gone:   # a missing beam explains a moved centroid of the plan dose: not also called a shift
        field_notes = _field_centroid_notes(ref, mc, axes, regions or {})
        notes += field_notes
        if not field_notes and not beams_in_tps:   # the plan dose's centroid: only where no field's is named
            notes += _centroid_notes(ref, mc, body, axes, {})
    uniform = [note for b, r in sorted((ranges or {}).items()) if r.get("same_rays_as") is None
               and b not in other_way and (note := uniform_range_note(range_label(b, r), r, limit_mm))]
    notes += uniform
    return notes


def diagnostic_kinds(diagnostics: Sequence[str], causes: Iterable[str]) -> list[str]:
    """One kind per diagnostic (CheckResult.diagnostic_kinds): "cause" for the notes that explain a level
    (``causes``: _diagnose's ratio, beam, centroid, range and range-shifter notes, beams crossing material outside the
    External, the TPS's beams not adding up, the D95 and range noise notes, a --time-limit stop, the CT not the
    planning series, the constant RBE of an EFFECTIVE dose), "remark" for the others (an unchecked patient position,
    prescription and structure notes, dose in air outside the body, ROIs left out of the table, ...): before, all of
    them stood under "Likely causes" of a FAIL, the real cause last (audit 18b F6)."""
    cause = set(causes)
    return ["cause" if d in cause else "remark" for d in diagnostics]


def not_planning_ct_diagnostics(inp: CheckInputs, checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """[the note] where the CT read is not the series the structure set was drawn on (``inp.ct_not_drawn_on``)
    and a range or dose level failed (any level but the MC's own uncertainty): the pairing, not the physics, is
    then the first suspect (audit 18 course F2: a -2.2 mm range difference on a re-scan read as an HLUT problem)."""
    note = getattr(inp, "ct_not_drawn_on", "")
    failed = any(not c["passed"] and c.get("level") != "mc_uncertainty_max_pct" for c in checks)
    return [note] if note and failed else []


#: A per-beam TPS file is named as another beam's dose (:func:`_swapped_beam_notes`) only where that beam's MC dose
#: fits it clearly better than its own beam's MC dose could: each scaled to the file (by its median voxel ratio over
#: the file's high-dose region, as an MU or output error would scale it), the other's mean absolute difference from
#: the file over that region is below this fraction of the own beam's, and below it by more than the dose level.
#: Two beams of alike doses (a field split in two for the MU limit, a repeated field) fit the file alike (both
#: differences the MC's noise, or nothing), so a file matching the other's MC is no sign of a mislabel: there the
#: beam's own MU/output is the cause to name (check review b of audit 26, R1: a real 5 % MU error of one of two
#: identical fields was called a mislabelled file).  A swap of two different fields leaves the own beam's MC tens of
#: percent off the file's shape.
SWAP_FIT_FACTOR = 0.5


def _misfit(ref: np.ndarray, ev: np.ndarray, ratio: float | None = None) -> float:
    """The mean absolute difference of the MC dose ``ev`` scaled to the TPS dose ``ref`` (by ``ratio``, their median
    voxel ratio, computed where not given) from ``ref``, relative to ``ref``'s mean (the voxels of one region): 0 for
    the same shape at any scale."""
    m = float(np.median(ev / ref)) if ratio is None else ratio
    return float(np.abs(ev / m - ref).sum() / ref.sum()) if m > 0 else math.inf


def _swapped_beam_notes(mc: MCDose, body: np.ndarray, beams_in_tps: Mapping[int, np.ndarray],
                        beam_dose: Mapping[int, dict], inputs: CheckInputs, limit_pct: float,
                        beam_regions: Mapping[int, tuple[np.ndarray, float] | None] | None = None) -> list[str]:
    """Per-beam TPS doses paired with the wrong beam (audit 26, F6: two files' ReferencedBeamNumbers exchanged in
    an export or a renaming read as "MU/output ... or the beam model's calibration" and "a shift of the beam"): each
    beam whose dose level (compare.beam_dose_ratio) is beyond ``limit_pct`` is compared with the MC doses of the
    other beams, on its TPS dose's high-dose region; one that agrees within the level, in its median voxel ratio and
    in its integral ratio over that region, and fits the file's shape clearly better than the beam's own MC dose
    (:data:`SWAP_FIT_FACTOR`: not where the two beams' doses are alike), is named, and two beams whose files each
    match the other's MC dose are named as swapped.

    The region of each failed beam is its TPS dose's (compare.beam_ratio_region: ``beam_regions[b]`` where the
    caller has it, else made here once per failed beam) and each MC dose is read on its voxels only: before, each
    comparison averaged the whole TPS grid again, (failed beams) x (beams - 1) times (check review b of audit 26,
    R2: 30 full-grid comparisons for a 6-beam plan whose beams all failed by a global scale)."""
    failed = [b for b, r in sorted(beam_dose.items()) if r.get("voxels") and math.isfinite(r.get("diff_pct", math.nan))
              and abs(r["diff_pct"]) > limit_pct and b in beams_in_tps]
    match: dict[int, tuple[int, dict]] = {}
    known = beam_regions or {}

    def on(d: np.ndarray, at: np.ndarray) -> np.ndarray:   # a dose's voxels ``at`` (flat indices), float64
        return np.asarray(d).ravel()[at].astype(np.float64)

    for b in failed:
        found = known[b] if b in known else beam_ratio_region(beams_in_tps[b], body)
        if found is None:
            continue
        at = np.flatnonzero(found[0])   # the region's voxels: each MC dose read there only
        ref = on(beams_in_tps[b], at)
        own = _misfit(ref, on(mc.beams_gy_zyx[b], at)) if b in mc.beams_gy_zyx else math.inf
        best = None
        for o, ev in sorted(mc.beams_gy_zyx.items()):
            if o == b:
                continue
            e = on(ev, at)
            ratio, integral = float(np.median(e / ref)), float(e.sum() / ref.sum())
            if not (abs(ratio - 1) * 100 <= limit_pct and abs(integral - 1) * 100 <= limit_pct):
                continue
            fit = _misfit(ref, e, ratio)
            if (fit < SWAP_FIT_FACTOR * own and own - fit > limit_pct / 100
                    and (best is None or abs(ratio - 1) < abs(best[1]["ratio"] - 1))):
                best = (o, {"ratio": ratio, "integral_ratio": integral})
        if best is not None:
            match[b] = best
    tps_beams = getattr(inputs, "beams", None) or {}

    def name(b: int) -> str:
        return Path(tps_beams[b].path).name if b in tps_beams else f"the TPS dose of beam {b}"

    def fits(b: int) -> str:
        o, r = match[b]
        return (f"{name(b)} matches the MC dose of beam {o} (MC/TPS {r['ratio']:.4f}, integral "
                f"{r['integral_ratio']:.4f})")

    notes, said = [], set()
    for b in sorted(match):
        o = match[b][0]
        if b in said:
            continue
        if match.get(o, (None,))[0] == b:   # each file the other beam's dose: swapped
            notes.append(f"the TPS doses of beams {b} and {o} look swapped: {fits(b)} and {fits(o)}, not their own "
                         f"beams' (MC/TPS {beam_dose[b]['ratio']:.4f} and {beam_dose[o]['ratio']:.4f}): their "
                         "ReferencedBeamNumbers (or the files) exchanged in the export or a renaming? Give each "
                         "beam's own dose")
            said |= {b, o}
        else:
            notes.append(f"{fits(b)}, not that of beam {b}, which it names (MC/TPS {beam_dose[b]['ratio']:.4f}): it "
                         f"looks like beam {o}'s dose, its ReferencedBeamNumber wrong or the file of another beam "
                         f"given as beam {b}'s? Give beam {b}'s own dose")
            said.add(b)
    return notes


def _beam_dose_notes(beam_dose: Mapping[int, dict], ranges: Mapping[int, dict], limit_pct: float,
                     limit_mm: float) -> list[str]:
    """Each beam whose MC/TPS dose ratio (compare.beam_dose_ratio) is beyond ``limit_pct``, named with its size and
    likely causes; where its distal edge differs beyond ``limit_mm`` too, that is named as the first suspect (a
    range difference moves dose within the high-dose region as well)."""
    notes = []
    for b, r in sorted(beam_dose.items()):
        if not r.get("voxels") or not math.isfinite(r.get("diff_pct", math.nan)) or abs(r["diff_pct"]) <= limit_pct:
            continue
        d = r["diff_pct"]
        rng = ranges.get(b, {})
        med = rng.get("noise_matched_median_mm", rng.get("median_mm"))
        also = (f"; its distal edge differs by {med:+.1f} mm too: a range difference changes the dose within the "
                "high-dose region as well, so look at the range first" if rng.get("evaluable") and med is not None
                and math.isfinite(med) and abs(med) > limit_mm else "")
        notes.append(f"beam {b}'s dose is {abs(d):.1f} % {'above' if d > 0 else 'below'} the TPS's (MC/TPS "
                     f"{r['ratio']:.4f}, the median voxel ratio over its high-dose region, {r['voxels']} voxels): its "
                     "MU/output in the plan the TPS computed, or the beam model's calibration (protons per MU at "
                     f"its energies){also}")
    return notes


#: The beam-direction note (:func:`_direction_notes`, audit 30 realdata F1): a plan beam within DIRECTION_AXIS_DEG of
#: a grid axis whose MC depth-dose profile overlaps the TPS beam dose's profile along a perpendicular grid axis by at
#: least DIRECTION_MATCH (1 - half the L1 distance of the two area-normalised profiles, isocentre-relative) and by
#: DIRECTION_MARGIN more than along the beam's own axis.  Measured: APTG plan03 as written (RayStation's doses of the
#: base plan, whose fields run along y; the plan's along x): 0.987 along y against 0.645 along x, both fields; plan06
#: (the right direction, 2e5 primaries): 0.90 along its own axis, <= 0.63 across, and <= 0.63 across with the MC
#: moved by -35 to +60 mm along the beam (a range error).  A reversed beam (the same axis, the other sense) is not
#: judged by these overlaps, which are taken at the isocentre (a depth dose mirrored about it resembles one moved by
#: 15 mm: 0.89 against 0.73 on plan06); it is by DIRECTION_REVERSED_MATCH's, each at its best shift (audit 31).
#: A turned dose is turned both ways: its profile along the plan's beam axis must also match the MC's lateral profile
#: along the axis named (either sense) by DIRECTION_LATERAL_MATCH, and better than the MC's depth profile (review R-b
#: R1: a target 20 mm off the isocentre laterally whose MC SOBP stopped 20 mm short, a range error, matched the TPS's
#: lateral profile by 98 % against 64 % along the beam and was called a turned dose; its TPS profile along the beam
#: is a depth dose, which matches no lateral profile).  Measured: APTG plan03 as written 0.992 and 0.991 (fields 1, 2);
#: that range-error case 0.64; over 150 synthetic box SOBPs (fields 30-60 mm, 0-20 mm off the isocentre, body surface
#: 20-60 mm upstream) turned to +-z, 145 named with or without this condition, and of the same not turned with the
#: SOBP 10-25 mm short or long, 8 named without it (0.8 left 2: a 60 mm cube 20 mm under the surface), none with it.
DIRECTION_AXIS_DEG = 2.0
DIRECTION_MATCH = 0.9
DIRECTION_MARGIN = 0.2
DIRECTION_LATERAL_MATCH = 0.9
#: A reversed beam (:func:`_direction_notes`, audit 31 direction R3): the TPS dose of a beam along a grid axis that
#: enters from the other side (a gantry angle 180 deg apart, HFS read as FFS or HFP) is named where its profile along
#: the beam's axis matches the MC's depth-dose profile mirrored, at the best shift (:func:`_best_shift_overlap`), by
#: at least DIRECTION_REVERSED_MATCH and by DIRECTION_REVERSED_MARGIN more than the MC's own profile at its best shift
#: (a range error moves or stretches a depth dose, it does not put its entrance plateau beyond its peak), and its
#: lateral profiles are the MC's (DIRECTION_LATERAL_MATCH, either sense, on both axes across the beam).  Measured on
#: box SOBPs (4 mm grid; body 140-200 mm thick, surface 20-60 mm from the grid edge; SOBP 30-60 mm wide, entrance
#: plateau 0.3-0.8 of it; field 30-60 mm, 0-20 mm off the isocentre; 150 draws, seed 31): reversed (the same depths
#: from the other surface) 136 of 150 named (mirrored fit 0.956-1.000, margin 0.05-0.37: the 14 missed have a short
#: or high plateau); of the same draws the right way round, none named in 700: a range error of 10-25 mm (margin at
#: most +0.007), depths stretched 3-10 %, the SOBP 5-15 mm wider or narrower, the plateau +-0.05-0.15 (each 150,
#: margin at most -0.04), the dose x 0.7 and a lateral shift of 8 mm (50 each).  Real doses: plan06 (RayStation, the
#: right direction) 0.968 mirrored against 0.995 kept, and with the MC moved -35..+60 mm along the beam at most
#: +0.002: none named; plan03's turned doses 0.87 both ways: not named reversed (named turned).  Not found: plan06's
#: RayStation dose flipped along its beam (0.985 against 0.966): its depth dose behind a range shifter is nearly
#: symmetric, so the direction cannot be told from it (the note is then not given, as for any other beam).
DIRECTION_REVERSED_MATCH = 0.9
DIRECTION_REVERSED_MARGIN = 0.1
_AXIS_NAMES = ("z", "y", "x")   # the dose arrays' axes (z, y, x)


def _profile_overlap(p: np.ndarray, q: np.ndarray) -> float:
    """1 - half the L1 distance of two profiles each normalised to unit area: 1 for the same shape at any scale, 0
    for disjoint ones (0 where either is empty)."""
    sp, sq = float(p.sum()), float(q.sum())
    if not (sp > 0 and sq > 0):
        return 0.0
    return 1.0 - 0.5 * float(np.abs(p / sp - q / sq).sum())


def _best_shift_overlap(p: np.ndarray, q: np.ndarray) -> float:
    """:func:`_profile_overlap` of ``p`` moved by whole samples onto ``q``, at the best such move (both profiles on one
    sampling): 1 for the same shape anywhere along the profile; 0 where either is empty."""
    sp, sq = float(p.sum()), float(q.sum())
    if not (sp > 0 and sq > 0):
        return 0.0
    p, q = p / sp, q / sq
    ip, iq = np.flatnonzero(p), np.flatnonzero(q)
    p = p[ip[0]:ip[-1] + 1]   # p's support, placed at each offset where it meets q's
    n = p.size
    qq = np.concatenate([np.zeros(n), q, np.zeros(n)])
    best = 0.0
    for j in range(int(iq[0]) + 1, int(iq[-1]) + n + 1):
        w = qq[j:j + n]   # q under p; the rest of q's unit area lies outside p
        best = max(best, 1.0 - 0.5 * (float(np.abs(p - w).sum()) + 1.0 - float(w.sum())))
    return best


def direction_unjudged(mc: MCDose, beams_in_tps: Iterable[int]) -> dict[int, float]:
    """The beams with a per-beam TPS dose whose direction :func:`_direction_notes` does not judge, each with its
    angle (deg) from the nearest grid axis: beyond :data:`DIRECTION_AXIS_DEG` (OpenTPS's gantry 225, a couch angle).
    The check says so where such a beam's rows fail (audit 31 direction R4: they were passed over in silence)."""
    out = {}
    for b in sorted(beams_in_tps):
        info = (getattr(mc, "beam_meta", {}) or {}).get(b, {})
        if info.get("beam_direction") is None or b not in mc.beams_gy_zyx:
            continue
        u = np.asarray(info["beam_direction"], float)
        off = math.degrees(math.acos(min(1.0, float(np.max(np.abs(u))) / float(np.linalg.norm(u)))))
        if off > DIRECTION_AXIS_DEG:
            out[b] = off
    return out


def direction_unjudged_notes(mc: MCDose, beams_in_tps: Iterable[int], checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """A remark for each beam of :func:`direction_unjudged` with a failed row of its own ("beam N: ..."): the
    direction test did not look at it, so a TPS dose computed in another direction is not ruled out."""
    notes = []
    for b, off in direction_unjudged(mc, beams_in_tps).items():
        if not any(not c["passed"] and str(c.get("quantity", "")).startswith(f"beam {b}:") for c in checks):
            continue
        info = mc.beam_meta[b]
        g, cc = info.get("gantry_angle_deg"), info.get("couch_angle_deg")
        setup = f" (gantry {float(g):g}, couch {float(cc):g})" if g is not None and cc is not None else ""
        notes.append(f"beam {b}{setup}: whether the TPS computed this beam's dose in the plan's direction was not "
                     "judged: the check tells a turned or reversed per-beam dose only for a beam within "
                     f"{DIRECTION_AXIS_DEG:g} deg of a CT axis, and this one lies {off:.0f} deg off the nearest; a "
                     "plan that differs from the one the TPS computed in a gantry or couch angle or the patient "
                     "position is not ruled out as the cause of its failing rows (compare the beam's dose maps in the "
                     "report)")
    return notes


#: The remark of a check without per-beam TPS doses (:func:`plan_dose_only_direction_note`), as docs/check.md says it
#: (audit 32, norm2 F2: the docs said so, the report and check.json did not).
NO_BEAM_DIRECTION_JUDGED = "without per-beam TPS doses no beam's direction is judged"


def plan_dose_only_direction_note(beams: Iterable[int], others_judged: bool = False) -> str:
    """The remark where ``beams`` (the plan's) have no per-beam TPS dose of their own: :func:`_direction_notes`
    judges each beam's direction on its own TPS dose only, so none of them was judged and a plan given in another
    gantry or couch angle or patient position than the TPS computed shows only through the other rows.
    ``others_judged``: the plan's other beams have theirs (the plan dose and some beams' doses given; review a of
    audit 32, R2: before, only a check of the plan dose alone said so)."""
    bs = sorted(beams)
    which = f"beam {bs[0]}" if len(bs) == 1 else f"beams {', '.join(map(str, bs))}"
    if others_judged:
        return (f"{NO_BEAM_DIRECTION_JUDGED} ({which}: no per-beam TPS dose of "
                f"{'its' if len(bs) == 1 else 'their'} own, the other beams' directions are judged on theirs): "
                f"whether the TPS computed {'it' if len(bs) == 1 else 'each'} in the plan's direction was not judged, "
                "so a beam given with another gantry or couch angle than the TPS computed shows only through the "
                f"gamma, range and dose rows of the plan dose; give the TPS's dose of {which} (RT Dose, "
                "DoseSummationType BEAM) with the others to have it judged")
    return (f"{NO_BEAM_DIRECTION_JUDGED} ({which}; the plan dose only): whether the TPS computed each beam in the "
            "plan's direction was not judged, so a plan given with another gantry or couch angle or patient position "
            "than the plan the TPS computed shows only through the gamma, range and dose rows of the plan dose; give "
            "the TPS's dose of each beam (RT Dose, DoseSummationType BEAM) with the plan dose to have it judged")


def _body_axis_sums(dose: np.ndarray, body: np.ndarray) -> list[np.ndarray]:
    """The body's dose summed across the other two axes, for each axis k of the (z, y, x) grid, in float64.  Two
    masked reductions (``where=body``: no masked copy of the grid), the (z, y) plane summed over x, then x's profile:
    on a 200 x 512 x 512 grid 0.06 s a dose against 0.15-0.17 s for a np.where copy summed three times (audit 31
    direction R5); the sums differ only in their order (<= 4e-16 of the largest)."""
    zy = np.sum(dose, axis=2, where=body, dtype=np.float64)
    return [zy.sum(axis=1), zy.sum(axis=0), np.sum(dose, axis=(0, 1), where=body, dtype=np.float64)]


def _direction_notes(mc: MCDose, body: np.ndarray, axes: Sequence[np.ndarray],
                     beams_in_tps: Mapping[int, np.ndarray]) -> tuple[list[str], set[int]]:
    """Per-beam TPS doses that run along another axis than the plan's beam (audit 30 realdata F1: APTG plan03 as
    written, whose RayStation doses belong to a base plan with the fields along y, was explained as a 70 % MU or
    calibration error and a 58 mm uniform range difference).  For each beam with a per-beam TPS dose whose direction
    lies along a grid axis (:data:`DIRECTION_AXIS_DEG`), the MC beam dose's depth profile (the dose in the body summed
    over the planes across the beam, against the distance from the isocentre) is compared with the TPS dose's
    profiles along the three axes (:func:`_profile_overlap`); a perpendicular axis that matches it
    (:data:`DIRECTION_MATCH`, :data:`DIRECTION_MARGIN`) is named where the TPS's profile along the beam's axis is in
    turn a lateral one: the MC's along the axis named (:data:`DIRECTION_LATERAL_MATCH`).  Where none is, a TPS dose
    whose profile along the beam's axis is the MC's depth dose reversed (entering from the other side:
    :data:`DIRECTION_REVERSED_MATCH`, :data:`DIRECTION_REVERSED_MARGIN`) with the MC's lateral profiles is named.
    Beams off the grid axes are not judged (:func:`direction_unjudged`).  Returns the notes and the beams named (whose
    dose level, centroid and range notes would name causes that this one explains)."""
    notes: list[str] = []
    named: set[int] = set()
    meta = getattr(mc, "beam_meta", {}) or {}
    step = min(float(abs(a[1] - a[0])) for a in axes if len(a) > 1) if any(len(a) > 1 for a in axes) else 1.0
    for b, t in sorted(beams_in_tps.items()):
        m = mc.beams_gy_zyx.get(b)
        info = meta.get(b, {})
        if m is None or info.get("beam_direction") is None or info.get("isocenter_mm") is None:
            continue
        u = np.asarray(info["beam_direction"], float)[::-1]   # z, y, x
        u = u / np.linalg.norm(u)
        a = int(np.argmax(np.abs(u)))
        if abs(u[a]) < math.cos(math.radians(DIRECTION_AXIS_DEG)):
            continue
        iso = np.asarray(info["isocenter_mm"], float)[::-1]
        reach = max(max(abs(float(x[0]) - iso[k]), abs(float(x[-1]) - iso[k])) for k, x in enumerate(axes))
        d = np.arange(-reach, reach + step / 2, step)   # mm from the isocentre

        def profile(p: np.ndarray, k: int, sense: float = 1.0) -> np.ndarray:   # against the distance d
            x = np.asarray(axes[k], float)
            order = np.argsort(x)
            return np.interp(iso[k] + sense * d, x[order], p[order], left=0.0, right=0.0)

        tps, mcs = _body_axis_sums(t, body), _body_axis_sums(m, body)
        depth = profile(mcs[a], a)
        tps_a = profile(tps[a], a)
        own = _profile_overlap(depth, tps_a)
        best = max(((_profile_overlap(depth, profile(tps[c], c, s)), c, s) for c in range(3) if c != a
                    for s in (1.0, -1.0)), key=lambda x: x[0])
        match, c, s = best
        lateral = max(_profile_overlap(tps_a, profile(mcs[c], c, s2)) for s2 in (1.0, -1.0))   # (R-b R1)
        plan_dir = f"{'+' if u[a] > 0 else '-'}{_AXIS_NAMES[a]}"
        g, cc = info.get("gantry_angle_deg"), info.get("couch_angle_deg")
        setup = (f"gantry {float(g):g}, couch {float(cc):g}, {info.get('patient_position', 'HFS')}"
                 if g is not None and cc is not None else "its gantry and couch angles")
        follows = ("; this beam's dose level, centroid and range rows follow from that, not from its MU, the beam "
                   "model or the CT calibration")
        if not (match < DIRECTION_MATCH or match - own < DIRECTION_MARGIN or lateral < DIRECTION_LATERAL_MATCH
                or lateral <= own):
            tps_dir = f"{'+' if u[a] * s > 0 else '-'}{_AXIS_NAMES[c]}"
            notes.append(f"beam {b}: the TPS dose of this beam runs along {tps_dir}, the plan's beam along {plan_dir} "
                         f"({setup}): the MC's depth-dose profile matches the TPS's along {tps_dir} ({100 * match:.0f}"
                         f" % overlap) and not along {plan_dir} ({100 * own:.0f} %).  The TPS computed this beam in "
                         "another direction: the plan given differs from the plan the TPS computed in a gantry or "
                         "couch angle or the patient position (a plan edited or re-exported after the dose "
                         "calculation?)"
                         + follows)
            named.add(b)
            continue
        # the same axis, the other sense (audit 31 direction R3): the TPS's depth dose is the MC's mirrored
        kept, flipped = _best_shift_overlap(depth, tps_a), _best_shift_overlap(depth[::-1], tps_a)
        if flipped < DIRECTION_REVERSED_MATCH or flipped - kept < DIRECTION_REVERSED_MARGIN:
            continue
        if min(max(_profile_overlap(profile(tps[k], k), profile(mcs[k], k, s2)) for s2 in (1.0, -1.0))
               for k in range(3) if k != a) < DIRECTION_LATERAL_MATCH:
            continue
        notes.append(f"beam {b}: the TPS dose of this beam enters from the other side, running along "
                     f"{'-' if u[a] > 0 else '+'}{_AXIS_NAMES[a]}, the plan's beam along {plan_dir} ({setup}): the "
                     "TPS's profile along the beam matches the MC's depth-dose profile reversed "
                     f"({100 * flipped:.0f} % overlap at the best shift) and not as it is at any shift "
                     f"({100 * kept:.0f} %).  The TPS "
                     "computed this beam in the opposite direction: the plan given differs from the plan the TPS "
                     "computed by a gantry angle 180 deg apart or in the patient position (head or feet first, supine "
                     "or prone, read the other way), or the dose file of an opposed beam was given as this beam's"
                     + follows)
        named.add(b)
    return notes, named


#: The high-dose centroid note: a centroid of the MC this far (mm) from the TPS's is named.
CENTROID_NOTE_MM = 1.0


def _centroid(d: np.ndarray, body: np.ndarray, axes: Sequence[np.ndarray]) -> np.ndarray | None:
    """The dose-weighted centroid (z, y, x, mm) of the body voxels at or above 50 % of the dose's 99.9th percentile
    (compare.percentile_max: one hot voxel does not set the threshold); None where there are none."""
    w = np.where(body & (d >= 0.5 * percentile_max(d, body)), d, 0.0)
    tot = float(w.sum())
    if not tot > 0:
        return None
    return np.array([float((w.sum(axis=tuple(j for j in range(3) if j != k)) * axes[k]).sum() / tot)
                     for k in range(3)])


def _along_across(c: np.ndarray, meta: Mapping[str, Any]) -> str:
    """A centroid difference ``c`` (x, y, z mm) split along the beam of ``meta`` (its beam_direction) and across
    it: ", +0.4 mm along the beam and 4.6 mm across it"; "" without a direction."""
    if meta.get("beam_direction") is None:
        return ""
    u = np.asarray(meta["beam_direction"], float)
    u = u / np.linalg.norm(u)
    along = float(c @ u)
    return f", {along:+.1f} mm along the beam and {float(np.linalg.norm(c - along * u)):.1f} mm across it"


def _centroid_notes(ref: np.ndarray, mc: MCDose, body: np.ndarray, axes: Sequence[np.ndarray],
                    beams_in_tps: Mapping[int, np.ndarray]) -> list[str]:
    """The high-dose centroid of the MC against the TPS's, beyond :data:`CENTROID_NOTE_MM`: a shift (or a range
    difference).  With per-beam TPS doses, per beam, each dose thresholded at 50 % of its own 99.9th percentile (a
    change of one beam's weight moves none, and a beam's own scale cannot move its centroid), the difference split
    along the beam and across it; else on the plan dose.  On the plan dose of a multi-isocentre plan (a 50 cm CSI
    target, the maximum at a field junction) the 50 % threshold fell on the fields' plateaus, and the centroid moved
    by 4-18 mm with the noise or one field's weight: a "shift" that was none (CSI audit 2026-12-05, F2)."""
    def diff(m: np.ndarray, t: np.ndarray) -> np.ndarray | None:
        a, b = _centroid(m, body, axes), _centroid(t, body, axes)
        return None if a is None or b is None else (a - b)[::-1]   # x, y, z

    notes = []
    if not beams_in_tps:
        c = diff(mc.total_gy_zyx, ref)
        if c is not None and np.linalg.norm(c) > CENTROID_NOTE_MM:
            notes.append(f"the high-dose centroid of the MC lies ({c[0]:+.1f}, {c[1]:+.1f}, {c[2]:+.1f}) mm (x, y, z) "
                         "from the TPS's: a shift or a range difference")
        return notes
    meta = getattr(mc, "beam_meta", {}) or {}
    for b, t in sorted(beams_in_tps.items()):
        m = mc.beams_gy_zyx.get(b)
        c = None if m is None else diff(m, t)
        if c is None or not np.linalg.norm(c) > CENTROID_NOTE_MM:
            continue
        where = _along_across(c, meta.get(b, {}))
        notes.append(f"beam {b}: the high-dose centroid of the MC lies ({c[0]:+.1f}, {c[1]:+.1f}, {c[2]:+.1f}) mm "
                     f"(x, y, z) from the TPS's{where}: a shift of the beam (along it, also a range difference)")
    return notes


#: A beam's field region on the plan dose (no per-beam TPS dose; CSI audit 2026-12-06, F1): the body voxels where
#: the MC's beam dose is at or above FIELD_REGION_FRACTION of its 99.9th percentile and FIELD_REGION_SHARE of the MC's
#: total dose (the beam's own dose, not a junction or another field's); judged where it holds at least
#: FIELD_REGION_OWN_MIN of the beam's high-dose voxels (a field of its own: a CSI's spinal fields, 0.90-0.94 on the
#: audit's plan; not opposed or crossing fields on one target: its cranial fields, 0.14-0.15) and
#: FIELD_REGION_MIN_VOXELS voxels; compared (gamma 2 %/2 mm, the high-dose centroid) over it and
#: FIELD_REGION_MARGIN_MM around it (the field's penumbra and a moved edge).
FIELD_REGION_FRACTION = 0.5
FIELD_REGION_SHARE = 0.8
FIELD_REGION_OWN_MIN = 0.5
FIELD_REGION_MIN_VOXELS = 100
FIELD_REGION_MARGIN_MM = 15.0
#: The field region's centroid note (plan dose): a centroid of the MC this far (mm) from the TPS's is named; 2 mm,
#: not CENTROID_NOTE_MM, as the region's edge cuts the dose of a neighbouring field (the audit's correct plan: up to
#: 0.7 mm; a spinal field moved 5 mm: 4.6 mm, its neighbour 1.7 mm).
FIELD_CENTROID_NOTE_MM = 2.0


def field_regions(beams: Mapping[int, np.ndarray], total: np.ndarray, body: np.ndarray,
                  axes: Sequence[np.ndarray], with_tps_dose: Iterable[int] = ()) -> dict[int, dict]:
    """The field region of each beam of a plan of several beams that has no per-beam TPS dose (``with_tps_dose``:
    those that have one are compared per beam): {beam: {"voxels", "high_dose_voxels", "own_fraction", "judged",
    "why" (where not judged), "mask" (where judged: the region and FIELD_REGION_MARGIN_MM around it, in the body;
    not in the JSON)}}.  ``beams``, ``total``: the MC's doses (zeroed outside the body).  A shift of one field of a
    multi-isocentre plan checked on the plan dose alone was diluted in the plan-level rows and passed (CSI audit
    2026-12-06, F1)."""
    from scipy.ndimage import distance_transform_edt

    out: dict[int, dict] = {}
    if len(beams) < 2:
        return out
    done = set(with_tps_dose)
    spacing = [float(a[1] - a[0]) if len(a) > 1 else 1.0 for a in axes]
    for b, d in sorted(beams.items()):
        if b in done:
            continue
        top = percentile_max(d, body)
        high = body & (d >= FIELD_REGION_FRACTION * top) & (d > 0)
        own = high & (d >= FIELD_REGION_SHARE * total)
        n_high, n_own = int(high.sum()), int(own.sum())
        frac = n_own / n_high if n_high else 0.0
        r: dict[str, Any] = {"voxels": n_own, "high_dose_voxels": n_high, "own_fraction": frac, "judged": False}
        if n_own < FIELD_REGION_MIN_VOXELS:
            r["why"] = (f"{n_own} voxel(s) where it gives >= {100 * FIELD_REGION_SHARE:g} % of the dose, fewer than "
                        f"{FIELD_REGION_MIN_VOXELS}")
        elif frac < FIELD_REGION_OWN_MIN:
            r["why"] = (f"its field overlaps the other beams' (it gives >= {100 * FIELD_REGION_SHARE:g} % of the "
                        f"dose in {100 * frac:.0f} % of its high-dose voxels, below "
                        f"{100 * FIELD_REGION_OWN_MIN:g} %): the plan-level rows compare it")
        else:
            r["judged"] = True
            r["mask"] = (distance_transform_edt(~own, sampling=spacing) <= FIELD_REGION_MARGIN_MM) & body
        out[b] = r
    return out


def field_region_text(b: int) -> str:
    """What a field region row is of (its value text)."""
    return (f"the plan dose over beam {b}'s field region: the body voxels where the MC's beam {b} gives >= "
            f"{100 * FIELD_REGION_FRACTION:g} % of its 99.9th-percentile dose and >= {100 * FIELD_REGION_SHARE:g} % of "
            f"the MC total, and {FIELD_REGION_MARGIN_MM:g} mm around them (no per-beam TPS dose; a neighbouring "
            "field's junction lies in it too)")


def _field_centroid_notes(ref: np.ndarray, mc: MCDose, axes: Sequence[np.ndarray],
                          regions: Mapping[int, dict]) -> list[str]:
    """Per judged field region (:func:`field_regions`), the high-dose centroid of the MC total against the TPS plan
    dose within it beyond :data:`FIELD_CENTROID_NOTE_MM`, split along the beam and across it."""
    notes = []
    meta = getattr(mc, "beam_meta", {}) or {}
    for b, r in sorted(regions.items()):
        if not r.get("judged") or "mask" not in r:
            continue
        a, t = _centroid(mc.total_gy_zyx, r["mask"], axes), _centroid(ref, r["mask"], axes)
        if a is None or t is None:
            continue
        c = (a - t)[::-1]   # x, y, z
        r["centroid_mc_minus_tps_mm"] = [float(v) for v in c]
        if not np.linalg.norm(c) > FIELD_CENTROID_NOTE_MM:
            continue
        where = _along_across(c, meta.get(b, {}))
        notes.append(f"beam {b}'s field region of the plan dose (no per-beam TPS dose): the high-dose centroid of the "
                     f"MC lies ({c[0]:+.1f}, {c[1]:+.1f}, {c[2]:+.1f}) mm (x, y, z) from the TPS's{where}: a shift "
                     "of that field (along it, also a range difference) in the plan the TPS computed (its "
                     "isocentre or a couch shift); export the per-beam doses to confirm")
    return notes


def field_region_notes(regions: Mapping[int, dict], beam_meta: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """A remark where beams without a per-beam TPS dose are checked in a plan of several isocentres, or get a field
    region row in a plan of one: which are compared per field region (:func:`field_regions`) and which only in the
    plan-level rows, and why.  The rows go by where a beam's dose is its own, not by the isocentres: fields that
    cover separate parts of one target from one isocentre (APTG plan03's anterior and posterior halves) get them
    too, and before the check review of 2026-12-06 (finding 6) they came with no remark there."""
    if not regions:
        return []
    isos = {tuple(np.round(np.asarray(m["isocenter_mm"], float), 1)) for m in beam_meta.values()
            if m.get("isocenter_mm") is not None}
    judged = [b for b, r in sorted(regions.items()) if r["judged"]]
    if len(isos) < 2 and not judged:
        return []
    not_judged = [f"beam {b}: {r['why']}" for b, r in sorted(regions.items()) if not r["judged"]]
    plan = f"a plan of {len(isos)} isocentres" if len(isos) >= 2 else "a plan"
    said = [f"{plan} checked without per-beam TPS doses of beam(s) "
            f"{', '.join(map(str, sorted(regions)))}: a shift of one field is diluted in the plan-level rows"]
    if judged:
        said.append(f"beam(s) {', '.join(map(str, judged))} are compared over their own field region of the plan "
                    "dose (rows 'beam N: gamma 2%/2mm pass rate in its field region of the plan dose'), since each "
                    f"gives >= {100 * FIELD_REGION_SHARE:g} % of the MC's dose in at least "
                    f"{100 * FIELD_REGION_OWN_MIN:g} % of its own high-dose voxels: a field of its own, whatever the "
                    "isocentres (separate fields, or fields that cover separate parts of one target)")
    if not_judged:
        said.append("no field region row for " + "; ".join(not_judged))
    return ["; ".join(said) + "; export the per-beam RT Doses from the planning system for a per-beam check of "
            "every field"]


#: The missing-beam note: the TPS dose is named as without beam b where its squared difference from the MC total
#: less beam b, over the body, is below this fraction of its squared difference from the MC total (and half of
#: that of any other beam left out)
MISSING_BEAM_RESIDUAL = 0.25


def missing_beams(ref: np.ndarray, mc: MCDose, body: np.ndarray) -> list[tuple[int, float]]:
    """The beam the TPS dose lacks, [(beam, the share of that beam's MC dose in its high-dose region that the TPS
    lacks)], or []: the MC total less one beam that matches the TPS dose voxel by voxel far better than the MC total
    and than leaving out any other beam.  Voxel by voxel, not over the TPS's region: a field on its own isocentre
    puts its dose where the TPS has none, and a sum over the TPS's >= 10 % region read 1.018 without a CSI's spinal
    field (CSI audit 2026-12-06, F2); and two crossing fields cover the same region, which sums cannot split."""
    if len(mc.beams_gy_zyx) < 2:
        return []
    t = ref[body]
    tot = mc.total_gy_zyx[body]
    none = float(np.sum((t - tot) ** 2))
    if not none > 0:
        return []
    res = {b: float(np.sum((t - tot + d[body]) ** 2)) for b, d in mc.beams_gy_zyx.items()}
    best = min(res, key=lambda k: res[k])
    others = [v for k, v in res.items() if k != best]
    if not (res[best] < MISSING_BEAM_RESIDUAL * none and all(res[best] < 0.5 * v for v in others)):
        return []
    d = mc.beams_gy_zyx[best]
    high = body & (d >= 0.5 * percentile_max(d, body))
    s = float(d[high].sum())
    lost = float((mc.total_gy_zyx[high] - ref[high]).sum()) / s if s > 0 else float("nan")
    return [(best, lost)]


def _outside_external(geometry: Any, inp: CheckInputs, how: str, log: Callable[[str], None],
                      overridden: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """What lies outside the External ROI: with ``how`` "air" set to air (the notes say how many voxels held
    material, and a warning names the slices between the External's first and last that it has no contour on: each
    contour stands for its own CT slice, so those slices of the patient become air,
    :func:`~mcproton.body.warn_body_slices_missing`, as `mcproton run` warns); with "ct" kept, and each beam whose
    central axis crosses more than 1 mm of water-equivalent of it before the isocentre named
    (:func:`~mcproton._io.roi_overrides.outside_external_beam_notes`; `mcproton run` warns the same).  Returns
    (diagnostic notes, geometry notes); both logged."""
    from .._io.roi_overrides import outside_external, outside_external_beam_notes, set_outside_to_air
    from .._io.rtplan import beam_direction_lps
    from .._io.rtstruct import read_rtstruct
    from ..body import warn_body_slices_missing

    gaps: list[int] = []

    def slices_of(name: str, mask: np.ndarray) -> None:   # the External's own slices, on the CT's voxels
        if how == "air":   # (with "ct" they stay the CT's: the body outline's warning says what else they are)
            gaps.append(warn_body_slices_missing(mask, geometry, name, str(inp.struct_path),
                                                 outcome=AIR_SLICES_OUTSIDE, remedy=AIR_SLICES_REMEDY, stacklevel=2))

    try:   # the body ROI as the body outline chooses it (its warning, of several EXTERNAL ROIs, comes from there)
        found = outside_external(geometry, read_rtstruct(inp.struct_path), also_keep=overridden, strict=how == "air",
                                 remedy="give --outside-external ct (the CT as it is outside them)",
                                 external_seen=slices_of)
    except ValueError as exc:
        raise CheckInputError(f"--outside-external air: {exc}") from None
    if found is None:
        if how == "air":   # asked for, and not done: the dose would be the CT's, with nothing said
            raise CheckInputError(f"--outside-external air needs an EXTERNAL ROI with contours in the structure set "
                                  f"({inp.struct_path}); it has none: give --outside-external ct (the CT as it is)")
        return [], []
    mask, ext, kept = found
    also = f" and the {', '.join(repr(k) for k in kept)} ROI(s)" if kept else ""
    if how == "air":
        try:
            n = set_outside_to_air(geometry, mask)
        except ValueError as exc:
            raise CheckInputError(f"--outside-external air: {exc}") from None
        gap = (f"; among them {gaps[0]} CT slice(s) between its first and last contour with no contour of it: air "
               "across the patient, warned of" if gaps and gaps[0] else "")
        notes = [f"outside the External {ext!r}{also}: air (--outside-external air; {n} voxels held material{gap})"]
        for n_ in notes:
            log(f"mcproton check: {n_}")
        return [], notes
    diag = outside_external_beam_notes(
        geometry, found, [(f"beam {b.number}", b.isocenter_mm,
                           beam_direction_lps(b.gantry_angle_deg, b.table_top_angle_deg, b.patient_position or "HFS"))
                          for b in inp.plan.beams], "give --outside-external air")
    for n_ in diag:
        log(f"mcproton check: {n_}")
    return diag, list(diag)


def _heterogeneity_notes(inp: CheckInputs, overrides: bool, how: str, log: Callable[[str], None]) -> list[str]:
    """What the TPS dose says it was computed with (TissueHeterogeneityCorrection (3004,0014): IMAGE, ROI_OVERRIDE)
    against what the check computes with: ROI overrides the structure set does not hold (not exported: the check
    cannot apply them), overrides ignored on request, or overrides the TPS dose says it did not use."""
    doses = [d for d in (inp.total, *inp.beams.values()) if d is not None and d.heterogeneity]
    if not doses:
        return []   # the attribute is Type 3: a dose that does not say tells nothing
    d = doses[0]
    said = "/".join(dict.fromkeys(v for x in doses for v in x.heterogeneity))   # every value the doses give
    notes = []
    tps_roi = any("ROI_OVERRIDE" in x.heterogeneity for x in doses)
    if tps_roi and not overrides:
        unapplied = []
        if inp.struct_path:
            from .._io.roi_overrides import unapplied_properties

            unapplied = unapplied_properties(inp.struct_path)
        held = ("holds none (ROIPhysicalPropertiesSequence): they were not exported" if not unapplied else
                "holds only ROI physical properties that mcproton does not apply ("
                + "; ".join(f"ROI {nm!r}: {', '.join(p)}" for nm, p in unapplied)
                + "; a voxel's material is set by REL_MASS_DENSITY with its composition, REL_STOP_RATIO or "
                "REL_ELEC_DENSITY): they were exported but not applied")
        notes.append(f"the planning system computed with ROI material overrides (TissueHeterogeneityCorrection {said} "
                     f"in {Path(d.path).name}), but the structure set "
                     + (held if inp.struct_path else "was not given") + ", so the check computes on the CT as it is: "
                     "expect differences where they were (a bolus, a couch, metal or artifacts set to a material)")
    elif tps_roi and how == "ignore":
        notes.append(f"the planning system computed with ROI material overrides (TissueHeterogeneityCorrection "
                     f"{said}), which --struct-overrides ignore leaves out")
    elif overrides and how == "apply" and not tps_roi:
        notes.append(f"the structure set's material overrides were applied, but {Path(d.path).name} says it was "
                     f"computed with {said} only (TissueHeterogeneityCorrection): if the planning system did not use "
                     "them, give --struct-overrides ignore")
    for n in notes:
        log(f"mcproton check: {n}")
    return notes


def _warn_boli(inp: CheckInputs, struct_overrides: str) -> None:
    """Warn about the plan's boli that no applied material override of the structure set puts into the CT (a phantom
    built from the structure set holds its overrides): rtplan.warn_unmodelled_boli."""
    from .._io.rtplan import warn_boli_of_structure_set

    warn_boli_of_structure_set(inp.plan, inp.struct_path, struct_overrides == "apply" or inp.ct_dir is None)


def _struct_overrides(geometry: Any, struct_path: str, how: str, log: Callable[[str], None],
                      physics: Any = None) -> list[str]:
    """The structure set's material overrides put into the CT's geometry (``how`` "apply", a REL_STOP_RATIO in the
    water of the MC's ``physics``, as ``mcproton run`` applies them) or named as ignored; the notes (also logged)."""
    from .._io.roi_overrides import apply_overrides, roi_overrides

    try:
        if how == "apply":
            notes = [f"override: {n}" for n in apply_overrides(geometry, struct_path, physics=physics)]
        else:
            notes = [f"override ignored (struct_overrides = 'ignore'): ROI {r['name']!r} {r['property']} "
                     f"{r['value']:g}" for r in roi_overrides(struct_path)]
    except ValueError as exc:
        raise CheckInputError(str(exc)) from None
    for n in notes:
        log(f"mcproton check: {n}")
    return notes


#: How to give the planning system's HU curve to the check (docs/patient_workflow.md "The clinic's HU -> SPR table";
#: a message names what an installed mcproton has, the README's section and the installed files): the
#: generic-calibration note says it
TPS_CALIBRATION_HOW = (
    "give the TPS's own curve: --calibration FOLDER, a folder holding its HU -> stopping-power ratio table as "
    "hu_spr.csv (columns HU,SPR) beside hu_materials.csv (the compositions by HU bin: hu_lo,name,w_H,w_C,...; "
    "schneider2000's, mcproton/data/ct_calibration/schneider2000_materials_opengate.csv, are a start), or its HU -> "
    "mass density table as hu_density.csv beside hu_materials.csv (the README, \"Independent plan check (`mcproton "
    "check`)\"); or the built-in curve the TPS uses (mcsquare_default: MCsquare's and OpenTPS's default scanner; "
    "dcpt_spr_brain: an SPR-map CT)")
#: What the check says when a beam's range rows fail, or their median lies near its level
#: (:data:`CALIBRATION_NOTE_NEAR`), and the patient's CT was converted with the default (generic) HU calibration,
#: not one given: the planning system used its own curve, the first suspect of a range difference
#: (:func:`generic_calibration_note`).  Two of the built-in curves, schneider2000 and mcsquare_default, give
#: stopping-power ratios (100 MeV, this code's stopping powers; HUCalibration.spr_from_hu) that differ by -1.7 %
#: (0 HU), +2.4 % (40 HU), -0.9 % (100 HU), -2.8 % (700 HU) and -5.1 % (1200 HU): tests/check/test_check.py
#: checks these figures.  Before the journey audit 28 (F2) it was said only behind a uniform range difference
#: (:func:`uniform_range_note`), so the OpenTPS head's two beams, +1.1 mm each with a 0.1 mm tail below zero,
#: FAILed with no cause named.
GENERIC_CALIBRATION_NOTE = (
    "the CT was converted with the default, generic HU calibration (schneider2000), not the planning system's "
    "(no --calibration was given): two published HU -> stopping-power curves differ by up to 2.4 % in soft tissue "
    "and 5 % in dense bone (schneider2000 against mcsquare_default), i.e. up to a few mm per 10 cm of range, so the "
    "range rows compare the two curves as much as the plan; " + TPS_CALIBRATION_HOW + ", before reading the range "
    "difference as the plan's")
#: check.json's ``settings.calibration_source`` (and the report's Settings row) where no calibration was given
DEFAULT_CALIBRATION_SOURCE = ("the default: a generic curve, not the planning system's (give its curve with "
                              "--calibration for ranges comparable with the TPS's)")
#: A range row's median difference at or beyond this fraction of its level, with the range rows passing, gets the
#: generic-calibration note as a remark (:func:`generic_calibration_note`): near the level, the curve's part of it
#: may be what keeps another error of the plan from showing
CALIBRATION_NOTE_NEAR = 0.5


def generic_calibration_note(checks: Sequence[Mapping[str, Any]], generic: bool) -> tuple[str, bool] | None:
    """(:data:`GENERIC_CALIBRATION_NOTE`, whether it is a cause) where the patient's CT was converted with the
    default calibration, not one given (``generic``), and a range row (``checks``' levels range_median_mm and
    range_within_2mm_min) failed (a cause: whatever the rays' spread, journey audit 28 F2), or a median row's value
    lies at :data:`CALIBRATION_NOTE_NEAR` of its level or beyond (a remark); else None."""
    if not generic:
        return None
    rows = [c for c in checks if c.get("level") in ("range_median_mm", "range_within_2mm_min")]
    if any(not c["passed"] for c in rows):
        return GENERIC_CALIBRATION_NOTE, True
    near = any(c["level"] == "range_median_mm" and math.isfinite(float(c["value"]))
               and abs(float(c["value"])) >= CALIBRATION_NOTE_NEAR * float(c["limit"]) for c in rows)
    return (GENERIC_CALIBRATION_NOTE, False) if near else None


#: the share of the TPS dose (voxels above 10 % of its maximum) outside the body outline above which the check says so
OUTSIDE_BODY_NOTE = 0.01


def tps_outside_body(tps: np.ndarray, body: np.ndarray) -> float:
    """The share of the TPS dose, summed over the voxels above 10 % of its maximum, that lies outside ``body`` grown
    by one voxel (the boundary voxels, partly inside, are the planning system's too).  Planning systems compute
    inside their External only: with the same structure set this is 0 (APTG plan03's RayStation dose: 0.0; 0.6 %
    without the one-voxel margin)."""
    from scipy.ndimage import binary_dilation

    top = float(tps.max()) if tps.size else 0.0
    if top <= 0:
        return 0.0
    sel = tps >= 0.1 * top
    total = float(tps[sel].sum())
    return float(tps[sel & ~binary_dilation(body, iterations=1)].sum()) / total if total > 0 else 0.0


#: below this density (g/cm3) a voxel is air for :func:`tps_dose_in_air_at_grid_edge` (lung is 0.2-0.5)
AIR_DENSITY_G_CM3 = 0.05


def tps_dose_in_air_at_grid_edge(tps: np.ndarray, body: np.ndarray, density: np.ndarray | None) -> bool:
    """Whether the TPS dose above 10 % of its maximum, outside ``body`` and in air (``density`` below
    :data:`AIR_DENSITY_G_CM3`, where it is known), reaches a face of the dose grid: a planning system that scores
    the dose in every voxel of its grid, the air the beams cross before the skin included, as MCsquare does for
    OpenTPS (dose to water in air).  A larger External of the planning system puts dose outside the body too, but
    next to it, not out to the grid's faces."""
    top = float(tps.max()) if tps.size else 0.0
    if top <= 0:
        return False
    sel = (tps >= 0.1 * top) & ~body
    if density is not None:
        sel &= density < AIR_DENSITY_G_CM3
    return bool(sel[[0, -1]].any() or sel[:, [0, -1]].any() or sel[:, :, [0, -1]].any())


def contours_beyond_grid(contours: Any, ref: Any, tol_mm: float = 0.01) -> set[str]:
    """The structures of ``contours`` (an :class:`~mcproton._io.rtstruct.RTStruct`, or {ROI: contours}) that reach
    beyond the TPS dose grid's extent (its voxels' outer faces): contour points outside it, or, along z, the slab of
    a first or last contour plane (each plane its CT slice, as the masks take it:
    :func:`~mcproton._io.rtstruct.slab_extents_z`) running past the grid's end face.  Their DVH metrics on that grid
    are of the part on it (an organ at risk cut by the grid is common; the report says so).  Before audit 25
    (2026-12-07, dvhgeo F6) only the contour points were compared: an ROI whose last plane lay on the grid's end
    face, half its end slab beyond it, was not marked."""
    from .._io.rtstruct import RTStruct, slab_extents_z

    lo = np.asarray(ref.origin_mm, float) - np.asarray(ref.voxel_size_mm, float) / 2
    hi = lo + np.asarray(ref.voxel_size_mm, float) * np.array(ref.shape_zyx[::-1])
    cl_of = contours.contours if isinstance(contours, RTStruct) else contours
    out = set()
    for nm, cs in cl_of.items():
        if cs and any(((c < lo - tol_mm) | (c > hi + tol_mm)).any() for c in cs):
            out.add(nm)
    for nm, (z_lo, z_hi) in slab_extents_z(contours, float(ref.voxel_size_mm[2])).items():
        if z_lo < lo[2] - tol_mm or z_hi > hi[2] + tol_mm:
            out.add(nm)
    return out


def _ray_key(meta: Mapping[str, Any]) -> tuple:
    """The rays a beam's range is read along on the total dose (compare.range_agreement): its direction and
    isocentre, rounded (1e-6, 1e-3 mm) so that beams of one gantry and couch angle share them."""
    return (tuple(np.round(np.asarray(meta["beam_direction"], float), 6) + 0.0),
            tuple(np.round(np.asarray(meta["isocenter_mm"], float), 3) + 0.0))


def _group_shared_rays(ranges: dict[int, dict], plan_beams: Sequence[Any]) -> None:
    """Mark the beams whose range was read on the same rays of the total dose (no per-beam TPS dose, one direction
    and isocentre: ``same_rays_as`` the first, set when computed): the first's entry and theirs get ``beams`` (all of
    them) and ``direction`` ("gantry 0, couch 0"), so that the levels and notes give one row for the group, not N
    identical FAILs of one comparison (audit 18b F8: three fields at gantry 0, three rows of 20.86 %)."""
    angles = {int(pb.number): (float(pb.gantry_angle_deg), float(pb.couch_angle_deg)) for pb in plan_beams}
    groups: dict[int, list[int]] = {}
    for b, r in ranges.items():
        if r.get("same_rays_as") is not None:
            groups.setdefault(int(r["same_rays_as"]), [int(r["same_rays_as"])]).append(int(b))
    for first, members in groups.items():
        g, c = angles.get(first, (math.nan, math.nan))
        direction = f"gantry {g:g}, couch {c:g}" if math.isfinite(g) else "one direction"
        for b in members:
            ranges[b]["beams"] = sorted(members)
            ranges[b]["direction"] = direction


def range_label(b: int | str, r: Mapping[str, Any]) -> str:
    """How a range row names its beam: "beam 2", or "beams 1, 2, 3 (gantry 0, couch 0)" for beams that compare the
    same rays of the total dose (:func:`_group_shared_rays`)."""
    if r.get("beams") and len(r["beams"]) > 1:
        return f"beams {', '.join(str(x) for x in r['beams'])} ({r.get('direction', 'one direction')})"
    return f"beam {b}"


def uniform_range_note(beam: int | str, r: dict, limit_mm: float = 1.0) -> str | None:
    """The diagnosis of a beam's range table (``range_agreement``) whose distal edges all moved the same way: the
    median beyond ``limit_mm``, 5-95 % of the rays on its side of zero and spread less than the median itself.  A
    lateral shift moves the edges of some rays only, noise spreads them both ways; a uniform move is a difference
    of range."""
    med, p5, p95 = r.get("median_mm"), r.get("p5_mm"), r.get("p95_mm")
    if not r.get("rays") or r["rays"] < MIN_RANGE_RAYS or med is None or p5 is None or p95 is None \
            or not all(math.isfinite(v) for v in (med, p5, p95)):
        return None
    if abs(med) <= limit_mm or p5 * p95 <= 0 or p95 - p5 >= abs(med):
        return None
    who = beam if isinstance(beam, str) else f"beam {beam}"   # a range_label, or a beam number
    return (f"{who}: the MC's distal edge lies {abs(med):.1f} mm {'deeper' if med > 0 else 'shallower'} than "
            f"the TPS's over the whole field (5-95 % of the rays {p5:+.1f}..{p95:+.1f} mm): a uniform range "
            "difference - stopping powers along the beam (the CT calibration or material overrides, a range "
            "shifter's water-equivalent thickness), the beam model's energies, or a shift along the beam; not "
            "statistical noise")


#: The relative range error the range rows are to find (the issue's deliberate error; the clinical range margin is
#: 3.5 % + 1 mm, Paganetti 2012, PMB 57 R99), in %
RANGE_ERROR_PCT = 3.0
#: A systematic offset between the distal R80 of the two dose calculations compared that the note allows for, mm:
#: measured +0.5 mm between mcproton and MCsquare on the OpenTPS head plan (+0.53 / +0.47 mm, their I-values;
#: +0.56 / +0.54 mm along the rays through each beam's own field, 2026-12-06;
#: docs/check.md "Real third-party data"); another planning system's offset is not known, and two mcproton doses
#: made with other settings (I-values: +0.5 against +0.15 mm against MCsquare there) can differ too
RANGE_OFFSET_MM = 0.5


def shallow_range_detection_depth_mm(limit_mm: float) -> float:
    """The distal depth beyond which a :data:`RANGE_ERROR_PCT` range error moves a beam's median distal R80 past the
    level ``limit_mm`` even where a systematic offset of the two dose calculations' ranges of
    :data:`RANGE_OFFSET_MM` cancels part of it: (1 mm + 0.5 mm) / 3 % = 50 mm at the default level."""
    return (limit_mm + RANGE_OFFSET_MM) / (RANGE_ERROR_PCT / 100)


def shallow_range_note(label: str, depth_mm: float, limit_mm: float, *, self_compared: bool = False) -> str | None:
    """The note of a beam whose distal edge (``distal_depth_mm`` of compare.range_agreement) is too shallow for its
    range level to find a :data:`RANGE_ERROR_PCT` range error for sure (:func:`shallow_range_detection_depth_mm`):
    the level is then that many % of its depth, and a PASS of its range rows does not rule such an error out (audit
    21 F1: a 3 % error in the OpenTPS head's posterior field passed at the defaults: 41 mm deep in the check then,
    44 mm along the rays through its own field since 2026-12-06; 45 mm on the per-beam split dose the error was put
    in).  The
    offset is worded as what it is, an allowance, not a fact of this check: the figure measured against MCsquare is
    named as such, and left out where the check compared mcproton with itself (``self_compared``; there the offset
    is of two mcproton doses made with other settings).  None where the beam is deeper, or the depth is not known
    (realcheck audit F1: "an offset of the two codes' ranges of 0.5 mm (as mcproton's against MCsquare's)" stood in
    every check, against RayStation or mcproton's own dose too)."""
    if not (math.isfinite(depth_mm) and depth_mm > 0 and limit_mm > 0):
        return None
    deep = shallow_range_detection_depth_mm(limit_mm)
    if depth_mm >= deep:
        return None
    err = RANGE_ERROR_PCT / 100 * depth_mm
    offset = ("(both are mcproton's here: two runs with other settings, such as the beam model, the CT conversion "
              "or the I-values, can differ by one)" if self_compared else
              "(measured: 0.5 mm between mcproton and MCsquare on an OpenTPS head plan, 2026-12-05)")
    return (f"{label}: its distal edge lies {depth_mm:.0f} mm deep (the TPS's distal R80, median over the rays, from "
            f"the body surface), so the range level of {limit_mm:g} mm is {100 * limit_mm / depth_mm:.1f} % of its "
            f"depth: a {RANGE_ERROR_PCT:g} % range error moves the median by {err:.2f} mm, against the level of "
            f"{limit_mm:g} mm, and a systematic offset between the two dose calculations' ranges {offset} adds to it "
            f"or cancels it; allowing for an offset of {RANGE_OFFSET_MM:g} mm, the range rows find a "
            f"{RANGE_ERROR_PCT:g} % error for sure only beyond {deep:.0f} mm, so their PASS does not rule one out "
            "here: read the median's sign and the beam's depth dose")


def range_grid_clause(r: Mapping[str, Any]) -> str:
    """What a range median row adds for a beam along a grid axis (compare.range_agreement's ``grid_error_mm``, None
    for an oblique beam: ""): what the grid leaves of the R80s read with the cubic spline.  ``grid_error_mm`` (0.2 x
    the voxel along the beam, compare.RANGE_GRID_ERROR_PER_VOXEL) holds for the peaks measured, up to a 100 MeV
    one; a 71 MeV pristine peak (80-20 0.62 mm, sharper than a third of a 2 mm voxel) read 0.78 mm point-sampled,
    about twice it, so the clause says so (re-read of the check, F3: it was given as a bound)."""
    if not r.get("grid_error_mm"):
        return ""
    return (f"; R80s read on {r['grid_along_beam_mm']:g} mm voxels along the beam (a grid axis): to about "
            f"+-{r['grid_error_mm']:.1f} mm, up to about twice that for a Bragg peak sharper than a third of a voxel "
            "(a low-energy pristine peak)")


def range_noise_note(label: str, r: Mapping[str, Any], limit_mm: float, failed: Sequence[str], u_pct: float,
                     remedy: str) -> str | None:
    """The note where a beam's range level failed (``failed``: the levels, "median" and/or "rays") while the MC's
    noise alone shifts its median distal R80 (``noise_median_mm`` of compare.range_agreement) by more than the
    median's level ``limit_mm``: the noise then decides the verdict more than the doses do (the D95 note's
    counterpart).  The noise-matched median (``median_mm`` - ``noise_median_mm``) assumes that the noise's shift
    adds to a true one; the MC's noise is correlated between voxels (+0.47 and +0.28 along the beam) and the noise
    floor's is not, so the floor overstates the shift, by about a third at high noise: APTG plan03 with the gantry
    rewritten (a correct plan) at 7.07 % read raw +3.30 mm, noise alone +5.20 mm, noise-matched -1.91 mm, a FAIL
    with no note (smoke audit 2026-12-06, F3; at 2.45 % the same plan read +0.04 mm).  Where the noise alone stays
    within the level (+0.5-0.8 mm at 2.4 % on plan03's beams) the error left is a fraction of it, and no note is
    given.  None where no level failed or the noise shift is within ``limit_mm`` (or not known)."""
    shift = r.get("noise_median_mm")
    if not failed or shift is None or not math.isfinite(shift) or abs(shift) <= limit_mm:
        return None
    which = " and ".join({"median": "median distal R80", "rays": "rays-within-2 mm"}[f] for f in failed)
    level = "levels" if len(failed) > 1 else "level"
    return (f"{label}: the {which} {level} failed while the MC's statistical noise ({u_pct:.2f} %) alone shifts the "
            f"median distal R80 by {shift:+.2f} mm, more than the level ({limit_mm:g} mm): the noise-matched median "
            f"({r['noise_matched_median_mm']:+.2f} mm = raw {r['median_mm']:+.2f} mm less that shift) assumes the "
            "noise's shift adds to a true one, which does not hold at this noise (the MC's noise is correlated "
            "between voxels, the noise floor's is not), so the noise decides this verdict more than the range does; "
            f"{remedy} before reading it as a range error")


#: A gamma row whose pass rate of a random subset (--gamma-points) lies within this many of its standard errors
#: (compare.pass_rate_se) of the level: the draw of the points can turn PASS or FAIL (gamma audit 28, F4: a plan at
#: 95.14 % with every point failed 95 % in 8 of 40 seeds of 10 000 points); said on the row and in a note.
GAMMA_SUBSET_DECIDES_SE = 2.0


def gamma_row_detail(g: Mapping[str, Any], unit: str, where: str = "in the body") -> str:
    """What a gamma action level's row adds to its value (gamma audit 28, F1 and F4): the points evaluated, with a
    random subset its standard error, and the dose the global criteria are in % of (compare.normalisation_dose: the
    TPS dose's near-maximum ``where``, the gamma's region)."""
    norm = g.get("normalisation_gy")
    how = (NORMALISATION_PLATEAU_TEXT if g.get("normalisation_plateau")   # (review a of audit 31, R2)
           else f"its {NEAR_MAX_VOXELS}th-largest voxel")
    of = (f"; in % of {norm:.4g} {unit}, the TPS dose's near-maximum {where} ({how})"
          if norm is not None and math.isfinite(norm) else "")
    if not g.get("points"):
        return f" (no points{of})"
    if g.get("subset"):
        return (f" ({g['points']:,} random points of {g['evaluable_points']:,}: standard error "
                f"{100 * g.get('pass_rate_se', float('nan')):.2f} %{of})")
    return f" (every one of the {g['points']:,} points{of})"


def gamma_subset_note(label: str, g: Mapping[str, Any], level_pct: float, passed: bool) -> str | None:
    """The note where a gamma row's pass rate of a random subset lies within :data:`GAMMA_SUBSET_DECIDES_SE` of its
    standard errors of the level ``level_pct``: which points were drawn can turn the verdict; how to evaluate every
    point and what it costs (compare.gamma_time_estimate, one process).  None otherwise (every point evaluated, or
    the rate clear of the level)."""
    se = 100 * float(g.get("pass_rate_se") or 0.0)
    rate = 100 * float(g.get("pass_rate", float("nan")))
    if not g.get("subset") or not se > 0 or not math.isfinite(rate) \
            or abs(rate - level_pct) >= GAMMA_SUBSET_DECIDES_SE * se:
        return None
    n = int(g["evaluable_points"])
    lo, hi, _ = gamma_time_estimate([n], 1)
    return (f"{label}: {'passed' if passed else 'failed'} at {rate:.2f} % +- {se:.2f} % (standard error) of a random "
            f"subset of {g['points']:,} of its {n:,} points, within {GAMMA_SUBSET_DECIDES_SE:g} standard errors of the "
            f"level ({level_pct:g} %): which points were drawn (--gamma-points, seeded by --seed) can turn this "
            f"verdict; run the check again with --gamma-points 0 (every point: about {lo:.0f}-{hi:.0f} s of CPU for "
            "this gamma) before reading it")


def _load_average() -> list[float] | None:
    """The host's 1, 5 and 15 minute load averages (None where the OS does not give them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _given_paths(*, out: Any, folder: Any, plan: Any, dose: Any, ct: Any, struct: Any, beam_model: Any,
                 calibration: Any, levels: Any) -> list[tuple[str, Any]]:
    """(what, path) of every path a check (or a batch) is given, with the current folder that the record holds:
    for :func:`~mcproton._io.path_text.refuse_unwritable_paths` before anything is read.  A beam model, a
    calibration or action levels given as objects, or as built-in names, are not paths (a name is ASCII)."""
    doses = [dose] if isinstance(dose, (str, Path)) else list(dose or [])
    named = [("--out", out), ("the patient folder", folder), ("--plan", plan), ("--ct", ct), ("--struct", struct)]
    named += [("--dose", d) for d in doses]
    named += [(what, v) for what, v in (("--beam-model", beam_model), ("--calibration", calibration),
                                        ("--config", levels)) if isinstance(v, (str, Path))]
    return [current_folder(), *named]


def _check_time_limit(time_limit_s: Any) -> None:
    """``check(time_limit_s=)`` (``--time-limit``): a positive, finite number of seconds, or None."""
    if time_limit_s is None:
        return
    try:
        ok = float(time_limit_s) > 0 and math.isfinite(float(time_limit_s))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CheckInputError(f"time_limit_s (--time-limit) must be a positive number of seconds (or none: no limit); "
                              f"got {time_limit_s!r}")


def _warn_target_above_level(target_uncertainty: float | None, lv: ActionLevels) -> None:
    """Before the MC: a --target-uncertainty above the action level of the MC's own uncertainty
    (mc_uncertainty_max_pct) makes the check FAIL that level whatever the doses; said before the transport, not
    found in the verdict after it (2026-12-06: a check asked for 3 % ran and FAILed on "MC statistical uncertainty
    3.02 % (action level <= 2.00 %)" with no word before)."""
    from ..settings import percent_for_fraction

    if not target_uncertainty or not 100 * float(target_uncertainty) > lv.mc_uncertainty_max_pct:
        return
    t = float(target_uncertainty)
    hint = percent_for_fraction(t)   # 0.5 for 0.5 %, as mcproton run refuses it
    typed = f"; it is a fraction: if {t:g} % was meant{hint}, give --target-uncertainty {t / 100:g}" if hint else ""
    warn(f"--target-uncertainty {t:g} ({100 * t:g} %) is above the "
         f"action level for the MC's own statistical uncertainty (mc_uncertainty_max_pct {lv.mc_uncertainty_max_pct:g}"
         " %): the check will FAIL that level whatever the doses; give --target-uncertainty "
         f"{lv.mc_uncertainty_max_pct / 100:g} or less for a verdict, or raise mc_uncertainty_max_pct in the "
         f"[levels] table of the --config file (Python: levels=){typed}",
         McprotonRuntimeWarning)


#: The share of the target D95 action level that the noise's reading of a correct plan may take before the check says
#: so ahead of the MC (:func:`_warn_d95_noise_bias`): two thirds, so that a third of the level (1 % of 3 %) is left
#: for a real difference.  The raw D95 of a homogeneous target reads D95_SD (1.645) x its voxels' relative
#: uncertainty low; measured (hygiene audit 31, F2; the real noise of the 9 stored 1 % MCs of
#: tests/data/check_d95_noise in the audit plan's 72 high-dose voxels, on a uniform dose, scaled): a correct plan
#: FAILed the 3 % level in 0 of 9 at 1 % (raw -1.64 +- 0.35 %), 1 of 9 at 1.5 % (-2.46 %), 6 of 9 at 2 % (-3.28 %);
#: independent Gaussian noise 0 of 27, 4 of 27, 23 of 27.  The high-dose voxels carried 0.81-0.90 x the plan's mean
#: uncertainty (u50).
D95_NOISE_SHARE_OF_LEVEL = 2.0 / 3.0


def _warn_d95_noise_bias(target_uncertainty: float | None, lv: ActionLevels) -> None:
    """Before the MC: a --target-uncertainty at which the MC's noise alone reads the D95 of a homogeneous target
    low by more than :data:`D95_NOISE_SHARE_OF_LEVEL` of the target D95 level (1.645 x the uncertainty: the 5th
    percentile of a normal spread) is said, with the target that keeps it within.  The level is not widened for it:
    the raw D95 is the one estimate that catches a real cold spot the noise corrections hide (docs: check, "Noise
    matching of the structure metrics"), and a false PASS is worse than a FAIL that names the noise.  Not said where
    the target is above mc_uncertainty_max_pct (:func:`_warn_target_above_level` says the check will FAIL then)."""
    from .reference_noise import D95_SD

    if not target_uncertainty or not lv.target_d95_pct > 0 or 100 * float(target_uncertainty) > \
            lv.mc_uncertainty_max_pct:
        return
    t = float(target_uncertainty)
    low = D95_SD * 100 * t
    if not low > D95_NOISE_SHARE_OF_LEVEL * lv.target_d95_pct:
        return
    most = math.floor(D95_NOISE_SHARE_OF_LEVEL * lv.target_d95_pct / (D95_SD * 100) * 1000) / 1000
    warn(f"--target-uncertainty {t:g} ({100 * t:g} %): the MC's noise lowers the D95 it reads of a target whose dose "
         f"is homogeneous by about {D95_SD:.3f} x its relative uncertainty there (the 5th percentile of a normal "
         f"spread: -{low:.2f} % at {100 * t:g} %), more than two thirds of the target D95 action level "
         f"(target_d95_pct {lv.target_d95_pct:g} %); that level judges this raw D95 beside its noise corrections "
         "(each misses a real cold spot that another catches), so a correct plan may FAIL it from the noise alone, "
         "which its D95 note then says; give --target-uncertainty "
         f"{most:g} or less to keep a third of the level for a real difference", McprotonRuntimeWarning)


def _time_limited_beams(mc: MCDose) -> list[int]:
    """The beam numbers whose MC the time limit stopped (their stop_reason; a top-up after it names it too)."""
    return sorted(b for b, m in (mc.beam_meta or {}).items() if "time_limit" in str(m.get("stop_reason") or ""))


def noise_remedy(mc: MCDose, target_uncertainty: float | None, primaries: int, time_limit_s: float | None) -> str:
    """What to rerun with for an MC less noisy than ``mc`` (the D95 note's remedy): where a beam stopped at
    --primaries or --time-limit (its stop_reason), the primaries per beam that the 1/sqrt(N) law says reach the
    target (and a lower target only where the target is above the one suggested); where every beam reached the
    target, a lower --target-uncertainty.  Audit 18b, F1: "rerun with a lower --target-uncertainty (e.g. 1 %)"
    was said when the target was 1 % and --primaries had stopped every beam, so following it changed nothing."""
    from .compute import primaries_to_target

    u = 100 * float(mc.mean_rel_uncertainty_50)
    target = None if not target_uncertainty else 100 * float(target_uncertainty)
    aim = max(0.25, min(1.0, u / 2))   # the uncertainty suggested (%): half the reached, within 0.25-1 %
    meta = mc.beam_meta or {}
    stops = [str(m.get("stop_reason") or "") for m in meta.values()]
    # a top-up that the time limit stopped is short too ("target_uncertainty + top-up of ... (time_limit)")
    short = target is None or any(not r.startswith("target_uncertainty") or "time_limit" in r for r in stops)
    if target is not None and target <= aim:
        # the target is low enough: the primaries stopped it; or every beam reached it: a lower one, half of it
        # (not the 0.25 % floor where the target is there already: that rerun would change nothing)
        aim = target if short else (max(0.25, target / 2) if target > 0.25 else target / 2)
    if aim != target and float(f"{aim:.3g}") != aim:   # one to type: 0.5 %, not 0.499062 % (statistics audit F4)
        aim = float(f"{aim:.2g}")
    lower = target is None or target > aim   # a lower target to suggest
    opt = f"--target-uncertainty {aim / 100:g} ({aim:g} %)"
    done = max((int(m.get("primaries") or 0) for m in meta.values()), default=0) or int(primaries)
    need = primaries_to_target(done, u, aim) if math.isfinite(u) and u > 0 else 0
    many = f"to about {need:,} per beam" if need else "(the uncertainty is not known)"
    if not short:   # every beam reached its target: a lower one, with the primaries it needs
        return f"rerun with {opt}" + (f" and --primaries raised {many}" if need > int(primaries) else "")
    if any("time_limit" in r for r in stops):
        fix = (f"rerun with a longer --time-limit than {time_limit_s:g} s (or none)" if time_limit_s else
               "rerun with a longer --time-limit (or none)") + (f" and --primaries raised {many}"
                                                              if need > int(primaries) else "")
    else:
        fix = f"raise --primaries {many} (with a --time-limit if that is too long)"
    return fix + (f" and {opt}" if lower else "")


#: check()'s arguments that RunSettings checks, named as check() and mcproton check name them (no --threads there)
_RUN_ARGUMENTS = {"primaries": "primaries (--primaries)", "seed": "seed (--seed)", "backend": "backend (--backend)",
                  "threads": "threads", "target_uncertainty": "target_uncertainty (--target-uncertainty)"}
#: check()'s and check_batch()'s true/false arguments: a bool only ("false" or "no" is refused, not taken as true)
_SWITCHES = ("phantom_from_struct", "report", "machine_check", "ignore_beam_limiting_devices", "progress",
             "keep_arrays", "skip_checked", "prescription_anyway", "allow_no_struct")
#: the gamma's counts, and what 0 (or None) means for each
_GAMMA_COUNTS = {"gamma_points": ("--gamma-points", "every point"),
                 "gamma_workers": ("--gamma-workers", "one process per gamma up to the cores")}


#: The options of a patient's CT that --phantom-from-struct's phantom does not take, each with its value given
#: (None: the default, taken) and why: the phantom is built from the structure set's material overrides, air
#: elsewhere, and read with its own exact calibration (mcproton/_check/compute.phantom_ct_from_struct).  Before
#: 2026-12-07 they were ignored without a word and the record named them as used (audit 27 "dead options", F2).
_NOT_FOR_THE_PHANTOM = {
    "calibration": ("--calibration", None, "its CT is read with its own exact calibration (each ROI's CT number its "
                                           "material and density)"),
    "struct_overrides": ("--struct-overrides", "apply", "it is built from the structure set's overrides, so they "
                                                        "cannot be left out"),
    "outside_external": ("--outside-external", "ct", "it is air outside its override ROIs already"),
}
#: what a check.json's settings and the report's Settings table say of these options with --phantom-from-struct
PHANTOM_SETTING_SOURCES = {
    "struct_overrides": "--phantom-from-struct: the phantom is built from the structure set's material overrides",
    "outside_external": "--phantom-from-struct: the phantom is air outside the structure set's override ROIs",
    "calibration": "--phantom-from-struct: the phantom CT's own exact calibration",
}


def _refuse_ct_options_with_the_phantom(given: dict[str, Any]) -> None:
    """With ``phantom_from_struct`` (True), refuse the options of a patient's CT that its phantom does not take
    (:data:`_NOT_FOR_THE_PHANTOM`), given with another value than the one the phantom has, naming each and why."""
    if given.get("phantom_from_struct") is not True:
        return
    wrong = []
    for name, (opt, default, why) in _NOT_FOR_THE_PHANTOM.items():
        v = given.get(name, default)
        if v is not None and v != default:
            shown = getattr(v, "name", v)   # an HUCalibration by its name
            wrong.append(f"{name}={shown!r} ({opt} {shown}): {why}")
    if wrong:
        raise CheckInputError(
            "phantom_from_struct (--phantom-from-struct) computes on a phantom built from the structure set's ROI "
            "material overrides, with air elsewhere, not on a CT, so these options do not apply to it and would be "
            f"ignored: {'; '.join(wrong)}; leave {'them' if len(wrong) > 1 else 'it'} out, or give the plan's CT "
            "(--ct, without --phantom-from-struct) to compute on the CT with them")


def _checked_arguments(**given: Any) -> dict[str, Any]:
    """check()'s (and check_batch()'s) arguments checked as given, before anything is read: its true/false switches
    (:data:`_SWITCHES`), ``rbe``, ``target_uncertainty``, ``time_limit_s``, the MC's ``primaries``, ``seed``,
    ``backend`` and ``threads`` (as RunSettings checks them, named as the check names them) and the gamma's counts;
    only the keys given are checked.  Returns them as used: the gamma's counts as ints, 0 as None (every point; one
    worker per gamma, as ``--gamma-workers 0``).  Before 2026-12-06 (the Python-API audit, F6, F8, F9) ``"false"``
    turned a switch on, ``gamma_points=-5`` evaluated all the points but 5, and ``primaries=0``, ``backend="gpu"`` or
    ``target_uncertainty=1e-6`` were refused only after the DICOM was read, as "run.primaries ..." or as the
    per-beam target (the value given x sqrt(beams))."""
    from ..settings import RunSettings, _switch, _whole, percent_for_fraction

    out = dict(given)
    for name in _SWITCHES:
        if name in given:
            try:
                out[name] = _switch(name, given[name])
            except ValueError as exc:
                raise CheckInputError(str(exc)) from None
    _refuse_ct_options_with_the_phantom(out)
    plausible_rbe(given.get("rbe"), "rbe (--rbe)", leave_out="or leave it out", error=CheckInputError)
    target = given.get("target_uncertainty")
    try:
        t = 0.0 if target is None else float(target)
    except (TypeError, ValueError):
        t = float("nan")
    if t != 0 and not 0 < t < 1:
        raise CheckInputError(f"target_uncertainty (--target-uncertainty) must be a fraction in (0, 1), e.g. 0.01 "
                              f"for 1 %; got {target!r}{percent_for_fraction(t)}")   # "" below 0.1 and for NaN
    _check_time_limit(given.get("time_limit_s"))
    run = {k: given[k] for k in _RUN_ARGUMENTS if k in given}
    if run.get("target_uncertainty") == 0:
        run["target_uncertainty"] = None   # 0: no target (--target-uncertainty 0)
    try:   # the value given, not the per-beam target that the MC's own RunSettings gets
        RunSettings(**run)
    except ValueError as exc:
        msg = str(exc)
        for name, key in _RUN_ARGUMENTS.items():
            msg = msg.replace(f"run.{name}", key)
        raise CheckInputError(msg) from None
    for name, (opt, zero) in _GAMMA_COUNTS.items():
        v = given.get(name)
        if v is None:
            continue
        try:
            n = _whole(name, v, "a whole number")
        except ValueError:
            n = -1
        if n < 0:   # a slice [:-5] of the points (the automation audit, F8; the Python-API audit, F8)
            raise CheckInputError(f"{name} ({opt}) = {v!r}: give a positive number (or 0: {zero})")
        out[name] = n or None
    return out


def _given_prescription(prescription: Any) -> float | dict[str, float] | None:
    """``check(prescription=...)`` checked: None, one dose, or {target ROI name: dose}; each finite and > 0 (Gy(RBE),
    all fractions)."""
    if prescription is None:
        return None
    items = prescription.items() if isinstance(prescription, Mapping) else [(None, prescription)]
    out: dict[str | None, float] = {}
    for nm, v in items:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        if not (math.isfinite(x) and x > 0):
            raise CheckInputError(f"prescription{'' if nm is None else ' of ' + repr(nm)} must be a dose in Gy "
                                  f"above 0 (Gy(RBE), all fractions of the plan); got {v!r}")
        out[nm] = x
    return out[None] if None in out else {str(k): v for k, v in out.items()}


def _apply_given_prescription(given: float | dict[str, float], targets: Sequence[str], masks: Mapping[str, np.ndarray],
                              inp: CheckInputs, rbe: float | None, anyway: bool, roi_numbers: Mapping[str, int],
                              log: Callable[[str], None]) -> tuple[dict[str, float], str, list[str]]:
    """Each target's prescription from ``check(prescription=...)``, converted as the plan's TargetPrescriptionDose
    and checked against it (a target's own, ROI=GY: its dose reference by ``roi_numbers``) and the TPS dose's median
    in the target (prescription.given_prescriptions: a unit slip refused unless ``anyway``), the source named in the
    report and the notes, each also said in the log (how a value was read, or kept); before the MC.  A name that is
    not a target of the structure set on the dose grid is refused (a typo would leave the target without V95/V100
    silently)."""
    if isinstance(given, dict):
        unknown = sorted(set(given) - set(targets))
        if unknown:
            raise CheckInputError(f"prescription names {unknown}, which are not targets of the structure set on the "
                                  f"dose grid; its targets: {sorted(targets) or 'none'} (ROI names as in the RT "
                                  "Struct)")
    tps = inp.total_dose_gy()
    medians = {nm: float(np.median(tps[masks[nm]])) for nm in targets}
    pres, how, notes = given_prescriptions(given, targets, plan_dose_references(inp.plan_path), inp.dose_type, rbe,
                                           inp.fractions, inp.all_fractions is False, medians, anyway,
                                           roi_numbers=roi_numbers)
    for note in notes:
        log(f"mcproton check: note: {note}")
    return pres, how, notes


#: What an RT Dose's free text says of water or medium (case-insensitive; DICOM has no attribute for it): "to
#: medium", "medium dose", "Dm", "D_m", "D(m)" (and the same for water).  Read from every manufacturer: mcproton
#: writes "... to medium, physical ..." in its DoseComment, other writers "Dose to medium", "AcurosPT Dm"; before
#: (the dose-to-water audit of 2026-12-06, F1) only a Manufacturer exactly "mcproton" and a lower-case "to medium"
#: were read, and every other file was taken as dose to water without a word.
_SAID_TO = {k: re.compile(rf"(?<![a-z0-9])(?:(?:dose[\s_-]*)?to[\s_-]*{k}|{k}[\s_-]*dose|d[\s_]?\(?{k[0]}\)?)"
                          r"(?![a-z0-9])", re.IGNORECASE) for k in ("water", "medium")}
#: The RT Dose's free-text attributes read for it, in this order.
DOSE_TO_FIELDS = ("DoseComment", "SeriesDescription")
#: An older mcproton's dose label cut short: before 2026-12-06 its DoseComment ended with the label ("to medium,
#: physical") and was cut to the 64 characters of an LO, or to make room for the plan reference's note, so that
#: eff5010's demo says "MC dose, 1 fx, 3 beams, to med; no RT Plan: placeholder plan ref" (compat audit of 2026-12-06,
#: F4).  Read only in the DoseComment of an RT Dose whose Manufacturer is "mcproton": its writer's one clause
#: "to ..." is the dose label, and "m" starts only "medium", "w" only "water", so "to " and a part of the word (not
#: the whole: _SAID_TO reads that) before the "; " of a note or at the end of the comment is that label cut; "to"
#: alone says nothing.
_CUT_TO = {k: re.compile(rf"(?<![a-z0-9])to ({'|'.join(k[:n] for n in range(len(k) - 1, 0, -1))})\s*(?:;|$)",
                         re.IGNORECASE) for k in ("water", "medium")}


def dose_to_statement(paths: Iterable[str | Path]) -> tuple[str | None, str]:
    """Dose to "water" or "medium" as the TPS RT Doses ``paths`` say it in their free text (:data:`DOSE_TO_FIELDS`,
    :data:`_SAID_TO`), and what was read from where (for the log and the record).  None where a file says
    neither, says both (e.g. "dose to medium converted to water") or the files disagree."""
    from .._io.dicom_common import read_dicom_header

    said: dict[str, list[str]] = {}
    for p in paths:
        ds = read_dicom_header(p)   # an RT Dose read before (a raw data set too)
        maker = str(ds.get("Manufacturer", ""))
        found = []
        for k in DOSE_TO_FIELDS:
            text = str(ds.get(k, "") or "")
            hits = {w for w, rx in _SAID_TO.items() if rx.search(text)}
            cut = ""
            if not hits and k == "DoseComment" and maker.strip().lower() == "mcproton":
                m = {w: rx.search(text) for w, rx in _CUT_TO.items()}
                hits = {w for w, x in m.items() if x}
                cut = "".join(f"; its {x.group(0).rstrip('; ')!r} read as 'to {w}': the dose label of an older "
                              "mcproton, cut by the 64 characters of the DoseComment" for w, x in m.items() if x)
            if hits:
                found.append((hits, f"{k} {text!r} of {Path(p).name} (Manufacturer {maker!r}{cut})"))
        kinds = set().union(*(h for h, _ in found)) if found else set()
        if len(kinds) != 1:
            why = ("names neither water nor medium" if not kinds else
                   "names both water and medium: " + "; ".join(w for _, w in found))
            return None, f"{Path(p).name}'s {' / '.join(DOSE_TO_FIELDS)} {why}"
        said.setdefault(kinds.pop(), []).append(found[0][1])
    if len(said) != 1:
        return None, ("the TPS RT Doses disagree: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(said.items()))
                      if said else "no TPS RT Dose")
    (k, where), = said.items()
    return k, "; ".join(where)


def stated_dose_to(paths: Iterable[str | Path]) -> str | None:
    """Dose to "water" or "medium", where every TPS RT Dose of ``paths`` says so (:func:`dose_to_statement`); None
    where a file does not say, or they disagree."""
    return dose_to_statement(paths)[0]


#: The water/medium difference the check's messages quote: mcproton's own D_w/D_m (docs/physics.md "Scoring";
#: the dose-to-water audit of 2026-12-06, F5: "in bone up to 10 %" understated it).
WATER_MEDIUM_TEXT = ("in soft tissue the two differ by 0-3 % (fat 3 %), in bone by 8-16 % (mcproton's D_w/D_m: "
                     "cortical bone 1.11 at 100 MeV, up to 1.16 near the end of range), in metal by 40-60 %")


def _ratios_compared(rows: Sequence[JudgedAgainst], beam_dose: Mapping[int, dict], tps: np.ndarray, mc: MCDose,
                     body: np.ndarray) -> dict[int | None, Mapping[str, float]]:
    """The median MC/TPS voxel ratios (compare.beam_dose_ratio) that reference_noise judges a noisy reference's
    failed rows by: each beam's with a per-beam TPS dose (``beam_dose``), and the plan dose's (``tps`` against the
    MC total), computed only where a row's TPS dose states its own noise and failed ({} otherwise)."""
    if not any(j.stated_pct is not None and not j.row.get("passed") for j in rows):
        return {}
    out: dict[int | None, Mapping[str, float]] = {b: r for b, r in beam_dose.items() if r.get("voxels")}
    r = beam_dose_ratio(tps, mc.total_gy_zyx, body, mc.uncertainty_rel_zyx)
    if r.get("voxels"):
        out[None] = r
    return out


def stated_uncertainty_record(d: Any) -> dict[str, Any]:
    """What check.json's record of a TPS RT Dose (``provenance.inputs``) adds where the file states its own
    statistical uncertainty (rtdose.stated_uncertainty: a dose mcproton wrote): ``stated_uncertainty_pct`` and
    ``stated_uncertainty_source`` (the attribute and the words read); {} for a dose that states none."""
    pct = getattr(d, "stated_uncertainty_pct", None)
    if pct is None:
        return {}
    return {"stated_uncertainty_pct": float(pct), "stated_uncertainty_source": d.stated_uncertainty_source}


def _tps_files(inp: CheckInputs) -> list:
    return ([inp.total.path] if inp.total is not None else []) + [d.path for d in inp.beams.values()]


def _gamma_step_lines(jobs: Sequence[tuple[tuple, dict]], gamma_points: int | None, workers: int, n_plan: int,
                      n_beams: int, n_regions: int) -> list[str]:
    """The step lines of the 3-D gammas as they start (``mcproton check``'s log): how many, on how many points, where;
    with every point (``gamma_points`` None: --gamma-points 0) and more than :data:`GAMMA_ESTIMATE_POINTS` of them, a
    second line with the time to expect (:func:`mcproton._check.compare.gamma_time_estimate`, at the measured
    :data:`GAMMA_CPU_S_PER_POINT`)."""
    from .._run.streaming import duration

    counted: dict[tuple[int, int], int] = {}   # the plan dose's searches share their reference and body
    for args, kw in jobs:   # (axes, reference, evaluated, body)
        counted.setdefault((id(args[1]), id(args[3])),
                           gamma_evaluable_points(args[1], args[3], norm_gy=kw.get("norm_gy")))
    points = [counted[id(args[1]), id(args[3])] for args, _ in jobs]
    used = [min(n, gamma_points) if gamma_points else n for n in points]
    plan = f"for the plan dose's {len(GAMMA_CRITERIA)} criteria"
    more = [f"{n} {what}" for n, what in ((n_beams, "per beam"), (n_regions, "per field region")) if n]
    searches = f"{len(jobs)} searches " + (f"({n_plan} {plan}, {', '.join(more)})" if more else plan)
    subset = f"at most {gamma_points:,} per search, at random among" if gamma_points else "every one of"
    where = (f"in {workers} worker processes beside the next steps" if workers > 1 else
             "in this process after the next steps")
    lines = [f"3-D gammas: {searches} on {sum(used):,} points in all ({subset} the points above 10 % of each one's "
             f"TPS dose maximum), {where} ..."]
    if not gamma_points and sum(points) > GAMMA_ESTIMATE_POINTS:
        lo, hi, busiest = gamma_time_estimate(points, workers)
        lines.append(f"3-D gammas of every point (--gamma-points 0): {sum(points):,} points, {busiest:,} of them in "
                     f"the busiest process; expect about {duration(lo).strip()} to {duration(hi).strip()} for them "
                     f"({GAMMA_CPU_S_PER_POINT[0] * 1e3:.2f}-{GAMMA_CPU_S_PER_POINT[1] * 1e3:.1f} ms of CPU per point "
                     "and search, measured on 1-2 mm clinical TPS grids: mcproton/_check/compare.py); a subset "
                     "(--gamma-points N, default 10000) bounds it")
    return lines


def _dose_to_of(inp: CheckInputs, dose_to: str | None, log: Callable[[str], None]) -> str:
    """The dose the check compares, to water or medium: as given; else what the TPS doses say
    (:func:`dose_to_statement`, any writer); else water, what clinical proton planning systems report, said in the
    log (the data-driven test :func:`water_medium_test` then looks for a dose to medium in bone).  A dose that says
    the other is warned about: compared as given.  Before (2026-12-05) the demo's dose to medium was compared as
    dose to water without a word."""
    stated, where = dose_to_statement(_tps_files(inp))
    if dose_to is None:
        if stated is not None:
            log(f"mcproton check: the TPS dose is dose to {stated}, as read from its {where}: the MC dose is computed "
                "to match (--dose-to to say otherwise)")
        else:
            log(f"mcproton check: the TPS dose is compared as dose to water, assumed: DICOM has no attribute for it "
                f"and {where}; give --dose-to medium if the planning system reported dose to medium "
                f"({WATER_MEDIUM_TEXT})")
        return stated or "water"
    if stated is not None and stated != dose_to:
        warn(f"the TPS dose says it is dose to {stated} (read from its {where}), but dose to {dose_to} was asked "
             f"(--dose-to): compared as dose to {dose_to}; {WATER_MEDIUM_TEXT}", McprotonWarning)
    return dose_to


def _dose_to_source(inp: CheckInputs, given: str | None) -> str:
    """Where the check's dose to water or medium came from (:func:`_dose_to_of`), for the record."""
    if given is not None:
        return "given (--dose-to)"
    stated, where = dose_to_statement(_tps_files(inp))
    return (f"read from the TPS RT Dose's {where}" if stated is not None
            else f"the default (dose to water, what clinical proton planning systems report), assumed: {where}")


def plan_checks_done(mc: MCDose, machine_check: bool) -> dict[str, str]:
    """check.json's ``settings.machine_check`` and ``settings.spot_tune_check``: what was checked of the plan
    against the beam model (the MC's provenance, from plan_to_beams: "yes: ...", "not possible: ...", "off ..."),
    not the option alone (audit 24 swallow, F2: a model that names no machines was recorded as checked)."""
    prov = mc.provenance or {}
    unknown = "not recorded with the reused MC dose"
    return {"machine_check": "off (--no-machine-check)" if not machine_check
            else str(prov.get("machine_check") or unknown),
            "spot_tune_check": str(prov.get("spot_tune_check") or unknown)}


def _check_defaults() -> dict[str, Any]:
    """check()'s parameters and their defaults (the record's Python call lists the others)."""
    import inspect

    return {k: v.default for k, v in inspect.signature(check).parameters.items()
            if v.default is not inspect.Parameter.empty}


def _check_reused_mc_inputs(mc: MCDose, inp: CheckInputs) -> None:
    """Refuse a reused MC dose (``check(mc=...)``) of other inputs than this check's: another TPS grid (its voxels
    would be compared index by index with others, or numpy would fail on the shapes), other fractions (all against
    one) or another plan (rtdose audit F3).  An MC dose made before these were recorded is checked on its shape."""
    from .compute import reuse_key

    want = reuse_key(inp)
    why = []
    grid = mc.provenance.get("tps_grid")
    shape = list(np.shape(mc.total_gy_zyx))
    if shape != want["tps_grid"]["shape_zyx"]:
        why.append(f"its grid is {' x '.join(map(str, shape))} voxels (z, y, x), the TPS dose's "
                   + " x ".join(map(str, want["tps_grid"]["shape_zyx"])))
    elif grid is not None:
        for key, what in (("origin_mm", "origin (first voxel centre, mm)"), ("voxel_size_mm", "voxel size (mm)")):
            if not np.allclose(grid.get(key, []), want["tps_grid"][key], atol=1e-3):
                why.append(f"its grid's {what} is {[round(v, 3) for v in grid[key]]}, the TPS dose's "
                           f"{[round(v, 3) for v in want['tps_grid'][key]]}")
    fx = mc.provenance.get("fractions_computed")

    def held(f: dict) -> int:   # how many fractions' dose it holds (one fraction of 5 = all of a 1-fraction plan)
        return int(f["number"]) if f["all"] else 1

    if fx is not None and held(fx) != held(want["fractions"]):
        def said(f: dict) -> str:
            return f"all {f['number']} fractions" if f["all"] else f"one fraction of {f['number']}"
        why.append(f"it holds {said(fx)}, the TPS dose {said(want['fractions'])}")
    plan = mc.provenance.get("plan_sop_instance_uid")
    if plan is not None and plan != inp.plan.sop_instance_uid:
        why.append(f"it was computed for the plan {plan}, this check's plan is {inp.plan.sop_instance_uid}")
    if why:
        raise CheckInputError("the reused MC dose (mc=) is not of this check's inputs: " + "; ".join(why)
                              + ": it would be compared with the wrong TPS voxels or dose; recompute the MC (leave out "
                              "mc=), or reuse it only with the TPS dose and plan it was computed for")


def _check_reused_mc(mc: MCDose, dose_type: str, dose_to: str, rbe: float | None) -> None:
    """Refuse a reused MC dose (``check(mc=...)``) that holds another dose than the one compared: dose to
    water/medium, physical or RBE-weighted with another constant."""
    want = mc_rbe(dose_type, rbe)
    has_to, has_rbe = mc.provenance.get("dose_to"), mc.provenance.get("rbe")
    if has_to != dose_to or has_rbe is None or abs(float(has_rbe) - want) > 1e-9:
        raise CheckInputError(f"the reused MC dose (mc=) is dose to {has_to} x RBE {has_rbe}, but this check compares "
                              f"a DoseType {dose_type} dose to {dose_to} (x RBE {want:g}): it would be compared and "
                              "labelled as the other dose; recompute the MC (leave out mc=) or give the dose_to/rbe "
                              "it was computed with")


def _check_reused_mc_models(mc: MCDose, calibration: Any, beam_model: Any, physics: Any = None) -> Any:
    """Refuse a reused MC dose (``check(mc=...)``) computed with another HU calibration or beam model than the one
    this check is given (either left out: the MC dose's own).  They were dropped without a word, and a loop over
    calibrations or beam models that reuses one MC dose found them all the same (the long-lived-process audit, F3).
    A calibration is compared by what it maps HU to (:meth:`HUCalibration.data_sha256`), read with ``physics``
    (left out: the reused MC dose's own, whose water model turns a HU -> SPR table into densities), a beam model by the
    SHA-256 of its file (and table) where both the MC dose's record and the model given have it, else (a model made
    in memory, or an MC dose recorded without its model's file) by name: the same name is accepted with a warning
    that the model could not be matched by content.  Before, an MC dose without a file record was refused whenever
    the model given had one, with a message naming the same model on both sides (review 2 of 2026-12-06, F7).
    Returns the calibration given, as read (None where left out): its tube voltage is compared with the CT's anew."""
    cal = None
    if calibration is not None:
        from .._io.hu_calibration import given_calibration

        # as build_geometry reads it for the MC, with the physics asked for; left out, the reused MC dose's own (its
        # water model turns a HU -> SPR table into densities: review D of 2026-12-07, R3, read it in ICRU 90 water
        # against an MC dose of PSTAR water and refused it, naming the same calibration on both sides)
        has_physics = mc.provenance.get("physics")
        used = physics if physics is not None else has_physics
        cal = given_calibration(calibration, used)
        rec = mc.provenance.get("calibration_record") or {}
        has_name = rec.get("name") or mc.provenance.get("calibration")
        has, want = rec.get("data_sha256"), cal.data_sha256()
        if (has != want) if has else (has_name is not None and has_name != cal.name):
            def water(ph: Any) -> str:   # as HUCalibration.load_for_physics reads it (None: the default)
                wm = ph.get("water_model") if isinstance(ph, dict) else getattr(ph, "water_model", None)
                return str(wm or PhysicsSettings.water_model)

            models = (f" (the same name: a HU -> SPR table is converted in the physics' water, {water(has_physics)} "
                      f"for the MC dose, {water(used)} here)" if has_name == cal.name and has_physics is not None
                      and water(has_physics) != water(used) else "")
            raise CheckInputError(
                f"the reused MC dose (mc=) was computed with the HU calibration {has_name!r}"
                + (f" (data SHA-256 {has[:12]})" if has else "") + f", but this check asks for {cal.name!r} (data "
                f"SHA-256 {want[:12]}){models}: it is not the MC dose asked for; recompute the MC (leave out mc=) or "
                "leave out calibration= (the reused MC dose's own)" + (" and physics=" if models else ""))
    if beam_model is not None:
        from .._io.beam_model import load_beam_model

        model = beam_model if hasattr(beam_model, "at") else load_beam_model(beam_model)
        want_rec = model.provenance() if hasattr(model, "provenance") else {}
        has_rec = mc.provenance.get("beam_model_file") or {}
        has_name, want_name = mc.provenance.get("beam_model"), getattr(model, "name", str(beam_model))
        keys = [k for k in ("sha256", "table_sha256") if has_rec.get(k) and want_rec.get(k)]
        differs = (any(has_rec.get(k) != want_rec.get(k) for k in keys) if keys
                   else has_name is not None and has_name != want_name)
        if not keys and not differs and has_name is not None and (has_rec.get("sha256") or want_rec.get("sha256")):
            from .._io.errors import warn

            missing = "the reused MC dose (mc=) does not record" if not has_rec.get("sha256") else \
                f"the beam model given ({want_name!r}, made in memory) has no"
            warn(f"{missing} the SHA-256 of its beam model's file, so the beam model {want_name!r} was matched to it "
                 "by name only: a model file changed since under the same name would not be seen (recompute the MC, "
                 "leaving out mc=, to be sure)")
        if differs:
            def sha(r: dict) -> str:
                return f" (SHA-256 {str(r.get('sha256'))[:12]})" if r.get("sha256") else ""

            raise CheckInputError(
                f"the reused MC dose (mc=) was computed with the beam model {has_name!r}{sha(has_rec)}, but this "
                f"check asks for {want_name!r}{sha(want_rec)}: it is not the MC dose asked for; recompute the MC "
                "(leave out mc=) or leave out beam_model= (the reused MC dose's own)")
    return cal


#: the most ROI names one note on the structures left out of the table lists (a structure set of 150 ROIs)
_LEFT_OUT_NAMES = 12


def _contour_volume_off(structs: dict[str, dict], voxel_mm) -> list[str]:
    """The note on the structures whose mask volume on the TPS grid (``volume_cm3``: voxels, each in or out by its
    centre) is outside :data:`mcproton.dvh.MASK_CONTOUR_RATIO_RANGE` of their contour volume (``contour_volume_cm3``,
    the planning system's notion of the volume): their metrics are of another volume than the one planned (infant
    audit 2026-12-06, F3: a lens of 0.136 cm3 was one 4 mm voxel, 47 %).  [] or one note."""
    lo, hi = MASK_CONTOUR_RATIO_RANGE
    off = [f"{nm!r} mask {r['volume_cm3']:.3g} cm3, contour {r['contour_volume_cm3']:.3g} cm3 "
           f"({r['volume_cm3'] / r['contour_volume_cm3']:.2f})" for nm, r in structs.items()
           if r.get("contour_volume_cm3") and not lo <= r["volume_cm3"] / r["contour_volume_cm3"] <= hi]
    if not off:
        return []
    size = " x ".join(f"{float(v):g}" for v in voxel_mm)
    return [f"the mask volume of {len(off)} structure(s) on the TPS dose grid ({size} mm) differs from its contour "
            f"volume (polygon areas x slice thickness, the planning system's volume) by more than a factor {hi:g}: "
            f"{'; '.join(off)}; their metrics are of the voxels whose centres lie inside the contours (the same "
            "voxels for TPS and MC, so the comparison is fair), not of the structure's planned volume"]


def _left_out_notes(masks: dict[str, np.ndarray], types: dict[str, str], empty_why: dict[str, str]) -> list[str]:
    """Notes on the ROIs the structure table leaves out (compare.structure_stats: no voxel on the TPS grid, or of a
    type without dose metrics), each with the reason: before, an OAR beyond a cropped dose grid or without closed
    contours was missing from the report without a word, and a PTV without contours was said to "have contours"
    (structure audit F7)."""
    notes: list[str] = []
    oars: dict[str, str] = {}   # ROI name: why (said once per reason: rtstruct.reasons_grouped, audit 18b F10)
    other: list[str] = []
    for nm, m in masks.items():
        kind = classify(nm, types.get(nm, ""))
        if kind == "other":
            other.append(f"{nm!r} ({types.get(nm, '') or 'no type'})")
        elif not m.any():
            why = empty_why.get(nm, "has no voxel on the TPS dose grid")
            if kind == "target":   # its levels are not evaluated: say so
                hint = ("re-export the structure set with its contours" if why.startswith("has no closed") else
                        "is the structure set this plan's, and the grid the plan's?")
                notes.append(f"target {nm!r} {why}, so it has no voxel on the TPS dose grid and its D95 and Dmean "
                             f"are not checked: {hint}")
            else:
                oars[nm] = why

    def listed(items: list[str]) -> str:
        more = len(items) - _LEFT_OUT_NAMES
        return "; ".join(items[:_LEFT_OUT_NAMES]) + (f"; and {more} more" if more > 0 else "")

    if oars:
        from .._io.rtstruct import reasons_grouped

        notes.append(f"{len(oars)} structure(s) are not in the structure table, having no voxel on the TPS dose "
                     f"grid: {'; '.join(reasons_grouped(oars, _LEFT_OUT_NAMES))}")
    if other:
        notes.append(f"{len(other)} ROI(s) are not in the structure table, their types having no dose metrics "
                     f"(markers, control, support, bolus, ...): {listed(other)}")
    return notes


@records_warnings
@locks_output()   # two checks never write one --out folder at once (mcproton/_io/lock.py)
@stops_cleanly    # SIGINT/SIGTERM: exit status 128 + signal, saying what --out holds (mcproton/_check/stop.py)
def check(plan: str | Path | None = None, dose: str | Path | Sequence[str | Path] | None = None, *,
          ct: str | Path | None = None, struct: str | Path | None = None, folder: str | Path | None = None,
          beam_model: Any = None, out: str | Path | None = None, calibration: Any = None,
          phantom_from_struct: bool = False, dose_to: str | None = None, rbe: float | None = None,
          fractions: str = "auto", dose_type: str | None = None, primaries: int = 10_000_000,
          target_uncertainty: float | None = 0.01, seed: int = 12345, backend: str = "auto",
          threads: int | None = None, levels: ActionLevels | str | Path | None = None,
          gamma_points: int | None = 10000, gamma_workers: int | None = 1, report: bool = True,
          mc: MCDose | None = None, machine_check: bool = True,
          prescription: float | Mapping[str, float] | None = None, prescription_anyway: bool = False,
          ct_series: str | None = None, allow_no_struct: bool = False,
          struct_overrides: str = "apply", outside_external: str = "ct", physics: Any = None,
          patient_position: str | None = None, ignore_beam_limiting_devices: bool = False,
          time_limit_s: float | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None) -> CheckResult:
    """Recompute a plan with Monte Carlo on its planning-system dose grid and compare (see docs/check.md); the
    Python form of ``mcproton check``, each parameter one of its options.  Returns a :class:`CheckResult`.

    plan, dose, ct, struct : the RT Ion Plan, the TPS RT Dose(s) (a plan dose and/or per-beam doses), the CT
        folder and the RT Struct (paths).
    folder : a folder holding them instead (searched recursively, the files found and paired by UID).
    allow_no_struct : check without a structure set where the plan names one (its ReferencedStructureSetSequence)
        that is not among the inputs (default False: refused, since without it there are no target D95/Dmean rows).
        Whenever no structure set is used, a warning says so and the verdict reads "PASS (without a structure set:
        the target D95/Dmean rows were not evaluated)" (``CheckResult.no_structures``).
    beam_model : the beam model: "dcpt_v5", "dcpt_v2", a .toml or an MCsquare BDL file, or a model loaded with
        ``mcproton.load_beam_model`` (required: without one the check is refused).
    out : a folder for the report (check.html, check.json) and the MC dose as RT Dose (RD_mc.dcm), created and
        held locked while the check runs; an earlier check's files in it are replaced (a file mcproton did not
        write is refused, not overwritten).  None (default): nothing is written, the result is returned only.
    report : with ``out``: write the HTML report and its figures (default True); False: check.json and the MC
        RT Dose only (faster).
    struct_overrides : "apply" (default): the structure set's material overrides (ROIPhysicalPropertiesSequence:
        a bolus, a couch, an artifact set to tissue), which the planning system computed with, replace the CT in
        their ROIs, as in the planning system; "ignore": the CT as it is (the notes say what was ignored).
    outside_external : "ct" (default): the CT's material outside the External ROI (a couch, a head rest, a mask in
        the image) is transported, and each beam's share of it before the isocentre is named in the diagnostics;
        "air": air outside the External and its SUPPORT / FIXATION / BOLUS ROIs, as in a planning system that
        computes inside them only.
    ct_series : the SeriesInstanceUID of the plan's CT where the folder (or ``ct``) holds several CT series and
        the structure set does not name the one its contours were drawn on (a localizer is always skipped).
    phantom_from_struct : no CT: build one from the structure set's ROI material overrides (phantoms), air
        elsewhere, read with its own exact calibration; ``calibration``, ``struct_overrides="ignore"`` and
        ``outside_external="air"`` do not apply to it and are refused with it.
    dose_to : "water" or "medium": what the TPS dose is (DICOM does not say).  Default None: what the TPS dose
        says where it says (an RT Dose mcproton wrote names it in its DoseComment), else "water" (what clinical
        proton TPSs report).
    rbe : constant RBE for a DoseType EFFECTIVE dose (default 1.1); with a PHYSICAL dose (a warning) it only
        converts the plan's TargetPrescriptionDose, or a ``prescription`` given (Gy(RBE)), to Gy for V95/V100.
    dose_type : "PHYSICAL" or "EFFECTIVE": what the TPS dose is, whatever its DoseType says (default None: its
        DoseType).  An OpenTPS dose labelled EFFECTIVE is refused without it (OpenTPS labels its physical MCsquare
        doses so).
    fractions : "auto" (from DoseSummationType), "all" or "one".
    patient_position : the plan's PatientPosition (HFS, ...) for patient setups that have none in the file
        (OpenTPS leaves it empty, which is refused without this; a plan without setups gets one); a setup with
        another position is refused.  Whatever its source, a set-up that differs from the CT's PatientPosition,
        or beams set up in different positions, are refused before the transport; where the CT has none, the
        report names the position as unchecked.
    physics : the MC's physics settings (:class:`~mcproton.settings.PhysicsSettings` or a dict of its fields, as
        ``[physics]`` of ``mcproton run``; default None: the defaults), e.g. ``{"ivalue_set": "elemental"}`` to
        compare with a code that takes the tissues' I-values so (docs/check.md, the OpenTPS/MCsquare case); in the
        provenance.  Its water model and I-values also turn a HU -> SPR ``calibration`` into densities and a range
        shifter's WET into a thickness, as in ``mcproton run``.  Given with a reused MC dose (``mc=``) of other
        physics, refused.
    primaries, target_uncertainty : the MC stops at the target (mean relative uncertainty of the plan dose over
        the voxels above 50 % of its maximum; default 1 %; None or 0: no target, each beam runs all its
        ``primaries``) or at ``primaries`` per beam.  The beams run one after
        the other, each to ``target_uncertainty`` x sqrt(number of beams) in its own dose (beams of equal weight
        over the high-dose region then add up to the target); where the plan dose is still above the target
        (beams that overlap less), each beam is topped up with independent random numbers for the primaries
        the 1/sqrt(N) law says are missing (+10 %, at least 1000), the runs averaged by primaries, in at most 3
        passes until the plan dose reaches the target.  The plan dose's uncertainty is reported; a target above
        the action level mc_uncertainty_max_pct is warned before the MC (the check will FAIL that level).
    time_limit_s : stop the MC after this many seconds of transport, over all the beams (as ``mcproton run``'s
        run.time_limit_s; each beam gets its share; checked between batches); default None: no limit.  The check
        goes on with the dose reached, and the report says so: where the plan dose's uncertainty is then above the
        target, the uncertainty row and a note name the time limit, and the uncertainty's action level
        (mc_uncertainty_max_pct) judges it as any other MC's (above it: FAIL).
    seed : the MC's run seed (default 12345; the same seed gives the same MC dose); it also seeds the gamma's
        random subset of points and the noise matching.
    backend : "auto" (default: the GPU if CuPy finds one, else the CPU), "cpu" or "cuda".
    threads : CPU threads of the MC on the CPU backend (default None: OMP_NUM_THREADS, else all the CPUs the
        process may use).
    levels : ActionLevels, or a TOML file with a [levels] table (default: the built-in levels, which
        ``mcproton check --print-levels`` prints as such a file to copy and edit).
    calibration : the HU calibration (a name, a file or an HUCalibration); None: the default schneider2000, with
        which a CT that mcproton wrote from densities with another one (its ImageComments name it) is refused
        (given: a warning).
    mc : reuse the MC dose of an earlier check of the same inputs (skips the transport).  A ``calibration`` or
        ``beam_model`` given with it must be the one it was computed with (else refused; a calibration is read with
        ``physics``, left out: with the MC dose's own); left out: its own.
    machine_check : refuse a plan whose beams are for a treatment machine the beam model does not name (default).
    ignore_beam_limiting_devices : compute a beam whose control points place an MLC, jaws or an aperture as if the
        device were fully open, with a warning (default False: such a plan is refused, as mcproton does not model
        the device; for a device known to touch no spot).
    prescription : the targets' prescribed dose for V95/V100, the same quantity as the plan's TargetPrescriptionDose
        and converted as it is: Gy(RBE) for all fractions of the plan, divided by the RBE (1.1, or ``rbe``) for a
        PHYSICAL TPS dose and by the fractions where the TPS dose holds one; a number for every target, or {target
        ROI name: dose} (a simultaneous boost).  A physical prescription is given x the RBE (1.8 Gy: 1.98); against a
        PHYSICAL TPS dose a value no TargetPrescriptionDose of the plan checks gets a note saying how it was read.
        It replaces the plan's TargetPrescriptionDose; without either, each target's V95/V100 are relative to its
        own TPS median.  Refused before the MC where it differs from the plan's TargetPrescriptionDose (a target's
        own dose: the dose reference of its ROI, where the plan has one, else the plan's other doses where the
        target's TPS median lies nearer them than the value) by the factor of a unit slip (x 100: cGy;
        / the fractions: one fraction; / the RBE: a physical dose), or from the TPS dose's median in the target by
        such a factor or by more than a factor 2, unless
        ``prescription_anyway``.
    prescription_anyway : keep a ``prescription`` that the check above refuses (a deliberate other prescription);
        the report's source of the prescription and a note say what it differs from (default False).
    gamma_workers : processes for the independent 3-D gammas (1: here, one after the other; None or 0: one per
        gamma up to the cores, as ``--gamma-workers 0``; the same results; negative: refused); at most as many as the
        memory available holds (compare.gamma_worker_count).  The workers are
        fresh interpreters that import only mcproton (not the calling script), so no ``if __name__ ==
        "__main__":`` guard is needed.  While they run, this process computes the structure statistics, the ranges
        and the report's figures that do not show the gammas.
    gamma_points : the size of the random (seeded) subset of points above the threshold at which each 3-D gamma
        is evaluated (default 10 000); None or 0: every point (slow on large grids); negative: refused.
    progress : True (default): a progress bar of the MC on stderr and a step line in ``log`` as each long step
        starts (reading the CT, its conversion to materials, the structures, the MC doses to the TPS grid, the 3-D
        gammas with their number of points and, with every point and more than 100 000 of them, the time to
        expect, the DVH metrics, the ranges, the figures, the report); False (``--quiet``): neither.  It does not
        silence the other status lines (``log``).
    log : where the status lines go ("mcproton check: ...", "beam 1/2: ...", about 15 per check): a callable
        given each line as text (no newline).  Default None: stderr.  A script silences them with
        ``log=lambda line: None``, or keeps them with ``log=logging.getLogger("mycheck").info``.  Warnings are
        not status lines: they go through Python's ``warnings`` and into ``CheckResult.warnings``.

    The true/false arguments (``phantom_from_struct``, ``report``, ``machine_check``,
    ``ignore_beam_limiting_devices``, ``progress``) take True or False only: text such as "false" is refused (it
    would read as true).  Every argument is checked as given before anything is read: ``primaries``, ``seed``,
    ``backend``, ``threads`` as :class:`~mcproton.settings.RunSettings` checks them, ``target_uncertainty`` also
    against RunSettings' floor of 1e-4 (before it is shared among the beams), ``rbe``, ``time_limit_s`` and the
    gamma's counts; a refusal is a :class:`~mcproton.errors.CheckInputError` naming the argument (and its option).

    The record (``provenance`` and ``settings`` of check.json, the report's identification and settings tables)
    names every input file by its resolved path, UIDs, creation date and SHA-256, the calibration's files, the
    physics, every option as resolved with its source, the working directory, and the command line (``mcproton
    check``) or these keyword arguments (Python): what a re-run needs (docs/check.md "What the record holds").
    """
    call_args = dict(locals())   # the parameters as given: the record's Python call (record.invocation)
    started = now_text()
    t_all, cpu_all = time.perf_counter(), time.process_time()
    load_start = _load_average()
    # its gamma's pymedphys, before anything is read or transported: missing, it stopped the check after the whole
    # Monte Carlo (the deployment audit of 2026-12-05, F3)
    require("pymedphys", "mcproton check")
    log = log or log_line
    timings: dict[str, float] = {}
    cpu_steps: dict[str, float] = {}   # CPU seconds per step (all threads; the gamma's worker processes too)
    if dose_to not in (None, "water", "medium"):
        raise CheckInputError(f'dose_to must be "water" or "medium" (or None: what the TPS dose says, else water); '
                              f'got {dose_to!r}')
    if struct_overrides not in ("apply", "ignore"):
        raise CheckInputError(f'struct_overrides must be "apply" or "ignore"; got {struct_overrides!r}')
    if outside_external not in ("ct", "air"):
        raise CheckInputError(f'outside_external must be "ct" or "air"; got {outside_external!r}')
    if dose_type is not None and str(dose_type).upper() not in ("PHYSICAL", "EFFECTIVE"):
        raise CheckInputError(f'dose_type must be "PHYSICAL" or "EFFECTIVE" (what the TPS dose is); got {dose_type!r}')
    args = _checked_arguments(phantom_from_struct=phantom_from_struct, report=report, machine_check=machine_check,
                              calibration=calibration, struct_overrides=struct_overrides,
                              outside_external=outside_external,
                              ignore_beam_limiting_devices=ignore_beam_limiting_devices, progress=progress,
                              prescription_anyway=prescription_anyway, allow_no_struct=allow_no_struct,
                              rbe=rbe, target_uncertainty=target_uncertainty, time_limit_s=time_limit_s,
                              primaries=primaries, seed=seed, backend=backend, threads=threads,
                              gamma_points=gamma_points, gamma_workers=gamma_workers)
    gamma_points, gamma_workers = args["gamma_points"], args["gamma_workers"]
    # a line as each long step starts (progress; --quiet: none): a clinical check was silent for a minute before and
    # after its MC (the scale audit of 2026-12-07, F4)
    step: Callable[[str], Any] = (lambda m: log(f"mcproton check: {m}")) if progress else (lambda m: None)
    if physics is not None and not isinstance(physics, PhysicsSettings):   # checked, and made settings, once
        try:
            physics = PhysicsSettings(**dict(physics))
        except (TypeError, ValueError) as exc:
            raise CheckInputError(f"physics = {physics!r}: {exc} (the fields of mcproton.settings.PhysicsSettings, "
                                  "as [physics] of mcproton run)") from None
    refuse_unwritable_paths(_given_paths(out=out, folder=folder, plan=plan, dose=dose, ct=ct, struct=struct,
                                         beam_model=beam_model, calibration=calibration, levels=levels))
    if out is not None:
        from .._io.atomic import name_too_long
        from .out_dir import OutDirRefused

        o = Path(out)
        too_long = name_too_long(o)   # refused now, not when the report is written after the MC
        if too_long:
            raise OutDirRefused(f"--out {out}: {too_long}")
        up = o.parent
        while not (up.exists() or up.is_symlink()) and up != up.parent:   # a broken link stops it: refused below
            up = up.parent
        if ((o.exists() or o.is_symlink()) and not o.is_dir()) or not up.is_dir():
            raise OutDirRefused(f"--out {out} is a file, a broken link or under a file; the check writes a folder "
                                  "(check.html, check.json, the MC RT Dose): give a folder's name")
    rx_given = _given_prescription(prescription)
    if args["prescription_anyway"] and rx_given is None:
        raise CheckInputError("prescription_anyway (--prescription-anyway) keeps a --prescription that differs from "
                              "the plan's TargetPrescriptionDose or the TPS dose; without --prescription it keeps "
                              "nothing: leave it out, or give the prescription")
    lv = levels if isinstance(levels, ActionLevels) else ActionLevels.load(levels)
    _warn_target_above_level(target_uncertainty if mc is None else None, lv)
    _warn_d95_noise_bias(target_uncertainty if mc is None else None, lv)
    # a misspelt beam model refused before anything is read or written (with --phantom-from-struct it was loaded only
    # after the phantom's CT had been written: the error-message audit 27, F6)
    if isinstance(beam_model, (str, Path)):
        from .._io.beam_model import refuse_unknown_beam_model

        refuse_unknown_beam_model(beam_model)
    t, c = time.perf_counter(), time.process_time()
    inp = gather(plan=plan, dose=dose, ct=ct, struct=struct, folder=folder, dose_type=dose_type,
                 fractions=fractions, ct_series=ct_series, patient_position=patient_position,
                 ignore_beam_limiting_devices=ignore_beam_limiting_devices)
    # the files found in the folder (a name the locale cannot hold there too: refused before the MC, not when the
    # report is written after it)
    refuse_unwritable_paths([("the RT Ion Plan", inp.plan_path), ("the RT Struct", inp.struct_path),
                             ("the CT folder", inp.ct_dir)]
                            + [("a TPS RT Dose", d.path) for d in ([inp.total] if inp.total is not None else [])
                               + list(inp.beams.values())])
    if not phantom_from_struct and inp.ct_dir is None and mc is None:
        # before the structure set's refusal, naming it too (journey audit 33, F3); after the folder's pairing lines
        # (a CT skipped as gzip-compressed says why none was read) and with the patient and plan recorded (a batch
        # row and index name them): review a of audit 33, R1
        for line in inp.pairing:
            log(f"mcproton check: {printable(line)}")
        _progress(identification=identification(inp.plan_path))
        raise no_ct(inp)
    if not phantom_from_struct:   # (a phantom built from the structure set is refused without one, below)
        # no structure set: refused where the plan names one, unless --allow-no-struct; else said (journey 28, F1)
        no_struct = no_structure_set(inp, args["allow_no_struct"])
        if no_struct:
            inp.pairing.append(f"note: {no_struct}")
        if calibration is None and inp.ct_dir is not None and mc is None:   # said as the check starts (F2)
            inp.pairing.append("note: the CT is converted with the default HU calibration schneider2000, a generic "
                               "curve, not the planning system's (no --calibration given); for ranges comparable "
                               "with the TPS's, give its curve with --calibration (the README, \"Independent "
                               "plan check (`mcproton check`)\")")
    for line in inp.pairing:   # one line each: a file name with a newline or an escape sequence is escaped
        log(f"mcproton check: {printable(line)}")
    _warn_boli(inp, struct_overrides)
    dose_to_given = dose_to
    dose_to = _dose_to_of(inp, dose_to, log)
    # the files compared, by path, UIDs, creation date and SHA-256 (the CT's once it is read)
    tps_doses = ([("TPS RT Dose (plan)", inp.total)] if inp.total is not None else []) \
        + [(f"TPS RT Dose (beam {b})", inp.beams[b]) for b in sorted(inp.beams)]
    for role, d in tps_doses:   # a reference that is itself a noisy MC dose (roundtrip audit F4): said and recorded
        if getattr(d, "stated_uncertainty_pct", None) is not None:
            log(f"mcproton check: the {role} {printable(Path(d.path).name)} is itself a Monte Carlo dose: it states "
                f"its own statistical uncertainty, {d.stated_uncertainty_pct:.2f} % (its "
                f"{printable(d.stated_uncertainty_source)}); a failed gamma or D95 level that the data show to be "
                "consistent with this noise alone is said among the likely causes, one it contributes to in a "
                "remark")
    input_files = [dicom_input("RT Ion Plan", inp.plan_path)] \
        + [{**dicom_input(role, d.path), **stated_uncertainty_record(d)} for role, d in tps_doses] \
        + ([dicom_input("RT Struct", inp.struct_path)] if inp.struct_path else [])
    ident = identification(inp.plan_path)
    _progress(identification=ident)   # the record of a check that does not complete names the patient and plan
    if outside_external == "air" and inp.ct_dir is not None and inp.struct_path is None and mc is None:
        raise CheckInputError("--outside-external air needs the structure set with the External ROI; none was given "
                              "or found: " + way_out("give it with --struct RS.dcm", "put it into {folder}"),
                              single_options=("--struct",))
    ref = inp.reference
    axes = ref.axes_mm()
    out_dir = Path(out) if out is not None else None
    clear_out: Callable[[], Any] = lambda: []   # noqa: E731
    earlier_outputs = None
    if out_dir is not None:   # no input overwritten, no earlier check's file left beside this report
        from .out_dir import prepare_out

        # the earlier outputs moved aside now (nothing in --out reads as this check's result before it is one), and
        # removed once this report is complete
        clear_out = earlier_outputs = prepare_out(out_dir, inp, log)
        _progress(earlier=clear_out)   # a stop or failure says where they went
        out_dir.mkdir(parents=True, exist_ok=True)
    timings["read_dicom_s"] = time.perf_counter() - t
    cpu_steps["read_dicom_s"] = time.process_time() - c
    # ---- the geometry
    t, c = time.perf_counter(), time.process_time()
    notes_geo: list[str] = []
    outside_notes: list[str] = []   # beams crossing CT material outside the External: for the diagnostics
    beam_notes: list[str] = []      # the same, kept with the MC dose (mc.provenance)
    air_notes: list[str] = []       # --outside-external air's (its warning of an External's missing slices made)
    geometry = None
    ct_extent: tuple[tuple[float, float], ...] | None = None   # the CT's outer faces (grid_extent_mm) where it is read
    planned: tuple[Any, list] | None = None   # (beam model, the plan's beams) where made before the geometry
    planned_s = 0.0
    transport: dict = {}   # the transport grid's record (compute.transport_record)
    ct_note = f"{inp.ct_dir} (series {inp.ct_series or 'not read: the MC dose is reused'})" if inp.ct_dir \
        else "none"
    if mc is None:
        ct_dir = inp.ct_dir
        ct_src: Any = ct_dir   # what build_geometry converts: the CT's folder, or the phantom's CT in memory
        if ct_dir is not None and phantom_from_struct:
            raise CheckInputError(f"--phantom-from-struct builds the CT from the structure set, but a CT was "
                                  f"{'given' if ct is not None else 'found'} ({ct_dir}): " + way_out(
                                      "leave out --phantom-from-struct to compute on that CT, or remove the CT (or "
                                      "give the files one by one) to compute on the phantom",
                                      "--phantom-from-struct applies to every patient of a batch: check the patients "
                                      "with a CT in a batch without it, and the phantoms in a batch folder of their "
                                      "own with it (or this patient, {folder}, alone without it)"))
        if ct_dir is None:
            if not phantom_from_struct:
                # a batch's option applies to every patient, and --phantom-from-struct refuses each with a CT: this
                # patient alone, or the phantoms in a batch of their own (journey audit 28, F3c)
                raise no_ct(inp)
            if inp.struct_path is None:
                raise CheckInputError("--phantom-from-struct needs the structure set "
                                      + way_out("(--struct RS.dcm)", "(put it into {folder})"),
                                      single_options=("--struct",))
            clear_out()
            # without an output folder the phantom's CT is written to a temporary folder of the check's own, hashed
            # (ct_record) and removed (resources audit 31, F1: ~29 MB left in /tmp by each check of plan06)
            where = (out_dir / "phantom_ct") if out_dir is not None else scratch_folder("mcproton_check_")
            # the phantom's CT in memory, as it is written to `where` (converted without reading it back)
            ct_src, calibration, notes_geo = phantom_ct_from_struct(inp.struct_path, ref, where,
                                                                    frame_of_reference_uid=inp.frame_of_reference_uid,
                                                                    physics=physics)
            ct_dir = where
            for nline in notes_geo:
                log(f"mcproton check: phantom: {nline}")
        override_notes: list[str] = []
        overridden: list[str] = []
        hook = None
        if inp.ct_dir is not None and inp.struct_path is not None:   # a patient's CT: the TPS's overrides too
            from .._io.roi_overrides import roi_overrides

            overridden = [r["name"] for r in roi_overrides(inp.struct_path)] if struct_overrides == "apply" else []
            if overridden or outside_external == "air":
                def hook(g: Any) -> None:   # on the CT's own voxels, before the blocks of the TPS spacing
                    override_notes.extend(_struct_overrides(g, inp.struct_path, struct_overrides, log, physics))
                    if outside_external == "air":
                        air_notes.extend(_outside_external(g, inp, "air", log, overridden)[1])
        # calibration None: the default (schneider2000), which a CT naming another one is refused with
        def outside_of(ct_grid: Any, factors: Any, density_of: Any) -> Any:   # counted on the CT's own voxels
            from .._io.roi_overrides import outside_external_density
            from .._io.rtstruct import read_rtstruct

            return outside_external_density(ct_grid, read_rtstruct(inp.struct_path), factors, density_of, overridden)
        wants_outside = inp.ct_dir is not None and inp.struct_path is not None and outside_external == "ct"
        if beam_model is not None:   # the beams first: the transport grid holds the CT's slices they and the TPS need
            t_plan = time.perf_counter()
            planned = beams_of_plan(inp, beam_model, machine_check=machine_check,
                                    water_model=physics.water_model if physics is not None else "icru90")
            planned_s = time.perf_counter() - t_plan
        from .._timing import announcing

        # the phases that mcproton/_io/ct.py and hu_calibration.py mark, said as they start
        with announcing({"ct_import": f"reading the CT ({printable(str(ct_dir))}) ...",
                         "hu_to_material": "converting the CT's HU to materials and densities ..."}, step):
            geometry, cal, ct_img = build_geometry(ct_src, "schneider2000" if calibration is None else calibration,
                                                   ref, timings, given=calibration is not None,
                                                   series_uid=inp.ct_series, at_ct_resolution=hook,
                                                   outside_external_of=outside_of if wants_outside else None,
                                                   beams=None if planned is None else planned[1],
                                                   transport=transport, physics=physics, log=log)
        if transport.get("cropped"):
            log(f"mcproton check: the transport grid holds {transport['said']}")
        ct_note = (f"phantom built from the structure set's ROI material overrides ({ct_dir})" if inp.ct_dir is None
                   else f"{Path(ct_dir).resolve()}: series {ct_img.series_instance_uid} "
                        f"({ct_img.series_description!r}, "
                        f"{ct_img.shape_zyx[0]} slices of {ct_img.shape_zyx[2]} x {ct_img.shape_zyx[1]}, "
                        + " x ".join(f"{v:g}" for v in ct_img.voxel_size_mm) + " mm)")
        if inp.ct_dir is not None and inp.struct_path is not None:   # the slices it was drawn on that the CT lacks
            from .._io.rtstruct import check_contours_near_ct, warn_missing_ct_slices

            warn_missing_ct_slices(inp.struct_path, ct_img, str(ct_dir))
            check_contours_near_ct(inp.struct_path, ct_img, str(ct_dir))
        ct_record = ct_input(ct_dir, ct_img.slice_files, ct_img.series_instance_uid,
                             "CT series" if inp.ct_dir is not None else "CT (phantom built from the RT Struct)",
                             getattr(ct_img, "acquisition", None))
        if inp.ct_dir is not None:   # the CT's tube voltage against the calibration's (a 120 kVp curve, 80 kVp scan)
            ct_record["calibration_kvp"] = kvp_comparison(ct_record.get("acquisition"), cal.kvp, cal.kvp_stated_in)
            if note := kvp_not_stated_note(ct_record["calibration_kvp"], cal.name, "--calibration"):
                notes_geo.append(note)
                log(f"mcproton check: note: {note}")
        if inp.ct_dir is None and out_dir is None:   # the phantom's CT, hashed: removed, and named as such
            remove_scratch(Path(ct_dir))
            ct_record.update(path=None, kept=PHANTOM_CT_NOT_KEPT)
            # its geometry note (compute.phantom_ct_from_struct: "... written to <folder>") no longer names the folder
            # removed: check.json's geometry_notes and the report's settings did (review b of audit 31, R1)
            notes_geo = [n.replace(f"written to {ct_dir}", "written to a temporary folder, hashed and removed")
                         for n in notes_geo]
            ct_note = f"phantom built from the structure set's ROI material overrides ({PHANTOM_CT_NOT_KEPT})"
        # the CT's outer faces: within them a TPS voxel beyond the MC voxel centres takes the edge voxel's dose
        ct_extent = grid_extent_mm(ct_img.origin_mm, ct_img.voxel_size_mm, ct_img.shape_zyx)
        del ct_img   # the CT's HU freed at once
        if inp.ct_dir is not None and inp.struct_path is not None:
            if hook is None:   # nothing to change in the geometry: the overrides ignored (named), or none
                override_notes = _struct_overrides(geometry, inp.struct_path, struct_overrides, log, physics)
            notes_geo += override_notes + air_notes
            if outside_external == "ct":   # what lies outside the External, on the beams' way: named
                outside_notes, notes = _outside_external(geometry, inp, "ct", log, overridden)
                notes_geo += notes
        beam_notes = list(outside_notes)   # kept with the MC dose: a check that reuses it names them too
        if inp.ct_dir is not None:
            outside_notes += _heterogeneity_notes(inp, bool(override_notes), struct_overrides, log)
        cal_name = getattr(cal, "name", str(calibration))
        cal_record = calibration_record(cal, calibration)
    else:
        _check_reused_mc_inputs(mc, inp)   # before its density is used on this grid
        cal_now = _check_reused_mc_models(mc, calibration, beam_model, physics)
        cal_name = mc.provenance.get("calibration", "(reused MC dose)")
        # what the reused MC dose was computed with, as its first check recorded it
        ct_record = mc.provenance.get("ct_input")
        if ct_record is not None:
            ct_record = {**ct_record, "role": f"{ct_record.get('role', 'CT')} (of the reused MC dose)"}
            if cal_now is not None and "calibration_kvp" in ct_record:
                # the tube voltage the calibration given now states (its data, compared above, are the MC dose's; a
                # '# kVp:' line added since is not part of them): review a of audit 33, R2
                ct_record["calibration_kvp"] = kvp_comparison(ct_record.get("acquisition"), cal_now.kvp,
                                                              cal_now.kvp_stated_in)
        cal_record = mc.provenance.get("calibration_record") or {"name": cal_name, "builtin": None, "files": []}
        # the geometry the reused MC dose was computed on (its overrides, what lay outside the External), and its
        # physics where asked for
        from dataclasses import asdict

        asked = [("struct_overrides", struct_overrides), ("outside_external", outside_external)]
        if physics is not None:
            asked.append(("physics", asdict(physics)))
        for key, want in asked:
            has = mc.provenance.get(key)
            if has is not None and has != want:
                raise CheckInputError(f"the reused MC dose (mc=) was computed with {key} = {has!r}, but this check "
                                      f"asks for {want!r}: it is not the MC dose asked for; recompute the MC "
                                      f"(leave out mc=) or give {key}={has!r}")
        outside_notes = list(mc.provenance.get("outside_external_notes", []))
        if inp.ct_dir is not None:   # what the TPS dose says it was computed with: this check's TPS dose
            from .._io.roi_overrides import roi_overrides

            has_overrides = bool(inp.struct_path) and bool(roi_overrides(inp.struct_path))
            outside_notes += _heterogeneity_notes(inp, has_overrides, struct_overrides, log)
    if kvp_mismatch_text((ct_record or {}).get("calibration_kvp")):   # said beside the verdict too (kvp_mismatch)
        warn(kvp_warning(ct_record["calibration_kvp"], str(ct_record.get("path") or ct_dir), cal_name,
                         "--calibration"), McprotonWarning)
    # a patient CT read with the default curve, not one given: a uniform range difference then names it first
    generic_calibration = inp.ct_dir is not None and calibration is None and cal_name == "schneider2000"
    # without the CT reading and the beams (timed with the MC's beams_s)
    timings["geometry_s"] = time.perf_counter() - t - timings.get("read_ct_s", 0.0) - planned_s
    cpu_steps["ct_geometry_s"] = time.process_time() - c   # with the CT reading
    # ---- structures and the body outline on the TPS grid
    t, c = time.perf_counter(), time.process_time()
    masks: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    roi_numbers: dict[str, int] = {}
    partly_off: set[str] = set()   # structures with contours beyond the TPS grid: their metrics are of the part on it
    empty_why: dict[str, str] = {}   # the ROIs without a voxel on the TPS grid: why (rtstruct.empty_mask_reason)
    contour_vols: dict[str, float] = {}   # {ROI: contour volume, cm3} (rtstruct.contour_volumes_cm3)
    if inp.struct_path:
        from .._io.rtstruct import contour_volumes_cm3, empty_mask_reason, rasterise, read_rtstruct

        nz_, ny_, nx_ = ref.shape_zyx
        step(f"structures: the ROIs of {printable(Path(inp.struct_path).name)} on the TPS grid ({nx_} x {ny_} x "
             f"{nz_}) ...")

        s = read_rtstruct(inp.struct_path)
        types = dict(s.roi_types)
        roi_numbers = dict(s.roi_numbers)
        partly_off = contours_beyond_grid(s, ref)

        class _G:
            origin_mm = ref.origin_mm
            voxel_size_mm = ref.voxel_size_mm
            shape_zyx = ref.shape_zyx

        masks = rasterise(s, _G)
        empty_why = {nm: empty_mask_reason(s, nm, _G) for nm, m in masks.items() if not m.any()}
        contour_vols = contour_volumes_cm3(s, float(ref.voxel_size_mm[2]))
    density = None
    if geometry is not None:
        # rim=False: 0 beyond the MC voxel centres, as before, so the body outline and the coverage check are those
        # of the CT's voxel-centre hull (the doses take the edge voxels' value there: to_tps_grid)
        density, _ = to_tps_grid(geometry.density_g_cm3_zyx.astype(np.float64), geometry, ref, rim=False)
    elif mc is not None:
        density = mc.density_g_cm3_zyx
    body, body_how = body_outline(masks, types, density, ref, inp.struct_path, slices_said=bool(air_notes))
    check_grids_cover(inp, body)
    outside_body, body_notes = _crop_targets_to_body(masks, types, body, body_how)
    targets = [nm for nm, m in masks.items() if classify(nm, types.get(nm, "")) == "target" and m.any()]
    # --prescription's ROI names (a typo) and unit (a slip) checked before the MC, not after it
    rx_of_given = (None if rx_given is None else
                   _apply_given_prescription(rx_given, targets, masks, inp, rbe, prescription_anyway,
                                             roi_numbers, log))
    timings["structures_s"] = time.perf_counter() - t
    cpu_steps["structures_s"] = time.process_time() - c
    # ---- the MC
    if mc is None and out_dir is not None:   # a full disk found now, not after the MC (deployment audit F7)
        from .._run.inputs import check_disk_space_of_check

        check_disk_space_of_check(out_dir, int(ref.dose_gy_zyx.size), 1 + len(inp.beams), report=report)
    if mc is None:
        _progress("during the MC")
        c = time.process_time()
        mc = run_mc(inp, geometry, beam_model, dose_to=dose_to, rbe=rbe, primaries=primaries,
                    target_uncertainty=target_uncertainty, seed=seed, backend=backend, threads=threads,
                    progress=progress, log=log, timings=timings, density_tps_zyx=density,
                    machine_check=machine_check, physics=physics, ct_extent_mm=ct_extent, time_limit_s=time_limit_s,
                    planned=planned, transport_grid=transport or None)
        timings["beams_s"] = timings.get("beams_s", 0.0) + planned_s
        mc.provenance["calibration"] = cal_name
        mc.provenance["calibration_record"] = cal_record
        mc.provenance["ct_input"] = ct_record
        mc.provenance["geometry_notes"] = notes_geo
        # what the MC RT Dose says it was computed with: the CT, and overrides (or the phantom built from them)
        mc.provenance["tissue_heterogeneity"] = list(
            ("IMAGE", "ROI_OVERRIDE") if inp.ct_dir is None else getattr(geometry, "tissue_heterogeneity", ("IMAGE",)))
        mc.provenance.update(struct_overrides=struct_overrides, outside_external=outside_external,
                             outside_external_notes=beam_notes)
        cpu_steps["beams_transport_resample_s"] = time.process_time() - c
    else:   # a reused MC dose must be of the dose this check compares (a physical MC against an RBE dose: -9 %)
        _check_reused_mc(mc, inp.dose_type, dose_to, rbe)
    _progress("after the MC (the comparison with the TPS dose, the gamma analysis, the report)")
    missing = set(inp.beams) - set(mc.beams_gy_zyx)
    if missing:
        raise CheckInputError(f"the TPS has doses of beams {sorted(missing)} that the MC did not compute")
    # ---- comparisons: inside the body only (dose to water or medium in air voxels is large and noisy; the
    # planning systems set the dose outside the External to zero)
    # timed with the structures (the body outline's use; the first scipy.ndimage import of a check on a patient CT
    # is here: 0.3 s outside every step before, the host audit of 2026-12-05, F4)
    t, c = time.perf_counter(), time.process_time()
    tps = inp.total_dose_gy()
    outside = tps_outside_body(tps, body)
    in_air_to_edge = outside > OUTSIDE_BODY_NOTE and tps_dose_in_air_at_grid_edge(tps, body, density)
    tps = np.where(body, tps, 0.0)
    # the MC doses zeroed outside the body in a copy: the caller's MCDose (``mc=``, an earlier result's ``.mc``) and
    # this result's ``.mc`` keep the dose as computed, so a reused one is not compared truncated by an earlier
    # check's body outline (struct audit 14, F2: -21 % in a target on re-checking the same inputs)
    mc_as_computed = mc
    mc = dataclasses.replace(mc, total_gy_zyx=np.where(body, mc.total_gy_zyx, 0.0),
                             beams_gy_zyx={b: np.where(body, d, 0.0) for b, d in mc.beams_gy_zyx.items()})
    tps_beams = {b: np.where(body, d.dose_gy_zyx, 0.0) for b, d in inp.beams.items()}
    # a TPS maximum far above the near-maximum that the gammas and the dose difference are normalised to: warned,
    # with where it is (gamma audit 28, F1: one hot voxel was the normalisation before); the plan dose where one was
    # given, and each per-beam dose
    dose_unit = mc_dose_description(inp, mc)["unit"]
    # the normalisation of the plan dose's and each beam's gammas and of the dose difference, decided once here where
    # the targets are known (the near-maximum of a target too small for the 3 x 3 x 3 medians is not a hot cluster:
    # review a of audit 31, R1) and handed to every consumer as a number (the gamma workers get no mask)
    # each target's prescription (stated, or the TPS medians), before the normalisation: a near-maximum kept as a
    # small target's planned dose is held to its stated prescription (audit 32, c3)
    rx_refs = None if rx_given is not None else plan_dose_references(inp.plan_path)
    pres_by: dict[str, float] = {}
    rx_notes: list[str] = []
    pres_how = ""
    if rx_of_given is not None:   # converted as the plan's, of the TPS dose's fractions
        pres_by, pres_how, rx_notes = rx_of_given
    elif rx_refs.items:   # Gy(RBE): divided by the RBE for a physical TPS dose
        pres_by, pres_how, rx_notes = plan_prescriptions(rx_refs, targets, roi_numbers, inp.dose_type, rbe)
    if rx_given is None and rx_refs.items and inp.all_fractions is False and inp.fractions > 1:
        pres_by = {nm: v / inp.fractions for nm, v in pres_by.items()}   # given for all fractions
        pres_how += f"; divided by the {inp.fractions} fractions (the TPS dose holds one)"
    elif rx_given is None and not rx_refs.items and targets:   # of the TPS dose itself: of its fractions
        # each target's own median: another target's (a boost's) would make its V95/V100 plausible but wrong
        pres_by = {nm: float(np.median(tps[masks[nm]])) for nm in targets}
        pres_how = median_source(rx_refs)
    one = set(pres_by.values())
    pres: float | dict[str, float] | None = (one.pop() if len(one) == 1 else dict(pres_by)) if pres_by else None
    rx_of_median = bool(pres_by) and rx_given is None and not rx_refs.items   # no prescription: TPS medians
    small_names = small_target_names(masks, targets)   # each target eroded once, for the union and the hold below
    planned = masks_union(masks, small_names)
    # (kept, without the targets) for the plan dose and each beam's: they differ where a small target's is kept
    both = {key: normalisation_doses(d, body, planned) if body.any() else (0.0, 0.0)
            for key, d in [("plan", tps), *tps_beams.items()]}
    norm_of = {key: kept for key, (kept, _) in both.items()}
    # a plan-dose near-maximum kept as the small targets' planned dose is held to PLATEAU_RATIO x their stated,
    # consistent prescription (TG-218's normalisation dose): above it, it is a hot cluster at the target (a metal or
    # air-cavity edge, a noisy planning MC), and the target's prescription (or the medians' near-maximum, if higher)
    # is used (audit 32, c3: 20 voxels at 1.3 x inside a small GTV made the normalisation 1.3 x the prescription, every
    # global criterion that much looser, with a warning only).  Without a stated prescription nothing in the inputs
    # tells a small planned hot target from an artefact: kept, and said.  The per-beam doses have no prescription.
    held = None
    kept, plain = both["plan"]
    if plain < kept:
        rx_small = small_target_prescription(tps, body, masks, small_names,
                                             {} if rx_of_median else pres_by)
        if rx_small is not None and kept > PLATEAU_RATIO * rx_small[0]:
            held = (kept, rx_small)
            norm_of["plan"] = max(plain, rx_small[0])
    for what, d, key in ([(f"the TPS plan dose {Path(inp.total.path).name}", tps, "plan")]
                         if inp.total is not None else []) + [
            (f"beam {b}'s TPS dose {Path(inp.beams[b].path).name}", tps_beams[b], b) for b in sorted(tps_beams)]:
        note = (None if key == "plan" and held is not None else   # said below, with the prescription
                normalisation_note(d, body, axes, what, dose_unit, used=norm_of[key], one_beam=key != "plan"))
        if note:
            warn(note, McprotonWarning)
        plain = both[key][1]
        if key == "plan" and held is not None:
            warn(f"{what}: its near-maximum in the body, {held[0]:.4g} {dose_unit}, lies in or next to a typed target "
                 "too small for the 3 x 3 x 3 medians but is "
                 f"{held[0] / held[1][0]:.2f} x its stated prescription or, where higher, its TPS median "
                 f"({held[1][1]}: {held[1][0]:.4g} {dose_unit}; "
                 "more than "
                 f"{PLATEAU_RATIO:g} x): a hot cluster of the TPS dose at the target (a metal or air-cavity edge, a "
                 "noisy planning MC), not its planned dose; the gammas and the dose difference are in % of "
                 f"{norm_of[key]:.4g} {dose_unit} instead (that level, or the near-maximum of the 3 x 3 x 3 "
                 "medians where higher), so that the cluster does not loosen their criteria; look at the TPS dose in "
                 "and around the target, and check the prescription if the target is planned that hot",
                 McprotonWarning)
        elif plain < norm_of[key]:   # kept as a small target's planned dose: said, as a hot cluster there would be kept
            # too, loosening the criteria in silence (review c of audit 31, C3)
            warn(f"{what}: its near-maximum in the body, {norm_of[key]:.4g} {dose_unit}, lies in or next to a typed "
                 "target too small for the 3 x 3 x 3 medians and is kept as that target's planned dose, though the "
                 f"near-maximum of its 3 x 3 x 3 medians is {plain:.4g} {dose_unit} ({norm_of[key] / plain:.2f} x "
                 "lower); were that dose a hot cluster of the TPS dose at the target (a metal or air-cavity edge, a "
                 "noisy planning MC) rather than the target's planned dose, the gammas' and the dose difference's "
                 "criteria would be that much looser: look at the TPS dose in and around the target", McprotonWarning)
    timings["structures_s"] += time.perf_counter() - t
    cpu_steps["structures_s"] += time.process_time() - c
    mc_rtdose: dict[str, dict] = {}
    if out_dir is not None:   # the MC doses as RT Dose, written before the comparisons: an error there keeps them
        t, c = time.perf_counter(), time.process_time()
        clear_out()
        mc_rtdose = _write_mc_rtdoses_or_rescue(inp, mc, out_dir)
        timings["rtdose_s"] = time.perf_counter() - t
        cpu_steps["rtdose_s"] = time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    # the six 3-D gammas as independent jobs: the global criteria with the same distance in one search (3 %/2 mm
    # and 2 %/2 mm: the same values as two searches, tested), each per-beam dose one; concurrently in worker
    # processes when gamma_workers > 1, started here: this process computes the structure statistics, the ranges
    # and the report's figures that do not show the gammas meanwhile (the same results in either order)
    groups: dict[tuple[float, bool], list[tuple[str, float]]] = {}
    for name, dp, dd, local in GAMMA_CRITERIA:
        groups.setdefault((dd, local), []).append((name, dp))
    common = {"points": gamma_points, "seed": seed}
    jobs = [((axes, tps, mc.total_gy_zyx, body), {"dose_pcts": [dp for _, dp in crit], "dist_mm": dd,
                                                   "local": local, "norm_gy": norm_of["plan"], **common})
            for (dd, local), crit in groups.items()]
    beam_ids = sorted(inp.beams)
    jobs += [((axes, tps_beams[b], mc.beams_gy_zyx[b], body),
              {"dose_pcts": [2.0], "dist_mm": 2.0, "norm_gy": norm_of[b], **common}) for b in beam_ids]
    # the beams without a per-beam TPS dose whose field is their own (field_regions): the plan dose there, each
    # normalised to the TPS's maximum in it (CSI audit 2026-12-06, F1)
    regions = field_regions(mc.beams_gy_zyx, mc.total_gy_zyx, body, axes, inp.beams)
    region_ids = [b for b, r in regions.items() if r["judged"]]
    # (the TPS dose itself: the gamma takes the reference in its ``body``, the region, and normalises to its maximum
    # there; a copy of the whole grid per region, np.where(mask, tps, 0), changed nothing: check review 2026-12-06,
    # finding 4)
    jobs += [((axes, tps, mc.total_gy_zyx, regions[b]["mask"]),
              {"dose_pcts": [2.0], "dist_mm": 2.0, **common}) for b in region_ids]
    n_workers = len(jobs) if gamma_workers is None else int(gamma_workers)
    n_workers = max(1, min(n_workers, len(jobs), usable_cpus()))   # the CPUs this process may run on
    from .compare import gamma_worker_count
    from .report import FIGURE_WORKER_GRIDS, FIGURE_WORKER_MB, GAMMA_FIGURES, PLANES, FigureWorkers, \
        figure_worker_count

    def early_result(parts: dict) -> CheckResult:
        """The result the report's figures that do not show the gammas are drawn from (FigureWorkers: here or in
        its forked workers, which have these arrays from the fork and are sent ``parts``)."""
        # each per-beam TPS dose's normalisation as decided above, where its beam figure reads it (report._beam_norm:
        # the beam gammas are not done yet; recomputed there without the targets, a small target's beam figure was
        # in % of another dose than its 3-D gamma: review c of audit 31)
        return CheckResult(False, [], {}, parts["diff"], parts["structures"], parts["ranges"],
                           {b: {"normalisation_gy": norm_of[b]} for b in tps_beams},
                           parts["diagnostics"], inp.pairing, {}, timings, {}, {}, tps_gy_zyx=tps,
                           mc_gy_zyx=mc.total_gy_zyx, body_zyx=body, masks=masks, axes_zyx=axes, mc=mc_as_computed,
                           inputs=inp)

    # the report's figures that do not show the gammas (three planes, the DVH, one per beam) in forked worker
    # processes, forked here, before the gamma workers' threads start; drawn once the structures and ranges are
    # computed (here, one after the other, with one CPU or no fork)
    n_figures = 0
    if out_dir is not None and report:
        n_figures = figure_worker_count(len(PLANES) + 1 + len(mc.beam_meta), tps.size)
    # as many gamma workers as the memory holds beside the figure workers (audit 25 memory: ~0.24 GB each, uncounted)
    n_workers = gamma_worker_count(n_workers, tps.size, n_figures * (FIGURE_WORKER_MB * 1e6
                                                                     + FIGURE_WORKER_GRIDS * 8 * tps.size))
    if progress:   # counted only where said: each reference's evaluable points are a pass over the grid
        for line in _gamma_step_lines(jobs, gamma_points, n_workers, len(groups), len(beam_ids), len(region_ids)):
            step(line)
    t_gamma0 = time.perf_counter()
    # an error or a stop signal before the results stops the figure and gamma workers
    with FigureWorkers(early_result, n_figures, log) as figure_run, start_gammas(jobs, n_workers, log=log) as gamma_run:
        # gamma_s: the wall time the check spends on the gammas outside the work done meanwhile (their start,
        # then the wait for them); gamma_elapsed_s in the provenance: from their start to their results
        timings["gamma_s"] = time.perf_counter() - t
        cpu_steps["gamma_s"] = time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        diff = dose_difference(tps, mc.total_gy_zyx, body, norm_gy=norm_of["plan"])
        # the metrics also on the TPS dose with the MC's noise (compare.structure_stats: noise matching)
        n_structs = sum(classify(nm, types.get(nm, "")) != "other" and bool(m.any()) for nm, m in masks.items())
        if n_structs:
            drawn = (f", each with {NOISE_REALISATIONS} draws of the MC's noise ({TARGET_NOISE_REALISATIONS} for the "
                     "targets)" if mc.uncertainty_rel_zyx is not None else "")
            step(f"DVH metrics of {n_structs} structure{'s' if n_structs != 1 else ''}{drawn} ...")
        structs = structure_stats(tps, mc.total_gy_zyx, masks, types, float(np.prod(ref.voxel_size_mm)) * 1e-3,
                                  pres_by, noise_rel=mc.uncertainty_rel_zyx, seed=seed, rx_of_median=rx_of_median)
        for nm, row in structs.items():
            # the ROI's ROINumber: the key a script joins on (a duplicate name is renamed, CTV_3), as the HDF5's
            # DVH subgroups (integrators' audit 2026-12-06, F3); None: not an ROI of the structure set
            row["roi_number"] = roi_numbers.get(nm)
            row["partly_outside_dose_grid"] = nm in partly_off
            if nm in contour_vols:
                row["contour_volume_cm3"] = contour_vols[nm]
        off_volume = _contour_volume_off(structs, ref.voxel_size_mm)
        small = [f"{nm!r} ({r['voxels']})" for nm, r in structs.items() if r.get("few_voxels")]
        _mark_target_rows(structs, types, outside_body)
        ranges: dict[int, dict] = {}
        total_rays: dict[tuple, int] = {}   # (direction, isocentre): the first beam compared on the total dose
        beam_dose: dict[int, dict] = {}   # the MC/TPS dose level of each beam with a per-beam TPS dose
        beam_regions: dict[int, tuple[np.ndarray, float] | None] = {}   # its region, for _diagnose too
        step(f"distal ranges (R80) of {len(mc.beam_meta)} beam{'s' if len(mc.beam_meta) != 1 else ''} ...")
        for b, meta in sorted(mc.beam_meta.items()):
            # the noise floor (compare.range_agreement): the TPS against itself with the MC's noise of that dose;
            # an MC dose made before 2026-12-05 has no per-beam uncertainty: no noise floor for its beams
            if b in inp.beams:
                r = range_agreement(axes, tps_beams[b], mc.beams_gy_zyx[b], meta["beam_direction"],
                                    meta["isocenter_mm"], seed=seed, stream=b, body=body,
                                    noise_rel=getattr(mc, "beams_uncertainty_rel_zyx", {}).get(b))
                r["source"] = "per-beam TPS dose"
                beam_regions[b] = beam_ratio_region(tps_beams[b], body)
                beam_dose[b] = beam_dose_ratio(tps_beams[b], mc.beams_gy_zyx[b], body,
                                               getattr(mc, "beams_uncertainty_rel_zyx", {}).get(b),
                                               region=beam_regions[b])
            else:   # beams of one direction and isocentre compare the same rays of the total dose: once
                key = _ray_key(meta)
                if key in total_rays:
                    ranges[b] = dict(ranges[total_rays[key]], same_rays_as=total_rays[key])
                    continue
                total_rays[key] = b
                # on the rays through the field of these beams only (the MC's dose of the beams of this direction
                # and isocentre), not another field's in this direction (CSI audit 2026-12-06, F2)
                # (every beam of the plan: the total is theirs, and the rays are those where the TPS's or the MC's
                # dose reaches 50 %, so that TPS dose where the MC has none is still seen)
                shared = [o for o, m in mc.beam_meta.items() if o not in inp.beams and _ray_key(m) == key]
                whole = set(shared) >= set(mc.beams_gy_zyx)
                named = f"beam{'s' if len(shared) > 1 else ''} {', '.join(map(str, shared))}"
                r = range_agreement(axes, tps, mc.total_gy_zyx, meta["beam_direction"], meta["isocenter_mm"],
                                    noise_rel=mc.uncertainty_rel_zyx, seed=seed, stream=b, body=body,
                                    field=None if whole else sum(mc.beams_gy_zyx[o] for o in shared),
                                    field_name=named)
                r["source"] = "total dose along the beam direction (no per-beam TPS dose)"
                if not whole:
                    r["rays_through"] = (f"the rays on which the MC's dose of {named} reaches 50 % of its 99.9th "
                                         "percentile, whatever the plan's total reaches there")
            depth = r.get("distal_depth_mm")
            if depth is not None and depth > 0:   # the range level as a relative range error (audit 21 F1)
                r["range_level_pct_of_depth"] = 100 * lv.range_median_mm / depth
            ranges[b] = r
        _group_shared_rays(ranges, inp.plan.beams)
        u_mc = mc.mean_rel_uncertainty_50 * 100   # the centroid note only where the MC's uncertainty level passes
        # the per-beam TPS doses computed along another axis: their notes in _diagnose, their range rows not the
        # generic calibration's (below)
        direction = _direction_notes(mc, body, axes, tps_beams)
        causes = _diagnose(   # the notes that explain a level (ratio, centroid, range, shifter): diagnostic_kinds
            tps, mc, body, axes, inp, tps_beams, ranges, lv.range_median_mm,
            beam_dose=beam_dose, ratio_limit_pct=lv.beam_dose_ratio_pct,
            noise_ok=math.isfinite(u_mc) and u_mc <= lv.mc_uncertainty_max_pct, regions=regions,
            beam_regions=beam_regions, direction=direction)
        diagnostics = list(inp.position_notes) + causes + rx_notes + outside_notes + body_notes \
            + _target_notes(structs)   # an unchecked position: the first suspect
        causes += outside_notes
        diagnostics += _left_out_notes(masks, types, empty_why)
        diagnostics += field_region_notes(regions, mc.beam_meta)
        # informational (audit 18b F3); without a prescription its own wording, "the target's TPS D50", not the
        # TPS medians as "the prescription" (check review 2026-12-06, F3)
        oar = oar_notes(structs, None if rx_of_median else pres, mc_dose_description(inp, mc)["unit"])
        diagnostics += off_volume
        if small:
            diagnostics.append(
                f"{len(small)} structure(s) have fewer than {SMALL_STRUCTURE_VOXELS} voxels on the TPS dose grid: "
                f"{', '.join(small)}; their metrics are of those voxels, each in or out by its centre (no partial "
                "volume), so their Dmax and D2 (= Dmax below 50 voxels) may differ by ~15-30 % from a planning "
                "system's partial-volume DVH (lower: the voxel centres miss the structure's edge), and a Dmax is one "
                "MC voxel's noise: TPS and MC here are on the same voxels, so their difference is fair")
        if outside > OUTSIDE_BODY_NOTE:
            # mcproton's own dose compared (self_compared): no planning system to name (statistics audit F3)
            who = ("the compared dose (written by mcproton) scores dose in the air the beams cross before the skin"
                   if inp.self_compared else
                   "the planning system scored dose in the air the beams cross before the skin (MCsquare, as OpenTPS "
                   "runs it, scores dose to water in every voxel of the grid)")
            why = (f"in air out to the edge of the dose grid: {who}; it is not compared, as the comparison is inside "
                   "the body" if in_air_to_edge else
                   "where it is not compared: the planning system's body differs from it (another structure set, a "
                   "bolus or the couch in its External?)")
            diagnostics.append(f"{100 * outside:.1f} % of the TPS dose above 10 % of its maximum lies outside the body "
                               f"outline used here ({body_how}), {why}")
        diff["tps_outside_body_fraction"] = outside
        diff["tps_dose_in_air_at_grid_edge"] = in_air_to_edge
        if inp.tps_beams_minus_plan is not None:
            # the planning system's own files agree (its beam doses add up to its plan dose: inputs.beams_against_plan
            # refused them beyond inputs.TPS_SUM_TOL before the MC, audit 26 F2): its figure, for the record
            diff["tps_beams_minus_plan_max_pct"] = 100 * inp.tps_beams_minus_plan
        timings["structures_ranges_s"] = time.perf_counter() - t   # with the diagnostics
        cpu_steps["structures_ranges_s"] = time.process_time() - c
        pngs: dict[str, str] = {}
        report_wall = report_cpu = 0.0
        if out_dir is not None and report:   # the report's figures that do not show the 3-D gammas
            step("the report's figures ...")
            t, c = time.perf_counter(), time.process_time()
            # what the figures need of what was computed after the fork (not the difference's voxel values: those
            # are the gamma histograms' figure's, drawn with the report)
            with _naming_a_failed_figure(out_dir, mc_rtdose):
                pngs = figure_run.render({"diff": {k: v for k, v in diff.items() if k != "values_pct"},
                                          "structures": structs, "ranges": ranges, "diagnostics": diagnostics},
                                         skip=GAMMA_FIGURES)
            report_wall, report_cpu = time.perf_counter() - t, time.process_time() - c + figure_run.cpu_s
        t, c = time.perf_counter(), time.process_time()
        waiting = gamma_run.waiting()
        if waiting:
            step("3-D gammas: " + ("waiting for the worker processes" if waiting == "workers" else
                                   "computing them in this process") + " ...")
        results, gamma_jobs_cpu, n_workers = gamma_run.result()
    gamma_elapsed = time.perf_counter() - t_gamma0
    found: dict[str, dict] = {}
    for ((dd, local), crit), res_g in zip(groups.items(), results):
        for (name, dp), g in zip(crit, res_g):
            g["criterion"] = {"dose_pct": dp, "distance_mm": dd, "local": local, "threshold_pct": 10.0,
                              "max_gamma": 1.5, "interp_fraction": 5}
            found[name] = g
    gam = {name: found[name] for name, *_ in GAMMA_CRITERIA}
    beam_gamma = {b: res_g[0] for b, res_g in zip(beam_ids, results[len(groups):len(groups) + len(beam_ids)])}
    for b, res_g in zip(region_ids, results[len(groups) + len(beam_ids):]):
        regions[b]["gamma_2_2"] = {k: v for k, v in res_g[0].items() if k != "gamma"}
    cpu_steps["gamma_s"] += time.process_time() - c + gamma_jobs_cpu   # + the worker processes'
    timings["gamma_s"] += time.perf_counter() - t
    # ---- action levels (and the provenance: action_levels_s)
    t, c = time.perf_counter(), time.process_time()
    checks: list[dict] = []
    # every RT Dose compared is mcproton's own (the shallow-beam remark then names no other code: realcheck F1)
    self_compared = inp.self_compared

    def add(quantity: str, value: float, limit: float, ok: bool, unit: str, kind: str, level: str) -> None:
        # the value and limit with the decimals that show which side of the limit the value is (level_text: 3.004 %
        # read "3.00 %" against "3 %" and FAIL, audit 13 F6); a difference signed, as the report's tables give it
        value_text, limit_text = level_texts(value, limit, bool(ok), kind, unit, signed=kind == "|.| <=")
        checks.append({"quantity": quantity, "value": value, "limit": limit, "passed": bool(ok), "level": level,
                       "value_text": value_text, "limit_text": limit_text})

    # the gamma and D95 rows with the TPS dose each compares with: a reference that states its own noise (an MC dose
    # mcproton wrote) is named where the data are consistent with that noise alone, else at most remarked on as
    # contributing (reference_noise.py; roundtrip audit F4, review of 2026-12-06 R1): judged against the likely
    # causes found so far (concrete differences: _diagnose's, material outside the External, the TPS's beam sum)
    plan_ref = inp.total if inp.total is not None else (inp.beams[min(inp.beams)] if len(inp.beams) == 1 else None)
    ref_rows: list[JudgedAgainst] = []
    found_notes = list(causes)
    d95_noise_notes: list[tuple[int, JudgedAgainst]] = []   # (diagnostics' index, the row): the clause added below

    def against(d: Any, label: str, **kw: Any) -> None:   # the row just added, compared with the TPS dose d
        ref_rows.append(JudgedAgainst(checks[-1], Path(d.path).name if d is not None else "",
                                    getattr(d, "stated_uncertainty_pct", None),
                                    getattr(d, "stated_uncertainty_source", ""), label, **kw))

    def gamma_detail(g: Mapping[str, Any], region: str = "") -> None:   # the gamma row just added: its points,
        # standard error, normalisation (``region``: what a field region's is of), and where the random subset decides
        # its verdict, a flag and a note (gamma audit 28, F1, F4)
        row = checks[-1]
        row["value_text"] += (gamma_row_detail(g, dose_unit, "in the region" if region else "in the body")
                              + (f" (of {region})" if region else ""))
        row["pass_rate_se_pct"] = 100 * float(g.get("pass_rate_se", float("nan")))
        row["normalisation_gy"] = g.get("normalisation_gy")
        note = gamma_subset_note(row["quantity"], g, row["limit"], row["passed"])
        if note:
            row["value_text"] += "; the random subset of points can turn this verdict (see the note)"
            row["subset_decides"] = True
            diagnostics.append(note)
            if not row["passed"]:
                causes.append(note)

    for name, key in (("3%/2mm", "gamma_3_2_min"), ("2%/2mm", "gamma_2_2_min")):
        pr = gam[name]["pass_rate"] * 100
        add(f"gamma {name} global pass rate (body, 10 % threshold)", pr, getattr(lv, key),
            math.isfinite(pr) and pr >= getattr(lv, key), "%", ">=", key)
        gamma_detail(gam[name])
        crit = gam[name]["criterion"]
        against(plan_ref, "the plan dose", gamma_dose_pct=crit["dose_pct"], gamma_distance_mm=crit["distance_mm"])
    # the normalisation of those rows and the dose difference against the highest target dose (audit 31, norm F2):
    # a hot region of the TPS dose too large for compare._plateau_near_max still set it, loosening every criterion
    norm_gy = float(diff.get("normalisation_gy") or 0.0)
    stated = {} if rx_of_median else pres_by   # the TPS medians are no prescription
    of_targets = target_dose_of_plan(tps, body, masks, targets, stated) if norm_gy > 0 else None
    if of_targets is not None and norm_gy > NORMALISATION_TARGET_RATIO * of_targets[0]:
        ratio = norm_gy / of_targets[0]
        add("normalisation of the global gammas and the dose difference / target dose", ratio,
            NORMALISATION_TARGET_RATIO, False, "x", "<=", "normalisation_target_ratio_max")
        checks[-1]["normalisation_gy"], checks[-1]["target_dose_gy"] = norm_gy, of_targets[0]
        diagnostics.append(
            f"the gammas and the dose difference are in % of the TPS dose's near-maximum, {norm_gy:.4g} {dose_unit}, "
            f"{ratio:.2f} x the target dose ({of_targets[1]}, {of_targets[0]:.4g} {dose_unit}; more than "
            f"{NORMALISATION_TARGET_RATIO:g} x): a hot region of the TPS dose (a metal or air-cavity edge, a noisy "
            "planning MC) sets it, and their criteria are that much looser than of the target dose, so that a wrong "
            "MC could pass them: the check does not PASS; look at the TPS dose's maximum and recompute the TPS dose "
            "without the cause, or give the target's prescription (--prescription) if it is not the plan's; a "
            "higher-dose region that is planned (a simultaneous boost) is compared only as a target: type its ROI "
            "PTV, CTV, GTV or ITV in the structure set (an ROI typed ORGAN or untyped counts only with such a name "
            "prefix)")
        causes.append(diagnostics[-1])
    for b, g in beam_gamma.items():
        pr = g["pass_rate"] * 100
        add(f"beam {b}: gamma 2%/2mm pass rate", pr, lv.beam_gamma_2_2_min,
            math.isfinite(pr) and pr >= lv.beam_gamma_2_2_min,
            "%", ">=", "beam_gamma_2_2_min")
        gamma_detail(g)
        against(inp.beams[b], f"beam {b}", gamma_dose_pct=2.0, gamma_distance_mm=2.0, beam=b)
    for b in region_ids:   # the plan dose per field region (no per-beam TPS dose): named by its beam
        g = regions[b]["gamma_2_2"]
        pr = g["pass_rate"] * 100
        add(f"beam {b}: gamma 2%/2mm pass rate in its field region of the plan dose", pr, lv.beam_gamma_2_2_min,
            math.isfinite(pr) and pr >= lv.beam_gamma_2_2_min, "%", ">=", "beam_gamma_2_2_min")
        gamma_detail(g, field_region_text(b))
        against(plan_ref, f"beam {b}'s field region", gamma_dose_pct=2.0, gamma_distance_mm=2.0, beam=b)
    for b, r in beam_dose.items():   # each beam's dose level (compare.beam_dose_ratio)
        if not r.get("voxels"):
            continue
        v = r["diff_pct"]
        add(f"beam {b}: MC/TPS dose (median voxel ratio, TPS beam dose >= 50 %)", v, lv.beam_dose_ratio_pct,
            math.isfinite(v) and abs(v) <= lv.beam_dose_ratio_pct, "%", "|.| <=", "beam_dose_ratio_pct")
        checks[-1]["value_text"] += (f" (MC/TPS {r['ratio']:.4f}"
                                    + (f", standard error {r['uncertainty_pct']:.2f} % from the MC's noise"
                                       if "uncertainty_pct" in r else "")
                                    + f"; integral ratio {r['integral_ratio']:.4f}; {r['voxels']} voxels)")
        shape = r["integral_ratio"] / r["ratio"] - 1 if r["ratio"] else float("nan")
        if not abs(shape) * 100 <= lv.beam_dose_ratio_pct:   # the level reads a scale; say what it leaves out
            checks[-1]["value_text"] += (
                f"; the integral ratio differs from the median by {100 * shape:+.1f} %: the dose's shape differs "
                "(range, lateral extent, a missing part), which this scale level does not judge: see the beam's "
                "gamma and range rows")
    u = mc.mean_rel_uncertainty_50 * 100   # the MC grid's figure (%): the diagnostics below and its own level
    for nm, row in structs.items():
        if row["kind"] != "target" or row.get("outside_body_fraction", 0.0) >= 1.0:   # wholly outside: said
            continue
        for met, key in (("D95", "target_d95_pct"), ("Dmean", "target_dmean_pct")):
            m = row["metrics"][met]
            lim = getattr(lv, key)
            if met != "D95" or "noise_matched_diff_pct" not in m:   # Dmean (zero-mean noise does not move it): raw
                v = m["diff_pct"]
                add(f"{nm} {met} difference", v, lim, math.isfinite(v) and abs(v) <= lim, f"% of the TPS {met}",
                    "|.| <=", key)
                if met == "D95":
                    against(plan_ref, f"target {nm!r} D95", d95=({"raw": v}, {"raw": lim}))
                continue
            # D95: the raw, the noise-matched and the MC-corrected differences all within the level
            # (compare.d95_verdict: each estimate of the noise's effect errs where another holds; the matched value
            # alone hid a true -4 % D95 at 1 % noise, noise-matching audit F1, and both raw and matched hid a true
            # +4.2 % whose cold corner was the TPS's, review 2026-12-05)
            ok, v, vals = d95_verdict(m, lim)
            lims = d95_limits(m, lim)
            add(f"{nm} {met} difference", v, lim, ok, f"% of the TPS {met}", "|.| <=", key)
            against(plan_ref, f"target {nm!r} D95", d95=(vals, lims))
            dec = d95_decimals(vals, lims)
            checks[-1]["limit_text"] = f"|.| <= {fixed(lim, dec)} % of the TPS {met}"
            if not math.isfinite(u):   # no noise estimate (one batch): nothing to match, not "noise-matched" (F2)
                checks[-1]["value_text"] = (f"raw {fixed(m['diff_pct'], dec, signed=True)} % of the TPS D95 (not "
                                            "noise-matched: the MC's noise could not be estimated, one batch)")
                continue
            se = m.get("mc_noise_shift_se_pct", float("nan"))
            if "MC-corrected" in lims and lims["MC-corrected"] > lim:
                checks[-1]["limit_text"] += (f" (the MC-corrected value: {fixed(lims['MC-corrected'], dec)} %, the "
                                             f"level + {D95_CORRECTED_SE_MULTIPLE:g} standard errors of its estimate)")
            wrong = (f", measured {fixed(m['mc_noise_shift_measured_pct'], 2, signed=True)} %: the wrong sign for "
                     "noise, the draws' error, taken as 0" if m.get("mc_noise_shift_implausible") else "")
            checks[-1]["value_text"] = (
                ", ".join(f"{k} {fixed(x, dec, signed=True)} %" for k, x in vals.items()) + " of the TPS D95 (the "
                f"MC's noise alone shifts the TPS's D95 by {fixed(m['noise_shift_pct'], 2, signed=True)} % and the "
                f"MC's by {fixed(m['mc_noise_shift_pct'], 2, signed=True)} %"
                + (f" +- {fixed(se, 2)} % (standard error)" if math.isfinite(se) else "") + f"{wrong}; "
                f"modelled spread {percent_or_na(m.get('noise_sd_pct', float('nan')))} (1 sd, from "
                f"{m.get('noise_realisations', NOISE_REALISATIONS)} draws); all must be within the level)")
            checks[-1]["noise_matched"] = True
            spread = max(vals.values()) - min(vals.values())
            raw_ok = math.isfinite(vals["raw"]) and abs(vals["raw"]) <= lim
            # the verdict is the noise's, not the dose's: the estimates disagree, or a noise-corrected one alone
            # failed (statistics audit 2026-12-06, F1: 3 of 6 false FAILs at 1 % had no note); and only where the
            # noise could turn it, one estimate at least within its own limit: a gross error moves the three apart
            # too (the MC-noise correction is a share of the dose), and a TPS dose x 0.9 (+11 / +12 / +14 %, each
            # several times the level) was blamed on the noise (audit 26, F1)
            if not ok and d95_noise_could_decide(vals, lims) and (spread > D95_ESTIMATES_AGREE_PCT or raw_ok):
                failed = [k for k, x in vals.items() if not (math.isfinite(x) and abs(x) <= lims[k])]
                how = (f"on its {' and '.join(failed)} estimate{'s' if len(failed) > 1 else ''} alone, the raw "
                       "difference being within it" if raw_ok else
                       f"while its three estimates disagree by {spread:.1f} %")
                diagnostics.append(
                    f"target {nm!r}: the D95 level failed {how} "
                    f"({', '.join(f'{k} {x:+.2f} %' for k, x in vals.items())}): the MC's statistical noise "
                    f"({u:.2f} %) decides this verdict more than the doses do; "
                    f"{noise_remedy(mc, target_uncertainty, primaries, time_limit_s)} before reading it as a dose "
                    "error")
                d95_noise_notes.append((len(diagnostics) - 1, ref_rows[-1]))
    turned_rows: list[int] = []   # the index in ``checks`` of each range row of a beam the TPS computed turned
    for b, r in ranges.items():
        if r.get("same_rays_as") is not None:   # one comparison of beams sharing a direction: its first beam's row
            continue
        label = range_label(b, r)
        if not r.get("evaluable"):   # too few rays for a field's range: said, not judged (CSI audit F3)
            diagnostics.append(f"{label}: distal R80 {r.get('note', 'not evaluable')}")
            continue
        if b in direction[1]:   # the two rows this beam adds next
            turned_rows.append(len(checks))
        # noise-matched where the MC's uncertainty of the dose is known (compare.range_agreement's noise floor): the
        # median less what the MC's noise alone gives, and the rays within 2 mm against the share noise alone leaves
        floor = "noise_within_2mm" in r and math.isfinite(u)   # no noise estimate (one batch): raw, said so (F2)
        med = r["noise_matched_median_mm"] if floor else r["median_mm"]
        add(f"{label}: median distal R80 difference ({r['source']})", med, lv.range_median_mm,
            abs(med) <= lv.range_median_mm, "mm", "|.| <=", "range_median_mm")
        if "range_level_pct_of_depth" in r:   # what the level covers at this beam's depth (audit 21 F1)
            checks[-1]["limit_text"] += (f" (= {r['range_level_pct_of_depth']:.1f} % of this beam's distal depth, "
                                         f"{r['distal_depth_mm']:.0f} mm)")
        if floor:
            checks[-1]["value_text"] += (f", noise-matched (raw {fixed(r['median_mm'], 2, signed=True)} mm, the "
                                         f"MC's noise alone {fixed(r['noise_median_mm'], 2, signed=True)} mm)")
            checks[-1]["noise_matched"] = True
        elif not math.isfinite(u):
            checks[-1]["value_text"] += " (not noise-matched: the MC's noise could not be estimated, one batch)"
        checks[-1]["value_text"] += range_grid_clause(r)   # a beam along a grid axis (gamma audit 28, F3)
        f0 = r["noise_within_2mm"] if floor else 1.0
        lim = lv.range_within_2mm_min * f0
        add(f"{label}: rays with |R80 difference| <= 2 mm", 100 * r["within_2mm"], lim,
            100 * r["within_2mm"] >= lim, "%", ">=", "range_within_2mm_min")
        one_edge = one_edge_rays_text(r)
        if one_edge:   # said on both rows: the median is of the compared rays only (check review 2026-12-06, F2)
            checks[-2]["value_text"] += f" (of the {r['rays']} rays compared; {one_edge})"
            checks[-1]["value_text"] += f" ({one_edge}, counted outside 2 mm)"
        if floor:   # the level is of the rays that the MC's noise alone leaves within 2 mm
            dec = level_decimals([(100 * r["within_2mm"], checks[-1]["passed"])], lim, ">=")   # as the value's
            checks[-1]["limit_text"] = (f">= {lv.range_within_2mm_min:g} % of the {100 * f0:.1f} % that the MC's "
                                        f"noise alone leaves within 2 mm (= {fixed(lim, dec)} %)")
            checks[-1]["noise_matched"] = True
        failed = [k for k, row in (("median", checks[-2]), ("rays", checks[-1])) if not row["passed"]]
        # a shallow beam's remark that its range rows' PASS does not rule out a 3 % range error: only where both
        # passed (audit 21 review F3: it stood beside a median row that had found the error)
        note = (shallow_range_note(label, r["distal_depth_mm"], lv.range_median_mm, self_compared=self_compared)
                if "range_level_pct_of_depth" in r and not failed else None)
        if note:
            diagnostics.append(note)
        note = range_noise_note(label, r, lv.range_median_mm, failed, u, noise_remedy(
            mc, target_uncertainty, primaries, time_limit_s)) if floor and failed else None
        if note:   # the noise shift beyond the level: said on the failed rows and in a cause (smoke audit F3)
            for row in (checks[-2], checks[-1]):   # (not ``c``: the CPU clock of this step)
                if not row["passed"]:
                    row["value_text"] += ("; the MC's noise alone shifts the median by more than the level: the "
                                          "noise decides this verdict (see the note)")
                    row["noise_decides"] = True
            diagnostics.append(note)
            causes.append(note)
    # a turned beam's range rows are not the calibration's to explain: its note says so (audit 31 direction R6: the
    # generic-calibration note named the curve as a cause beside "not from ... the CT calibration")
    turned_rows = [i + k for i in turned_rows for k in (0, 1)]   # its median and its rays within 2 mm
    cal_note = generic_calibration_note([c for i, c in enumerate(checks) if i not in turned_rows], generic_calibration)
    if cal_note is not None:   # the default curve named wherever the range rows fail or near it (journey 28, F2)
        diagnostics.append(cal_note[0])
        if cal_note[1]:
            causes.append(cal_note[0])
    diagnostics += direction_unjudged_notes(mc, tps_beams, checks)   # a remark, not a cause (audit 31 direction R4)
    # the beams without a per-beam TPS dose: said in the report and check.json (norm2 F2: the plan dose only; review
    # a of audit 32, R2: and beside other beams' doses, where such a beam went unjudged without a word)
    unjudged = sorted(set(mc.beams_gy_zyx) - set(tps_beams))
    if unjudged:
        diagnostics.append(plan_dose_only_direction_note(unjudged, others_judged=bool(tps_beams)))
    add("MC statistical uncertainty (mean, voxels > 50 % of the maximum)", u, lv.mc_uncertainty_max_pct,
        math.isfinite(u) and u <= lv.mc_uncertainty_max_pct, "%", "<=", "mc_uncertainty_max_pct")
    # the figure is the MC grid's; where the dose was interpolated onto the TPS grid, the compared dose is less
    # noisy (statistics audit F3): its own figure, propagated (compute.uncertainty_to_tps_grid), is said beside it
    u_tps = _tps_grid_uncertainty_pct(mc)
    if math.isfinite(u_tps) and abs(u_tps - u) > 0.005:
        checks[-1]["value_text"] += (f" on the MC grid; "
                                     f"{tps_grid_uncertainty_text(u_tps, 'coincides' not in (mc.grid_note or ''))}")
    time_limited = _time_limited_beams(mc)
    if time_limited and time_limit_s is not None:   # said where the verdict is read, not only in the log
        short = target_uncertainty is not None and not (math.isfinite(u) and u <= 100 * target_uncertainty)
        checks[-1]["time_limited"] = True
        checks[-1]["value_text"] += (
            f" (the MC stopped at --time-limit {time_limit_s:g} s, beam(s) {', '.join(map(str, time_limited))}"
            + (f", above the target {100 * target_uncertainty:g} %)" if short else ")"))
        if short:
            diagnostics.append(
                f"the MC was stopped by --time-limit {time_limit_s:g} s (beam(s) {', '.join(map(str, time_limited))}) "
                + (f"at a statistical uncertainty of {u:.2f} %" if math.isfinite(u) else   # not "nan %" (F2)
                   "with no estimate of its statistical uncertainty (one batch)")
                + (", above" if math.isfinite(u) else ", against") + f" the target of {100 * target_uncertainty:g} % "
                f"(--target-uncertainty): every comparison is of this noisier dose, judged by the uncertainty's "
                f"action level ({lv.mc_uncertainty_max_pct:g} %); rerun with a longer --time-limit (or none) for "
                "the target")
            causes.append(diagnostics[-1])
    passed = all(c["passed"] for c in checks)
    ct_notes = not_planning_ct_diagnostics(inp, checks)
    # a reference dose whose own stated noise the data are consistent with alone: a cause, after those that name a
    # concrete difference (for another beam); one it only contributes to: a remark (review of 2026-12-06, R1)
    not_noise = Found(ratios=_ratios_compared(ref_rows, beam_dose, tps, mc, body), notes=found_notes + ct_notes,
                      failed_ranges=[c["quantity"] for c in checks if c["level"] == "range_median_mm"
                                     and not c["passed"] and not c.get("noise_decides")])
    ref_notes = reference_noise_notes(ref_rows, not_noise)
    for i, j in d95_noise_notes:   # the MC-noise note of a D95 level that the reference's noise explains too
        diagnostics[i] += reference_d95_clause(j, not_noise)
    diagnostics[:0] = ct_notes   # the first suspect of a failed range or dose level
    diagnostics += ref_notes.causes + ref_notes.remarks
    causes += ct_notes + ref_notes.causes + [d for d in diagnostics if "the D95 level failed" in d]   # noise: D95
    if not passed and inp.dose_type == "EFFECTIVE" and not any("variable RBE" in d for d in diagnostics):
        diagnostics.append(_constant_rbe_note(mc))   # the assumption behind every EFFECTIVE comparison (rbe audit F1)
        causes.append(diagnostics[-1])
    # organs at risk beyond the noise (no level, but a dose difference): among the causes, so shown before the
    # remarks, and last of them, after what explains a failed level (audit 18b F3; the docs audit's F3)
    diagnostics += oar
    causes += oar
    from .. import __version__
    from .._build import check_build_identity

    desc = mc_dose_description(inp, mc)
    # the build (version, kernel, physics data and code SHA-256): what tells two builds' checks apart, the version
    # being 0.1.0 since the first commit (the compat audit of 2026-12-06, F6)
    prov = {"mcproton_version": __version__, "build": check_build_identity(),
            "kernel_hash": mc.provenance.get("kernel_hash"),
            "beam_model": mc.provenance.get("beam_model"), "beam_model_file": mc.provenance.get("beam_model_file"),
            "calibration": cal_name, "ct": ct_note,
            "structure_set": inp.struct_path,
            "beams": beam_summary(mc.beam_meta, inp.beams),
            "statistical_uncertainty_pct": u, "statistical_uncertainty_tps_grid_pct": u_tps,
            "statistical_uncertainty_tps_grid_note": TPS_GRID_UNCERTAINTY_NOTE,
            "primaries": mc.primaries, "mc_wall_s": mc.wall_s,
            "mc_process_cpu_s": mc.provenance.get("transport_process_cpu_s"),
            "device": mc.device, "backend": mc.backend, "seed": mc.provenance.get("seed"),
            "dose": desc["quantity"], "dose_unit": desc["unit"], "dose_fractions": desc["fractions"],
            "dose_values": f"every dose in this JSON (keys *_gy) is the {desc['label']}, in {desc['unit']}",
            "fractions": inp.fractions if inp.all_fractions else 1, "grid": mc.grid_note,
            "transport_grid": mc.provenance.get("transport_grid"),
            "body_outline": body_how, "prescription_gy": pres,
            # one type always: {target: Gy} (prescription_gy is a number where every target has one dose, as
            # before; integrators' audit 2026-12-06, F6)
            "prescription_gy_by_target": dict(pres_by),
            "prescription_source": pres_how if pres else None,
            "geometry_notes": mc.provenance.get("geometry_notes", []), "python": platform.python_version(),
            "host": platform.node(), "date": mc.provenance.get("date"),
            # what was checked and how (record.py): a signed report traced to its files a year later
            "identification": ident,
            # the patient rule's warnings (files linked by UID with other PatientIDs, a name spelled differently):
            # the report's header says them too (audit 24, identity F2)
            "patient_identity_warnings": list(inp.patient_warnings), "working_directory": os.getcwd(),
            "inputs": input_files + ([ct_record] if ct_record else []),
            "calibration_builtin": cal_record.get("builtin"), "calibration_files": cal_record.get("files", []),
            "calibration_data_sha256": cal_record.get("data_sha256"),
            "physics": mc.provenance.get("physics"), "check_started": started}
    settings = {"gamma_points": gamma_points, "gamma": "pymedphys.gamma, TPS reference, MC evaluation, global "
                f"normalisation to {NORMALISATION_TEXT} (normalisation_gy), 10 % threshold of it, max_gamma 1.5, "
                "interp_fraction 5, the points above 1 searched again finer (refined_points; compare.refine_gammas), "
                + (f"a random subset of {gamma_points} points (seeded; pass_rate_se: the pass rate's standard error)"
                   if gamma_points else "every point"), "target_uncertainty": target_uncertainty,
                "primaries_limit": primaries, "dose_to": dose_to, "fractions": fractions,
                # what each "%" is of (the same symbol means two things on the page)
                "percent_of": {"structures": "diff_pct, noise_shift_pct, noise_matched_diff_pct and the target "
                                             "D95/Dmean action levels: % of the TPS value of the metric; V95/V100: "
                                             "points of the structure's volume",
                               "dose_difference": f"% of {NORMALISATION_TEXT} (normalisation_gy)"},
                "noise_matching": {"realisations": NOISE_REALISATIONS, "seed": [seed, NOISE_SEED_OFFSET],
                                   "model": "TPS dose + Gaussian noise of SD = the MC's own standard error "
                                            "(MC dose x its relative uncertainty) of the voxel, independent between "
                                            "voxels, clipped at 0 (compare.noisy_like_mc)",
                                   "noise_sd": "noise_sd_pct / noise_sd_points: the spread of the metric over the "
                                               "realisations; for Dmean and V95/V100 x "
                                               f"{AGGREGATE_NOISE_FACTOR:g} for the MC's correlated voxel errors "
                                               "(an upper estimate: measured 1.35-3.5 x the independent-voxel "
                                               "spread, kept as noise_sd_independent_pct / _points, a lower "
                                               "bound); the D-at-volume metrics' spread as is (measured 0.6-1.9 x "
                                               "the true one)",
                                   "judged": "target D95 action level: diff_pct, noise_matched_diff_pct and "
                                             "mc_corrected_diff_pct all within it (compare.d95_verdict); Dmean on "
                                             "diff_pct"},
                # every option as resolved, with where it came from (the report's Settings table): a re-run
                **invocation(call_args, _check_defaults()),
                "target_uncertainty_per_beam": mc.provenance.get("target_uncertainty_per_beam"),
                "time_limit_s": time_limit_s, "mc_stopped_by_time_limit": time_limited,
                "seed": seed, "backend": backend, "threads": threads, "gamma_workers": gamma_workers,
                "dose_type": inp.dose_type,
                "dose_type_source": "given (--dose-type)" if dose_type is not None else "the TPS RT Dose's DoseType",
                "dose_to_source": _dose_to_source(inp, dose_to_given),
                "patient_position": sorted({str(b.patient_position or "") for b in inp.plan.beams} - {""}),
                "patient_position_source": "given (--patient-position)" if patient_position is not None
                else "the plan's patient setups (PatientSetupSequence)",
                "rbe": mc.provenance.get("rbe"), "rbe_given": rbe,
                "prescription_given": rx_given, "prescription_anyway": args["prescription_anyway"],
                "struct_overrides": struct_overrides,
                "outside_external": outside_external, "calibration": cal_name,
                "calibration_given": None if call_args["calibration"] is None
                else str(getattr(call_args["calibration"], "name", call_args["calibration"])),
                # where each came from: with --phantom-from-struct, the phantom (its options refused)
                **({f"{k}_source": v for k, v in PHANTOM_SETTING_SOURCES.items()} if phantom_from_struct else
                   {"struct_overrides_source": "--struct-overrides", "outside_external_source": "--outside-external",
                    "calibration_source": "given (--calibration)" if call_args["calibration"] is not None
                    else DEFAULT_CALIBRATION_SOURCE}),
                "levels_config": levels_record(levels),
                "ct_series": ct_series, "phantom_from_struct": phantom_from_struct,
                "allow_no_struct": args["allow_no_struct"],
                # the structure sets the plan names (its ReferencedStructureSetSequence): where none, allow_no_struct
                # did nothing, and the report's Settings row says so (review d of 2026-12-07, R3)
                "plan_structure_sets": list(getattr(inp.plan, "referenced_structure_sets", ()) or ()),
                **plan_checks_done(mc, machine_check),
                "ignore_beam_limiting_devices": ignore_beam_limiting_devices}
    res = CheckResult(passed, checks, gam, diff, structs, ranges, beam_gamma, diagnostics, inp.pairing, prov, timings,
                      settings, lv.describe(), str(out_dir) if out_dir else None, tps_gy_zyx=tps,
                      mc_gy_zyx=mc.total_gy_zyx, body_zyx=body, masks=masks, axes_zyx=axes, mc=mc_as_computed,
                      inputs=inp,
                      mc_rtdose=mc_rtdose, warnings=list(dict.fromkeys(recorded())),   # each message once
                      beam_dose=beam_dose, field_regions=regions,
                      diagnostic_kinds=diagnostic_kinds(diagnostics, causes))
    timings["action_levels_s"] = time.perf_counter() - t
    cpu_steps["action_levels_s"] = time.process_time() - c
    res.provenance["check_finished"] = now_text()   # as the report is written: the same time in HTML and JSON
    if out_dir is not None and report:
        from .report import render_figures, write_report

        t, c = time.perf_counter(), time.process_time()
        step(f"writing the report ({printable(str(out_dir / 'check.html'))}) ...")
        with _naming_a_failed_write(out_dir, mc_rtdose), _naming_a_failed_figure(out_dir, mc_rtdose):
            pngs = {**pngs, **render_figures(res, skip=pngs)}   # the figures not drawn yet (the gammas')
        # the rest of the report: an error there is not the figures' (review 2 of 2026-12-06, F4)
        with _naming_a_failed_write(out_dir, mc_rtdose), _naming_a_failed_report(out_dir, mc_rtdose):
            write_report(res, out_dir, timings, pngs=pngs)
        timings["report_s"] = time.perf_counter() - t + report_wall         # + the figures drawn before
        cpu_steps["report_s"] = time.process_time() - c + report_cpu
    timings["total_s"] = time.perf_counter() - t_all
    # the host's share: CPU time of this process (all its threads) against the wall time, and the load average
    # (other processes on the same cores slow every step's wall time)
    res.provenance.update({"process_cpu_s": time.process_time() - cpu_all, "cpu_s_per_step": cpu_steps,
                           "gamma_workers": n_workers, "gamma_workers_cpu_s": gamma_jobs_cpu,
                           "gamma_elapsed_s": gamma_elapsed, "report_workers": figure_run.used,
                           "report_workers_cpu_s": figure_run.cpu_s,
                           "load_average_start": load_start,
                           "load_average_end": _load_average(), "cpu_count": os.cpu_count(),
                           "cpus_usable": usable_cpus(), "cpu_quota": cpu_quota()})
    if out_dir is not None:
        res.report_json = str(out_dir / "check.json")
        with _naming_a_failed_write(out_dir, mc_rtdose):
            write_bytes_atomic(Path(res.report_json), json_text(res.to_dict(), indent=1).encode())
    _progress(complete=True)   # every file written: a signal now is ignored
    if earlier_outputs is not None:   # replaced by this report
        earlier_outputs.discard()
    return res


def _write_mc_rtdoses_or_rescue(inp: CheckInputs, mc: MCDose, out_dir: Path) -> dict[str, dict]:
    """Write the MC RT Doses into ``out_dir`` (mc_rtdose.write_mc_rtdoses); where that fails (a full disk, a
    quota), write them into a folder in the temporary folder instead and raise an error naming the file that
    failed, why, and where the MC dose is: the Monte Carlo's hours are never lost to a full disk (before
    2026-12-05 they were, with pydicom's flattened traceback as the only message: deployment audit F7)."""
    from .._io.atomic import is_no_space, is_unwritable, rescue_path, write_error_text
    from .._io.errors import OutputWriteError
    from .mc_rtdose import MC_PLAN_FILE, write_mc_rtdoses

    try:
        return write_mc_rtdoses(inp, mc, out_dir)
    except OSError as exc:
        failed = exc.filename or out_dir / MC_PLAN_FILE
        why = f"could not write {failed}: {write_error_text(exc, failed)}"
        fix = "free disk space" if is_no_space(exc) else "remove the cause named above"
        rescue = rescue_path(out_dir)
        try:
            files = write_mc_rtdoses(inp, mc, rescue)
        except OSError as exc2:
            _remove_empty_folder(rescue)   # no empty mcproton-rescued-* folder left (automation audit, F4)
            raise OutputWriteError(f"{why}; nor the rescue copy in {rescue} ({write_error_text(exc2, exc2.filename)}): "
                                   f"the MC dose is lost; {fix} and run the check again",
                                   no_space=is_unwritable(exc)) from exc2
        names = ", ".join(v["file"] for v in files.values())
        raise OutputWriteError(f"{why}; the MC dose was written to the folder {rescue} instead ({names}), and no "
                               f"report: {fix} and run the check again for the report (or keep these files)",
                               no_space=is_unwritable(exc)) from exc


def _remove_empty_folder(folder: Path) -> None:
    """Remove ``folder`` where it exists and is empty (what a rescue that failed at its first file leaves)."""
    try:
        folder.rmdir()
    except OSError:   # absent, or not empty: it holds what was rescued
        pass


class _naming_a_failed_write:
    """``with _naming_a_failed_write(out_dir, mc_rtdose):`` an OSError writing the report becomes one line naming
    the file, why, and that the MC dose is kept (its RT Doses are written first)."""

    def __init__(self, out_dir: Path, mc_rtdose: dict[str, dict]) -> None:
        self.out_dir, self.mc_rtdose = out_dir, mc_rtdose

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if not isinstance(exc, OSError):
            return
        from .._io.atomic import is_no_space, is_unwritable, write_error_text
        from .._io.errors import OutputWriteError

        failed = exc.filename or self.out_dir
        fix = "free disk space" if is_no_space(exc) else "remove the cause named above"
        kept = (f"; the MC dose is kept in {', '.join(str(self.out_dir / v['file']) for v in self.mc_rtdose.values())}"
                if self.mc_rtdose else "")
        raise OutputWriteError(f"could not write {failed}: {write_error_text(exc, failed)}{kept}: {fix} and run the "
                               "check again for the report", no_space=is_unwritable(exc)) from exc


class _naming_a_failed_figure(_naming_a_failed_write):
    """``with _naming_a_failed_figure(out_dir, mc_rtdose):`` around the drawing of the report's figures only: an
    error drawing them (not the machine's: an OSError, a MemoryError or a RuntimeError pass) becomes a
    :class:`McprotonInternalError` (exit 4) that says so and that the MC dose is kept.  Before 2026-12-06 an ROI
    name matplotlib read as mathtext raised a ValueError here, after the whole MC: the check was recorded as
    "refused" (bad input, exit 2) with pyparsing's message only (strings audit 19, F1)."""

    #: what failed, and what to do, in the message
    failed = "could not draw the report's figures"
    whose = "a bug in mcproton's figures"
    advice = "; in Python, check(..., report=False) writes check.json without the figures"

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if not isinstance(exc, Exception) or isinstance(exc, (OSError, MemoryError, RuntimeError)):
            return
        kept = (f"; the MC dose is kept in {', '.join(str(self.out_dir / v['file']) for v in self.mc_rtdose.values())}"
                if self.mc_rtdose else "")
        raise McprotonInternalError(f"{self.failed} ({type(exc).__name__}: {printable(exc)}): {self.whose}, not in "
                                    f"the input (rerun with --debug and report it){kept}{self.advice}") from exc


class _naming_a_failed_report(_naming_a_failed_figure):
    """``with _naming_a_failed_report(out_dir, mc_rtdose):`` around the writing of check.html once its figures are
    drawn: an error there (a table, the provenance, the alt text) is an internal error of the report, named as such,
    with no advice to leave out the figures, which would not avoid it.  Before, the whole of write_report was
    "could not draw the report's figures" (review 2 of 2026-12-06, F4)."""

    failed = "could not write the report (check.html)"
    whose = "a bug in mcproton's report"
    advice = ""


#: batch.json's format version (in each row: batch.json is {sub-folder: row}): raised when a key is removed or
#: changes meaning.  1: the first numbered one (2026-12-06: "status" and "schema_version" in every row; automation
#: audit, F10)
BATCH_JSON_SCHEMA = 1


def batch_row(status: str, *, exit_status: int | None, error: str | None = None, error_type: str | None = None,
              identification: Mapping[str, Any] | None = None, plan_uid: str | None = None,
              checked: str | None = None, **more: Any) -> dict[str, Any]:
    """A batch.json row that is not a computed check's (refused, failed, interrupted, not checked, not in the
    batch) with the keys every row has (:data:`BATCH_ROW_KEYS`): the patient and plan where the plan was read
    (``identification``, check.json's), when (``checked``: when the record was made), mcproton's version, the exit
    status (None for a patient not checked) and the error with its type apart; then ``more``.  Before 2026-12-06 such
    a row had only its status and message (the integrators' audit, F8)."""
    from .. import __version__

    ident = identification or {}
    return {"schema_version": BATCH_JSON_SCHEMA, "status": status, "passed": False, "exit_status": exit_status,
            "patient_id": ident.get("PatientID") or None, "patient_name": ident.get("PatientName") or None,
            "plan": plan_label(ident) or None, "plan_uid": plan_uid or ident.get("SOPInstanceUID") or None,
            "checked": checked, "mcproton_version": __version__, "error": error, "error_type": error_type, **more}


#: the keys of every batch.json row, whatever its status (a computed check's has more): a script can read them
#: without looking at the status first (integrators' audit 2026-12-06, F8/F9)
BATCH_ROW_KEYS = ("schema_version", "status", "passed", "exit_status", "patient_id", "patient_name", "plan",
                  "plan_uid", "checked", "mcproton_version", "error", "error_type")

#: the row of batch.json of a patient not checked (yet): the batch is still running, or was interrupted before it
NOT_CHECKED = batch_row("not_checked", exit_status=None, error="not checked yet", not_checked=True)


class BatchError(str):
    """A patient's entry in :func:`check_batch`'s result when it was not checked: the message (a ``str``, as
    before), with ``status`` ("refused", "environment_error", "internal_error", "not_checked") and ``exit_status``
    (mcproton.errors)."""

    status: str

    def __new__(cls, message: str, status: str) -> BatchError:
        self = super().__new__(cls, message)
        self.status = status
        return self

    @property
    def exit_status(self) -> int:
        from ..errors import EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_REFUSED

        return {"refused": EXIT_REFUSED, "internal_error": EXIT_INTERNAL}.get(self.status, EXIT_ENVIRONMENT)


def _vanished_patients(out_dir: Path, patients: set[str], root: Path, log: Callable[[str], None]) -> dict[str, dict]:
    """The sub-folders of a batch's ``out_dir`` holding an earlier check's report of a patient that is not in this
    batch (it left the export): the report is moved aside and a check.json saying so (``"status": "not_in_batch"``,
    as its row: before the integrators' audit of 2026-12-06, F9, the file said "not_checked") written in its place,
    so that a script collecting ``out/*/check.json`` does not count last night's PASS as tonight's (automation audit
    2026-12-06, F1); their rows keep them listed in batch.json, with the patient and plan of the earlier check."""
    from .out_dir import _ours, earlier_reports, move_aside, record_failure

    rows: dict[str, dict] = {}
    if not out_dir.is_dir():
        return rows
    for d in sorted(out_dir.iterdir()):
        if d.name in patients or not d.is_dir() or d.is_symlink() or not _ours(d / "check.json"):
            continue
        ident = _identification_of(d / "check.json")
        why = (f"{d.name} is not a patient of this batch ({root}): its folder holds an earlier check's outputs, "
               "not a check of tonight's export")
        try:
            moved = move_aside(d, earlier_reports(d), log)
        except OSError as exc:
            log(f"mcproton check --batch: {d.name}: could not move the earlier check's outputs aside ({exc})")
            moved = None
        rec = record_failure(d, ValueError(why), ours_written=True, started=None, inputs={}, invocation={}, log=log,
                             status="not_in_batch", moved_to=moved, identification=ident)
        rows[d.name] = batch_row("not_in_batch", exit_status=None, error=why, error_type=None, identification=ident,
                                 checked=rec["provenance"]["check_finished"],
                                 **({"earlier_outputs_moved_to": str(moved)} if moved else {}))
        log(f"mcproton check --batch: {why}")
    return rows


def _identification_of(check_json: Path) -> dict[str, Any]:
    """The patient and plan a check.json records (``provenance.identification``); {} where it has none."""
    try:
        doc = json.loads(check_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ident = (doc.get("provenance") or {}).get("identification") if isinstance(doc, dict) else None
    return dict(ident) if isinstance(ident, dict) else {}


def _pending_set_aside(out_dir: Path, pending: Sequence[str], why: str, log: Callable[[str], None]) -> None:
    """A batch stopped (a signal, a full disk) before the patients ``pending``: each one's earlier check in
    ``out_dir/<patient>/`` is moved aside and a check.json saying it was not checked (``"status": "not_checked"``,
    ``why``) written in its place, so that no folder of the batch holds last night's verdict as if it were tonight's
    (the integrators' audit of 2026-12-06, F1).  ``--skip-checked`` still finds an earlier check set aside so
    (:func:`_reusable_in`).  Best effort: a failure is named in the log."""
    from .out_dir import earlier_reports, move_aside, record_failure

    for name in pending:
        d = out_dir / name
        try:
            found = earlier_reports(d)
            if not found:
                continue
            ident = _identification_of(d / "check.json")
            moved = move_aside(d, found, log, why="are not a check of tonight's batch, which stopped before it")
            record_failure(d, ValueError(why), ours_written=True, started=None, inputs={}, invocation={}, log=log,
                           status="not_checked", moved_to=moved, identification=ident)
        except OSError as exc:
            log(f"mcproton check --batch: {name}: could not set the earlier check's outputs aside ({exc})")


def _batch_json(table: dict[str, dict], pending: Iterable[str] = ()) -> bytes:
    """``batch.json``'s text: the patients done, then those not checked yet (``pending``: :data:`NOT_CHECKED`, as
    the index lists them; the long-runs audit of 2026-12-05, F11: an interrupted batch's batch.json left them
    out, so a script counting its rows missed them); strict JSON (a gamma pass rate of a dose with no points
    above the threshold is NaN: null, as in ``check.json``)."""
    rows = {**table, **{name: dict(NOT_CHECKED) for name in pending if name not in table}}
    return json.dumps(json_safe(rows), indent=1, default=str, allow_nan=False).encode()


def _batch_record(r: CheckResult, uid: str | None, out_dir: Path) -> dict[str, Any]:
    """What batch.json and the index say of one patient's check besides its numbers: the patient, the plan (its
    label, else its name, else its UID), the TPS doses compared (path, SOPInstanceUID, SHA-256), when, with what
    (mcproton's version, the beam model and calibration with their SHA-256, the statistical target, the action
    levels' source), and its report, relative to batch.json's folder (the batch folder moved, it still resolves)."""
    return _batch_record_of(r.provenance, r.settings, r.inputs.plan.label if r.inputs is not None else "", uid,
                            Path(r.report_html) if r.report_html else None, out_dir)


def _batch_record_of(p: Mapping[str, Any], st: Mapping[str, Any], label: str, uid: str | None,
                     report_html: Path | None, out_dir: Path) -> dict[str, Any]:
    """:func:`_batch_record` from a check's provenance and settings as check.json records them: a fresh check's row
    and a reused one's (``skip_checked``, from the earlier check.json) are the same fields, built here (the docs
    audit of 2026-12-06, F1: a reused row had lost the patient, the plan, the TPS doses and the gamma)."""
    ident = p.get("identification") or {}
    model = p.get("beam_model_file") or {}
    report = Path(os.path.relpath(report_html, out_dir)).as_posix() if report_html is not None else None
    return {"report": report, "patient_id": ident.get("PatientID"), "patient_name": ident.get("PatientName"),
            "plan": plan_label(ident, label, uid or "") or None,
            "plan_uid": uid,
            "tps_doses": [{k: f.get(k) for k in ("path", "sop_instance_uid", "sha256")} for f in p.get("inputs", [])
                          if str(f.get("role", "")).startswith("TPS RT Dose")],
            "checked": p.get("check_finished"), "mcproton_version": p.get("mcproton_version"),
            "beam_model": p.get("beam_model"), "beam_model_sha256": model.get("sha256"),
            "calibration": p.get("calibration"),
            "calibration_sha256": [f.get("sha256") for f in p.get("calibration_files") or []],
            "target_uncertainty": st.get("target_uncertainty"),
            "levels": (st.get("levels_config") or {}).get("source")}


def earlier_self_compared(earlier: Mapping[str, Any]) -> str:
    """An earlier check.json's ``self_compared`` (:data:`SELF_COMPARED` or ""); one written before the key, from its
    warnings (:func:`self_compared_text`)."""
    v = earlier.get("self_compared")
    return v if isinstance(v, str) else self_compared_text(earlier.get("warnings") or [])


def _reused_row(earlier: Mapping[str, Any], html: Path, out_dir: Path, patient: Path | None = None,
                key: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """batch.json's row of a patient not checked again (``skip_checked``): the fields of a fresh check's row, taken
    from its earlier check.json (the patient, the plan and its UID, the TPS doses with their SHA-256, the gamma, the
    beam model, the calibration, the levels, the warnings), marked ``"reused": true``; ``checked`` is when that
    earlier check finished.  The TPS doses' paths are tonight's (``patient``'s file with the same SHA-256 in the
    reuse ``key``), not the earlier export's (a batch folder renamed each night: the integrators' audit of
    2026-12-06, F8)."""
    prov, st = earlier.get("provenance") or {}, earlier.get("settings") or {}
    ident = prov.get("identification") or {}
    plan_file = next((f for f in prov.get("inputs") or [] if str(f.get("role", "")).startswith("RT")
                      and "Plan" in str(f.get("role", ""))), {})
    uid = plan_file.get("sop_instance_uid") or ident.get("SOPInstanceUID")
    rate = ((earlier.get("gamma") or {}).get("2%/2mm") or {}).get("pass_rate")
    row = {"schema_version": BATCH_JSON_SCHEMA, "status": earlier["status"], "passed": earlier["passed"],
           "exit_status": 0 if earlier["passed"] else 1, "error": None, "error_type": None,
           "failed": [c.get("quantity") for c in earlier.get("checks") or [] if not c.get("passed")],
           "gamma_2_2_pct": None if rate is None else 100 * rate,
           "statistical_uncertainty_pct": prov.get("statistical_uncertainty_pct"),
           **_batch_record_of(prov, st, ident.get("RTPlanLabel") or "", uid, html if html.exists() else None,
                              out_dir),
           "warnings": list(earlier.get("warnings") or []), "self_compared": earlier_self_compared(earlier),
           "no_structures": no_structures_text(earlier.get("warnings") or []),
           "kvp_mismatch": kvp_mismatch_of(prov), "reused": True}
    if patient is not None and key is not None:
        by_hash: dict[str, str] = {}
        for rel, sha in (key.get("input_files_sha256") or {}).items():
            by_hash.setdefault(str(sha), rel)
        for f in row["tps_doses"]:
            rel = by_hash.get(str(f.get("sha256")))
            if rel is not None:
                f["path"] = str((patient / rel).resolve())
    return row


#: check()'s keyword arguments that change what is printed or how fast, not what is checked: left out of the reuse
#: key (a check stopped by its time limit is never reused: :func:`_reusable`)
_NOT_IN_REUSE_KEY = ("progress", "log", "gamma_workers", "threads", "time_limit_s", "beam_model", "calibration",
                     "levels")


def _reuse_key(patient: Path, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What a patient's check in a batch was made of, for ``skip_checked``: the SHA-256 of every file under the
    patient's folder by its path there (a file added, removed or changed is another export), found by the walk the
    check reads the folder with (:func:`~mcproton._check.inputs.walk_files`: through a CT folder linked in from
    shared storage too, which Path.rglob did not enter; the new-features audit of 2026-12-06, F1), mcproton's build
    (:func:`mcproton._build.check_build_identity`: the version, the kernel's source and the physics data, F3, and
    the SHA-256 of the package's code, every Python and kernel source: the check's comparison and DICOM readers
    make the verdict too, the compat audit of 2026-12-06, F2), the beam model's and the calibration's files (their
    SHA-256), the calibration's data as read (a built-in one's too, by its name before), the action levels' file
    and every other option.  Recorded in the patient's check.json (``provenance.batch_reuse_key``)."""
    from .. import __version__
    from .._build import check_build_identity
    from .._io.file_hash import sha256_by_name, sha256_file
    from .._io.hu_calibration import HUCalibration
    from .inputs import walk_files
    from .record import _arg_text

    files = sha256_by_name(walk_files(patient), patient)
    bm = kwargs.get("beam_model")
    if bm is None or hasattr(bm, "provenance"):
        model = bm.provenance() if bm is not None else None
    else:
        from .._io.beam_model import load_beam_model

        model = load_beam_model(bm).provenance()
    cal = kwargs.get("calibration")
    cal_files = None
    if isinstance(cal, (str, Path)) and Path(cal).exists():   # a file or folder given (else a built-in name)
        q = Path(cal)
        cal_files = {f.name: sha256_file(f) for f in sorted([q] if q.is_file() else q.rglob("*")) if f.is_file()}
    # the data the check converts the CT with (None: the default schneider2000, as check() reads it)
    cal_data = (cal if isinstance(cal, HUCalibration) else HUCalibration.load(cal or "schneider2000")).data_sha256()
    levels = kwargs.get("levels")
    return {"mcproton_version": __version__, "build": check_build_identity(), "input_files_sha256": files,
            "beam_model": model, "calibration": None if cal is None else _arg_text(cal),
            "calibration_files_sha256": cal_files, "calibration_data_sha256": cal_data,
            "levels": levels_record(levels) if not isinstance(levels, (str, Path)) or Path(levels).is_file()
            else _arg_text(levels),
            "options": {k: _arg_text(v) for k, v in sorted(kwargs.items()) if k not in _NOT_IN_REUSE_KEY}}


@dataclass
class ReusedCheck:
    """A patient of ``check_batch(skip_checked=True)`` not checked again: its earlier check.json (``record``) was
    made of the same inputs, build (version, kernel, physics data and code), beam model, calibration, levels and
    options (:func:`_reuse_key`)."""

    passed: bool
    failed: list[dict]
    record: dict
    report_json: str
    status: str = "reused"

    @property
    def checked(self) -> str | None:
        """When the reused check finished (its check.json's provenance.check_finished)."""
        return (self.record.get("provenance") or {}).get("check_finished")

    @property
    def self_compared(self) -> str:
        """The reused check's ``self_compared`` (:func:`earlier_self_compared`)."""
        return earlier_self_compared(self.record)

    @property
    def no_structures(self) -> str:
        """The reused check's ``no_structures`` (:func:`no_structures_text` of its warnings)."""
        return no_structures_text(self.record.get("warnings") or [])

    @property
    def kvp_mismatch(self) -> str:
        """The reused check's ``kvp_mismatch`` (:func:`~mcproton._check.record.kvp_mismatch_of` of its provenance)."""
        return kvp_mismatch_of(self.record.get("provenance") or {})


#: the reuse key's parts (:func:`_reuse_key`) in words, in the order a difference is said
_REUSE_KEY_PARTS = {"build": "mcproton's build", "mcproton_version": "mcproton's version",
                    "input_files_sha256": "the patient's files", "beam_model": "the beam model",
                    "calibration": "the calibration", "calibration_files_sha256": "the calibration's files",
                    "calibration_data_sha256": "the calibration's data", "levels": "the action levels",
                    "options": "the options"}
#: the build's keys (:func:`mcproton._build.check_build_identity`) in words
_BUILD_PARTS = {"version": "version", "kernel_hash": "transport kernel SHA-256",
                "physics_files_sha256": "physics data SHA-256", "code_sha256": "code SHA-256"}


def _names_differing(earlier: Any, now: Any, most: int = 3) -> str:
    """The names of two {name: value} records that differ (added, removed or changed), at most ``most`` of them,
    as " (a, b, ...)"; "" where either is not such a record."""
    if not isinstance(earlier, dict) or not isinstance(now, dict):
        return ""
    names = sorted(k for k in set(earlier) | set(now) if earlier.get(k) != now.get(k))
    more = f", {len(names) - most} more" if len(names) > most else ""
    return f" ({', '.join(names[:most])}{more})" if names else ""


def _reuse_key_difference(earlier: Any, key: Mapping[str, Any]) -> str:
    """Why an earlier complete check whose reuse key is ``earlier`` is not reused for ``key`` (their difference in
    words), for the batch's log."""
    if not isinstance(earlier, dict):
        return "its check.json records no reuse key (it was not written by check --batch)"
    said = []
    for part, words in _REUSE_KEY_PARTS.items():
        old, new = earlier.get(part), key.get(part)
        if old == new:
            continue
        if part == "build" and isinstance(old, dict) and isinstance(new, dict):
            if "code_sha256" not in old:
                said.append(f"{words} (the earlier check.json does not record the SHA-256 of the code that made it, "
                            "as mcproton did not before 2026-12-06: its check and DICOM-reading code may differ)")
                continue
            details = [f"{w} {str(new.get(b))[:12]}, was {str(old.get(b))[:12]}" for b, w in _BUILD_PARTS.items()
                       if old.get(b) != new.get(b)]
            said.append(f"{words} ({'; '.join(details)})" if details else words)
        elif part in ("input_files_sha256", "options", "calibration_files_sha256"):
            said.append(words + _names_differing(old, new))
        else:
            said.append(words)
    return "its earlier check differs in " + (", ".join(said) or "its reuse key")


def _reusable(check_json: Path, key: dict[str, Any], why: list[str] | None = None) -> dict | None:
    """The earlier check.json at ``check_json`` where it is a complete check (PASS or FAIL, its MC not stopped by a
    time limit) recording the reuse ``key``; else None (missing, unreadable, refused, interrupted, another key).
    For a complete check of another key, what differs is appended to ``why`` (:func:`_reuse_key_difference`)."""
    try:
        record = json.loads(check_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") not in ("pass", "fail") or \
            not isinstance(record.get("passed"), bool):
        return None
    if (record.get("settings") or {}).get("mc_stopped_by_time_limit"):   # incomplete: checked again
        return None
    earlier = (record.get("provenance") or {}).get("batch_reuse_key")
    if earlier != json_safe(key):
        if why is not None:
            why.append(_reuse_key_difference(earlier, json_safe(key)))
        return None
    return record


def _reusable_in(folder: Path, key: dict[str, Any], log: Callable[[str], None]) -> dict | None:
    """:func:`_reusable` of ``folder/check.json``; where that is the record of a batch that stopped before this
    patient (``"status": "not_checked"``, its earlier check set aside: :func:`_pending_set_aside`), of the check set
    aside, which is then put back in place (a batch stopped at its window's end does not cost the next night the
    patients it did not reach).  Where an earlier complete check is there but was made of another key, the log says
    what differs (the patient is checked again)."""
    from .out_dir import _failure_record_file, named_aside

    why: list[str] = []

    def not_reused() -> None:
        for line in why[-1:]:
            log(f"mcproton check --batch: {folder.name}: checked again (--skip-checked): {line}")

    record = _reusable(folder / "check.json", key, why)
    if record is not None:
        return record
    try:
        doc = json.loads((folder / "check.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # the folder by its name in this patient's folder: the path recorded may be relative to another night's working
    # directory, or --out moved since (review 5 of 2026-12-06, F1)
    aside = named_aside(folder, doc) if isinstance(doc, dict) and doc.get("status") == "not_checked" else None
    if aside is None:
        not_reused()
        return None
    record = _reusable(aside / "check.json", key, why)
    if record is None:
        not_reused()
        return None
    if not _failure_record_file(folder / "check.json"):
        return None
    try:
        (folder / "check.json").unlink()
        for f in sorted(aside.iterdir()):
            os.replace(f, folder / f.name)
        aside.rmdir()
    except OSError as exc:
        log(f"mcproton check --batch: {folder.name}: could not put the earlier check back from {aside} ({exc}); "
            "checked again")
        return None
    return record


#: an option of a single check named in a message (not --dose-type, --dose-to, --struct-overrides, ...)
_SINGLE_PATIENT_OPTION = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, SINGLE_PATIENT_OPTIONS), key=len,
                                                                   reverse=True)) + r")(?![\w-])")


def alone_advice(message: str, patient: BatchPatient, beam_model: Any, out: Path,
                 single_options: Sequence[str] = ()) -> str:
    """What a batch patient's refusal ``message`` is followed by in batch.json, the index and the log where its way
    out is a single check's option (--plan, --dose, --ct, --ct-series, --struct), which ``--batch`` does not take:
    the command that checks this patient alone with them: the options the refusal itself carries
    (``single_options``, ``CheckInputError.single_options``: its way out, worded for the patient's folder by
    :func:`~mcproton._check.inputs.way_out`) and any still named in the message, with the batch's refusal of those
    said first.  "" where the refusal needs none of them (the error-message audit 27, F2; its review c, R1: an
    unknown --calibration was followed by "check this patient alone with --ct-series")."""
    import shlex

    if "mcproton check " in message:   # it gives the command itself (a superseded plan)
        return ""
    named = set(_SINGLE_PATIENT_OPTION.findall(message))
    options = [o for o in SINGLE_PATIENT_OPTIONS if o in named or o in single_options]
    if not options:
        return ""
    command = ["mcproton check", shlex.quote(str(patient.folder)),
               *(f"{o} {SINGLE_PATIENT_OPTIONS[o]}" for o in options)]
    if isinstance(beam_model, (str, Path)):
        command.append(f"--beam-model {shlex.quote(str(beam_model))}")
    command.append(f"--out {shlex.quote(str(out))}")
    said = (f"; --batch takes no {', '.join(o for o in SINGLE_PATIENT_OPTIONS if o in named)}: change the files in "
            f"{patient.folder} (this patient's folder)" if named else "")
    return (f"{said}; or check this patient alone with {', '.join(options)}: {' '.join(command)} (with the batch's "
            "other options)")


@locks_output()
def check_batch(folder: str | Path, out: str | Path, *, log: Callable[[str], None] | None = None,
                keep_arrays: bool = False, skip_checked: bool = False, **kwargs: Any) -> dict[str, Any]:
    """``check`` for every patient sub-folder of ``folder`` into ``out/<sub-folder>/``; a patient whose inputs are
    refused, or whose check stops on an unexpected error, is recorded with the message and the batch goes on.
    ``out/batch.json`` and ``out/index.html`` (one row per patient, linking its report: batch.json's ``report`` is
    relative to ``out``, its own folder; the row names the patient, the plan, the TPS doses, the date and what the
    check was made with, :func:`_batch_record`) are rewritten after every patient, so an interrupted batch keeps the
    summary of the patients done.  Returns {patient: CheckResult or the error message}; the results keep only their
    numbers (the dose arrays released, so that a batch's memory is one patient's) unless ``keep_arrays``.

    What is a patient (:mod:`mcproton._check.batch`): not the output folder, hidden or system folders (``.git``,
    ``__MACOSX``), nor an earlier batch's output; those are skipped and named in the log and on the index page, and
    one patient's folder given by mistake is refused at once.  DICOM files loose at the top level are one REFUSED
    row of their own (key ``batch.TOP_LEVEL``): a patient left out must not let the batch pass.

    Two sub-folders holding the same RT Plan (one SOPInstanceUID: a folder copied twice, or the plan exported
    again with a re-computed dose) are both checked, and the second one's row says ``duplicate_of`` the first: a
    physicist expects every folder of the batch checked (the copy may hold another TPS dose of the plan, and which
    of the two is the one to sign the batch cannot tell), and expects to be told that two rows are one plan, so that
    the plan is not counted twice.

    ``skip_checked`` (``--skip-checked``): a patient whose earlier check.json in ``out/<sub-folder>/`` records the
    same reuse key (:func:`_reuse_key`: the SHA-256 of every file of its folder, mcproton's build (version, kernel,
    physics data and the SHA-256 of its code: every Python and kernel source of the installed package), the beam
    model's and the calibration's files, the action levels and every option; written by a batch since 2026-12-06)
    and is complete (PASS or FAIL, its MC not stopped by a time limit) is not checked again: its result is a
    :class:`ReusedCheck` and its batch.json row keeps its verdict with ``"reused": true``.  Anything else is checked
    again (automation audit 2026-12-06, F6: a nightly batch longer than its window began at patient 1 each night);
    a complete earlier check of another key, with what differs said in the log (a check.json of before the code's
    SHA-256 was recorded among them: the compat audit of 2026-12-06, F2)."""
    from .._io.atomic import is_unwritable, write_error_text
    from .._io.errors import muted_warnings
    from .._signals import RunInterrupted
    from ..errors import exit_status, status_of
    from .batch import TOP_LEVEL, survey
    from .batch_log import patient_warnings, said_for_the_batch, verdict_line
    from .report import write_batch_index

    require("pymedphys", "mcproton check")   # once, not as every patient's refusal
    # the options, once before any patient (not as every patient's refusal, nor after one's DICOM was read)
    _checked_arguments(keep_arrays=keep_arrays, skip_checked=skip_checked, **kwargs)
    root = Path(folder)
    if not root.is_dir():
        raise CheckInputError(f"--batch: {root} is not a folder; give a folder holding one sub-folder per patient")
    log = log or log_line
    out_dir = Path(out)
    found = survey(root, out_dir)
    subs = found.patients
    # a name the locale cannot hold (the batch's folders, a patient's sub-folder, the files given): refused before
    # any patient, not after each one's MC (automation audit 2026-12-06, F5); a patient's files, when it is checked
    refuse_unwritable_paths(_given_paths(out=out, folder=root, plan=None, dose=None, ct=None, struct=None,
                                         beam_model=kwargs.get("beam_model"), calibration=kwargs.get("calibration"),
                                         levels=kwargs.get("levels"))
                            + [("a patient's sub-folder", p) for p in subs])
    for line in found.skipped:
        log(f"mcproton check --batch: {line}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    table: dict[str, dict] = {}
    if found.loose_dicom:
        msg = (f"{len(found.loose_dicom)} DICOM file(s) at the top level of {root}, not in a patient's sub-folder: "
               f"{', '.join(found.loose_dicom)}; not checked: each patient must be in a sub-folder of its own (move "
               "the files into one)")
        log(f"mcproton check --batch: {msg}")
        msg = f"{CheckInputError.__name__}: {msg}"   # as a refused patient's row reads
        results[TOP_LEVEL] = BatchError(msg, "refused")
        table[TOP_LEVEL] = batch_row("refused", exit_status=exit_status(CheckInputError(msg)), error=msg,
                                     error_type=CheckInputError.__name__, checked=now_text())
    for name, row in _vanished_patients(out_dir, {q.name for q in subs}, root, log).items():
        table[name] = row
    plans: dict[str, str] = {}   # RT Plan SOPInstanceUID -> the first patient checked with it
    stop_all: str | None = None   # why the remaining patients are not checked (a full or read-only output disk)
    # the warnings that every patient's check gives alike, said once here (the progress-log audit 26, F5)
    batch_wide = said_for_the_batch(kwargs) if subs else []
    for k, p in enumerate(subs, start=1):
        log(f"mcproton check --batch: {p.name} ({k} of {len(subs)})")
        t_patient = time.perf_counter()
        try:   # its beam model read without a word: the check reads it again, and says what it has to say (F5)
            with muted_warnings():
                key: dict | None = _reuse_key(p, kwargs)
        except Exception:  # noqa: BLE001 - an unreadable file or beam model: the check says what (no reuse)
            key = None
        earlier = _reusable_in(out_dir / p.name, key, log) if skip_checked and key is not None else None
        if earlier is not None:
            prov = earlier.get("provenance") or {}
            failed = [c for c in earlier.get("checks") or [] if not c.get("passed")]
            results[p.name] = ReusedCheck(earlier["passed"], failed, earlier, str(out_dir / p.name / "check.json"))
            table[p.name] = _reused_row(earlier, out_dir / p.name / "check.html", out_dir, p, key)
            uid = table[p.name]["plan_uid"]
            if uid and uid in plans:   # as a fresh row: the index marks the second of two folders with one plan
                table[p.name]["duplicate_of"] = plans[uid]
            elif uid:
                plans[uid] = p.name
            log(f"mcproton check --batch: {p.name}: not checked again (--skip-checked): its check of "
                f"{prov.get('check_finished')} was of the same files, build (version, kernel, physics data and "
                f"code: the SHA-256 of every Python and kernel source of mcproton), beam model, calibration, levels "
                f"and options ({earlier['status'].upper()})")
            write_bytes_atomic(out_dir / "batch.json", _batch_json(table, [q.name for q in subs[k:]]))
            write_batch_index(table, out_dir, pending=[q.name for q in subs[k:]], skipped=found.skipped)
            log(verdict_line(p.name, results[p.name]))
            continue
        patient = BatchPatient(p)   # its refusals say what to change in its folder, not --ct etc. (audit 27, F2)
        try:
            # a re-plan's old version is refused, not a plain row (F1); the warnings shown with [p.name] in front, the
            # batch's (said above) not again (audit 26, F5)
            with refusing_superseded_plans(), patient_warnings(p.name, batch_wide), checking_batch_patient(patient):
                r = check(folder=p, out=out_dir / p.name, log=log, **kwargs)
            if getattr(r, "report_json", None) and key is not None:   # what it was made of, for --skip-checked
                r.provenance["batch_reuse_key"] = key
                write_bytes_atomic(Path(r.report_json), json_text(r.to_dict(), indent=1).encode())
            uid = r.inputs.plan.sop_instance_uid if r.inputs is not None else None
            table[p.name] = {"schema_version": BATCH_JSON_SCHEMA, "status": "pass" if r.passed else "fail",
                             "passed": r.passed, "exit_status": 0 if r.passed else 1, "error": None,
                             "error_type": None, "failed": [c["quantity"] for c in r.failed],
                             "gamma_2_2_pct": 100 * r.gamma["2%/2mm"]["pass_rate"],
                             "statistical_uncertainty_pct": r.provenance.get("statistical_uncertainty_pct"),
                             **_batch_record(r, uid, out_dir), "warnings": list(r.warnings),
                             "self_compared": r.self_compared, "no_structures": r.no_structures,
                             "kvp_mismatch": r.kvp_mismatch}
            if uid and uid in plans:
                table[p.name]["duplicate_of"] = plans[uid]
                log(f"mcproton check --batch: '{p.name}' holds the same RT Plan (SOPInstanceUID {uid}) as "
                    f"'{plans[uid]}': both checked, the index marks the second")
            elif uid:
                plans[uid] = p.name
            results[p.name] = r if keep_arrays else r.numbers_only()
        except (RunInterrupted, KeyboardInterrupt) as exc:   # the user stops the batch: recorded, then stopped
            rec = getattr(exc, "check_record", None) or {}
            table[p.name] = batch_row("interrupted", exit_status=exit_status(exc),
                                      error=f"interrupted: {exc or type(exc).__name__}", error_type=type(exc).__name__,
                                      identification=(rec.get("provenance") or {}).get("identification"),
                                      checked=(rec.get("provenance") or {}).get("check_finished") or now_text(),
                                      interrupted=True)
            # the patients not reached: their earlier checks set aside, each folder's check.json saying so
            _pending_set_aside(out_dir, [q.name for q in subs[k:]],
                               f"not checked: the batch of {root} was interrupted ({exc or type(exc).__name__}) during "
                               f"{p.name}, before this patient", log)
            write_bytes_atomic(out_dir / "batch.json", _batch_json(table, [q.name for q in subs[k:]]))
            write_batch_index(table, out_dir, pending=[q.name for q in subs[k:]], skipped=found.skipped)
            log(f"mcproton check --batch: interrupted during {p.name}; not checked: "
                f"{', '.join(q.name for q in subs[k - 1:])}")
            exc.batch_json = str(out_dir / "batch.json")   # type: ignore[union-attr]  # what --json prints
            raise
        except Exception as exc:  # noqa: BLE001 - refused, or failed: this patient's row; the batch goes on
            status = status_of(exc)
            msg = f"{type(exc).__name__}: {exc}"
            if status == "refused":   # a single check's option as the way out: how to check this patient alone
                msg += alone_advice(str(exc), patient, kwargs.get("beam_model"), out_dir / p.name,
                                    getattr(exc, "single_options", ()))
            if status == "internal_error":
                log(f"mcproton check --batch: {p.name}: internal error {msg} (please report it)")
                msg = f"internal error {msg}"
            elif status == "environment_error":   # the machine or the output, not the export
                log(f"mcproton check --batch: {p.name}: the machine or the output folder, not the export: {msg}")
            results[p.name] = BatchError(msg, status)
            rec = getattr(exc, "check_record", None) or {}
            table[p.name] = batch_row(status, exit_status=exit_status(exc), error=msg, error_type=type(exc).__name__,
                                      identification=(rec.get("provenance") or {}).get("identification"),
                                      checked=(rec.get("provenance") or {}).get("check_finished") or now_text(),
                                      **({"internal_error": True} if status == "internal_error" else {}))
            if getattr(exc, "no_space", False) or is_unwritable(exc):   # the next patient's outputs fail the same way
                stop_all = (f"not checked: the output disk of {out_dir} is full or read-only ({p.name}: "
                            f"{write_error_text(exc)}); free space and run the batch again")
        # its verdict as it ends, not only after the last patient (the progress-log audit 26, F4: an interrupted
        # batch's log held no outcome, and a refusal's reason came after the whole night)
        log(verdict_line(p.name, results[p.name], time.perf_counter() - t_patient))
        pending = [q.name for q in subs[k:]]
        if stop_all is not None:
            for q in pending:
                table[q] = {**NOT_CHECKED, "error": stop_all}
                results[q] = BatchError(stop_all, "not_checked")
            _pending_set_aside(out_dir, pending, stop_all, log)
            log(f"mcproton check --batch: stopped after {p.name}: the output disk is full or read-only; not checked: "
                f"{', '.join(pending) or 'none'}")
            pending = []
        try:
            write_bytes_atomic(out_dir / "batch.json", _batch_json(table, pending))
            write_batch_index(table, out_dir, pending=pending, skipped=found.skipped)
        except OSError as exc:
            if stop_all is None:
                raise
            log(f"mcproton check --batch: could not write the batch summary in {out_dir} either "
                f"({write_error_text(exc)})")
        if stop_all is not None:
            break
    return results


#: What the TPS grid's propagated uncertainty (``statistical_uncertainty_tps_grid_pct``) is: the variance sum over
#: the trilinear weights takes the MC voxels' errors as independent, and they are positively correlated, so it
#: under-states the compared dose's noise where that dose was interpolated.  Measured (statistics audit 2026-12-06,
#: F3; 8 checks with the TPS grid half a voxel off in x, y, z): 1.07 % propagated, 1.43 % seed to seed (x 1.33);
#: noise-matching audit 2026-12-05: about 25 % low.  Not corrected: the factor depends on the offset (1 on the MC's
#: own grid), so the figure is stated as the lower bound it is.
TPS_GRID_UNCERTAINTY_NOTE = ("a lower bound: propagated with the MC voxels' errors taken as independent; on an "
                             "interpolated grid the true noise is about 25-35 % higher (measured x 1.33 at half a "
                             "voxel offset)")


def tps_grid_uncertainty_text(u_tps_pct: float, interpolated: bool = True) -> str:
    """The report's words for the uncertainty of the compared dose on the TPS grid, with its caveat
    (:data:`TPS_GRID_UNCERTAINTY_NOTE`) where the MC dose was ``interpolated`` onto it (none where the MC grid
    coincides with the TPS grid: the caveat contradicted the provenance's "no interpolation", audit 18b F12)."""
    if not interpolated:
        return f"the compared dose on the TPS grid: {u_tps_pct:.2f} % (the MC grid's voxels, no interpolation)"
    return (f"the compared dose on the TPS grid: {u_tps_pct:.2f} % (a lower bound; ~25-35 % low on an interpolated "
            "grid, its voxel errors taken as independent)")


def _tps_grid_uncertainty_pct(mc: MCDose) -> float:
    """The mean relative uncertainty (%) of the MC dose as compared, on the TPS grid (its propagated uncertainty,
    MCDose.uncertainty_rel_zyx), over the tissue voxels at or above 50 % of its maximum: the run's rule
    (mcproton/_run/stats.py), on the TPS grid; NaN where it cannot be formed."""
    from .._run.stats import mean_uncertainty_above_half_max

    dose = np.asarray(mc.total_gy_zyx)
    rho = mc.density_g_cm3_zyx if mc.density_g_cm3_zyx is not None else np.ones(dose.shape)
    if dose.size == 0 or np.asarray(mc.uncertainty_rel_zyx).shape != dose.shape:
        return float("nan")
    return 100 * mean_uncertainty_above_half_max(dose, np.asarray(mc.uncertainty_rel_zyx), np.asarray(rho))


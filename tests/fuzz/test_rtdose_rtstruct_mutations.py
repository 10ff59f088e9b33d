"""RT Dose and RT Struct mutation fuzzing: the planning system's RT Dose that ``mcproton check`` compares with, and
the RT Structure Sets that ``mcproton check`` and ``mcproton run`` read, damaged the ways a transfer, an anonymiser
or a hand edit damages them; each damaged file is loaded.  The rule (tests/fuzz/dicom_fuzz_harness.py): a refusal
with a one-line message, or exactly what the undamaged file delivers.

RT Dose, loaded as the check loads it (``read_tps_dose``: ``read_rtdose`` and the check's DoseUnits test; a refusal
is a DicomInputError or the check's CheckInputError).  Seeds: the RayStation plan dose of APTG plan03 and its
beam-1 dose, each cropped to CROP_FRAMES frames first (110 frames of 107 x 107 are 2.5 MB, slow to mutate), and
a small BEAM dose written by mcproton's writer.  Delivered: the dose in Gy (after DoseGridScaling), shape, origin,
spacing, DoseType, DoseSummationType, referenced plan, beams and fraction group, frame of reference.  Mutations:
truncation (anywhere; inside the pixel data), NumberOfFrames / Rows / Columns / BitsAllocated inconsistent with
the pixel data, GridFrameOffsetVector dropped / shortened / non-monotonic / NaN, DoseGridScaling dropped / 0 /
negative / NaN, PixelSpacing dropped / negative / zero, ImagePositionPatient dropped / NaN, DoseUnits other than
GY or dropped, DoseType dropped / unknown, references dropped, PixelRepresentation flipped, a random element
dropped, NaN in a random numeric element.

RT Struct, loaded with ``read_rtstruct`` and rasterised on a fixed coarse grid.  Seeds: the RayStation structure
set of plan03 and a synthetic one (tests/io/dicom_factories.py; no Eclipse structure set is in tests/data).
Delivered: per ROI its name, number, interpreted type, frame of reference of its contours, the contour point arrays
and the mask on the grid.  Mutations: truncation (anywhere; exactly at an item start, which pydicom alone reads
as a shorter file), a random element dropped, ContourData / NumberOfContourPoints / ReferencedROINumber /
ContourGeometricType / ROIName / ROINumber dropped, NumberOfContourPoints inconsistent with ContourData,
ContourData not a multiple of 3, NaN / inf coordinates, duplicated ROI numbers, a ROIContour referring to a
missing ROI.

Seeded (SEED), bounded (N_DOSE_CASES per dose seed, N_STRUCT_CASES per structure set seed).  Run as a script to
print the counts: ``python tests/fuzz/test_rtdose_rtstruct_mutations.py``.
"""
from __future__ import annotations

import gzip
import io
import re
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config as pydicom_config

from mcproton._check.inputs import CheckInputError, read_tps_dose
from mcproton._io.dicom_common import StudyReference
from mcproton._io.errors import DicomInputError
from mcproton._io.rtdose import write_rtdose
from mcproton._io.rtstruct import rasterise, read_rtstruct

from dicom_fuzz_harness import Tally, nan_value, outcome, print_counts, run_cases, to_bytes, walk
from readme_counts import assert_readme_quotes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import circle_contour, make_rtstruct, rect_contour  # noqa: E402  (tests/io)

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
SEED = 23
CROP_FRAMES = (52, 58)      # the frames [52, 58) of plan03's doses: through the high-dose region
N_DOSE_CASES = {"plan03_total": 70, "plan03_beam1": 50, "synthetic": 60}
N_STRUCT_CASES = {"RS_plan03": 90, "synthetic": 70}
REFUSALS = (DicomInputError, CheckInputError)


# ----------------------------------------------------------------------------------------------- RT Dose seeds
def crop_frames(data: bytes, k0: int, k1: int) -> bytes:
    """The RT Dose ``data`` with only its frames [k0, k1): pixel data, NumberOfFrames, GridFrameOffsetVector
    (relative, from 0) and ImagePositionPatient z moved to frame k0."""
    ds = pydicom.dcmread(io.BytesIO(data))
    nf, per = int(ds.NumberOfFrames), int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    assert k1 <= nf
    g = [float(v) for v in ds.GridFrameOffsetVector]
    ds.PixelData = bytes(ds.PixelData[k0 * per:k1 * per])
    ds.NumberOfFrames = k1 - k0
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + g[k0] - g[0]]
    ds.GridFrameOffsetVector = [f"{v - g[k0]:g}" for v in g[k0:k1]]
    return to_bytes(ds)


def dose_seeds(tmp: Path) -> dict[str, bytes]:
    total = gzip.decompress((DATA / "aptg_check" / "RD_plan03_total.dcm.gz").read_bytes())
    beam = next((DATA / "aptg_plan03").glob("RD*.dcm")).read_bytes()
    d = np.random.default_rng(SEED).uniform(0.0, 2.0, (3, 4, 5))
    p = write_rtdose(d, (2.0, 2.5, 3.0), (-4.0, 1.5, 10.0), tmp / "RD_synthetic.dcm", summation_type="BEAM",
                     referenced_beam_number=2,
                     study=StudyReference(frame_of_reference_uid="1.2.3.4", plan_sop_instance_uid="1.2.3.5"))
    return {"plan03_total": crop_frames(total, *CROP_FRAMES), "plan03_beam1": crop_frames(beam, *CROP_FRAMES),
            "synthetic": p.read_bytes()}


def dose_signature(path) -> tuple:
    t = read_tps_dose(path)
    return (t.dose_gy_zyx.shape, t.dose_gy_zyx.tobytes(), tuple(np.round(t.origin_mm, 9)),
            tuple(np.round(t.voxel_size_mm, 9)), t.frame_of_reference_uid, t.dose_type, t.summation_type,
            t.plan_uid, tuple(t.beam_numbers), t.fraction_group)


DOSE_FIELDS = ("shape", "dose", "origin", "spacing", "frame of reference", "DoseType", "DoseSummationType", "plan",
               "beams", "fraction group")


def differences(fields):
    """describe(got, reference) for ``outcome``: the names of the fields that differ (with their values where short);
    ``fields`` None: the signature is a tuple of (ROI name, ...) tuples."""
    def describe(got, ref):
        if fields is None:
            a, b = dict((x[0], x[1:]) for x in got), dict((x[0], x[1:]) for x in ref)
            names = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
            what = ["number", "type", "frame", "contours", "mask"]
            return "; ".join(f"ROI {k!r}: " + (", ".join(w for w, x, y in zip(what, a[k], b[k]) if x != y)
                                                if k in a and k in b else "missing" if k in b else "new")
                             for k in names[:4])
        return ", ".join(f"{f}: {g!r:.60} (was {r!r:.60})" for f, g, r in zip(fields, got, ref) if g != r)
    return describe


# ----------------------------------------------------------------------------------------------- RT Dose mutations
def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def d_truncate(ds, data, rng):
    return data[:int(len(data) * rng.uniform(0.02, 0.999))]


def d_truncate_pixels(ds, data, rng):
    n = len(ds.PixelData)
    return data[:len(data) - int(rng.integers(1, n))]


def d_counts(ds, data, rng):
    kw = _pick(rng, ["NumberOfFrames", "Rows", "Columns", "BitsAllocated"])
    if kw == "BitsAllocated":
        b = _pick(rng, [8, 32])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = b, b, b - 1
        if rng.random() < 0.5:
            ds.BitsStored, ds.HighBit = 16, 15
    else:
        setattr(ds, kw, int(ds[kw].value) + _pick(rng, [-1, 1]))
    return ds


def d_gfov(ds, data, rng):
    g = [float(v) for v in ds.GridFrameOffsetVector]
    how = _pick(rng, ["drop", "short", "swap", "nan"])
    if how == "drop":
        del ds.GridFrameOffsetVector
        return ds
    if how == "short":
        g = g[:-1]
    elif how == "swap":
        i = int(rng.integers(len(g) - 1))
        g[i], g[i + 1] = g[i + 1], g[i]
    if how == "nan":
        s = [f"{v:g}" for v in g]
        s[int(rng.integers(len(s)))] = "NaN"
    else:
        s = [f"{v:g}" for v in g]
    ds.GridFrameOffsetVector = s
    return ds


def d_scaling(ds, data, rng):
    how = _pick(rng, ["drop", "0", "-", "NaN"])
    if how == "drop":
        del ds.DoseGridScaling
    else:
        ds.DoseGridScaling = {"0": "0", "-": f"-{ds.DoseGridScaling}", "NaN": "NaN"}[how]
    return ds


def d_spacing(ds, data, rng):
    how = _pick(rng, ["drop", "negative", "zero"])
    if how == "drop":
        del ds.PixelSpacing
    else:
        ps = [float(v) for v in ds.PixelSpacing]
        k = int(rng.integers(2))
        ps[k] = -ps[k] if how == "negative" else 0.0
        ds.PixelSpacing = [f"{v:g}" for v in ps]
    return ds


def d_position(ds, data, rng):
    if rng.random() < 0.3:
        del ds.ImagePositionPatient
    else:
        ipp = [f"{float(v):g}" for v in ds.ImagePositionPatient]
        ipp[int(rng.integers(3))] = "NaN"
        ds.ImagePositionPatient = ipp
    return ds


def _set_or_drop(ds, keyword: str, value):
    """``ds.keyword = value``, or the element removed where ``value`` is None."""
    if value is None:
        delattr(ds, keyword)
    else:
        setattr(ds, keyword, value)
    return ds


def d_units(ds, data, rng):
    return _set_or_drop(ds, "DoseUnits", _pick(rng, [None, "CGY", "RELATIVE", "MGY", ""]))


def d_dose_type(ds, data, rng):
    return _set_or_drop(ds, "DoseType", _pick(rng, [None, "UNKNOWN", "ERROR", ""]))


def d_references(ds, data, rng):
    elems = [(p, t) for p, t in walk(ds) if t in (0x300C0002, 0x00081155, 0x00081150, 0x300C0020, 0x300C0022,
                                                  0x300C0004, 0x300C0006)]
    if not elems:
        return None
    parent, tag = _pick(rng, elems)
    del parent[tag]
    return ds


def d_pixel_representation(ds, data, rng):
    ds.PixelRepresentation = 1 - int(ds.PixelRepresentation)
    return ds


def d_drop_element(ds, data, rng):
    parent, tag = _pick(rng, [(p, t) for p, t in walk(ds) if t.group != 0x0002])
    del parent[tag]
    return ds


def d_nan(ds, data, rng):
    elems = [(p, t) for p, t in walk(ds) if p[t].VR in ("DS", "FL", "FD") and p[t].value not in (None, "")]
    parent, tag = _pick(rng, elems)
    parent[tag].value = nan_value(parent[tag])
    return ds


DOSE_MUTATIONS = [d_truncate, d_truncate_pixels, d_counts, d_counts, d_gfov, d_scaling, d_spacing, d_position,
                  d_units, d_dose_type, d_references, d_pixel_representation, d_drop_element, d_drop_element,
                  d_nan]


# ----------------------------------------------------------------------------------------------- RT Struct
def struct_seeds(tmp: Path) -> dict[str, bytes]:
    rois = {"External": [rect_contour(-40, 40, -40, 40, z) for z in (-6.0, -3.0, 0.0, 3.0, 6.0)],
            "PTV": [circle_contour(5, -3, 12, z, n=24) for z in (-3.0, 0.0, 3.0)],
            "Ring": [c for z in (0.0, 3.0) for c in (circle_contour(-10, 10, 15, z, n=20),
                                                        circle_contour(-10, 10, 6, z, n=12))]}
    ds = make_rtstruct(rois, points={"iso": (0.0, 0.0, 0.0)}, for_uid="1.2.3.4")
    ds.RTROIObservationsSequence[0].RTROIInterpretedType = "EXTERNAL"
    return {"RS_plan03": (DATA / "aptg_check" / "RS_plan03.dcm").read_bytes(), "synthetic": to_bytes(ds)}


class _Grid:
    def __init__(self, origin, voxel, shape):
        self.origin_mm, self.voxel_size_mm, self.shape_zyx = origin, voxel, shape


def grid_of(path) -> _Grid:
    """A coarse grid (about 24 x 24 x 12 voxels) over the contours of the undamaged structure set."""
    s = read_rtstruct(path)
    pts = np.concatenate([c for cl in s.contours.values() for c in cl])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    n = np.array([24, 24, 12])
    vox = np.maximum((hi - lo) / (n - 1), 1e-3)
    return _Grid(tuple(lo.tolist()), tuple(vox.tolist()), (int(n[2]), int(n[1]), int(n[0])))


def struct_signature(path, grid: _Grid) -> tuple:
    s = read_rtstruct(path)
    masks = rasterise(s, grid)
    frames = s.frames_of_contours()
    return tuple(sorted((nm, s.roi_numbers.get(nm), s.roi_types.get(nm), frames.get(nm),
                         tuple(np.asarray(c, float).tobytes() for c in cl), masks[nm].tobytes())
                        for nm, cl in s.contours.items()))


def _contours(ds):
    return [c for rc in ds.get("ROIContourSequence", []) for c in rc.get("ContourSequence", [])
            if "ContourData" in c]


def _item_starts(data: bytes) -> list[int]:
    """Byte offsets of every sequence item tag (FFFE,E000): a file cut exactly there is a clean element
    boundary, which pydicom alone reads as a shorter file."""
    return [m.start() for m in re.finditer(re.escape(b"\xfe\xff\x00\xe0"), data)]


def s_truncate(ds, data, rng):
    return data[:int(len(data) * rng.uniform(0.01, 0.999))]


def s_truncate_at_item(ds, data, rng):
    starts = _item_starts(data)[1:]
    return data[:_pick(rng, starts)] if starts else None


def s_drop_element(ds, data, rng):
    parent, tag = _pick(rng, [(p, t) for p, t in walk(ds) if t.group != 0x0002])
    del parent[tag]
    return ds


def s_drop_named(ds, data, rng):
    kw = _pick(rng, ["ContourData", "NumberOfContourPoints", "ReferencedROINumber", "ContourGeometricType",
                     "ROIName", "ROINumber"])
    elems = [(p, t) for p, t in walk(ds) if p[t].keyword == kw]
    parent, tag = _pick(rng, elems)
    del parent[tag]
    return ds


def s_points(ds, data, rng):
    c = _pick(rng, _contours(ds))
    how = _pick(rng, ["count", "minus1", "minus3"])
    if how == "count":
        c.NumberOfContourPoints = int(c.NumberOfContourPoints) + _pick(rng, [-1, 1])
    else:
        v = list(c.ContourData)
        c.ContourData = v[:len(v) - (1 if how == "minus1" else 3)]
    return ds


def s_nonfinite(ds, data, rng):
    c = _pick(rng, _contours(ds))
    v = [str(x) for x in c.ContourData]
    v[int(rng.integers(len(v)))] = _pick(rng, ["NaN", "inf", "-inf"])
    c.ContourData = v
    return ds


def s_roi_numbers(ds, data, rng):
    rois = list(ds.StructureSetROISequence)
    nums = [int(r.ROINumber) for r in rois]
    if rng.random() < 0.5 and len(rois) > 1:
        i, j = rng.choice(len(rois), 2, replace=False)
        rois[j].ROINumber = nums[i]
    else:
        rc = _pick(rng, list(ds.ROIContourSequence))
        rc.ReferencedROINumber = max(nums) + 1
    return ds


STRUCT_MUTATIONS = [s_truncate, s_truncate_at_item, s_truncate_at_item, s_drop_element, s_drop_element,
                    s_drop_named, s_drop_named, s_points, s_nonfinite, s_roi_numbers]


# ----------------------------------------------------------------------------------------------- the harness
def _mutate(data: bytes, mut, rng) -> bytes | None:
    ds = pydicom.dcmread(io.BytesIO(data))
    with pydicom_config.disable_value_validation():
        out = mut(ds, data, rng)
        if out is None:
            return None
        return out if isinstance(out, bytes) else to_bytes(out)


def _run_mutations(tmp: Path, tally: Tally, rng, kind: str, prefix: str, seeds: dict, counts: dict, mutations,
                   loader, refusals: tuple = (DicomInputError,), describe=None) -> None:
    """Every seed file of ``seeds`` damaged ``counts[name]`` times by a mutation drawn from ``mutations``, each
    loaded with ``loader(reference_path)`` (a function of a path) and its outcome recorded under ``kind``."""
    for name, data in seeds.items():
        ref_path = tmp / f"{prefix}_{name}_ref.dcm"
        ref_path.write_bytes(data)
        load = loader(ref_path)
        reference = load(ref_path)
        for k in range(counts[name]):
            mut = _pick(rng, mutations)
            blob = _mutate(data, mut, rng)
            if blob is None:
                continue
            p = tmp / f"{prefix}_{name}_{k}_{mut.__name__}.dcm"
            p.write_bytes(blob)
            res, detail = outcome(load, p, reference, refusals, describe)
            tally.record(kind, mut.__name__, res, f"{p.name}: {detail}")


def run_dose_cases(tmp: Path, tally: Tally, rng) -> None:
    _run_mutations(tmp, tally, rng, "rtdose", "RD", dose_seeds(tmp), N_DOSE_CASES, DOSE_MUTATIONS,
                   lambda ref: dose_signature, REFUSALS, differences(DOSE_FIELDS))


def run_struct_cases(tmp: Path, tally: Tally, rng) -> None:
    def loader(ref: Path):
        grid = grid_of(ref)
        return lambda q: struct_signature(q, grid)

    _run_mutations(tmp, tally, rng, "rtstruct", "RS", struct_seeds(tmp), N_STRUCT_CASES, STRUCT_MUTATIONS, loader,
                   describe=differences(None))


def run_all(tmp: Path) -> Tally:
    return run_cases(tmp, SEED, run_dose_cases, run_struct_cases)


def report(t: Tally) -> str:
    lines = [f"RT Dose / RT Struct mutation fuzz (seed {SEED}): {t.total()} cases, {t.total('refused')} refused "
             f"with a one-line message, {t.total('accepted unchanged')} accepted unchanged, "
             f"{t.total('traceback')} tracebacks, {t.total('silently changed')} silently changed"]
    lines += [f"  {k}: {v}" for k, v in sorted(t.counts.items())]
    lines += [f"  {k}: {v}" for k, v in sorted(t.by_mutation.items())]
    return "\n".join(lines)


def test_rtdose_rtstruct_mutations(tmp_path):
    tally = run_all(tmp_path)
    print("\n" + report(tally))
    assert tally.total() >= 300
    for kind in ("rtdose", "rtstruct"):
        assert tally.counts[f"{kind} refused"] > 0 and tally.counts[f"{kind} accepted unchanged"] > 0
    assert not tally.violations, "\n".join(tally.violations[:30])
    assert_readme_quotes("test_rtdose_rtstruct_mutations.py", tally.total(), tally.total("refused"),
                         tally.total("accepted unchanged"), "python tests/fuzz/test_rtdose_rtstruct_mutations.py")


if __name__ == "__main__":  # print the counts and every violation
    sys.exit(print_counts(run_all, report))

"""DICOM mutation fuzzing (issue 17 item 6): real RT Ion Plans and a small synthetic CT series are damaged the
ways a transfer, an anonymiser or a hand edit damages them, and each damaged file is loaded.

The rule, for every case: loading either raises :class:`DicomInputError` with a one-line message, or succeeds
with exactly the delivered plan (CT) of the undamaged file.  Any other exception (a traceback reaching the
user) and any success with a different delivered plan (a silent wrong dose) fails the test.  The delivered
plan is what a dose calculation uses: per beam its number, angles, isocentre, snout position, patient position, virtual
source-axis distances (the beam model's (2000, 2560) mm where the plan gives none, as plan_to_beams does),
and per layer the energy, paintings, range-shifter settings, spot positions and MU; and the number of
fractions.  A range shifter's water-equivalent thickness and isocentre distance (Type 3) may be dropped: the
engine then takes them from the beam model (``FromModel``), by design (issue 12 item 1).  The delivered CT is
the HU array, voxel size and origin.

Mutations: truncation at random fractions of the file and exactly at the start of a random control point;
a dropped element (anywhere in the data set); inconsistent counts (NumberOfControlPoints,
NumberOfScanSpotPositions, NumberOfBeams, NumberOfRangeShifters); a duplicated BeamNumber; a doubled
FinalCumulativeMetersetWeight; removed control points (one, a layer pair, a pair with the counts and indices
made consistent); negative values where only positive ones mean something; NaN in a random numeric element.
CT: truncation of a slice, a dropped element of a slice, NaN or negative values in its numeric elements, a
BitsStored or HighBit that the stored words do not fit.

Seeded (SEED) and bounded (PLANS gives the cases per plan, N_CT_CASES): about 250 cases, a few seconds.  Run this file
as a script to print the counts: ``python tests/fuzz/test_dicom_mutations.py``.
"""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config as pydicom_config

from mcproton._io.dicom_common import PHANTOM_STUDY
from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.rtplan import load_rtplan

from dicom_fuzz_harness import Tally, nan_value as _nan_value, outcome as _outcome, to_bytes as _to_bytes, \
    print_counts, run_cases, walk as _walk
from readme_counts import assert_readme_quotes

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
# cases per plan: Eclipse 4 beams / 4 setups, RayStation with a range shifter, Eclipse one layer (small files:
# pydicom decodes the DS spot weights of the larger plans slowly)
PLANS = {"RN_qa_4beams.dcm": 70, "RP_plan06_rs.dcm": 40, "RN_plan02_mono.dcm": 60}
SEED = 17
N_CT_CASES = 72
MODEL_VSAD = (2000.0, 2560.0)   # the virtual source-axis distances of the shipped DCPT beam models

NUMERIC_VRS = {"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US"}


# ----------------------------------------------------------------------------------------------- signatures
class FromModel:
    """A Type 3 value that the engine takes from the beam model when the plan omits it (a range shifter's
    water-equivalent thickness and isocentre distance): equal to the plan's value or to None (omitted)."""

    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, FromModel) and (other.v is None or self.v is None or other.v == self.v)

    def __hash__(self):
        return 0


def plan_signature(plan) -> tuple:
    beams = []
    for b in plan.beams:
        layers = tuple((l.nominal_energy_mev, l.number_of_paintings,
                        tuple(sorted(((d["id"], d["setting"].upper(), FromModel(d["wet_mm"]),
                                       FromModel(d["distance_mm"]))
                                      for d in l.range_shifter_settings
                                      if d["setting"].upper() not in ("OUT", "0", "")),
                                     key=lambda t: t[:2])),
                        np.round(l.spot_xy_mm, 9).tobytes(), np.round(l.spot_mu, 9).tobytes()) for l in b.layers)
        beams.append((b.number, b.gantry_angle_deg, b.couch_angle_deg, tuple(np.round(b.isocenter_mm, 9)),
                      b.snout_position_mm,
                      b.patient_position, b.virtual_source_axis_distances_mm or MODEL_VSAD, b.primary_dosimeter_unit,
                      tuple(sorted(b.range_shifter_ids.items())), layers))
    return (plan.number_of_fractions or 1, tuple(beams))


def ct_signature(ct) -> tuple:
    return (np.asarray(ct.hu_zyx, float).tobytes(), ct.shape_zyx, tuple(ct.voxel_size_mm), tuple(ct.origin_mm))


# ----------------------------------------------------------------------------------------------- helpers
def _beams(ds):
    return list(ds.IonBeamSequence)


def _renumber(b):
    for i, cp in enumerate(b.IonControlPointSequence):
        cp.ControlPointIndex = i
    b.NumberOfControlPoints = len(b.IonControlPointSequence)


# ----------------------------------------------------------------------------------------------- plan mutations
def m_truncate(ds, data, rng):
    return data[:int(len(data) * rng.uniform(0.02, 0.995))]


def _control_point_starts(data: bytes) -> list[int]:
    """Byte offsets of the items of IonControlPointSequence: the item tag (FFFE,E000) just before a
    ControlPointIndex (300A,0112) (RayStation writes NominalBeamEnergyUnit first).  pydicom reads a file cut
    at such an element boundary as a plan with fewer control points, without a word."""
    out = []
    for m in re.finditer(re.escape(b"\x0a\x30\x12\x01"), data):
        k = data.rfind(b"\xfe\xff\x00\xe0", max(m.start() - 64, 0), m.start())
        if k >= 0:
            out.append(k)
    return out


def m_truncate_at_control_point(ds, data, rng):
    starts = _control_point_starts(data)[1:]
    return data[:starts[int(rng.integers(len(starts)))]] if starts else None


def m_drop_element(ds, data, rng):
    elems = list(_walk(ds))
    parent, tag = elems[int(rng.integers(len(elems)))]
    del parent[tag]
    return ds


def m_counts(ds, data, rng):
    b = _beams(ds)[rng.integers(len(_beams(ds)))]
    k = int(rng.integers(4))
    d = int(rng.choice([-1, 1]))
    if k == 0:
        b.NumberOfControlPoints = int(b.NumberOfControlPoints) + d
    elif k == 1:
        cp = b.IonControlPointSequence[int(rng.integers(len(b.IonControlPointSequence)))]
        cp.NumberOfScanSpotPositions = int(cp.NumberOfScanSpotPositions) + d
    elif k == 2:
        fg = ds.FractionGroupSequence[0]
        fg.NumberOfBeams = int(fg.NumberOfBeams) + d
    else:
        b.NumberOfRangeShifters = int(b.get("NumberOfRangeShifters", 0) or 0) + 1
    return ds


def m_duplicate_beam_number(ds, data, rng):
    beams = _beams(ds)
    if len(beams) < 2:
        return None
    i, j = rng.choice(len(beams), 2, replace=False)
    old = int(beams[j].BeamNumber)
    beams[j].BeamNumber = int(beams[i].BeamNumber)
    if rng.random() < 0.5:  # the fraction group follows the edit: only the duplicate gives it away
        for rb in ds.FractionGroupSequence[0].ReferencedBeamSequence:
            if int(rb.ReferencedBeamNumber) == old:
                rb.ReferencedBeamNumber = int(beams[i].BeamNumber)
    return ds


def m_double_fcmw(ds, data, rng):
    b = _beams(ds)[rng.integers(len(_beams(ds)))]
    b.FinalCumulativeMetersetWeight = float(b.FinalCumulativeMetersetWeight) * 2
    if rng.random() < 0.5:
        b.IonControlPointSequence[-1].CumulativeMetersetWeight = b.FinalCumulativeMetersetWeight
    return ds


def m_remove_control_points(ds, data, rng):
    b = _beams(ds)[rng.integers(len(_beams(ds)))]
    cps = b.IonControlPointSequence
    n = len(cps)
    k = int(rng.integers(3))
    if k == 0:
        del cps[int(rng.integers(n))]
    else:
        i = 2 * int(rng.integers(n // 2))
        del cps[i:i + 2]
        if k == 2:
            _renumber(b)
    return ds if len(cps) else None


def m_negative(ds, data, rng):
    b = _beams(ds)[rng.integers(len(_beams(ds)))]
    cps = b.IonControlPointSequence
    cp = cps[int(rng.integers(len(cps)))]
    choices = ["weight", "energy", "meterset", "fcmw", "cum", "vsad", "paintings"]
    if any("RangeShifterSettingsSequence" in c for c in cps):
        choices.append("wet")
    what = choices[int(rng.integers(len(choices)))]
    if what == "weight":
        cp = cps[2 * int(rng.integers(len(cps) // 2))]
        w = [float(x) for x in np.atleast_1d(cp.ScanSpotMetersetWeights)]
        w[int(rng.integers(len(w)))] *= -1
        cp.ScanSpotMetersetWeights = [float(x) for x in w]
    elif what == "energy":
        cp = cps[2 * int(rng.integers(len(cps) // 2))]
        cp.NominalBeamEnergy = -float(cp.NominalBeamEnergy)
    elif what == "meterset":
        rb = ds.FractionGroupSequence[0].ReferencedBeamSequence[0]
        rb.BeamMeterset = -float(rb.BeamMeterset)
    elif what == "fcmw":
        b.FinalCumulativeMetersetWeight = -float(b.FinalCumulativeMetersetWeight)
    elif what == "cum":
        i = int(rng.integers(1, len(cps)))
        cps[i].CumulativeMetersetWeight = -float(cps[i].CumulativeMetersetWeight)
    elif what == "vsad":
        b.VirtualSourceAxisDistances = [-float(v) for v in b.VirtualSourceAxisDistances]
    elif what == "paintings":
        cp.NumberOfPaintings = -1
    else:
        s = next(c for c in cps if "RangeShifterSettingsSequence" in c).RangeShifterSettingsSequence[0]
        s.RangeShifterWaterEquivalentThickness = -float(s.get("RangeShifterWaterEquivalentThickness", 30.0) or 30.0)
    return ds


def m_nan(ds, data, rng):
    elems = [(p, t) for p, t in _walk(ds) if p[t].VR in ("DS", "FL", "FD") and p[t].value not in (None, "")]
    parent, tag = elems[int(rng.integers(len(elems)))]
    parent[tag].value = _nan_value(parent[tag])
    return ds


PLAN_MUTATIONS = [m_truncate, m_truncate_at_control_point, m_drop_element, m_drop_element, m_counts,
                  m_duplicate_beam_number, m_double_fcmw, m_remove_control_points, m_negative, m_nan]


# ----------------------------------------------------------------------------------------------- CT mutations
def c_truncate(ds, data, rng):
    return data[:int(len(data) * rng.uniform(0.01, 0.999))]


def c_drop_element(ds, data, rng):
    tags = [e.tag for e in ds if e.tag.group != 0x0002]
    del ds[tags[int(rng.integers(len(tags)))]]
    return ds


def c_nan(ds, data, rng):
    tags = [e.tag for e in ds if e.VR in ("DS",) and e.value not in (None, "")]
    t = tags[int(rng.integers(len(tags)))]
    ds[t].value = ["NaN"] * ds[t].VM if ds[t].VM > 1 else "NaN"
    return ds


def c_negative(ds, data, rng):
    kw = ["PixelSpacing", "SliceThickness", "RescaleSlope"][int(rng.integers(3))]
    v = ds[kw].value
    ds[kw].value = [-float(x) for x in v] if ds[kw].VM > 1 else -float(v)
    return ds


def c_bits(ds, data, rng):
    """BitsStored lowered to 8..15 with HighBit = BitsStored - 1, or HighBit moved anywhere in the word: the
    reference's words (-1000..1500 HU, signed, intercept 0) need 12 bits, so below that pydicom 3 masked them into
    other CT numbers without a word (the metal audit of 2026-12-06, F2); now refused, as is a HighBit above
    BitsStored - 1 (pydicom ignored it) and one below that the words do not fit."""
    stored = int(rng.integers(8, 16))
    ds.BitsStored = stored
    ds.HighBit = stored - 1 if rng.random() < 0.6 else int(rng.integers(0, 16))
    return ds


CT_MUTATIONS = [c_truncate, c_drop_element, c_drop_element, c_nan, c_negative, c_bits]


# ----------------------------------------------------------------------------------------------- the harness
def run_plan_cases(tmp: Path, tally: Tally, rng) -> None:
    for name, n_cases in PLANS.items():
        data = (DATA / name).read_bytes()
        reference = plan_signature(load_rtplan(DATA / name))
        for k in range(n_cases):
            mut = PLAN_MUTATIONS[int(rng.integers(len(PLAN_MUTATIONS)))]
            ds = pydicom.dcmread(io.BytesIO(data))
            with pydicom_config.disable_value_validation():
                out = mut(ds, data, rng)
                if out is None:
                    continue
                blob = out if isinstance(out, bytes) else _to_bytes(out)
            p = tmp / f"{Path(name).stem}_{k}_{mut.__name__}.dcm"
            p.write_bytes(blob)
            outcome, detail = _outcome(lambda q: plan_signature(load_rtplan(q)), p, reference)
            tally.record("plan", mut.__name__, outcome, f"{p.name}: {detail}")


def run_ct_cases(tmp: Path, tally: Tally, rng) -> None:
    hu = np.random.default_rng(SEED).integers(-1000, 1500, (4, 6, 5)).astype(np.int16)
    ref_dir = tmp / "ct_ref"
    paths = write_ct_series(hu, (1.2, 1.0, 2.5), (-3.0, 4.0, 10.0), ref_dir,
                            study=PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.3.4"))
    reference = ct_signature(load_ct_series(ref_dir))
    files = {p.name: p.read_bytes() for p in paths}
    for k in range(N_CT_CASES):
        mut = CT_MUTATIONS[int(rng.integers(len(CT_MUTATIONS)))]
        d = tmp / f"ct_{k}_{mut.__name__}"
        d.mkdir()
        victim = sorted(files)[int(rng.integers(len(files)))]
        for fname, blob in files.items():
            if fname == victim:
                ds = pydicom.dcmread(io.BytesIO(blob))
                with pydicom_config.disable_value_validation():
                    out = mut(ds, blob, rng)
                    blob = out if isinstance(out, bytes) else _to_bytes(out)
            (d / fname).write_bytes(blob)
        outcome, detail = _outcome(lambda q: ct_signature(load_ct_series(q)), d, reference)
        tally.record("ct", mut.__name__, outcome, f"{d.name}: {detail}")


def run_all(tmp: Path) -> Tally:
    return run_cases(tmp, SEED, run_plan_cases, run_ct_cases)


def report(t: Tally) -> str:
    gen = sum(t.counts.values())
    refused = sum(v for k, v in t.counts.items() if k.endswith(" refused"))
    accepted = sum(v for k, v in t.counts.items() if k.endswith(" accepted unchanged"))
    lines = [f"DICOM mutation fuzz (seed {SEED}): {gen} cases generated, {refused} refused with a one-line "
             f"DicomInputError, {accepted} accepted with the delivered plan/CT unchanged, "
             f"{t.counts['plan traceback'] + t.counts['ct traceback']} tracebacks, "
             f"{t.counts['plan silently changed'] + t.counts['ct silently changed']} silently changed"]
    lines += [f"  {k}: {v}" for k, v in sorted(t.by_mutation.items())]
    return "\n".join(lines)


def test_dicom_mutations(tmp_path):
    tally = run_all(tmp_path)
    print("\n" + report(tally))
    assert sum(tally.counts.values()) >= 200
    assert tally.counts["plan refused"] > 0 and tally.counts["ct refused"] > 0
    assert not tally.violations, "\n".join(tally.violations[:20])
    assert_readme_quotes("test_dicom_mutations.py", sum(tally.counts.values()), tally.total("refused"),
                         tally.total("accepted unchanged"), "python tests/fuzz/test_dicom_mutations.py")


if __name__ == "__main__":  # print the counts (the README's reliability section quotes them; the test checks them)
    sys.exit(print_counts(run_all, report))

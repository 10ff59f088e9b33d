"""Builders of synthetic DICOM RT Ion Plans and RT Structure Sets for the tests in tests/io and tests/fuzz (not a
test module)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def _new_file(sop_class: str, name: str) -> FileDataset:
    """An empty DICOM file data set of ``sop_class`` with a new SOPInstanceUID and its file meta."""
    meta = FileMetaDataset()
    uid = generate_uid()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    return ds


#: the patient of the CT mcproton's writers give without a study (write_ct_series, write_phantom_ct:
#: mcproton._io.dicom_common.PHANTOM_STUDY): ``make_plan(..., **PHANTOM_PATIENT)`` for a plan `mcproton run` computes on
#: such a CT
PHANTOM_PATIENT = {"patient_id": "MCPROTON", "patient_name": "mcproton^phantom"}


def make_plan(beams: list[dict], *, patient_position: str = "HFS", frame_of_reference_uid: str | None = None,
              n_fractions: int = 1, patient_id: str = "T1", patient_name: str = "test^plan") -> FileDataset:
    """beams: dicts with gantry, couch, iso (x,y,z), layers [(energy, [(x,y),...], [w,...])], optional
    vsad (x,y), meterset (MU), rs_id + rs_wet (range shifter IN on every layer), scan_mode, radiation, machine
    (TreatmentMachineName, default TR1).  ``patient_id`` / ``patient_name``: whom it names (`mcproton run` refuses a
    plan of another patient than its CT's: give the CT's, e.g. ``**PHANTOM_PATIENT`` for write_phantom_ct's and
    write_ct_series' default)."""
    ds = _new_file(RT_ION_PLAN, "plan.dcm")
    ds.Modality = "RTPLAN"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    ds.RTPlanLabel = "test"
    ds.RTPlanGeometry = "PATIENT"
    setup = Dataset()
    setup.PatientPosition = patient_position
    setup.PatientSetupNumber = 1
    ds.PatientSetupSequence = Sequence([setup])
    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = n_fractions
    fg.NumberOfBeams = len(beams)
    refs = []
    ion_beams = []
    for bi, b in enumerate(beams, start=1):
        ib = Dataset()
        ib.BeamNumber = bi
        ib.BeamName = f"F{bi}"
        ib.BeamType = "STATIC"
        ib.RadiationType = b.get("radiation", "PROTON")
        ib.ScanMode = b.get("scan_mode", "MODULATED")
        ib.TreatmentMachineName = b.get("machine", "TR1")
        ib.PrimaryDosimeterUnit = b.get("unit", "MU")
        ib.TreatmentDeliveryType = "TREATMENT"
        ib.VirtualSourceAxisDistances = list(b.get("vsad", (2000.0, 2560.0)))
        ib.ReferencedPatientSetupNumber = 1
        rs_id = b.get("rs_id")
        ib.NumberOfRangeShifters = 1 if rs_id else 0
        if rs_id:
            r = Dataset()
            r.RangeShifterNumber = 1
            r.RangeShifterID = rs_id
            r.RangeShifterType = "BINARY"
            ib.RangeShifterSequence = Sequence([r])
        cps = []
        cum = 0.0
        layers = b["layers"]
        total_w = float(sum(sum(w) for _, _, w in layers))
        for li, (energy, xy, w) in enumerate(layers):
            for k in range(2):  # Eclipse/RayStation style pair of control points per layer
                cp = Dataset()
                cp.ControlPointIndex = len(cps)
                cp.NominalBeamEnergy = energy
                if len(cps) == 0:
                    cp.GantryAngle = b["gantry"]
                    cp.GantryRotationDirection = "NONE"
                    cp.PatientSupportAngle = b["couch"]
                    cp.PatientSupportRotationDirection = "NONE"
                    cp.IsocenterPosition = list(b["iso"])
                    cp.TableTopPitchAngle = 0.0
                    cp.TableTopRollAngle = 0.0
                cp.CumulativeMetersetWeight = cum
                cp.ScanSpotTuneID = "4.0"
                cp.NumberOfScanSpotPositions = len(w)
                cp.ScanSpotPositionMap = [float(v) for p in xy for v in p]
                cp.ScanSpotMetersetWeights = [float(v) for v in w] if k == 0 else [0.0] * len(w)
                cp.NumberOfPaintings = 1
                if rs_id and k == 0:
                    s = Dataset()
                    s.ReferencedRangeShifterNumber = 1
                    s.RangeShifterSetting = "IN"
                    s.IsocenterToRangeShifterDistance = 300.0
                    if b.get("rs_wet") is not None:
                        s.RangeShifterWaterEquivalentThickness = b["rs_wet"]
                    cp.RangeShifterSettingsSequence = Sequence([s])
                if k == 0:
                    cum += float(sum(w))
                cps.append(cp)
        ib.NumberOfControlPoints = len(cps)
        ib.IonControlPointSequence = Sequence(cps)
        ib.FinalCumulativeMetersetWeight = total_w
        ion_beams.append(ib)
        rb = Dataset()
        rb.ReferencedBeamNumber = bi
        rb.BeamMeterset = b.get("meterset", 100.0)
        refs.append(rb)
    fg.ReferencedBeamSequence = Sequence(refs)
    ds.FractionGroupSequence = Sequence([fg])
    ds.IonBeamSequence = Sequence(ion_beams)
    return ds


def save(ds: FileDataset, path: Path) -> Path:
    from mcproton._io.dicom_common import save_dataset

    return save_dataset(ds, path)


def bdl_text_from_csv(csv_path: Path, *, with_range_shifter: bool = True) -> str:
    """An MCsquare BDL text (the real layout) built from the reference CSV of a BDL."""
    rows = [ln for ln in Path(csv_path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    header = rows[0].split(",")
    names = [h.split("_")[0] for h in header]
    names = ["EnergySpread" if n == "EnergySpread" else n for n in names]
    out = ["--UPenn beam model (double gaussian)--", "# Beam data library (test copy)", "",
           "Nozzle exit to Isocenter distance", "410.0", "", "SMX to Isocenter distance", "2234.8", "",
           "SMY to Isocenter distance", "1859.1", ""]
    if with_range_shifter:
        out += ["Range Shifter parameters", "RS_ID = Range_shifter_1", "RS_type = binary", "RS_material = 64",
                "RS_density = 1.19", "RS_WET = 40.0", ""]
    out += ["Beam parameters", f"{len(rows) - 1} energies", "", " \t ".join(names)]
    out += ["\t".join(r.split(",")) for r in rows[1:]]
    return "\n".join(out) + "\n"


def spot_grid(n: int = 3, step: float = 10.0) -> list[tuple[float, float]]:
    c = (np.arange(n) - (n - 1) / 2) * step
    return [(float(x), float(y)) for y in c for x in c]


def circle_contour(cx, cy, r, z, n=180):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t), np.full(n, z)])


def rect_contour(x0, x1, y0, y1, z):
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float)


def make_rtstruct(rois: dict[str, list[np.ndarray]], *, points: dict[str, tuple] | None = None,
                  for_uid: str | None = None) -> FileDataset:
    """A synthetic RT Structure Set: one ROI per entry of ``rois`` (CLOSED_PLANAR contours, (n, 3) mm) and of
    ``points`` (a POINT contour, type ISOCENTER), numbered from 1, in the frame ``for_uid`` (default a new one)."""
    ds = _new_file(RT_STRUCTURE_SET_STORAGE, "rs.dcm")
    ds.Modality = "RTSTRUCT"
    for_uid = for_uid or generate_uid()
    rf = Dataset()
    rf.FrameOfReferenceUID = for_uid
    ds.ReferencedFrameOfReferenceSequence = Sequence([rf])
    ssroi, rcs, obs = [], [], []
    allr = [(n, c, "CLOSED_PLANAR") for n, c in rois.items()]
    allr += [(n, [np.asarray([p], float)], "POINT") for n, p in (points or {}).items()]
    for i, (name, cl, gt) in enumerate(allr, start=1):
        r = Dataset()
        r.ROINumber = i
        r.ROIName = name
        r.ReferencedFrameOfReferenceUID = for_uid
        ssroi.append(r)
        rc = Dataset()
        rc.ReferencedROINumber = i
        seq = []
        for c in cl:
            cd = Dataset()
            cd.ContourGeometricType = gt
            cd.NumberOfContourPoints = len(c)
            cd.ContourData = [f"{v:.4f}" for v in np.asarray(c).ravel()]
            seq.append(cd)
        rc.ContourSequence = Sequence(seq)
        rcs.append(rc)
        o = Dataset()
        o.ObservationNumber = i
        o.ReferencedROINumber = i
        o.RTROIInterpretedType = "ISOCENTER" if gt == "POINT" else "ORGAN"
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ssroi)
    ds.ROIContourSequence = Sequence(rcs)
    ds.RTROIObservationsSequence = Sequence(obs)
    return ds

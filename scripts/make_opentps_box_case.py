"""A homogeneous counterpart of make_opentps_case.py: one square field of one energy into a uniform box, planned
and written by OpenTPS, dosed by its MCsquare; it separates the two codes' depth-dose and absolute dose from the
tissues' stopping powers that the head case mixes in.

    /tmp/otps/bin/python scripts/make_opentps_box_case.py OUT --energy 140 [--primaries 2e6]

The box is 160 x 160 x 240 mm of HU 0 (``--hu``; HU 0 is density 1.000 g/cm3 and Schneider_AT_AG_SI4 with
OpenTPS's UCL_Toshiba scanner, = mcproton's `mcsquare_default`) in air, on 2 mm voxels; the field is 9 x 9 spots
5 mm apart, 1 MU each, gantry 0 (entering at y = -120 mm, travelling +y in the DICOM patient frame), isocentre at
the box centre.
Written as in make_opentps_case.py: CT, RT Struct (the box as "body"), RT Ion Plan, RT Dose, and
``opentps_case.json``.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import platform
import time
from pathlib import Path

import numpy as np
import pydicom

from opentps.core.data import Patient, RTStruct
from opentps.core.data.images import CTImage, ROIMask
from opentps.core.data.plan import PlanProtonBeam, PlanProtonLayer, ProtonPlan
from opentps.core.io import mcsquareIO
from opentps.core.io.dicomIO import writeDicomCT, writeRTDose, writeRTPlan, writeRTStruct
from opentps.core.io.scannerReader import readScanner
from opentps.core.processing.doseCalculation.doseCalculationConfig import DoseCalculationConfig
from opentps.core.processing.doseCalculation.protons.mcsquareDoseCalculator import MCsquareDoseCalculator

_spec = importlib.util.spec_from_file_location("make_opentps_case", Path(__file__).with_name("make_opentps_case.py"))
_case = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_case)

SIZE_MM = (160.0, 240.0, 160.0)     # x, y (beam axis), z
VOXEL_MM = 2.0
MARGIN_MM = 20.0                    # air around the box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--energy", type=float, required=True, help="nominal energy (MeV)")
    ap.add_argument("--primaries", type=float, default=2e6)
    ap.add_argument("--hu", type=float, default=0.0, help="the box's CT number (default 0)")
    ap.add_argument("--voxel-mm", type=float, default=VOXEL_MM, help="CT voxel size (default 2 mm)")
    a = ap.parse_args()
    _case._mcsquare_starts()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    vox = a.voxel_mm
    n = [int(round((s + 2 * MARGIN_MM) / vox)) for s in SIZE_MM]
    origin = [-(s / 2 + MARGIN_MM) + vox / 2 for s in SIZE_MM]
    hu = np.full(n, -1024.0)
    m = [int(round(MARGIN_MM / vox)) for _ in SIZE_MM]
    box = np.zeros(n, bool)
    box[m[0]:n[0] - m[0], m[1]:n[1] - m[1], m[2]:n[2] - m[2]] = True
    hu[box] = a.hu
    frame = pydicom.uid.generate_uid()
    study = pydicom.uid.generate_uid()
    patient = Patient()
    patient.name = "mcp_opentps_box"
    ct = CTImage(imageArray=hu, origin=origin, spacing=[vox] * 3, name="CT",
                 seriesInstanceUID=pydicom.uid.generate_uid(), frameOfReferenceUID=frame)
    ct.patient = patient
    ct.studyInstanceUID = study

    body = ROIMask(imageArray=box, origin=origin, spacing=[vox] * 3, name="body")
    body.patient = patient

    calibration = readScanner(DoseCalculationConfig().scannerFolder)
    bdl = mcsquareIO.readBDL(DoseCalculationConfig().bdlFile)
    plan = ProtonPlan()
    plan.appendBeam(PlanProtonBeam())
    beam = plan.beams[0]
    beam.gantryAngle, beam.couchAngle, beam.name = 0.0, 0.0, "AP"
    beam.isocenterPosition = [0.0, 0.0, 0.0]
    layer = PlanProtonLayer(a.energy)
    xs = np.arange(-20.0, 20.1, 5.0)
    gx, gy = np.meshgrid(xs, xs)
    layer.appendSpot(list(gx.ravel()), list(gy.ravel()), [1.0] * gx.size)
    beam.appendLayer(layer)
    plan.rtPlanName = f"box_{a.energy:g}MeV"
    plan.numberOfFractionsPlanned = 1

    mc2 = MCsquareDoseCalculator()
    mc2.beamModel = bdl
    mc2.ctCalibration = calibration
    mc2.nbPrimaries = a.primaries
    t = time.time()
    dose = mc2.computeDose(ct, plan)
    mc_s = time.time() - t

    writeDicomCT(ct, str(out / "ct"))
    struct = RTStruct(name="mcp_opentps_box_rois")
    struct.appendContour(body.getROIContour())
    struct.seriesInstanceUID = pydicom.uid.generate_uid()
    struct.frameOfReferenceUID = frame
    struct.studyInstanceUID = study
    struct.patient = patient
    writeRTStruct(struct, str(out), "RS")
    plan.seriesInstanceUID = pydicom.uid.generate_uid()
    plan.studyInstanceUID = study
    plan.frameOfReferenceUID = frame
    plan.rtPlanGeometry = "PATIENT"
    plan.patient = patient
    writeRTPlan(plan, str(out), "RP")
    plan.SOPInstanceUID = pydicom.dcmread(out / "RP.dcm", stop_before_pixels=True).SOPInstanceUID
    now = datetime.datetime.now()
    dose.referencePlan, dose.referenceCT, dose.patient = plan, ct, patient
    dose.studyInstanceUID, dose.frameOfReferenceUID = study, frame
    dose.sopClassUID = dose.mediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    dose.sopInstanceUID = pydicom.uid.generate_uid()
    dose.studyDate, dose.studyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    writeRTDose(dose, str(out), "RD")
    info = {"opentps_core": _case._dist_version("opentps-core"), "energy_mev": a.energy, "hu": a.hu, "voxel_mm": vox,
            "spots": int(gx.size), "primaries": a.primaries, "mcsquare_s": mc_s, "total_s": time.time() - t0,
            "dose_max_gy": float(np.max(dose.imageArray)), "made": now.isoformat(timespec="seconds"),
            "machine": platform.platform(), "python": platform.python_version()}
    (out / "opentps_case.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()

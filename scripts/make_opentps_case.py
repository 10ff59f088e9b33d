"""Make a plan check case written by OpenTPS, with a dose computed by MCsquare (a peer Monte Carlo code).

Run with an interpreter that has ``opentps-core`` (it is not a dependency of mcproton; it ships MCsquare):

    python -m venv /tmp/otps && /tmp/otps/bin/pip install opentps-core matplotlib "scipy<1.12"
    mcproton demo --voxel-mm 2 --primaries 20000 --backend cpu --out /tmp/demo_ct --quiet   # the phantom CT
    /tmp/otps/bin/python scripts/make_opentps_case.py /tmp/demo_ct OUT [--primaries 5e6] [--beamlet-primaries 2e4]

What it does, every step with OpenTPS 2.0 and its own MCsquare, BDL and scanner (nothing of mcproton's):
1. reads the demo's CT series and RT Struct (mcproton's 5-year-old head phantom at 2 mm, posterior-fossa CTV);
2. designs a 2-field plan on CTV_PF (gantry 180 and 225 degrees, 5 mm spots and layers, 5 mm margin) with the
   range shifter of OpenTPS's default BDL (RS_Block, WET 74.1 mm) on the oblique field, as OpenTPS places it;
3. computes the beamlets with MCsquare and optimises the weights (L-BFGS-B, 1.8 Gy Dmin/Dmax on the CTV);
4. recomputes the final dose with MCsquare (``--primaries``) on the CT grid;
5. writes the CT series, an RT Struct (body, CTV_PF, brainstem), the RT Ion Plan and the RT Dose with OpenTPS's
   DICOM writers, all on one study and frame of reference, plus ``opentps_case.json`` (versions, settings,
   timings) beside them.

The files are what OpenTPS writes (its writers' quirks included); tests/data/dicom/opentps_head holds one such
case (see its README) and mcproton's tests read it.  OpenTPS 2.0.0 needs SciPy < 1.12 (it compares a sparse
matrix with ``[]`` when it reads the beamlets); the case was made with SciPy 1.11.4 and NumPy 1.26.4.
"""
from __future__ import annotations

import argparse
import atexit
import datetime
import glob
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from opentps.core.data import RTStruct
from opentps.core.data.images import CTImage
from opentps.core.data.plan import FidObjective
from opentps.core.data.plan._protonPlanDesign import ProtonPlanDesign
from opentps.core.io import mcsquareIO
from opentps.core.io.dicomIO import (readDicomCT, readDicomStruct, writeDicomCT, writeRTDose, writeRTPlan,
                                     writeRTStruct)
from opentps.core.io.scannerReader import readScanner
from opentps.core.processing.doseCalculation.doseCalculationConfig import DoseCalculationConfig
from opentps.core.processing.doseCalculation.protons.mcsquareDoseCalculator import MCsquareDoseCalculator
from opentps.core.processing.planOptimization.planOptimization import IntensityModulationOptimizer

KEEP_ROIS = ("body", "CTV_PF", "brainstem")
PRESCRIPTION_GY = 1.8


def _mcsquare_starts() -> None:
    """Three quirks of the opentps-core 2.0.0 wheel that stop MCsquare on Linux, worked around in this process:
    OpenTPS starts it with ``sh MCsquare``, a launcher written for bash (``==`` in tests), which fails where sh is
    dash (Debian, Ubuntu); the launcher ships with CRLF line ends; and the binaries without the execute bit.
    Then MCsquare never runs and OpenTPS fails later, looking for its outputs.  A ``sh`` that is bash goes first
    on the PATH, and in the simulation folder the launchers get LF line ends and the binaries the execute bit."""
    if "bash" not in os.path.realpath(shutil.which("sh") or ""):
        d = Path(tempfile.mkdtemp(prefix="sh_is_bash_"))
        atexit.register(shutil.rmtree, d, True)   # the folder of one symlink, not left behind (resources audit 31, F4)
        (d / "sh").symlink_to(shutil.which("bash"))
        os.environ["PATH"] = f"{d}{os.pathsep}{os.environ.get('PATH', '')}"
    write_bin = mcsquareIO.writeBin

    def write_bin_lf(dest):
        write_bin(dest)
        for name in ("MCsquare", "MCsquare_opti"):
            f = Path(dest) / name
            if f.is_file():
                f.write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
        for f in Path(dest).glob("MCsquare*"):
            f.chmod(f.stat().st_mode | 0o111)

    mcsquareIO.writeBin = write_bin_lf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phantom", help="folder with ct/ and rtstruct.dcm (mcproton demo output)")
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--primaries", type=float, default=5e6, help="MCsquare primaries of the final dose")
    ap.add_argument("--beamlet-primaries", type=float, default=2e4, help="MCsquare primaries per beamlet run")
    ap.add_argument("--maxiter", type=int, default=200)
    a = ap.parse_args()
    _mcsquare_starts()
    logging.basicConfig(level=logging.WARNING)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.time()

    ct = readDicomCT(sorted(glob.glob(os.path.join(a.phantom, "ct", "*.dcm"))))
    struct = readDicomStruct(os.path.join(a.phantom, "rtstruct.dcm"))
    ctv = struct.getContourByName("CTV_PF").getBinaryMask(origin=ct.origin, gridSize=ct.gridSize, spacing=ct.spacing)
    times["read_s"] = time.time() - t0

    calibration = readScanner(DoseCalculationConfig().scannerFolder)
    bdl = mcsquareIO.readBDL(DoseCalculationConfig().bdlFile)
    mc2 = MCsquareDoseCalculator()
    mc2.beamModel = bdl
    mc2.ctCalibration = calibration
    mc2.nbPrimaries = a.beamlet_primaries

    design = ProtonPlanDesign()
    design.ct = ct
    design.targetMask = ctv
    design.gantryAngles = [180.0, 225.0]
    design.couchAngles = [0.0, 0.0]
    design.beamNames = ["PA", "RPO_RS"]
    design.calibration = calibration
    design.spotSpacing = 5.0
    design.layerSpacing = 5.0
    design.targetMargin = 5.0
    design.rangeShifters = [None, bdl.rangeShifters[0]]
    design.setScoringParameters(scoringSpacing=list(ct.spacing), adapt_gridSize_to_new_spacing=True)
    design.defineTargetMaskAndPrescription(target=ctv, targetPrescription=PRESCRIPTION_GY)
    t = time.time()
    plan = design.buildPlan()
    plan.rtPlanName = "mcp_opentps"
    plan.numberOfFractionsPlanned = 1
    times["spot_placement_s"] = time.time() - t

    t = time.time()
    plan.planDesign.beamlets = mc2.computeBeamlets(ct, plan, roi=[ctv])
    times["beamlets_s"] = time.time() - t
    plan.planDesign.objectives.addFidObjective(ctv, FidObjective.Metrics.DMAX, PRESCRIPTION_GY, 1.0)
    plan.planDesign.objectives.addFidObjective(ctv, FidObjective.Metrics.DMIN, PRESCRIPTION_GY, 1.0)
    t = time.time()
    IntensityModulationOptimizer(method="Scipy_L-BFGS-B", plan=plan, maxiter=a.maxiter).optimize()
    times["optimisation_s"] = time.time() - t

    mc2.nbPrimaries = a.primaries
    t = time.time()
    dose = mc2.computeDose(ct, plan)
    times["final_dose_s"] = time.time() - t

    # one study and frame of reference for every object, as a planning system exports them
    study = pydicom.uid.generate_uid()
    frame = ct.frameOfReferenceUID or pydicom.uid.generate_uid()
    now = datetime.datetime.now()
    new_ct = CTImage(imageArray=ct.imageArray, origin=ct.origin, spacing=ct.spacing, name="CT",
                     seriesInstanceUID=pydicom.uid.generate_uid(), frameOfReferenceUID=frame)
    new_ct.patient = ct.patient
    new_ct.studyInstanceUID = study
    writeDicomCT(new_ct, str(out / "ct"))

    small = RTStruct(name="mcp_opentps_rois")
    for name in KEEP_ROIS:
        small.appendContour(struct.getContourByName(name))
    small.seriesInstanceUID = pydicom.uid.generate_uid()
    small.frameOfReferenceUID = frame
    small.studyInstanceUID = study
    small.patient = ct.patient
    writeRTStruct(small, str(out), "RS")

    plan.seriesInstanceUID = pydicom.uid.generate_uid()
    plan.studyInstanceUID = study
    plan.frameOfReferenceUID = frame
    plan.rtPlanGeometry = "PATIENT"
    plan.patient = ct.patient
    writeRTPlan(plan, str(out), "RP")
    # writeRTDose reads the plan's UID as plan.SOPInstanceUID, which writeRTPlan does not set: take it from the file
    plan.SOPInstanceUID = pydicom.dcmread(out / "RP.dcm", stop_before_pixels=True).SOPInstanceUID

    dose.referencePlan = plan
    dose.referenceCT = new_ct
    dose.patient = ct.patient
    dose.studyInstanceUID = study
    dose.frameOfReferenceUID = frame
    dose.sopClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    dose.mediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    dose.sopInstanceUID = pydicom.uid.generate_uid()
    dose.studyDate = now.strftime("%Y%m%d")
    dose.studyTime = now.strftime("%H%M%S.%f")
    writeRTDose(dose, str(out), "RD")
    times["total_s"] = time.time() - t0

    import opentps.core
    info = {
        "opentps_core": getattr(opentps.core, "__version__", None) or _dist_version("opentps-core"),
        "pydicom": pydicom.__version__, "python": platform.python_version(),
        "bdl": os.path.basename(DoseCalculationConfig().bdlFile),
        "scanner": os.path.basename(DoseCalculationConfig().scannerFolder.rstrip("/")),
        "gantry_deg": design.gantryAngles, "range_shifter": [None, bdl.rangeShifters[0].ID],
        "spots": int(plan.numberOfSpots), "prescription_gy": PRESCRIPTION_GY,
        "beamlet_primaries": a.beamlet_primaries, "final_primaries": a.primaries, "maxiter": a.maxiter,
        "dose_max_gy": float(np.max(dose.imageArray)), "times": times, "made": now.isoformat(timespec="seconds"),
        "machine": platform.platform(),
    }
    (out / "opentps_case.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(info, indent=1))


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 - provenance only
        return None


if __name__ == "__main__":
    main()

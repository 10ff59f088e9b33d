"""A structure set for APTG plan06, so that `mcproton check --phantom-from-struct` can check the plan's RayStation dose.

APTG/2022_DCPT_LET (CC BY 4.0) @ 62db608b4e72ce92a6ae07886226270fd3f55b39 holds plan06's RT Ion Plan and its
RayStation beam dose (data/resources/plans/plan06_sobp_4d/), but its RT Struct and CT are not in the repository.
This script writes an RT Struct of the phantom its docs/geometry.md gives ("Geometry F": solid water from 4.37 cm
above the isocentre to 1.80 cm below it, a 5 mm PMMA plate, solid water to 16.13 cm below it; 30 x 30 cm
laterally), in the plan's frame of reference (HFS, gantry 0: depth along +y; isocentre y = -55 mm), with
RayStation's material overrides taken from plan03's structure set (examples/data/RS_plan03.dcm: the
same DCPT phantom, Gammex 457 solid water and PMMA, with their elemental compositions).

The solid water's density is the one assumption (the plan06 structure set that would say it is not public):
  * 1.02 g/cm3: plan03's override (stopping-power ratio 1.0035 with that composition);
  * 1.047 g/cm3: stopping-power ratio 1.030, what geometry.md's depths imply (4.37 cm of solid water = 4.5 cm WET;
    plans 05 and 07: 7.28 -> 7.5 and 8.25 -> 8.5 cm, also 1.030).
The results of both are in docs/check.md ("plan06 at the default 1 %").

    python examples/aptg_plan06_struct.py APTG_REPO OUT_FOLDER [DENSITY]
    mcproton check OUT_FOLDER --phantom-from-struct --beam-model dcpt_v5 --primaries 60000000 --out OUT_FOLDER/check

APTG_REPO: a clone of APTG/2022_DCPT_LET at the commit above (the plan and its dose are copied from it into
OUT_FOLDER beside the structure set).  DENSITY: the solid water's density in g/cm3 (default 1.047; 1.02 for
plan03's override).  The check at the default 1 % target takes ~4 min on 2 CPU cores; with --primaries 200000 it
runs in ~15 s (14 % noise, so the gamma and uncertainty levels fail; 2026-12-05: median distal dR80 -0.04 mm).
"""
from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom

HERE = Path(__file__).resolve().parent
PLAN_DIR = "data/resources/plans/plan06_sobp_4d"
PLAN = "RP1.2.752.243.1.1.20260105182345801.4870.23686.dcm"
DOSE = "RD1.2.752.243.1.1.20260105182345802.4890.40881.dcm"
ISO_Y = -55.0   # mm, the plan's IsocenterPosition y (gantry 0, HFS: depth = y - ISO_Y + 43.7)
# (x0, x1, y0, y1) in mm of each box, from geometry F (depth z_doc cm below the isocentre -> y = ISO_Y + 10 z_doc)
BOXES = {"External": (-150.0, 150.0, ISO_Y - 43.7, ISO_Y + 161.3), "PMMA": (-150.0, 150.0, ISO_Y + 18.0, ISO_Y + 23.0)}


def make_struct(plan_path: Path, out: Path, density_g_cm3: float) -> None:
    rs = pydicom.dcmread(HERE / "data" / "RS_plan03.dcm")
    plan = pydicom.dcmread(plan_path)
    names = {int(r.ROINumber): str(r.ROIName) for r in rs.StructureSetROISequence}
    keep = {n for n, name in names.items() if name in BOXES}
    rs.SOPInstanceUID = plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID   # the one the plan names
    rs.file_meta.MediaStorageSOPInstanceUID = rs.SOPInstanceUID
    rs.FrameOfReferenceUID = plan.FrameOfReferenceUID
    rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = plan.FrameOfReferenceUID
    if "RTReferencedStudySequence" in rs.ReferencedFrameOfReferenceSequence[0]:
        del rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence   # plan03's CT: not this phantom's
    rs.StructureSetROISequence = [r for r in rs.StructureSetROISequence if int(r.ROINumber) in keep]
    for r in rs.StructureSetROISequence:
        r.ReferencedFrameOfReferenceUID = plan.FrameOfReferenceUID
    rs.RTROIObservationsSequence = [o for o in rs.RTROIObservationsSequence if int(o.ReferencedROINumber) in keep]
    for o in rs.RTROIObservationsSequence:
        if names[int(o.ReferencedROINumber)] == "External":
            for p in o.ROIPhysicalPropertiesSequence:
                if p.ROIPhysicalProperty == "REL_MASS_DENSITY":
                    p.ROIPhysicalPropertyValue = f"{density_g_cm3:g}"
    contours = []
    for rc in rs.ROIContourSequence:
        if int(rc.ReferencedROINumber) not in keep:
            continue
        x0, x1, y0, y1 = BOXES[names[int(rc.ReferencedROINumber)]]
        seq = []
        for z in np.arange(-150.0, 150.0 + 1e-6, 2.5):   # one rectangle per 2.5 mm (the dose grid's spacing)
            c = copy.deepcopy(rc.ContourSequence[0])
            c.ContourData = [f"{v:g}" for v in (x0, y0, z, x1, y0, z, x1, y1, z, x0, y1, z)]
            c.NumberOfContourPoints = 4
            if "ContourImageSequence" in c:
                del c.ContourImageSequence
            seq.append(c)
        rc.ContourSequence = seq
        contours.append(rc)
    rs.ROIContourSequence = contours
    rs.save_as(out)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    repo, out = Path(argv[0]), Path(argv[1])
    density = float(argv[2]) if len(argv) == 3 else 1.047
    out.mkdir(parents=True, exist_ok=True)
    for name in (PLAN, DOSE):
        shutil.copy(repo / PLAN_DIR / name, out / name)
    make_struct(out / PLAN, out / "RS_plan06_geometryF.dcm", density)
    print(f"wrote {out / 'RS_plan06_geometryF.dcm'} (solid water {density:g} g/cm3) beside the plan and its dose")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

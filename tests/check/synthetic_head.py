"""A synthetic head-size case for ``mcproton check``'s memory and speed measurements: a CT series
(water ellipsoid with a 6 mm bone shell, air around it; any size, e.g. a full 512 x 512 x 200 head CT), a
one-beam plan and an RT Dose on a 2.5 mm grid over the head (an analytic dose blob, only for the check to
have something to compare: no physics is asserted on it).  Written with the project's own writers.

``python tests/check/synthetic_head.py OUT [--full]`` writes the case into OUT (``--full``: 512 x 512 x 200).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, save, spot_grid  # noqa: E402

FOR = "1.2.826.0.1.3680043.8.498.5151"
#: head semi-axes (x, y, z) in mm and the bone shell thickness
HEAD_MM = (75.0, 90.0, 100.0)
SHELL_MM = 6.0


#: the radius (mm) of the neck/torso cylinder below the head (write_case's ``torso``)
TORSO_RADIUS_MM = 60.0


def write_case(out: str | Path, *, shape_zyx=(200, 512, 512), pixel_mm: float = 0.9766,
               slice_mm: float = 1.25, dose_mm: float = 2.5, torso: bool = False,
               beams: list[dict] | None = None) -> dict:
    """Write CT/ (one file per slice), RP.dcm and RD.dcm into ``out``; returns their paths and the grids.
    ``torso``: soft tissue in a cylinder of TORSO_RADIUS_MM below the head to the CT's end (a CT scanned longer than
    the head, over which the RT Dose, the head's, is a part); ``beams``: the plan's beams (make_plan's), default one
    120 MeV field at gantry 90."""
    from mcproton._io.dicom_common import StudyReference
    from mcproton.dicom import write_ct_series, write_rtdose

    out = Path(out)
    nz, ny, nx = shape_zyx
    vs = (pixel_mm, pixel_mm, slice_mm)
    org = (-(nx - 1) / 2 * pixel_mm, -(ny - 1) / 2 * pixel_mm, -(nz - 1) / 2 * slice_mm)
    xs = org[0] + pixel_mm * np.arange(nx)
    ys = org[1] + pixel_mm * np.arange(ny)
    hu = np.full(shape_zyx, -1000, np.int16)
    a, b, c = HEAD_MM
    for k in range(nz):                        # slice by slice: no full-size float array here either
        z = org[2] + slice_mm * k
        r2 = (xs[None, :] / a) ** 2 + (ys[:, None] / b) ** 2 + (z / c) ** 2
        inner = (xs[None, :] / (a - SHELL_MM)) ** 2 + (ys[:, None] / (b - SHELL_MM)) ** 2 \
            + (z / (c - SHELL_MM)) ** 2
        sl = hu[k]
        if torso and z < 0:                    # the neck and torso below the head's centre
            sl[(xs[None, :] ** 2 + ys[:, None] ** 2) <= TORSO_RADIUS_MM ** 2] = 30
        sl[r2 <= 1.0] = 1000                   # cortical-like bone shell
        sl[inner <= 1.0] = 20                  # brain-like soft tissue
    write_ct_series(hu, vs, org, out / "CT", study=StudyReference(frame_of_reference_uid=FOR))
    plan = make_plan(beams or [{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                                "layers": [(120.0, spot_grid(3, 8.0), [1.0] * 9)]}], frame_of_reference_uid=FOR)
    save(plan, out / "RP.dcm")
    from mcproton._io.rtplan import load_rtplan

    uid = load_rtplan(out / "RP.dcm").sop_instance_uid
    # the dose grid: the head plus 5 mm, on dose_mm voxels
    n = [int(np.ceil(2 * (h + 5.0) / dose_mm)) for h in HEAD_MM]
    dorg = tuple(-(k - 1) / 2 * dose_mm for k in n)
    zd, yd, xd = (dorg[j] + dose_mm * np.arange(n[j]) for j in (2, 1, 0))
    Z, Y, X = np.meshgrid(zd, yd, xd, indexing="ij")
    blob = 2.0 * np.exp(-(X ** 2 + Y ** 2 + Z ** 2) / (2 * 15.0 ** 2))
    rd = write_rtdose(blob, (dose_mm,) * 3, dorg, out / "RD.dcm",
                      study=StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=uid))
    return {"ct": out / "CT", "plan": out / "RP.dcm", "dose": rd, "ct_shape_zyx": shape_zyx,
            "dose_shape_zyx": blob.shape}


if __name__ == "__main__":
    full = "--full" in sys.argv
    res = write_case(sys.argv[1], **({} if full else {"shape_zyx": (64, 256, 256), "pixel_mm": 1.0,
                                                        "slice_mm": 2.5}))
    print(res)

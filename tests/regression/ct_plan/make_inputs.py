"""Writes this case's inputs once (they are committed, so that the regression does not depend on the writers):
a small synthetic CT (32 x 32 x 20 voxels of 3 mm: a water cylinder in air with a bone and a lung insert) and an
RT Ion Plan with two beams (gantry 0 and 90, two energy layers of 3 x 3 spots each).

    cd tests/regression/ct_plan && ../../../.venv/bin/python make_inputs.py
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "io"))

from dicom_factories import make_plan, save  # noqa: E402  (tests/io)

from mcproton.dicom import StudyReference, write_ct_series  # noqa: E402

N, NZ, VOX = 32, 20, 3.0
FOR_UID = "1.2.826.0.1.3680043.8.498.16016"


def hu_phantom() -> np.ndarray:
    c = (np.arange(N) - (N - 1) / 2) * VOX          # voxel centres, mm (x and y)
    y, x = np.meshgrid(c, c, indexing="ij")
    sl = np.full((N, N), -1000.0)                   # air
    sl[x**2 + y**2 < 40.0**2] = 0.0                 # water cylinder, radius 40 mm
    sl[(x - 12.0) ** 2 + y**2 < 8.0**2] = 1000.0    # bone insert
    sl[(x + 12.0) ** 2 + (y - 6.0) ** 2 < 10.0**2] = -700.0   # lung insert
    return np.repeat(sl[None], NZ, axis=0)


def main() -> None:
    ct_dir = HERE / "ct"
    shutil.rmtree(ct_dir, ignore_errors=True)
    c0 = -(N - 1) / 2 * VOX
    write_ct_series(hu_phantom(), (VOX, VOX, VOX), (c0, c0, -(NZ - 1) / 2 * VOX), ct_dir,
                    study=StudyReference(frame_of_reference_uid=FOR_UID, patient_name="regression^ct_plan",
                                         patient_id="REG16", patient_position="HFS"))
    spots = [(x, y) for y in (-8.0, 0.0, 8.0) for x in (-8.0, 0.0, 8.0)]
    w = [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]
    beams = [{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
              "layers": [(75.0, spots, w), (85.0, spots, [2 * v for v in w])]} for g in (0.0, 90.0)]
    # the CT's patient (mcproton run refuses a plan of another patient since 2026-12-07; the dose does not depend on it)
    save(make_plan(beams, frame_of_reference_uid=FOR_UID, patient_id="REG16", patient_name="regression^ct_plan"),
         HERE / "RP.dcm")


if __name__ == "__main__":
    main()

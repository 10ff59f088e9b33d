"""Dose at the Eclipse head-phantom plan's dose reference point: Monte Carlo per beam against the Eclipse beam doses
recorded in the plan (FractionGroupSequence > ReferencedBeamSequence: BeamDose at BeamDoseSpecificationPoint, per
fraction).  Run the three beams first (examples/headphantom_rs.toml explains where the CT comes from):

    for b in 1 2 3; do mcproton run examples/headphantom_rs.toml --set "plan.beams=[$b]" --out out/hp_b$b.h5; done
    python examples/headphantom_rs_compare.py out/hp_b{}.h5

(it reads each run's HDF5, its dose to water, not an RT Dose).

Reported per beam: the MC dose to water at the point (trilinear interpolation of the voxel doses), the dose of the
voxel that contains it with its 1-sigma statistical uncertainty (batches), and the mean over the 3 x 3 x 3 voxels
around it (7 x 7 x 9 mm) with two bounds on the 1-sigma uncertainty of that mean (``block_mean``): the voxel errors
added in quadrature (independent voxels, the lower bound) and added linearly (fully correlated voxels, the upper
bound, sd(sum) <= sum of sds).  A run records each voxel's error but not the covariance of neighbouring voxels,
which share protons, so one run cannot give more.  The truth lies between and nearer the lower bound; measured on
the head phantom (2026-12-08, 4 x 10^6 protons, the seed-to-seed sd of the block mean over 10-13 seeds of the
2026-12-05 and 2026-12-08 code): field 3 0.0074, 1.35 x the lower bound (0.0055; 95 % CI of the ratio 0.90-2.57,
8 degrees of freedom, so these data do not show the lower bound too small) and 0.27 x the upper (0.0279, the mean over
the 10 runs); field 2 0.0056, 1.4 x the lower bound (1.02-2.44, 11 degrees of freedom) (docs/patient_workflow.md
"Head phantom with range shifter").
For a figure to quote, run the beam with several seeds (``--set run.seed=N``) and take their spread.  All times
1.1, because Eclipse reports proton dose as RBE-weighted dose (Gy(RBE), constant RBE 1.1).  The plan row adds the
beams' errors in quadrature: the three runs are independent, each beam on the random stream of its place in the
plan (``mcproton run`` since 2026-12-06); results that share a stream (runs made before then: every
``plan.beams=[N]`` run on stream 0) have theirs added linearly, the upper bound, and a note.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
from scipy.ndimage import map_coordinates

import mcproton

RBE = 1.1
PLAN = Path(__file__).resolve().parent / "data" / "RN_headphantom_rs.dcm"   # the plan examples/headphantom_rs.toml runs


#: what the script prints below its table: the seed-to-seed sd measured on 2026-12-08 over 10 (field 3) and 13 (field 2)
#: seeds, as a ratio to the lower bound with its 95 % chi-square interval (8 and 11 degrees of freedom; review c of
#: audit 33, R5: quoted as a settled "1.35-1.4 x" before)
SEED_SD_NOTE = ("(the 3x3x3 sd: a run holds no covariance between voxels, so it is given as its two bounds; the "
                "seed-to-seed sd measured on 2026-12-08 was 1.35 x the first for field 3 (95 % CI 0.90-2.57, 10 seeds) "
                "and 1.4 x for field 2 (1.02-2.44, 13 seeds): run several seeds for a figure to quote)")


def block_mean(dose, dose_sd, k: int, j: int, i: int) -> tuple[float, float, float]:
    """The mean of the 3 x 3 x 3 voxels around voxel (k, j, i) of a z, y, x dose, and two bounds on its 1-sigma
    statistical uncertainty from the voxels' own 1-sigma errors ``dose_sd``: (mean, lower, upper).  Lower: the errors
    added in quadrature, as if the voxels were independent; upper: added linearly, as if fully correlated (the sd of
    a sum is at most the sum of the sds, whatever the correlation).  Neighbouring voxels share histories, so the true
    figure lies between; a run's HDF5 holds no covariance to say where."""
    roi = dose[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2]
    roi_sd = dose_sd[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2]
    n = roi.size
    return float(roi.mean()), float(np.sqrt((roi_sd**2).sum()) / n), float(roi_sd.sum() / n)


def main(pattern: str) -> None:
    ds = pydicom.dcmread(PLAN)
    rows, tot = [], {"ecl": 0.0, "pt": 0.0, "vox": 0.0, "vox_var": 0.0, "vox_lin": 0.0, "roi": 0.0, "roi_var": 0.0,
                     "roi_lin": 0.0, "roi_up_var": 0.0, "roi_up_lin": 0.0}
    streams = []   # (seed, beam index) of each result: one stream shared means correlated errors
    for rb in ds.FractionGroupSequence[0].ReferencedBeamSequence:
        b, bd = int(rb.ReferencedBeamNumber), float(rb.BeamDose)
        pt = np.array(rb.BeamDoseSpecificationPoint, float)
        res = mcproton.DoseResult.load(pattern.format(b))
        streams.append((res.provenance.get("seed"), res.provenance.get("beam_index")))
        o, v = np.asarray(res.geometry.origin_mm, float), np.asarray(res.geometry.voxel_size_mm, float)
        d, u = res.dose_to_water_gy_zyx, res.uncertainty_rel_zyx * res.dose_to_water_gy_zyx
        c = (pt - o) / v                                              # x, y, z voxel coordinates
        d_pt = float(map_coordinates(d, [[c[2]], [c[1]], [c[0]]], order=1)[0])
        i, j, k = np.round(c).astype(int)
        roi = d[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2]
        roi_mean, roi_sd, roi_sd_up = block_mean(d, u, k, j, i)
        r = {"beam": b, "eclipse": bd, "point": d_pt, "voxel": float(d[k, j, i]), "voxel_sd": float(u[k, j, i]),
             "roi": roi_mean, "roi_sd": roi_sd, "roi_sd_up": roi_sd_up,
             "roi_range": (float(roi.min()), float(roi.max())),
             "density": float(res.geometry.density_g_cm3_zyx[k, j, i])}
        rows.append(r)
        for key, val in (("ecl", bd), ("pt", d_pt), ("vox", r["voxel"]), ("roi", r["roi"])):
            tot[key] += val
        tot["vox_var"] += r["voxel_sd"] ** 2
        tot["roi_var"] += r["roi_sd"] ** 2
        tot["roi_up_var"] += r["roi_sd_up"] ** 2
        tot["vox_lin"] += r["voxel_sd"]
        tot["roi_lin"] += r["roi_sd"]
        tot["roi_up_lin"] += r["roi_sd_up"]
    known = [s for s in streams if None not in s]
    if len(set(known)) < len(known):   # the same random numbers: the errors do not add in quadrature
        print(f"note: the results share random streams ((seed, beam index): {streams}; before 2026-12-06 every "
              "plan.beams=[N] run was on stream 0): the plan's errors are added linearly (an upper bound); run the "
              "beams again for independent ones")
        tot["vox_var"], tot["roi_var"] = tot["vox_lin"] ** 2, tot["roi_lin"] ** 2
        tot["roi_up_var"] = tot["roi_up_lin"] ** 2
    print("beam | Eclipse Gy(RBE) | MC x1.1 at point | voxel x1.1 (1 sd) | 3x3x3 mean x1.1 (1 sd: independent voxels "
          "- fully correlated) | ratio ROI/Eclipse")
    for r in rows:
        print(f"{r['beam']} | {r['eclipse']:.4f} | {RBE * r['point']:.4f} | "
              f"{RBE * r['voxel']:.4f} ({RBE * r['voxel_sd']:.4f}) | "
              f"{RBE * r['roi']:.4f} ({RBE * r['roi_sd']:.4f}-{RBE * r['roi_sd_up']:.4f}) | "
              f"{RBE * r['roi'] / r['eclipse']:.3f} +- {RBE * r['roi_sd'] / r['eclipse']:.3f} to "
              f"{RBE * r['roi_sd_up'] / r['eclipse']:.3f}; voxel {RBE * r['voxel'] / r['eclipse']:.3f} +- "
              f"{RBE * r['voxel_sd'] / r['eclipse']:.3f}; ROI min-max x1.1 {RBE * r['roi_range'][0]:.3f}-"
              f"{RBE * r['roi_range'][1]:.3f}; density {r['density']:.2f}")
    e = tot["ecl"]
    print(f"total | {e:.4f} | {RBE * tot['pt']:.4f} | {RBE * tot['vox']:.4f} ({RBE * tot['vox_var'] ** 0.5:.4f}) | "
          f"{RBE * tot['roi']:.4f} ({RBE * tot['roi_var'] ** 0.5:.4f}-{RBE * tot['roi_up_var'] ** 0.5:.4f}) | "
          f"{RBE * tot['roi'] / e:.3f} +- {RBE * tot['roi_var'] ** 0.5 / e:.3f} to "
          f"{RBE * tot['roi_up_var'] ** 0.5 / e:.3f}; voxel {RBE * tot['vox'] / e:.3f} +- "
          f"{RBE * tot['vox_var'] ** 0.5 / e:.3f}")
    print(SEED_SD_NOTE)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/hp_b{}.h5")

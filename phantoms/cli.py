"""``mcproton phantom --age A --out DIR [--voxel-mm V] [--region R] [--sex S]``: write a paediatric phantom as
a DICOM CT series (``DIR/ct/``), an RT Structure Set (``DIR/rtstruct.dcm``, one ROI per label) and
``DIR/phantom.h5`` (materials, densities and the label map)."""
from __future__ import annotations

import argparse
import json
import time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcproton phantom", description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--age", type=float, required=True, help="age in years (0.5-18)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--voxel-mm", type=float, default=2.0, help="isotropic voxel size in mm (default 2)")
    p.add_argument("--region", default="neuraxis", choices=["head", "head_neck", "neuraxis"],
                   help="extent: head, head_neck (to T1) or neuraxis (whole spine; default)")
    p.add_argument("--sex", default="male", choices=["male", "female"],
                   help="body proportions of the age-dependent reference data (default male)")
    p.add_argument("--calibration", default="schneider2000",
                   help="HU -> density calibration whose inverse gives the CT numbers (default schneider2000)")
    p.add_argument("--no-rtstruct", action="store_true", help="skip the RT Structure Set")
    return p


def main(argv: list[str] | None = None) -> int:
    from .dicom_export import export_phantom
    from .coverage import labels_off_volume, make_head_phantom, missing_labels

    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    g = make_head_phantom(args.age, args.voxel_mm, sex=args.sex, region=args.region)
    res = export_phantom(g, args.out, calibration=args.calibration, rtstruct=not args.no_rtstruct)
    summary = {"phantom": g.name, "shape_zyx": list(g.shape_zyx), "voxel_mm": args.voxel_mm,
               "origin_mm": list(g.origin_mm), "ct": str(res["ct_dir"]), "slices": len(res["ct"].sop_instance_uids),
               "frame_of_reference_uid": res["ct"].frame_of_reference_uid,
               "rtstruct": str(res.get("rtstruct", "")), "hdf5": str(res["hdf5"]),
               "labels": len(g.label_names), "labels_lost_to_voxel_size": missing_labels(g),
               "labels_volume_off_by_voxel_size": labels_off_volume(g),
               "calibration": args.calibration,
               "wall_s": round(time.perf_counter() - t0, 2)}
    print(json.dumps(summary, indent=2))
    return 0

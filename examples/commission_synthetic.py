"""A worked example of ``mcproton commission`` without a machine: "measurements" made from the DCPT v5 beam model
(its Monte Carlo IDDs at 100 and 160 MeV with seed 7, 10^5 primaries each, sampled every 1 mm; its in-air spot
sigmas at -200, 0 and +200 mm, x 1.03 and x 0.98; its dose per MU in a 100 mm field at 150 MeV, 20 mm deep,
4 x 10^6 primaries), then the DCPT v2 model (an earlier model of the same machine) commissioned against them.  It
writes OUT/idd.csv, OUT/spots.csv and OUT/dose_per_mu.csv (the files' formats: docs/beam_model.md) and runs
``mcproton commission`` into OUT/report (docs/commission_report_dcpt_v2.png is its page).

    python examples/commission_synthetic.py [OUT] [--model dcpt_v2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcproton.dicom import load_beam_model
from mcproton.cli import main
from mcproton.commission import model_dose_per_mu, model_idd, model_spot_sigma_mm


def make_measurements(out: Path) -> tuple[Path, Path, Path]:
    v5 = load_beam_model("dcpt_v5")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in (100.0, 160.0):
        z, d, _ = model_idd(v5, e, 100_000, seed=7)
        keep = d > 0
        rows += [f"{e:g},{zi:.2f},{1e3 * di:.5f}" for zi, di in zip(z[keep][::2], d[keep][::2])]
    idd = out / "idd.csv"
    idd.write_text("# synthetic: the dcpt_v5 beam model's Monte Carlo IDDs (seed 7), not a measurement\n"
                   "nominal_energy_mev,depth_mm,idd\n" + "\n".join(rows) + "\n")
    lines = ["# synthetic: the dcpt_v5 model's in-air sigma x 1.03 (x), x 0.98 (y), not a measurement",
             "nominal_energy_mev,z_mm,sigma_x_mm,sigma_y_mm"]
    for e in (100.0, 160.0, 220.0):
        for z in (-200.0, 0.0, 200.0):
            sx, sy = model_spot_sigma_mm(v5, e, z)
            lines.append(f"{e:g},{z:g},{1.03 * float(sx):.3f},{0.98 * float(sy):.3f}")
    spots = out / "spots.csv"
    spots.write_text("\n".join(lines) + "\n")
    dose, _ = model_dose_per_mu(v5, 150.0, 100.0, 5.0, 20.0, 4_000_000, seed=7)
    dpm = out / "dose_per_mu.csv"
    dpm.write_text("# synthetic: the dcpt_v5 model's reference-field dose (seed 7), not a measurement\n"
                   f"nominal_energy_mev,field_size_mm,spot_spacing_mm,depth_mm,gy_per_mu\n150,100,5,20,{dose:.6g}\n")
    return idd, spots, dpm


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="commission_example")
    ap.add_argument("--model", default="dcpt_v2")
    a = ap.parse_args()
    idd, spots, dpm = make_measurements(Path(a.out))
    sys.exit(main(["commission", "--beam-model", a.model, "--idd", str(idd), "--spots", str(spots),
                   "--dose-per-mu", str(dpm), "--out",
                   str(Path(a.out) / "report"), "--primaries", "100000"]))

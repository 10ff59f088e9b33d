"""Make the built-in calibration ``dcpt_spr_brain`` (mcproton/data/ct_calibration/dcpt_spr_brain_*.csv) from the
TOPAS table that DCPT published for its SPR-map CTs.

Source: nbassler/dicomexport @ 7397eb6426f19cdd8c5928ad7eb76a6a00823706, res/spr_tables/SPRtoMaterial__Brain.txt
(MIT License, Copyright (c) 2025 Eurados, as the LICENSE of that repository says at that commit; the notice is in
THIRD_PARTY_NOTICES.md), "stopping power ratio to material conversion for brain", generated with method C of
Permatasari et al. 2020 (Phys Med Biol), doi:10.1088/1361-6560/ab9702.  The README of that repository converts the DCPT
head phantom's CT (series "SPR_map") with this table: the CT's pixel values (after the rescale) are 1000 x (SPR - 1),
so the table's "HU" sections are SPR sections (density = factor x (1000 + value)).

What is taken (facts, not code): the 40 sections' lower bounds (pixel values) and the elemental mass fractions of
each section's material.  What mcproton does with them: SPR = 1 + value / 1000 (``hu_spr.csv``), and each section's
mass density = SPR / (the material's SPR per g/cm3 at 100 MeV with mcproton's own stopping powers), the rule of
every HU -> SPR calibration (``HUCalibration.from_spr_files``).  The table's own density factors (Geant4 with its
tuned I-values) are kept in the materials file as ``topas_density_per_spr`` for comparison
(tests/io/test_spr_map_calibration.py).

Usage: python scripts/make_dcpt_spr_brain.py SPRtoMaterial__Brain.txt  (writes the two CSV files)
"""
from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "mcproton" / "data" / "ct_calibration"
SYMBOL = {"Hydrogen": "H", "Helium": "He", "Lithium": "Li", "Beryllium": "Be", "Bor": "B", "Carbon": "C",
          "Nitrogen": "N", "Oxygen": "O", "Fluorine": "F", "Neon": "Ne", "Sodium": "Na", "Magnesium": "Mg",
          "Aluminum": "Al", "Silicon": "Si", "Phosphorus": "P", "Sulfur": "S", "Chlorine": "Cl", "Argon": "Ar",
          "Potassium": "K", "Calcium": "Ca", "Titanium": "Ti", "Iron": "Fe", "Zinc": "Zn", "Iodine": "I",
          "Barium": "Ba"}
HEADER = """\
# DCPT SPR-map calibration for brain: materials by SPR-map value (pixel = 1000 x (SPR - 1))
# source: nbassler/dicomexport @ 7397eb6426f19cdd8c5928ad7eb76a6a00823706 res/spr_tables/SPRtoMaterial__Brain.txt
#   (MIT License, Copyright (c) 2025 Eurados: the LICENSE of nbassler/dicomexport at that commit, reproduced in
#   THIRD_PARTY_NOTICES.md; the table's origin: Danish Centre for Particle Therapy), method C of Permatasari et al.
#   2020 (Phys Med Biol), doi:10.1088/1361-6560/ab9702; converted by scripts/make_dcpt_spr_brain.py on 2026-12-05
# units: hu_lo = first SPR-map value of the section (inclusive); w_* = elemental mass fractions (sum 1);
#   topas_density_per_spr = the table's SchneiderDensityFactor x 1000 (g/cm3 per unit SPR, Geant4 with the table's
#   I-values; not used by mcproton, which takes density = SPR / its own SPR per g/cm3; kept for comparison)
"""


def parse(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, val = line.split("=", 1)
            out[key.split(":", 1)[-1].strip().split("/")[-1]] = val.split()
    return out


def main(src: str) -> None:
    d = parse(Path(src))
    els = [e.strip('"') for e in d["SchneiderElements"][1:]]
    secs = [int(x) for x in d["SchneiderHUToMaterialSections"][1:]]
    if secs != [int(x) for x in d["SchneiderHounsfieldUnitSections"][1:]]:
        raise SystemExit("the density and material sections differ")
    if set(d["SchneiderDensityOffset"][1:]) != {"0"} or set(d["SchneiderDensityFactorOffset"][1:]) != {"1000"}:
        raise SystemExit("density offsets other than 0 / 1000: density is not factor x (1000 + value)")
    factors = [float(x) for x in d["SchneiderDensityFactor"][1:]]
    weights = [[float(x) for x in d[f"SchneiderMaterialsWeight{i}"][1:]] for i in range(1, len(secs))]
    used = [j for j in range(len(els)) if any(w[j] > 0 for w in weights)]
    cols = [SYMBOL[els[j]] for j in used]
    lines = [HEADER + "hu_lo,name," + ",".join(f"w_{c}" for c in cols) + ",topas_density_per_spr"]
    for i, (lo, w, f) in enumerate(zip(secs[:-1], weights, factors), start=1):
        lines.append(f"{lo},DCPT_brain_{i:02d}," + ",".join(f"{w[j]:.7g}" for j in used) + f",{1000 * f:.12g}")
    (OUT / "dcpt_spr_brain_materials.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spr = HEADER.replace("materials by SPR-map value", "SPR by SPR-map value").split("# units")[0] + (
        "# units: HU = SPR-map value (pixel after rescale); SPR = 1 + value / 1000 (water 0 -> 1.0, air -1000 -> 0);\n"
        "#   below -999 the SPR is held at 0.001 (air); above 2000 (SPR 3.0, the largest a CT calibration may give in\n"
        "#   mcproton: hu_calibration.SPR_MAX) it keeps 3.0 (DCPT's table goes on linearly to 3072: metal)\n"
        "HU,SPR\n-1024,0.001\n-999,0.001\n2000,3.0\n")
    (OUT / "dcpt_spr_brain_hu_spr.csv").write_text(spr, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])

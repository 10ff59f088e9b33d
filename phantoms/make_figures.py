"""Regenerate phantoms/figures/phantom_age{1,5,10,15}.png and the size table in phantoms/README.md.

    python -m mcproton.phantoms.make_figures

(from an install, e.g. the README's editable ``pip install -e .``; the folder is the package
mcproton.phantoms).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mcproton.phantoms.anatomy import brain_volume_from_hc_ml, published_source, published_value, sources
from mcproton.phantoms.generator import LABELS, make_head_phantom
from mcproton.phantoms.measure import measure_phantom

HERE = Path(__file__).resolve().parent
AGES = (1, 5, 10, 15)
VOXEL_MM = 1.0

# display colour per label (RGB 0..1)
COLOURS = {
    "body": (0.93, 0.80, 0.70), "skull": (1.0, 1.0, 0.92), "brain": (0.80, 0.62, 0.70),
    "cerebellum": (0.62, 0.42, 0.70), "brainstem": (0.45, 0.30, 0.60), "ventricles": (0.35, 0.60, 0.95),
    "csf": (0.60, 0.80, 1.0), "eye_left": (0.55, 0.95, 0.95), "eye_right": (0.55, 0.95, 0.95),
    "lens_left": (0.2, 0.5, 0.2), "lens_right": (0.2, 0.5, 0.2), "optic_nerve_left": (0.9, 0.6, 0.1),
    "optic_nerve_right": (0.9, 0.6, 0.1), "optic_chiasm": (0.9, 0.4, 0.0), "cochlea_left": (0.9, 0.1, 0.1),
    "cochlea_right": (0.9, 0.1, 0.1), "temporal_bone": (0.85, 0.85, 0.70), "mastoid_air_left": (0.35, 0.35, 0.35),
    "mastoid_air_right": (0.35, 0.35, 0.35), "sinus_maxillary": (0.1, 0.1, 0.1), "sinus_frontal": (0.1, 0.1, 0.1),
    "sinus_sphenoid": (0.1, 0.1, 0.1), "sinus_ethmoid": (0.3, 0.3, 0.3), "nasal_cavity": (0.15, 0.15, 0.15),
    "airway": (0.15, 0.15, 0.15), "mandible": (0.95, 0.95, 0.8), "vertebrae_cervical": (0.95, 0.9, 0.6),
    "vertebrae_thoracic": (0.95, 0.85, 0.5), "vertebrae_lumbar": (0.95, 0.8, 0.4), "sacrum": (0.9, 0.75, 0.35),
    "intervertebral_disc": (0.55, 0.75, 0.55), "spinal_canal_csf": (0.60, 0.80, 1.0),
    "spinal_cord": (0.85, 0.2, 0.6),
}


def _rgb(lab2d, names):
    lut = np.zeros((max(LABELS) + 1, 3))
    for i, (nm, _) in LABELS.items():
        lut[i] = COLOURS.get(nm, (0.5, 0.5, 0.5))
    return lut[lab2d]


def figure(age: float, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    g = make_head_phantom(age, VOXEL_MM)
    lm = g.meta["landmarks_mm"]
    lab = g.labels_zyx
    x, y, z = g.axis_mm("x"), g.axis_mm("y"), g.axis_mm("z")
    ix = lambda ax, v: int(np.argmin(np.abs(ax - v)))  # noqa: E731
    head_z = z >= lm["foramen_magnum"][2] - 60
    fig = plt.figure(figsize=(13, 6.4), dpi=72)
    gs = fig.add_gridspec(2, 4, width_ratios=[1.0, 1.0, 1.0, 0.75])
    # sagittal midline (whole phantom)
    ax = fig.add_subplot(gs[:, 0])
    sl = lab[:, :, ix(x, 0.0)]
    ax.imshow(_rgb(sl, g.label_names), origin="lower", extent=(y[0], y[-1], z[0], z[-1]), interpolation="nearest")
    ax.set_title("sagittal, x = 0 (midline)")
    ax.set_xlabel("y (mm, + posterior)")
    ax.set_ylabel("z (mm, + superior)")
    # sagittal head zoom
    ax = fig.add_subplot(gs[:, 1])
    ax.imshow(_rgb(sl[head_z], g.label_names), origin="lower", extent=(y[0], y[-1], z[head_z][0], z[-1]),
              interpolation="nearest")
    ax.set_title("sagittal midline, head")
    ax.set_xlim(-g.meta["design"]["A"] - 10, g.meta["design"]["A"] + 10)
    ax.set_xlabel("y (mm)")
    for nm, key in (("posterior fossa", "posterior_fossa"), ("brainstem", "brainstem"), ("chiasm", "optic_chiasm")):
        p = lm[key]
        ax.annotate(nm, (p[1], p[2]), xytext=(p[1] + 25, p[2] - 25 if key != "optic_chiasm" else p[2] + 35),
                    fontsize=7, arrowprops=dict(arrowstyle="-", lw=0.6))
    # axial through the eyes
    ax = fig.add_subplot(gs[0, 2])
    ze = lm["eye_left"][2]
    ax.imshow(_rgb(lab[ix(z, ze)], g.label_names), origin="upper", extent=(x[0], x[-1], y[-1], y[0]),
              interpolation="nearest")
    ax.set_title(f"axial through eyes, z = {ze:.0f}", fontsize=9)
    hA, hB = g.meta["design"]["A"] + 5, g.meta["design"]["B"] + 5
    ax.set_xlim(hB, -hB)
    ax.set_ylim(hA, -hA)
    ax.set_ylabel("y (mm); left = patient right")
    # axial through the cochleae / posterior fossa
    ax = fig.add_subplot(gs[1, 2])
    zc = lm["cochlea_left"][2]
    ax.imshow(_rgb(lab[ix(z, zc)], g.label_names), origin="upper", extent=(x[0], x[-1], y[-1], y[0]),
              interpolation="nearest")
    ax.set_title(f"axial through cochleae/post. fossa, z = {zc:.0f}", fontsize=9)
    ax.set_xlim(hB, -hB)
    ax.set_ylim(hA, -hA)
    ax.set_xlabel("x (mm, + patient left)")
    # coronal through the cochleae
    ax = fig.add_subplot(gs[:, 3])
    yc = lm["cochlea_left"][1]
    cs = lab[:, ix(y, yc), :][head_z]
    ax.imshow(_rgb(cs, g.label_names), origin="lower", extent=(x[0], x[-1], z[head_z][0], z[-1]),
              interpolation="nearest")
    ax.set_xlim(hB + 20, -hB - 20)
    ax.set_title(f"coronal, y = {yc:.0f}", fontsize=9)
    ax.set_xlabel("x (mm)")
    present = sorted(set(np.unique(lab).tolist()) - {0})
    shown, handles = set(), []
    for i in present:
        nm = LABELS[i][0]
        key = nm.replace("_left", "").replace("_right", "")
        if key in shown:
            continue
        shown.add(key)
        handles.append(Patch(facecolor=COLOURS.get(nm, (0.5, 0.5, 0.5)), edgecolor="k", lw=0.3, label=key))
    fig.legend(handles=handles, loc="lower center", ncol=9, fontsize=7, frameon=False)
    m = measure_phantom(g)
    fig.suptitle(f"mcproton procedural phantom, {age:g}-year-old ({g.meta['sex']}), {VOXEL_MM:g} mm voxels: "
                 f"HC {m['head_circumference_cm']:.1f} cm, brain {m['brain_volume_ml']:.0f} mL, "
                 f"skull {m['skull_thickness_mm']:.1f} mm", fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.91, bottom=0.19, wspace=0.25, hspace=0.3)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return m


def table_rows(measured: dict[float, dict]) -> str:
    src = sources()
    lines = ["| age (y) | quantity | generated | published (target) | source |", "|---|---|---|---|---|"]

    def row(age, q, gen, pub, key, fmt="{:.1f}"):
        lines.append(f"| {age:g} | {q} | {fmt.format(gen)} | {pub} | {key} |")

    for age, m in measured.items():
        hc = published_value("head_circumference", age)
        row(age, "head circumference (cm)", m["head_circumference_cm"], f"{hc:.1f}",
            published_source("head_circumference", age)[0])
        row(age, "skull thickness, mean vertex/lateral (mm)", m["skull_thickness_mm"],
            f"{published_value('skull_thickness', age):.1f}", published_source("skull_thickness", age)[0])
        bm = published_value("brain_mass", age)
        row(age, "brain parenchyma volume (mL)", m["brain_volume_ml"],
            f"{bm / 1.05:.0f} (= {bm:.0f} g / 1.05 g/cm3); HC formula: {brain_volume_from_hc_ml(hc):.0f}",
            "ICRP89; Jorgensen (secondary)", "{:.0f}")
        row(age, "intracranial volume (mL)", m["intracranial_volume_ml"],
            f"{bm / 1.05 / published_value('brain_fraction_of_icv', age):.0f} (brain / 0.90)", "ICRP89 + ASSUME",
            "{:.0f}")
        row(age, "head length x width (mm)", m["head_length_mm"], f"CI {published_value('cephalic_index', age):.3f}"
            f" -> width/length generated {m['head_width_mm'] / m['head_length_mm']:.3f}", "LIKUS", "{:.0f}")
        row(age, "eye volume, one (mL)", m["volume_eye_left_ml"],
            f"{np.pi / 6 * published_value('eye_axial_length', age) ** 3 / 1e3:.2f} (sphere of the axial length)",
            "GORDON", "{:.2f}")
        row(age, "maxillary sinuses, both (mL)", m.get("volume_sinus_maxillary_ml", 0.0),
            f"{2 * published_value('maxillary_sinus_volume_per_side', age):.1f}", "BARGHOUTH")
        row(age, "sphenoid sinus (mL)", m.get("volume_sinus_sphenoid_ml", 0.0),
            f"{published_value('sphenoid_sinus_volume', age):.1f}", "BARGHOUTH")
        row(age, "frontal sinus (mL)", m.get("volume_sinus_frontal_ml", 0.0),
            f"{published_value('frontal_sinus_volume', age):.1f}", "BARGHOUTH")
        row(age, "mastoid air, one side (mL)", m.get("volume_mastoid_air_left_ml", 0.0),
            f"{published_value('mastoid_air_volume_per_side', age):.1f}", "CINAMON")
        row(age, "cerebellum / brain", m["volume_cerebellum_ml"] / m["brain_volume_ml"], "0.10", "ASSUME", "{:.3f}")
    lines.append("")
    lines.append("Source keys: " + "; ".join(f"**{k}**: {v}" for k, v in src.items() if k != "WHO") +
                 f"; **WHO**: {src['WHO']}.")
    return "\n".join(lines)


def in_checkout(folder: Path) -> bool:
    """Whether ``folder`` (this module's) is a checkout's phantoms/ (an editable install), not an installed package:
    the repository's pyproject.toml beside it."""
    return (folder.parent / "pyproject.toml").is_file() and (folder.parent / "mcproton").is_dir()


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .._io.cli_args import PARSER_OPTIONS

    p = argparse.ArgumentParser(prog="python -m mcproton.phantoms.make_figures", **PARSER_OPTIONS,
                                description="Regenerate the phantom figures (phantoms/figures/phantom_age{1,5,10,15}"
                                            ".png) and the size table in phantoms/README.md, in the package's own "
                                            f"folder ({HERE}): a developer's tool (from an editable install).")
    p.parse_args(argv)
    if not in_checkout(HERE):   # it wrote into site-packages (the packaging audit of 2026-12-07, F4)
        p.error(f"{HERE} is an installed package, not a checkout's phantoms/ folder: the figures and the README table "
                "it regenerates are the repository's; run it from an editable install of a checkout (pip install -e .)")
    (HERE / "figures").mkdir(exist_ok=True)
    measured = {}
    for age in AGES:
        path = HERE / "figures" / f"phantom_age{age}.png"
        measured[age] = figure(age, path)
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} kB")
    table = table_rows(measured)
    readme = HERE / "README.md"
    start, end = "<!-- SIZE TABLE START (make_figures.py) -->", "<!-- SIZE TABLE END -->"
    text = readme.read_text(encoding="utf-8") if readme.exists() else f"{start}\n{end}\n"
    pre, rest = text.split(start, 1)
    _, post = rest.split(end, 1)
    note = (f"Generated at {VOXEL_MM:g} mm voxels by `python -m mcproton.phantoms.make_figures` "
            "(male; voxel counts).\n\n")
    readme.write_text(pre + start + "\n" + note + table + "\n" + end + post, encoding="utf-8")
    print("README table updated")


if __name__ == "__main__":
    main()

"""Tissue media of the procedural phantoms: ``data/tissues.csv`` (base media, ICRP 110 / Geant4 NIST) and
``data/tissue_mixtures.csv`` (homogenised mixtures, volume fractions).  All media are ADULT compositions
(see the CSV headers and phantoms/README.md)."""
from __future__ import annotations

import csv
from functools import lru_cache

from ..materials import Material
from .anatomy import DATA_DIR

ELEMENTS = ("H", "C", "N", "O", "Na", "Mg", "P", "S", "Cl", "K", "Ca", "Fe", "I", "Ar")


def _rows(name: str):
    with open(DATA_DIR / name, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(line for line in f if not line.startswith("#"))


@lru_cache(maxsize=None)
def base_media() -> dict[str, Material]:
    out = {}
    for r in _rows("tissues.csv"):
        w = {e: float(r[f"w_{e}"]) for e in ELEMENTS if float(r[f"w_{e}"]) > 0}
        s = sum(w.values())
        if abs(s - 1.0) > 2e-3:
            raise ValueError(f"tissues.csv: mass fractions of {r['name']} sum to {s}")
        w = {e: v / s for e, v in w.items()}
        iv = float(r["i_value_ev"]) if r["i_value_ev"].strip() else None
        out[r["name"]] = Material(r["name"], float(r["density_g_cm3"]), w, iv, r["source"])
    return out


def mix(name: str, parts: list[tuple[str, float]], source: str = "") -> Material:
    """Volume-fraction mixture of base media: density = sum f rho; mass fractions mass-weighted."""
    base = base_media()
    ftot = sum(f for _, f in parts)
    parts = [(m, f / ftot) for m, f in parts]
    rho = sum(f * base[m].density_g_cm3 for m, f in parts)
    w: dict[str, float] = {}
    for m, f in parts:
        mm = f * base[m].density_g_cm3 / rho
        for e, x in base[m].mass_fractions.items():
            w[e] = w.get(e, 0.0) + mm * x
    desc = " + ".join(f"{f:.2f} {m}" for m, f in parts)
    return Material(name, rho, w, None, f"volume mixture {desc} ({source}); base media: "
                    + "; ".join(f"{m}: {base[m].source}" for m, _ in parts))


@lru_cache(maxsize=None)
def all_media() -> dict[str, Material]:
    """Base media and the mixtures of tissue_mixtures.csv, by name."""
    out = dict(base_media())
    groups: dict[str, list[tuple[str, float]]] = {}
    srcs: dict[str, str] = {}
    for r in _rows("tissue_mixtures.csv"):
        groups.setdefault(r["mixture"], []).append((r["component"], float(r["volume_fraction"])))
        srcs[r["mixture"]] = r["source"]
    for k, parts in groups.items():
        out[k] = mix(k, parts, srcs[k])
    return out


def get_tissue(name: str) -> Material:
    try:
        return all_media()[name]
    except KeyError:
        raise KeyError(f"unknown phantom tissue {name!r}; known: {sorted(all_media())}") from None

"""The note of per-beam TPS files paired with the wrong beam (api._swapped_beam_notes, audit 26 perbeam F6) names a
swap or a mislabel only where the file fits the other beam's MC dose clearly better than its own beam's could
(api.SWAP_FIT_FACTOR), and costs one full-grid pass per failed beam (check review b of audit 26, R1 and R2).

R1: two alike fields (a field split in two for the MU limit) and a real 5 % MU/output error of one of them: its TPS
file matched the other beam's MC dose, and the check called it a mislabelled file before the MU/output note.
R2: each failed beam was compared with every other beam's MC dose by a full compare.beam_dose_ratio (the TPS grid
averaged again each time): 30 full-grid passes for a 6-beam plan failing by a global scale, where no swap exists."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_diagnosis import _fields_along_z, _mc

from mcproton._check import api
from mcproton._check.compare import beam_dose_ratio, beam_ratio_region


def _notes(tps: dict, mc_beams: dict, *, regions: dict | None = None) -> tuple[list[str], list[str]]:
    """(_swapped_beam_notes, _diagnose's notes) of per-beam TPS doses ``tps`` against MC doses ``mc_beams``."""
    (z, y, x), _ = _fields_along_z()
    body = np.ones(tps[1].shape, bool)
    mc = _mc(mc_beams)
    ratios = {b: beam_dose_ratio(tps[b], mc.beams_gy_zyx[b], body) for b in tps}
    files = SimpleNamespace(fractions=1, beams={b: SimpleNamespace(path=f"RD_beam{b}.dcm") for b in tps})
    swapped = api._swapped_beam_notes(mc, body, tps, ratios, files, 3.0, regions)
    causes = api._diagnose(sum(tps.values()), mc, body, (z, y, x), files, tps, {}, beam_dose=ratios,
                           noise_ok=False, beam_regions=regions)
    return swapped, causes


def _noisy(d: np.ndarray, seed: int, rel: float = 0.02) -> np.ndarray:
    return d * (1 + rel * np.random.default_rng(seed).standard_normal(d.shape))


@pytest.mark.parametrize("noise", [False, True])
def test_a_real_mu_error_of_one_of_two_alike_beams_is_not_called_a_swap(noise):
    """Beams 1 and 2 the same field (a split field); the MC gives beam 1 5 % low (its MU/output): beam 1's file
    matches beam 2's MC dose as well as its own scaled, so no swap or mislabel is named and the MU/output note of
    beam 1 is the first cause after the plan's ratio (before the fix: "RD_beam1.dcm matches the MC dose of beam 2
    ..., its ReferencedBeamNumber wrong ...?" first).  With the MC's noise (2 % per voxel, each beam its own) too."""
    _, field = _fields_along_z()
    a = field(20, 380)
    mc = {1: 0.95 * a, 2: a.copy()}
    if noise:
        mc = {b: _noisy(d, b) for b, d in mc.items()}
    swapped, causes = _notes({1: a, 2: a.copy()}, mc)
    assert swapped == [], swapped
    assert not any("look swapped" in n or "looks like beam" in n for n in causes), causes
    per_beam = [n for n in causes if not n.startswith("the MC dose is 0.975 x the TPS dose")]   # the plan's ratio
    assert per_beam[0].startswith("beam 1's dose is 5.0 % below the TPS's") and "MU/output" in per_beam[0], causes
    assert not any(n.startswith("beam 2's dose") for n in causes), causes


@pytest.mark.parametrize("noise", [False, True])
def test_swapped_files_of_different_beams_are_still_named(noise):
    """Two different fields whose files were exchanged: each file fits the other beam's MC dose, its own beam's not
    at all (another place): named as swapped, first; one beam's file given as another's: named as looking like it."""
    _, field = _fields_along_z()
    f1, f2 = field(20, 220), field(200, 380)
    mc = {1: f1, 2: f2}
    if noise:
        mc = {b: _noisy(d, b) for b, d in mc.items()}
    swapped, causes = _notes({1: f2, 2: f1}, mc)
    assert len(swapped) == 1 and swapped[0].startswith("the TPS doses of beams 1 and 2 look swapped: RD_beam1.dcm "
                                                       "matches the MC dose of beam 2 (MC/TPS "), swapped
    assert causes.index(swapped[0]) < min(k for k, n in enumerate(causes) if "MU/output" in n), causes
    swapped, _ = _notes({1: f2, 2: f2.copy()}, mc)
    assert len(swapped) == 1 and swapped[0].startswith("RD_beam1.dcm matches the MC dose of beam 2") \
        and "looks like beam 2's dose" in swapped[0], swapped


def _six_fields() -> dict[int, np.ndarray]:
    """Six fields through the centre of a 30 x 40 x 40 grid, from six directions."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) - n / 2 for n in (30, 40, 40)), indexing="ij", sparse=True)
    out = {}
    for b in range(1, 7):
        a = np.pi * b / 6
        across = np.cos(a) * y - np.sin(a) * x
        out[b] = np.broadcast_to(np.exp(-across ** 2 / 18.0) * np.exp(-z ** 2 / 72.0), (30, 40, 40)).copy()
    return out


def test_a_global_scale_of_six_beams_costs_one_full_grid_pass_per_failed_beam(monkeypatch):
    """Every beam of a 6-beam plan 5 % low (a global scale, no swap): the swap search averages each failed beam's
    TPS dose once (6 uniform_filter passes; before, 30: a full beam_dose_ratio per pair), none where the check gives
    the regions it made for the dose levels; no note."""
    import scipy.ndimage

    tps = _six_fields()
    mc = {b: 0.95 * d for b, d in tps.items()}
    body = np.ones(tps[1].shape, bool)
    regions = {b: beam_ratio_region(tps[b], body) for b in tps}
    calls = [0]
    plain = scipy.ndimage.uniform_filter

    def counted(*a, **k):
        calls[0] += 1
        return plain(*a, **k)

    ratios = {b: beam_dose_ratio(tps[b], mc[b], body) for b in tps}
    assert all(r["diff_pct"] == pytest.approx(-5.0) for r in ratios.values())
    monkeypatch.setattr(scipy.ndimage, "uniform_filter", counted)
    files = SimpleNamespace(beams={})
    assert api._swapped_beam_notes(_mc(mc), body, tps, ratios, files, 3.0) == []
    assert calls[0] == 6, calls
    calls[0] = 0
    assert api._swapped_beam_notes(_mc(mc), body, tps, ratios, files, 3.0, regions) == []
    assert calls[0] == 0, calls

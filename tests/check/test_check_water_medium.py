"""Dose to water or to medium in ``mcproton check`` (the dose-to-water audit of 2026-12-06, F1): a TPS dose to
medium checked as dose to water passed with bone 9-14 % off and no word, as the check trusted only an RT Dose whose
Manufacturer was exactly "mcproton".  Now any writer's DoseComment / SeriesDescription is read (and said where from),
and the data-driven test (``water_medium_test``) names the mismatch from the MC's own D_w/D_m in bone."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from mcproton import McprotonWarning
from mcproton._check.api import _diagnose, dose_to_statement, water_medium_test


def _field(seed: int, noise: float = 0.02):
    """A box field (2 mm voxels, 2 Gy) through a bone slab 10 mm thick (the MC's D_w/D_m 1.09 rising to 1.14 with
    depth, as mcproton's cortical bone) and a fat slab (0.97) in soft tissue (1.0 to 0.997): the MC's dose to water
    and to medium and the ratio, each dose with ``noise`` (relative, per voxel, independent seeded)."""
    from scipy.special import erf

    z, y, x = np.arange(0, 80.0, 2), np.arange(0, 60.0, 2), np.arange(0, 60.0, 2)
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")

    def e(a, lo, hi):
        return 0.5 * (erf((a - lo) / 3) - erf((a - hi) / 3))

    dw = 2.0 * e(Z, 10, 70) * e(Y, 10, 50) * e(X, 10, 50)
    r = np.where((Z >= 30) & (Z < 40), 1.09 + 0.005 * (Z - 30), np.where((Z >= 50) & (Z < 56), 0.97, 1.0 - 1e-4 * Z))
    rng = np.random.default_rng(seed)
    mc_w = dw * (1 + noise * rng.standard_normal(dw.shape))
    return (z, y, x), dw, r, mc_w, np.ones(dw.shape, bool), rng


@pytest.mark.parametrize("seed", range(5))
def test_a_dose_to_medium_checked_as_water_is_named_and_a_right_dose_is_not(seed):
    """The TPS dose to medium (its own 2 % noise) against the MC's dose to water: f near -1, named, with
    --dose-to medium; the TPS dose to water: f near 0, not named; the TPS dose to water checked as medium: named with
    --dose-to water.  Five seeds each (2 % noise per voxel in MC and TPS)."""
    axes, dw, r, mc_w, body, rng = _field(seed)
    tps_w = dw * (1 + 0.02 * rng.standard_normal(dw.shape))
    tps_m = tps_w / r
    wrong = water_medium_test(tps_m, mc_w, r, body, "water")
    assert wrong["tps_is_other"] and wrong["fraction"] == pytest.approx(-1, abs=0.1), wrong
    assert wrong["voxels_bone"] >= 100 and wrong["bone_shift_pct"] < -7, wrong
    right = water_medium_test(tps_w, mc_w, r, body, "water")
    assert not right["tps_is_other"] and abs(right["fraction"]) < 0.1, right
    reverse = water_medium_test(tps_w, mc_w / r, r, body, "medium")
    assert reverse["tps_is_other"] and reverse["fraction"] == pytest.approx(1, abs=0.1), reverse
    right_m = water_medium_test(tps_m, mc_w / r, r, body, "medium")
    assert not right_m["tps_is_other"] and abs(right_m["fraction"]) < 0.1, right_m

    mc = SimpleNamespace(total_gy_zyx=mc_w, beams_gy_zyx={1: mc_w}, water_to_medium_zyx=r.astype(np.float32),
                         provenance={"dose_to": "water"})
    with pytest.warns(McprotonWarning, match="probably dose to medium"):
        notes = _diagnose(tps_m, mc, body, axes, SimpleNamespace(fractions=1), {})
    hit = [n for n in notes if "probably dose to medium" in n]
    assert len(hit) == 1 and "--dose-to medium" in hit[0] and "compared here as dose to water" in hit[0], notes
    notes = _diagnose(tps_w, mc, body, axes, SimpleNamespace(fractions=1), {})
    assert not any("probably dose to" in n for n in notes), notes


@pytest.mark.parametrize("bone_pct", [-3.0, 3.0])
def test_a_planning_systems_own_difference_in_bone_below_half_the_ratio_is_not_named(bone_pct):
    """A dose to water whose bone dose differs by 3 % (an algorithm's difference in bone, a third of the
    water/medium ratio of 9 %), and the noisier case (5 % per voxel, the TPS itself an MC): not called dose to
    medium; a global scale of 5 % does not matter (the soft tissue is the reference)."""
    axes, dw, r, mc_w, body, rng = _field(7)
    tps = 1.05 * dw * np.where(r > 1.05, 1 + bone_pct / 100, 1.0)
    t = water_medium_test(tps, mc_w, r, body, "water")
    assert not t["tps_is_other"] and abs(t["fraction"]) < 0.45, t
    axes, dw, r, mc_w, body, rng = _field(8, noise=0.05)
    t = water_medium_test(dw * (1 + 0.05 * rng.standard_normal(dw.shape)), mc_w, r, body, "water")
    assert not t["tps_is_other"], t


def test_no_bone_in_the_field_no_test():
    """Soft tissue only (D_w/D_m within 2 %): nothing to test, None (no note)."""
    axes, dw, r, mc_w, body, rng = _field(1)
    assert water_medium_test(dw / 1.0, mc_w, np.ones_like(r), body, "water") is None


def _rtdose_header(path, manufacturer: str, comment: str, series: str):
    """An RT Dose's header with only the attributes dose_to_statement reads, written at ``path``."""
    ds = pydicom.Dataset()
    ds.Manufacturer, ds.DoseComment, ds.SeriesDescription = manufacturer, comment, series
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("manufacturer, comment, series, want", [
    ("mcproton", "MC dose, 1 of 1 fx, beam 1, to medium, physical", "", "medium"),
    ("Varian Medical Systems", "Dose to medium", "", "medium"),
    ("Varian Medical Systems", "AcurosPT Dm", "", "medium"),
    ("RaySearch Laboratories", "Dose to medium (Monte Carlo)", "", "medium"),
    ("mcproton", "MC dose, Dose To Medium", "", "medium"),
    ("mcproton", "medium dose", "", "medium"),
    ("MCPROTON", "MC dose, to medium", "", "medium"),
    ("Another TPS", "", "Plan dose D_w", "water"),
    ("Another TPS", "Dose to water", "", "water"),
    ("Another TPS", "mcproton Monte Carlo", "medium resolution grid", None),
    ("Another TPS", "Dm converted to dose to water", "", None),   # both: not read as either
])
def test_any_writers_dose_comment_is_read(tmp_path, manufacturer, comment, series, want):
    """The auditor's seven DoseComments (6 came back "not said", i.e. water) and a few more, from any writer:
    read case-insensitively, with what was read and from where; a text naming both is not taken as either."""
    got, where = dose_to_statement([_rtdose_header(tmp_path / "RD.dcm", manufacturer, comment, series)])
    assert got == want, where
    if want is not None:
        assert "RD.dcm" in where and repr(manufacturer) in where, where


#: what an older mcproton's writer left of its dose label: cut by the 64 characters of the DoseComment (before
#: 2026-12-06 the label went last, and the text was cut to make room for the plan reference's note, or at 64)
_EFF5010 = "MC dose, 1 fx, 3 beams, to med; no RT Plan: placeholder plan ref"


@pytest.mark.parametrize("manufacturer, comment, want", [
    ("mcproton", _EFF5010, "medium"),                                             # the demo of eff5010, c42dc68
    ("mcproton", "INCOMPLETE 30 % SCENARIO; to m; no RT Plan: placeholder plan ref", "medium"),
    ("MCPROTON", "MC dose, 1 fx, 3 beams, to mediu; invalid plan UID replaced", "medium"),
    ("mcproton", "MC dose, 30 of 30 fx, beams 1,2,3,4,5,6,7,8,9,10,11,12, to wat", "water"),   # cut at the end
    ("mcproton", "MC dose, 1 fx, 3 beams, to w; no RT Plan: placeholder plan ref", "water"),
    ("mcproton", "MC dose, 1 fx, 3 beams, to; no RT Plan: placeholder plan ref", None),   # nothing left: unknown
    ("mcproton", "MC dose to mediastinum", None),                                  # not cut: another word
    ("Another TPS", _EFF5010, None),                                               # another writer: as before
])
def test_an_older_mcproton_dose_comment_cut_short_is_read(tmp_path, manufacturer, comment, want):
    """The compat audit of 2026-12-06, F4: eff5010's and c42dc68's demo RT Dose (dose to medium) says "..., to med;
    no RT Plan: ...": its label cut by the 64 characters of the DoseComment (fixed for new files on 2026-12-06).
    Today's reader found neither water nor medium, so the check compared it as dose to water, assumed.  In an RT
    Dose of mcproton's own writer (Manufacturer "mcproton"), whose one clause "to ..." is the dose label, "to " and
    the start of "medium" or "water" before the "; " or at the end of the comment is that label cut: read so, and
    said.  "to" alone stays unknown, and another writer's text is read as before."""
    got, where = dose_to_statement([_rtdose_header(tmp_path / "rtdose.dcm", manufacturer, comment,
                                                   "mcproton PF boost")])
    assert got == want, where
    if want is not None:
        assert repr(comment) in where and "cut" in where and "64 characters" in where, where
        assert f"to {want}" in where, where

"""A range error in topas_idd is a FAIL on its range metrics, not an error (validation audit 2026-12-06, F6).

The TOPAS curve at 70.7 MeV ends at 43.0 mm, 1.3 mm beyond its R80.  The case cut the simulated curve there
before computing its range metrics, so a simulation 1 % too high in energy (R80 +0.7 mm) ended in "ValueError: the
curve does not fall below 50% ...; extend the depth range" instead of "R80 0.7 mm too deep".  Uses the analytical
fake engine (tests/validation/fake_engine.py): seconds."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_engine as fe  # noqa: E402

fe.load_validation()
from mcproton.validation.core import FAILED, Context  # noqa: E402
from mcproton.validation.topas_idd.case import case_topas_idd  # noqa: E402


def _run(monkeypatch, transform):
    fe.install_fake_modules(monkeypatch)

    def sim(geometry, beam, settings, progress=False):
        res = fe.fake_simulate(geometry, beam, settings, progress)
        res.z_mm, res.idd = transform(np.asarray(res.z_mm, float), np.asarray(res.idd, float))
        return res
    ctx = Context(mode="quick", backend="cpu", simulate_fn=sim, log=lambda *a: None)
    cr = case_topas_idd(ctx).finalize()
    return cr, {m.name: m for m in cr.metrics}


def test_a_range_beyond_the_reference_curve_fails_as_a_range_difference(monkeypatch):
    _, base = _run(monkeypatch, lambda z, d: (z, d))
    shift = 1.5                      # mm deeper: R10 of the simulated curve lies beyond the TOPAS curve's 43.0 mm
    cr, m = _run(monkeypatch, lambda z, d: (z, np.interp(z - shift, z, d)))
    assert cr.status == FAILED
    r80 = m["R80 at 70.7 MeV"]
    assert np.isfinite(r80.value) and r80.passed is False
    assert r80.value - base["R80 at 70.7 MeV"].value == pytest.approx(shift, abs=0.05)
    assert np.isfinite(m["fall-off R20-R80 at 70.7 MeV"].value)


def test_a_simulated_curve_that_ends_before_its_falloff_fails_with_a_note(monkeypatch):
    def cut(z, d):                   # the curve stops 0.5 mm beyond its maximum: no distal fall-off to measure
        keep = z <= z[int(np.argmax(d))] + 0.5
        return z[keep], d[keep]
    cr, m = _run(monkeypatch, cut)
    assert cr.status == FAILED
    r80 = m["R80 at 70.7 MeV"]
    assert not np.isfinite(r80.value) and r80.passed is False
    assert "does not fall off" in r80.note
    assert any("does not fall off" in n for n in cr.notes)

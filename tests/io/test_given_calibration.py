"""The ``--calibration`` of ``mcproton check`` and ``mcproton phantom`` is read by one function,
:func:`mcproton._io.hu_calibration.given_calibration` (before, the check had its own in _check/compute.py and the
phantom command wrote the same ``HUCalibration.load_given`` call again: the re-read of 2026-12-07, b 1)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcproton._io import hu_calibration
from mcproton._io.errors import CalibrationError


def _spy(monkeypatch) -> list:
    asked: list = []

    def given(calibration, physics=None):
        asked.append((calibration, physics))
        raise CalibrationError(f"--calibration {calibration}: asked")

    monkeypatch.setattr(hu_calibration, "given_calibration", given)
    return asked


def test_a_loaded_calibration_is_returned_as_it_is_and_a_name_is_read():
    cal = hu_calibration.HUCalibration.load("schneider2000")
    assert hu_calibration.given_calibration(cal) is cal
    assert hu_calibration.given_calibration("schneider2000").data_sha256() == cal.data_sha256()


def test_its_refusal_names_the_option_and_the_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CalibrationError, match=r"^--calibration nosuchcal: unknown calibration 'nosuchcal'.*"
                                               r"looked for the folder "):
        hu_calibration.given_calibration("nosuchcal")


def test_mcproton_phantom_reads_it_with_the_one_function(tmp_path, monkeypatch, capsys):
    from mcproton.cli import main

    asked = _spy(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["phantom", "--age", "5", "--out", "out", "--calibration", "schneider2000"]) == 2
    assert "--calibration schneider2000: asked" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert asked == [("schneider2000", None)]


def test_the_check_reads_it_with_the_one_function(monkeypatch):
    from mcproton._check import api

    asked = _spy(monkeypatch)
    with pytest.raises(CalibrationError, match="asked"):
        api._check_reused_mc_models(SimpleNamespace(provenance={}), "schneider2000", None)
    assert asked == [("schneider2000", None)]

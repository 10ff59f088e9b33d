"""The Settings table's "prescription ... used:" row gives the prescription in the doses' unit as the rest of the
report does (:func:`mcproton._check.report._dose`, compute.describe_dose: Gy(RBE) for an EFFECTIVE TPS dose, Gy for
a PHYSICAL one): one rule, taken from write_report's unit (before, _with_unit worked it out again from the
settings' dose_type: the re-read of 2026-12-07, c 2)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcproton._check import report


def _res(dose_type: str, used) -> SimpleNamespace:
    return SimpleNamespace(settings={"invocation": "mcproton check --folder p", "dose_type": dose_type},
                           provenance={"prescription_gy": used, "prescription_source": "the plan"},
                           inputs=SimpleNamespace(dose_type=dose_type, fractions=1, all_fractions=None),
                           mc=SimpleNamespace(provenance={"dose_to": "water", "rbe": None}))


@pytest.mark.parametrize("dose_type, used, said", [
    ("EFFECTIVE", 2.0, "used: 2 Gy(RBE) (the plan)"),
    ("PHYSICAL", 2.0, "used: 2 Gy (the plan)"),
    ("EFFECTIVE", {"CTV": 2.0, "PTV": 1.8}, "used: CTV 2 Gy(RBE); PTV 1.8 Gy(RBE) (the plan)"),
    ("PHYSICAL", None, "used: none (the plan)"),
])
def test_the_prescription_used_is_in_the_doses_unit(dose_type, used, said):
    res = _res(dose_type, used)
    unit = report._dose(res)["unit"]
    assert said in report._settings_table(res)
    assert said in report._settings_table(res, unit)


def test_the_row_takes_the_unit_the_report_worked_out():
    assert "used: 2 Gy(RBE) (the plan)" in report._settings_table(_res("PHYSICAL", 2.0), "Gy(RBE)")

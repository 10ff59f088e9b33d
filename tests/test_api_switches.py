"""A true/false argument of the Python API takes True or False only (the Python-API audit of 2026-12-06, F6).

Text such as "false" or "no" is truthy, so before each of these read it as True and turned the option on:
``load_rtplan(ignore_beam_limiting_devices="false")`` computed an MLC-shaped beam as open (with a warning that it
was asked to), ``plan_to_beams(all_fractions="false")`` gave every fraction's protons (5 x on a 5-fraction plan),
``check(machine_check="no")`` checked the machine.  The same was fixed for PhysicsSettings before
(``settings._switch``, "nuclear physics on for 'false'"); ``mcproton run``'s TOML keys are type-checked, so only
Python got here.  Each switch is refused before anything is read; the scan below keeps the list complete: a new
true/false argument of the documented API (``mcproton.__all__``, ``mcproton.dicom.__all__``) must be added here."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import mcproton
from mcproton import dicom
from mcproton.dicom import StudyReference

DATA = Path(__file__).resolve().parent / "data" / "dicom"
PLAN02 = DATA / "RN_plan02_mono.dcm"          # Eclipse, one 160 MeV layer
PLAN5FX = DATA / "RN_headphantom_rs.dcm"      # Eclipse, 3 beams, 5 fractions


def _mlc_plan(tmp_path: Path) -> Path:
    """RN_plan02_mono with an MLC closing its field to a 1 cm slit in control point 0 (as
    tests/io/test_rtplan_real_variants.py): refused unless ignore_beam_limiting_devices."""
    ds = pydicom.dcmread(PLAN02)
    b = ds.IonBeamSequence[0]
    d = Dataset()
    d.RTBeamLimitingDeviceType, d.NumberOfLeafJawPairs, d.LeafPositionBoundaries = "MLCX", 2, [-20, 0, 20]
    b.IonBeamLimitingDeviceSequence = Sequence([d])
    p = Dataset()
    p.RTBeamLimitingDeviceType, p.LeafJawPositions = "MLCX", [-5, -5, 5, 5]
    b.IonControlPointSequence[0].BeamLimitingDevicePositionSequence = Sequence([p])
    out = tmp_path / "RP_MLC.dcm"
    ds.save_as(out)
    return out


def _check(tmp_path: Path, **kw):
    """check() of a folder that does not exist: an argument refused is refused before the folder is looked at."""
    return mcproton.check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v5", log=lambda line: None, **kw)


#: (function, argument) -> a call of it with the argument set to ``v``, everything else as valid as needed
CALLS = {
    ("load_rtplan", "ignore_beam_limiting_devices"):
        lambda tmp, v: dicom.load_rtplan(_mlc_plan(tmp), ignore_beam_limiting_devices=v),
    ("plan_to_beams", "all_fractions"):
        lambda tmp, v: dicom.plan_to_beams(dicom.load_rtplan(PLAN5FX), "dcpt_v5", all_fractions=v),
    ("plan_to_beams", "machine_check"):
        lambda tmp, v: dicom.plan_to_beams(dicom.load_rtplan(PLAN5FX), "dcpt_v5", machine_check=v),
    ("HUCalibration.to_geometry", "compact"):
        lambda tmp, v: dicom.HUCalibration.load("schneider2000").to_geometry(None, compact=v),
    ("HUCalibration.to_geometry", "check_coverage"):
        lambda tmp, v: dicom.HUCalibration.load("schneider2000").to_geometry(None, check_coverage=v),
    ("HUCalibration.to_geometry", "check_ct"):
        lambda tmp, v: dicom.HUCalibration.load("schneider2000").to_geometry(None, check_ct=v),
    ("write_rtdose", "plan_note_in_comment"):
        lambda tmp, v: dicom.write_rtdose(np.zeros((1, 1, 1)), (1, 1, 1), (0, 0, 0), tmp / "out" / "RD.dcm",
                                          study=StudyReference(), plan_note_in_comment=v),
    ("HUCalibration.hu_from_density", "integer"):
        lambda tmp, v: dicom.HUCalibration.load("schneider2000").hu_from_density([1.0], integer=v),
    **{("check", name): (lambda name: lambda tmp, v: _check(tmp, **{name: v}))(name)
       for name in ("phantom_from_struct", "report", "machine_check", "ignore_beam_limiting_devices", "progress",
                    "prescription_anyway", "allow_no_struct")},
    **{("PhysicsSettings", name): (lambda name: lambda tmp, v: mcproton.PhysicsSettings(**{name: v}))(name)
       for name in ("nuclear", "nuclear_elastic", "straggling", "msc")},
}
#: true/false arguments of the documented API that are not switches: a record the reader fills in, and simulate's
#: ``progress`` / ``log``, which take a callable too (``log`` refuses anything else; mcproton/run.py)
NOT_SWITCHES = {("RTIonPlan", "sop_instance_uid_valid"), ("simulate", "progress"), ("simulate", "log"),
                # a record the slab-CT writer fills in; a private keyword of mcproton's own callers
                ("StudyReference", "written_for_plan"), ("simulate", "_shoots_through")}
#: the same, for functions outside the two __all__ lists that the docs name (docs/check.md, README.md)
MORE_CALLS = {
    ("check_batch", "skip_checked"):
        lambda tmp, v: __import__("mcproton._check.api", fromlist=["x"]).check_batch(tmp / "none", tmp / "out",
                                                                                   skip_checked=v),
    ("check_batch", "keep_arrays"):
        lambda tmp, v: __import__("mcproton._check.api", fromlist=["x"]).check_batch(tmp / "none", tmp / "out",
                                                                                   keep_arrays=v),
    ("verify_plan", "normalise"):
        lambda tmp, v: mcproton.planning.verify_plan(None, None, normalise=v),
    ("choose_body_roi", "say"):
        lambda tmp, v: mcproton.body.choose_body_roi(["BODY"], {"BODY": "EXTERNAL"}, say=v),
    ("choose_body_roi", "strict"):
        lambda tmp, v: mcproton.body.choose_body_roi(["BODY"], {"BODY": "EXTERNAL"}, strict=v),
    ("run_demo", "quiet"):
        lambda tmp, v: mcproton.demo.run_demo(tmp / "demo", quiet=v),
}


def _documented_bool_arguments() -> set[tuple[str, str]]:
    """(function, argument) of every argument of the documented API whose default is a bool or whose annotation
    names bool: the functions and classes of ``mcproton.__all__`` and ``mcproton.dicom.__all__`` and their public
    methods."""
    found = set()

    def scan(qual, obj):
        try:
            params = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            return
        for p in params:
            if isinstance(p.default, bool) or "bool" in str(p.annotation):
                found.add((qual, p.name))

    objs = {n: getattr(mcproton, n) for n in mcproton.__all__ if n != "__version__"}
    objs.update({n: getattr(dicom, n) for n in dicom.__all__})
    for name, obj in objs.items():
        if inspect.isclass(obj):
            if issubclass(obj, BaseException):
                continue
            scan(name, obj)
            for an, a in vars(obj).items():
                f = a.__func__ if isinstance(a, (classmethod, staticmethod)) else a
                if not an.startswith("_") and callable(f):
                    scan(f"{name}.{an}", f)
        elif callable(obj):
            scan(name, obj)
    return found


def test_every_true_false_argument_of_the_documented_api_is_tested_here():
    found = _documented_bool_arguments()
    assert ("load_rtplan", "ignore_beam_limiting_devices") in found   # the scan can find them
    assert found == set(CALLS) | NOT_SWITCHES, (
        f"not tested here: {sorted(found - set(CALLS) - NOT_SWITCHES)}; gone: {sorted(set(CALLS) - found)}")


@pytest.mark.parametrize("value", ["false", "no", "False", 0, 1, None])
@pytest.mark.parametrize("call", sorted({**CALLS, **MORE_CALLS}), ids="-".join)
def test_a_switch_refuses_anything_but_a_bool(call, value, tmp_path):
    fn, arg = call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=rf"{arg} = {value!r} has the wrong type \(\w+\): give True or False"):
            {**CALLS, **MORE_CALLS}[call](tmp_path, value)
    assert not (tmp_path / "demo").exists() and not (tmp_path / "out").exists()   # refused before any work


def test_the_switches_that_change_the_dose_still_take_bools(tmp_path):
    """What the audit reproduced, with the bools: an MLC plan is refused (False) or computed open with a warning
    (True); a 5-fraction plan gives one fraction's protons (False) or five's (True)."""
    with pytest.raises(dicom.DicomInputError, match="beam-limiting device"):
        dicom.load_rtplan(_mlc_plan(tmp_path), ignore_beam_limiting_devices=False)
    with pytest.warns(mcproton.McprotonWarning, match="is ignored"):
        dicom.load_rtplan(_mlc_plan(tmp_path), ignore_beam_limiting_devices=True)
    plan = dicom.load_rtplan(PLAN5FX)
    one, = dicom.plan_to_beams(plan, "dcpt_v5", beam_numbers=[1], all_fractions=False)
    five, = dicom.plan_to_beams(plan, "dcpt_v5", beam_numbers=[1], all_fractions=True)
    assert plan.number_of_fractions == 5 and one.meta["fractions"] == 1 and five.meta["fractions"] == 5
    assert five.total_protons == pytest.approx(5 * one.total_protons, rel=1e-12)

"""Refusals that said too little, or something false (the error-message audit 27): each names the key or option,
what is wrong and what to do.

* F4: an HU calibration given as its CSV file was told "call HUCalibration.from_files(...)" (Python, in a run), and a
  folder lacking one table "must hold A and B, or C (or D) and E" under "[phantom]", naming neither the key nor the
  file that is missing.
* F5: a slab layer's misspelt key: "must be a table with material and thickness_mm" (it was one), "unknown keys
  ['density']" without the keys of a layer.
* F6: a misspelt beam model, "'dcpt_v6' is neither a built-in model (...) nor a file", named neither the key nor
  where it looked; ``check --phantom-from-struct`` refused it only after it had written the phantom's CT.
* F11a: a folder given as the config was "not found"; F11b: ``check --dose`` given the plan, "not an RT Dose (...,
  Modality RTPLAN: RTPLAN)"; F11c: "[plan] needs rtplan ... and beam_model" did not say which was missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from make_bad_input_table import CT, PLAN, SLABS, case_argv

from fakes import log_lines  # tests/fakes.py
from mcproton.cli import main


def _refusal(argv, capsys) -> str:
    rc = main(argv)
    err = [ln for ln in log_lines(capsys.readouterr().err) if ln.startswith("mcproton:") and "warning" not in ln]
    assert rc == 2 and len(err) == 1, (rc, err)
    return err[0]


def _run(text: str, tmp_path: Path, capsys) -> str:
    return _refusal([*case_argv([], text, tmp_path, 0), "--check-config"], capsys)


@pytest.mark.parametrize("calibration, said", [
    ("cal_nomat/hu_density.csv", "phantom.calibration = 'cal_nomat/hu_density.csv': {tmp}/cal_nomat/hu_density.csv "
                                 "is a file, not a calibration folder; give the folder that holds it "
                                 "({tmp}/cal_nomat)"),
    ("cal_nomat", "phantom.calibration = 'cal_nomat': {tmp}/cal_nomat: the folder holds hu_density.csv but no "
                  "hu_materials.csv (the elemental composition by HU range, columns hu_lo,name,w_H,w_C,...); add it "
                  "(files there: hu_density.csv)"),
])
def test_a_calibration_file_or_a_folder_lacking_a_table(calibration, said, tmp_path, capsys):
    msg = _run(CT.replace("@EXTRA", f'calibration = "{calibration}"'), tmp_path, capsys)
    assert said.format(tmp=tmp_path) in msg, msg
    assert "HUCalibration.from_files" not in msg and "[phantom]" not in msg, msg


def test_a_calibration_folder_lacking_the_density_table(tmp_path):
    from mcproton._io.errors import CalibrationError
    from mcproton.dicom import HUCalibration

    (tmp_path / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111894,0.888106\n")
    with pytest.raises(CalibrationError, match=r"the folder holds hu_materials.csv but no hu_density.csv \(the HU -> "
                                               r"mass density table"):
        HUCalibration.load(tmp_path)


@pytest.mark.parametrize("layer, said", [
    ('{material = "water", thickness = 100.0}', "phantom.layers[0] has unknown key 'thickness' (did you mean "
                                                "'thickness_mm'?); the keys of a layer: material, thickness_mm, "
                                                "density_g_cm3"),
    ('{material = "water", thickness_mm = 100.0, density = 1.05}', "phantom.layers[0] has unknown key 'density' (did "
                                                                   "you mean 'density_g_cm3'?)"),
    ('{material = "water"}', "phantom.layers[0] lacks thickness_mm; a layer is {material = \"water\", thickness_mm = "
                             "20, density_g_cm3 = 1.0 (optional)}"),
    ("5", "phantom.layers[0] = 5 is not a table"),
])
def test_a_slab_layer_s_keys(layer, said, tmp_path, capsys):
    msg = _run(SLABS.replace('{material = "water", thickness_mm = 100.0}', layer), tmp_path, capsys)
    assert said in msg, msg
    assert "must be a table with" not in msg, msg


def test_a_misspelt_beam_model_in_a_run(tmp_path, capsys):
    msg = _run(PLAN.replace('"dcpt_v5"', '"dcpt_v6"'), tmp_path, capsys)
    assert msg.startswith("mcproton: config error: plan.beam_model = 'dcpt_v6': no built-in model of that name (did "
                          f"you mean 'dcpt_v5'?), and no such file: looked for the file {tmp_path / 'dcpt_v6'}"), msg
    assert "dcpt_v2, mcsquare_upenn_iba_dn" in msg, msg


def test_a_misspelt_beam_model_is_refused_before_the_check_reads_or_writes_anything(tmp_path):
    from mcproton._check.api import check
    from mcproton._io.errors import BeamModelError

    with pytest.raises(BeamModelError, match="beam model 'dcpt_v6': no built-in model of that name"):
        check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v6", phantom_from_struct=True,
              out=tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_a_folder_given_as_the_config(tmp_path, capsys):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.toml").write_text("")
    msg = _refusal(["run", str(tmp_path / "cfg"), "--out", str(tmp_path / "o.h5")], capsys)
    assert msg == (f"mcproton: config error: '{tmp_path / 'cfg'}' is a folder; give the TOML file (e.g. "
                   f"{tmp_path / 'cfg' / 'run.toml'})"), msg


def test_plan_without_its_beam_model(tmp_path, capsys):
    msg = _run(PLAN.replace('beam_model = "dcpt_v5"\n', ""), tmp_path, capsys)
    assert msg == ("mcproton: config error: [plan] has no beam_model: give plan.beam_model, a built-in model (dcpt_v5, "
                   "dcpt_v2, mcsquare_upenn_iba_dn) or a .toml or MCsquare BDL file (e.g. plan.beam_model = "
                   '"dcpt_v5")'), msg


def test_the_plan_given_as_the_check_s_dose(tmp_path, capsys):
    from make_bad_input_table import ROOT

    plan = ROOT / "tests" / "data" / "dicom" / "RP_plan05.dcm"
    msg = _refusal(["check", "--plan", str(plan), "--dose", str(plan), "--beam-model", "dcpt_v5", "--out",
                    str(tmp_path / "c"), "--ct", str(tmp_path)], capsys)
    assert msg == (f"mcproton: error: --dose {plan} is an RT Ion Plan (SOP class 1.2.840.10008.5.1.4.1.1.481.8, "
                   "Modality RTPLAN), not an RT Dose: give the RT Dose file (Modality RTDOSE); this one is a plan, "
                   "whose dose is a file of its own; give the plan with --plan"), msg

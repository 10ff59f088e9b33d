"""A paediatric phantom's --age and --voxel-mm out of range are refused by the option's parser, in the option's words,
before anything is announced or made (the error-message audit 27, F9): "age_years must be within 0.5..18.0 y" and
"voxel_mm must be in (0, 10] mm", the Python arguments' names, came after "[demo] phantom: 0.1-year-old head"."""
from __future__ import annotations

import pytest

from mcproton.cli import main


@pytest.mark.parametrize("command, option, value, said", [
    ("demo", "--age", "0.1", "give an age of 0.5 to 18 years"),
    ("demo", "--voxel-mm", "0", "give a voxel size above 0 and at most 10 mm"),
    ("phantom", "--age", "30", "give an age of 0.5 to 18 years"),
    ("phantom", "--age", "five", "'five' is not a number: give the age in years"),
    ("phantom", "--voxel-mm", "nan", "'nan' is not a number: give the voxel size in mm"),
])
def test_the_option_is_refused_in_its_words_before_anything(command, option, value, said, tmp_path, capsys):
    argv = [command, "--out", str(tmp_path / "out"), option, value, *(["--age", "5"] if option != "--age" else [])]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert f"mcproton {command}: error: argument {option}: {value}: {said}" in err or \
        f"mcproton {command}: error: argument {option}: {said}" in err, err
    assert "age_years" not in err and "voxel_mm" not in err and "-year-old head" not in err, err
    assert not (tmp_path / "out").exists()


def test_run_demo_refuses_them_before_it_announces_the_phantom(tmp_path, capsys):
    from mcproton.demo import run_demo

    with pytest.raises(ValueError, match=r"^--age 0.1: give an age of 0.5 to 18 years"):
        run_demo(tmp_path / "out", age=0.1, backend="cpu")
    assert "-year-old head" not in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given, said", [
    ("cal_nomat", "cal_nomat: the folder holds hu_density.csv but no hu_materials.csv"),
    ("cal_nomat/hu_density.csv", "cal_nomat/hu_density.csv is a file, not a calibration folder; give the folder"),
    ("nosuchcal", "unknown calibration 'nosuchcal': not a built-in name"),
])
def test_a_calibration_refused_names_the_option_before_the_phantom_is_made(given, said, tmp_path, capsys,
                                                                          monkeypatch):
    """`mcproton phantom --calibration X`: a calibration that cannot be read is refused naming --calibration and the
    value (as mcproton run names phantom.calibration), with where an unknown name was looked for, before the phantom
    is made (the error-message audit 27, F4: the message named only the path, after the phantom was built)."""
    import mcproton.phantoms.coverage as coverage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal_nomat").mkdir()
    (tmp_path / "cal_nomat" / "hu_density.csv").write_text("HU,density_g_cm3\n-1000,0.001\n3000,2.8\n")

    def never(*a, **k):
        raise AssertionError("the phantom was made")

    monkeypatch.setattr(coverage, "make_head_phantom", never)
    assert main(["phantom", "--age", "5", "--out", "out", "--calibration", given]) == 2
    err = capsys.readouterr().err
    assert f"mcproton: error: --calibration {given}: {said}" in err, err
    assert ("looked for the folder " + str(tmp_path / "nosuchcal") in err) == (given == "nosuchcal"), err
    assert not (tmp_path / "out").exists()

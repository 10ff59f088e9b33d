"""A label that the voxel size loses is named in a warning (phantom audit F3): at 5 mm the 5-year-old's lenses
have no voxel centre inside them, and `mcproton phantom --voxel-mm 5` wrote an RT Struct without lens_left and
lens_right, without a word."""
from __future__ import annotations

import json
import warnings

import pytest

from mcproton._io.errors import McprotonWarning
from mcproton.cli import main as cli_main
from mcproton.phantoms import make_head_phantom, missing_labels
from mcproton.phantoms.coverage import REFERENCE_VOXEL_MM
from mcproton.phantoms.generator import make_head_phantom as generate


def test_lenses_lost_at_5_mm_are_named():
    with pytest.warns(McprotonWarning, match=r"5 mm voxels the 5 y male head phantom has no lens_left, lens_right"):
        g = make_head_phantom(5, 5.0, region="head")
    assert "lens_left" not in g.label_names.values()
    assert missing_labels(g) == ["lens_left", "lens_right"]


def test_nothing_said_at_2_mm():
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)
        g = make_head_phantom(5, 2.0, region="head")
    assert missing_labels(g) == []


def test_the_command_line_says_it(tmp_path, capsys, warnings_to_stderr):
    assert cli_main(["phantom", "--age", "5", "--region", "head", "--voxel-mm", "5", "--no-rtstruct", "--out",
                     str(tmp_path / "p")]) == 0
    out, err = capsys.readouterr()
    assert "mcproton: warning: at 5 mm voxels" in err and "lens_left, lens_right" in err, err
    assert '"labels_lost_to_voxel_size": [\n    "lens_left",\n    "lens_right"\n  ]' in out


@pytest.mark.parametrize("sex", ["male", "female"])
@pytest.mark.parametrize("age", [0.5, 3, 10, 18])
def test_the_reference_size_draws_every_label(age, sex):
    """At REFERENCE_VOXEL_MM the phantom has every label it has at 1 mm: a label missing there is one of the
    anatomy (the frontal sinus of a young child), not of the voxel size."""
    fine = set(generate(age, 1.0, sex=sex, region="head").label_names.values())
    assert set(generate(age, REFERENCE_VOXEL_MM, sex=sex, region="head").label_names.values()) == fine


def test_labels_whose_volume_the_voxel_size_changes_are_named(tmp_path, capsys, warnings_to_stderr):
    """Infant audit 2026-12-06, F4: a 1-year-old's optic nerves are 2.2 x their 1 mm volume at 3 mm (a 26-connected
    line of whole voxels), without a word, while lost labels were warned of.  Now a warning and the summary's
    labels_volume_off_by_voxel_size name the labels more than 25 % off the 1 mm phantom's volume; the voxels are
    unchanged (the 2 mm phantom, the default, is not checked)."""
    from mcproton.phantoms.coverage import labels_off_volume

    assert cli_main(["phantom", "--age", "1", "--region", "head", "--voxel-mm", "3", "--no-rtstruct", "--out",
                     str(tmp_path / "p")]) == 0
    out, err = capsys.readouterr()
    off = json.loads(out)["labels_volume_off_by_voxel_size"]
    assert off["optic_nerve_left"] == off["optic_nerve_right"] == pytest.approx(2.31, abs=0.02), off
    assert off["optic_chiasm"] == pytest.approx(1.3, abs=0.02) and "brain" not in off and "lens_left" not in off
    assert "mcproton: warning: at 3 mm voxels the 1 y male head phantom's " in err and \
        "labels differ from their volume at 1 mm (the design volume) by more than 25 %: " in err and \
        "optic_nerve_left 2.31 x" in err, err
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)
        assert labels_off_volume(make_head_phantom(1, 2.0, region="head")) == {}

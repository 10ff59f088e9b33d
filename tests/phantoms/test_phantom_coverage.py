"""A label that the voxel size loses is named in a warning (phantom audit F3): at 5 mm the 5-year-old's lenses
have no voxel centre inside them, and `mcproton phantom --voxel-mm 5` wrote an RT Struct without lens_left and
lens_right, without a word."""
from __future__ import annotations

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

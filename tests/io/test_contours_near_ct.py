"""A contour point far outside the CT is refused (audit 17 hostile F1: one vertex at x = 5000 mm or 1e300 mm gave the
brainstem a spike to the grid's edge, 17 voxels more and a mean dose 4 % lower, without a word)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcproton._io.errors import DicomInputError
from mcproton._io.rtstruct import check_contours_near_ct, read_rtstruct

from dicom_factories import circle_contour, make_rtstruct, save

#: a head CT: 100 x 120 x 50 voxels of 2 x 2 x 3 mm, x -100..100, y -120..120, z -75..75 mm (box edges)
CT = SimpleNamespace(origin_mm=(-99.0, -119.0, -73.5), voxel_size_mm=(2.0, 2.0, 3.0), shape_zyx=(50, 120, 100))


def _struct(tmp_path, far_x=None):
    c = circle_contour(0.0, 0.0, 20.0, 0.0, n=24)
    if far_x is not None:
        c[5, 0] = far_x
    ext = circle_contour(0.0, 0.0, 150.0, 0.0, n=24)   # an External beyond the field of view: 50 mm out
    return save(make_rtstruct({"Body": [ext], "brainstem": [circle_contour(0, 0, 10, -3.0), c]}), tmp_path / "rs.dcm")


def test_contours_on_or_near_the_ct_pass(tmp_path):
    check_contours_near_ct(_struct(tmp_path), CT, "ct/")
    check_contours_near_ct(read_rtstruct(_struct(tmp_path, far_x=550.0)), CT, "ct/")   # 450 mm beyond: tolerated


@pytest.mark.parametrize("x", [5000.0, 1e300, -650.0])
def test_a_point_far_outside_the_ct_is_refused_naming_roi_contour_and_point(tmp_path, x):
    with pytest.raises(DicomInputError) as e:
        check_contours_near_ct(_struct(tmp_path, far_x=x), CT, "ct/")
    msg = str(e.value)
    assert "ROI 'brainstem' contour 1: point 5 of 24 at (" in msg and f"{x:.6g}" in msg
    assert "more than 500 mm outside the CT (ct/: x -100.0 to 100.0, y -120.0 to 120.0, z -75.0 to 75.0 mm)" in msg


def test_the_run_refuses_it_when_the_ct_is_read(tmp_path):
    """mcproton run: the check runs where the config reads the CT (also for --check-config)."""
    from mcproton.config import _note_struct_drawn_on_another_series

    rs = _struct(tmp_path, far_x=5000.0)
    ct = SimpleNamespace(series_instance_uid="1.2.3", series_description="CT", slice_sop_instance_uids=[], **vars(CT))
    with pytest.raises(DicomInputError, match="ROI 'brainstem' contour 1: point 5"):
        _note_struct_drawn_on_another_series({"plan": {"rtstruct": str(rs)}}, ct)
    _note_struct_drawn_on_another_series({"plan": {"rtstruct": str(_struct(tmp_path))}}, ct)


def test_real_structure_set_on_its_ct_passes(tmp_path):
    import tarfile
    from pathlib import Path

    from mcproton._io.ct import load_ct_series

    tar = Path(__file__).resolve().parents[1] / "data" / "dicom" / "opentps_head" / "opentps_head.tar.gz"
    with tarfile.open(tar) as t:
        t.extractall(tmp_path, filter="data")
    check_contours_near_ct(tmp_path / "RS.dcm", load_ct_series(tmp_path / "ct"), "ct")


def test_the_slab_ct_run_refuses_it_too(tmp_path):
    """phantom.type = "slab_ct" with plan.rtstruct: the same refusal (config._refuse_contours_far_outside, the one
    path of both phantom types), on the slab phantom's CT box, before its overrides are put in.  Before 2026-12-07
    (audit 28) only the "ct" path refused it; the slab CT ran with the spiked ROI."""
    from mcproton.config import ConfigError, build_geometry, load_config

    slab = ['phantom.type = "slab_ct"', "phantom.lateral_size_mm = [40, 40]", "phantom.voxel_mm = [4, 4, 4]",
            'phantom.layers = [{material = "water", thickness_mm = 40}]']
    far = load_config(None, [*slab, f'plan.rtstruct = "{_struct(tmp_path, far_x=5000.0)}"'])
    with pytest.raises(ConfigError) as e:   # as on the ct path: "[phantom]: RS.dcm: ROI ..."
        build_geometry(far)
    msg = str(e.value)
    assert "ROI 'brainstem' contour 1: point 5 of 24 at (5000," in msg
    assert 'more than 500 mm outside the CT (the slab phantom\'s CT, phantom.type = "slab_ct": x -20.0 to 20.0' in msg
    assert "correct the contour in the planning system" in msg
    build_geometry(load_config(None, [*slab, f'plan.rtstruct = "{_struct(tmp_path)}"']))   # on or near it: runs

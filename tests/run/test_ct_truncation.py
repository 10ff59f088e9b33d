"""A patient cut off by the CT on a beam's path (the paediatric audit, F3): a head cylinder wider than the
reconstruction field of view (outside it the scanner's -3024), or reaching the CT grid's edge, where a lateral beam
enters.  The tissue beyond is missing, so the dose lies too deep by its WET (the audit: 6 mm for 5 mm of tissue
replaced by padding), and no check said so.  Now a warning names the beam and the share of its spot weight; an
intact patient inside padding, a neck cut by the last slices, a couch top cut by the grid are passed."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcproton import McprotonRuntimeWarning
from mcproton._run.inputs import check_ct_truncation
from mcproton.dicom import HUCalibration, load_ct_series, write_ct_series
from mcproton.geometry import resample_blocks
from mcproton.source import Beam, Spot

VOX = (2.0, 2.0, 2.0)
NX, NY, NZ = 101, 101, 11                       # 202 x 202 x 22 mm, centred on 0
XS = (np.arange(NX) - (NX - 1) / 2) * VOX[0]
YS = (np.arange(NY) - (NY - 1) / 2) * VOX[1]
X, Y = np.meshgrid(XS, YS)                      # (ny, nx)


def _ct(tmp_path, name, *, a=70.0, pad=-1000, fov_r=95.0, couch=False):
    """A soft-tissue head cylinder (HU 40, semi-axes a along x, 80 mm along y, every slice: cut by the CT's first
    and last slices), ``pad`` outside a field of view of radius ``fov_r``; ``couch``: a couch top under it (+y, the
    posterior in HFS) of two 2 mm shells (HU 300) around foam (-850 HU), across the whole grid, to the grid's
    bottom edge."""
    hu = np.full((NZ, NY, NX), -1000, np.int32)
    hu[:, (X / a) ** 2 + (Y / 80.0) ** 2 <= 1] = 40
    if couch:
        hu[:, (YS >= 84) & (YS < 98), :] = -850
        hu[:, ((YS >= 84) & (YS < 87)) | (YS >= 97), :] = 300
    hu[:, X ** 2 + Y ** 2 > fov_r ** 2] = pad
    org = (float(XS[0]), float(YS[0]), -(NZ - 1) / 2 * VOX[2])
    write_ct_series(hu.astype(np.int16), VOX, org, tmp_path / name)
    return load_ct_series(tmp_path / name)


def _geometry(ct, blocks=(1, 1, 1)):
    return HUCalibration.load("schneider2000").to_geometry(ct, blocks=blocks)


def _beam(direction, start, offsets, name="1:F1"):
    """Spots starting at ``start`` + each offset, along ``direction``."""
    return Beam([Spot(energy_mev=120.0, position_mm=tuple(np.add(start, o)), direction=direction) for o in offsets],
                name=name)


LATERAL = _beam((-1.0, 0.0, 0.0), (400.0, 0.0, 0.0), [(0.0, y, z) for y in (-8, 0, 8) for z in (-4, 0, 4)])


def _silent(geometry, beams):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_ct_truncation(geometry, beams, "plan")


def test_a_patient_cut_by_the_field_of_view_or_the_grid_edge_is_warned_about(tmp_path):
    trunc = _ct(tmp_path, "trunc", a=110.0, pad=-3024)    # tissue to x = 95 mm, padding beyond (the audit's trunc)
    assert trunc.hu_zyx.min() == -3024
    with pytest.warns(McprotonRuntimeWarning, match=r"plan '1:F1': 100 % of its spot weight enters the patient next "
                                                    r"to the scanner's padding outside its reconstruction field of "
                                                    r"view \(CT values below -1500 HU.*too deep"):
        check_ct_truncation(_geometry(trunc), [LATERAL], "plan")
    full = _ct(tmp_path, "full", a=110.0, fov_r=500.0)     # tissue to the grid's edge at x = 101 mm
    with pytest.warns(McprotonRuntimeWarning, match=r"100 % of its spot weight enters the patient at the edge of "
                                                    r"the CT grid"):
        check_ct_truncation(_geometry(full), [LATERAL], "plan")
    # the share of the weight: one spot of four enters the +x side, cut by the grid's edge; three enter the -x side,
    # intact (31 mm inside the edge)
    half = Beam(LATERAL.spots[:1] + [Spot(energy_mev=120.0, position_mm=(-400.0, y, 0.0), direction=(1.0, 0, 0))
                                     for y in (-8.0, 0.0, 8.0)], name="2:F2")
    cut = np.array(full.hu_zyx)
    cut[:, :, : NX // 2] = np.where(cut[:, :, : NX // 2] > -500, -1000, cut[:, :, : NX // 2])
    cut[:, (X / 70.0) ** 2 + (Y / 80.0) ** 2 <= 1] = 40
    write_ct_series(cut.astype(np.int16), VOX, full.origin_mm, tmp_path / "half")
    with pytest.warns(McprotonRuntimeWarning, match=r"plan '2:F2': 25 % of its spot weight enters the patient at "
                                                    r"the edge"):
        check_ct_truncation(_geometry(load_ct_series(tmp_path / "half")), [half], "plan")


def test_an_intact_patient_a_cut_neck_and_a_cut_couch_are_passed(tmp_path):
    for pad in (-1000, -1024, -2000, -3024):               # padding around an intact patient (the audit's pad*)
        _silent(_geometry(_ct(tmp_path, f"pad{-pad}", pad=pad)), [LATERAL])
    g = _geometry(_ct(tmp_path, "couch", couch=True, pad=-3024, fov_r=500.0))
    # the cylinder fills every slice (a neck cut by the CT's first and last slices): a lateral beam passes, one
    # entering through the last slice (a couch-kicked beam along the patient's axis) is warned about
    _silent(g, [LATERAL])
    with pytest.warns(McprotonRuntimeWarning, match="at the edge of the CT grid"):
        check_ct_truncation(g, [_beam((0.0, 0.0, 1.0), (0.0, 0.0, -300.0), [(0.0, 0.0, 0.0)])], "plan")
    # a PA beam (from +y) through the couch top that reaches the grid's bottom edge: the shells are not the patient
    pa = _beam((0.0, -1.0, 0.0), (0.0, 400.0, 0.0), [(x, 0.0, z) for x in (-20, 0, 20) for z in (-4, 0, 4)])
    _silent(g, [pa])


def test_air_at_a_12_bit_scanners_floor_is_not_padding(tmp_path):
    """Air reads about -1000 HU, and a 12-bit scanner's floor is -1024 HU: such air, here right up to the skin of the
    intact head cylinder, is air inside the field of view, not the padding outside it (hu_calibration.FOV_PADDING_HU,
    -1500 HU); taken for padding, every beam would be warned about as entering a cut-off patient, a warning that
    hides a real truncation.  The intact-patient test above has -1000 HU air next to the skin, so a threshold of
    -1000 HU passed (mutation audit 2026-12-05, 074).  One row of -2000 HU in the corner of each slice is padding:
    exactly its voxels are marked."""
    hu = np.full((NZ, NY, NX), -1024, np.int16)
    hu[:, (X / 70.0) ** 2 + (Y / 80.0) ** 2 <= 1] = 40
    write_ct_series(hu, VOX, (float(XS[0]), float(YS[0]), -10.0), tmp_path / "floor")
    g = _geometry(load_ct_series(tmp_path / "floor"))
    assert g.outside_fov_zyx is None or not g.outside_fov_zyx.any()
    _silent(g, [LATERAL])
    hu[:, 0, :] = -2000
    write_ct_series(hu, VOX, (float(XS[0]), float(YS[0]), -10.0), tmp_path / "row")
    fov = _geometry(load_ct_series(tmp_path / "row")).outside_fov_zyx
    want = np.zeros((NZ, NY, NX), bool)
    want[:, 0, :] = True
    assert fov is not None and np.array_equal(fov, want)


def test_the_padding_is_kept_on_block_grids(tmp_path):
    ct = _ct(tmp_path, "trunc", a=110.0, pad=-3024)
    g1 = _geometry(ct)
    assert g1.outside_fov_zyx is not None and g1.outside_fov_zyx.shape == g1.shape_zyx
    assert _geometry(_ct(tmp_path, "plain", pad=-1000)).outside_fov_zyx is None   # no padding: nothing kept
    for g in (_geometry(ct, (2, 2, 1)), resample_blocks(g1, (2, 2, 1))):
        assert g.outside_fov_zyx.shape == g.shape_zyx
        with pytest.warns(McprotonRuntimeWarning, match="field of view"):
            check_ct_truncation(g, [LATERAL], "plan")


def test_mcproton_run_warns_before_the_transport_and_records_it(tmp_path, capsys, monkeypatch):
    """`mcproton run --check-config` on the truncated CT with a gantry-90 plan: the warning, issued through
    mcproton's warn() (what the run's outputs and the check's report keep)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from dicom_factories import make_plan, save, spot_grid

    from mcproton._io.dicom_common import StudyReference
    from mcproton._io.errors import recording_warnings
    from mcproton.cli import main

    for_uid = "1.2.826.0.1.3680043.8.498.77001"
    hu = np.full((NZ, NY, NX), -1000, np.int16)
    hu[:, (X / 110.0) ** 2 + (Y / 80.0) ** 2 <= 1] = 40
    hu[:, X ** 2 + Y ** 2 > 95.0 ** 2] = -3024
    write_ct_series(hu, VOX, (float(XS[0]), float(YS[0]), -10.0), tmp_path / "ct",
                    study=StudyReference(frame_of_reference_uid=for_uid))
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                     "layers": [(120.0, spot_grid(3, 4.0), [1.0] * 9)]}], frame_of_reference_uid=for_uid),
         tmp_path / "RP.dcm")
    cfg = tmp_path / "job.toml"
    cfg.write_text('[run]\nprimaries = 1000\nthreads = 1\n[phantom]\ntype = "ct"\nct_dir = "ct"\n[plan]\n'
                   'rtplan = "RP.dcm"\nbeam_model = "dcpt_v5"\n[output]\nplot = false\n')
    with pytest.warns(McprotonRuntimeWarning, match="field of view"), recording_warnings() as said:
        assert main(["run", str(cfg), "--check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["config_ok"] is True
    assert any("plan '1:F1': 100 % of its spot weight enters the patient next to the scanner's padding" in w
               for w in said), said   # recorded as the run's outputs record their warnings


def test_a_ray_parallel_to_an_axis_outside_the_grid_misses_it():
    """Review 2026-12-05: a ray parallel to an axis and outside the grid on that axis was taken as crossing it (its
    samples clipped onto the edge row): a false 'enters the patient at the edge of the CT grid'."""
    import mcproton as mcp
    from mcproton._run.inputs import _ray_entries

    g = mcp.box_phantom("water", (100, 100, 100), 2.0)
    edge, fov, hit = _ray_entries(g, np.array([[400.0, 200.0, 50.0], [400.0, 0.0, 50.0]]),
                                  np.array([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    assert hit.tolist() == [False, True] and edge.tolist() == [False, True] and not fov.any()


def test_simulate_warns_on_a_ct_and_not_on_a_water_box(tmp_path):
    """The Python API's ``simulate`` warns as ``mcproton run`` does on a grid from a DICOM CT; a water box, meant to
    touch its grid's faces, is passed."""
    import mcproton as mcp

    trunc = _ct(tmp_path, "trunc", a=110.0, pad=-3024)
    one = Beam([LATERAL.spots[0]], name="1:F1")
    settings = mcp.RunSettings(primaries=20, backend="cpu", threads=1)
    with pytest.warns(McprotonRuntimeWarning, match=r"simulate: beam '1:F1': 100 % of its spot weight enters the "
                                                    r"patient next to the scanner's padding"):
        mcp.simulate(_geometry(trunc, blocks=(4, 4, 1)), one, settings)
    box = mcp.box_phantom("water", size_mm=(40, 40, 40), voxel_mm=(4, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        # 60 MeV (range ~31 mm) stops in the 40 mm box: 100 MeV leaves it, which simulate warns of (API audit 22, F4)
        mcp.simulate(box, mcp.Beam.pencil(60.0, position_mm=(0, 0, -30)), settings)


@pytest.mark.parametrize("direction", [(1.0, 0.0, 0.0), (0.8, 0.0, 0.6)], ids=["lateral", "oblique"])
def test_one_voxel_of_the_face_is_measured_along_the_ray(tmp_path, direction):
    """Grids audit 2026-12-06, F1: the patient's surface 2 mm inside the CT's -x face, a beam entering through it.
    "Within one voxel of the face" was the voxel's largest side whatever the beam's direction, so on an ordinary
    1 x 1 x 3 mm CT the lateral beam was warned about as entering a patient cut off by the CT, and not on 1 x 1 x 1 mm.
    Now the voxel layer at the face is measured along the ray (1 mm / |d_x|: 1 mm lateral, 1.25 mm at 37 degrees):
    both CTs pass, and on both the warning still comes for water reaching the face itself."""
    for vs, nz in (((1.0, 1.0, 3.0), 8), ((1.0, 1.0, 1.0), 24)):
        for inside, warned in ((2, False), (0, True)):
            hu = np.full((nz, 20, 40), -1000, np.int16)
            hu[:, 2:18, inside:] = 0                  # water from `inside` voxels inside the -x face to the +x face
            org = (-19.5, -9.5, -(nz - 1) / 2 * vs[2])
            name = f"{vs[2]:g}_{inside}"
            write_ct_series(hu, vs, org, tmp_path / name)
            g = _geometry(load_ct_series(tmp_path / name))
            start = np.array([-20.0, 0.0, 0.0]) - 100 * np.array(direction)
            beam = _beam(direction, tuple(start), [(0.0, 0.0, 0.0)])
            if warned:
                with pytest.warns(McprotonRuntimeWarning, match="at the edge of the CT grid"):
                    check_ct_truncation(g, [beam], "plan")
            else:
                _silent(g, [beam])


def _with_tags(folder: Path, **tags) -> None:
    import pydicom

    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for k, v in tags.items():
            setattr(ds, k, v)
        ds.save_as(f)


@pytest.mark.parametrize("air", [-1000, -1024])
def test_a_patient_cut_by_the_field_of_view_with_air_beyond_is_warned_about(tmp_path, air):
    """The pacs audit (F1): the same cut as the -3024 case above, the outside of the reconstruction circle stored as
    air (a scanner that pads with air; a CT written again by a TPS or an anonymiser): no warning, the dose 6 mm too
    deep.  The circle is ReconstructionDiameter (0018,1100) where the CT gives it (here 190 mm around the image's
    centre, or around ReconstructionTargetCenterPatient), else the circle inscribed in the image."""
    trunc = _ct(tmp_path, "trunc", a=110.0, pad=air)      # tissue to x = 95 mm, air beyond
    assert trunc.hu_zyx.min() == air
    _silent(_geometry(trunc), [LATERAL])                  # no ReconstructionDiameter: the inscribed circle (101 mm)
    _with_tags(tmp_path / "trunc", ReconstructionDiameter="190")
    ct = load_ct_series(tmp_path / "trunc")
    assert ct.fov_circle_mm == (0.0, 0.0, 95.0)
    for g in (_geometry(ct), _geometry(ct, (2, 2, 1))):
        with pytest.warns(McprotonRuntimeWarning, match=r"plan '1:F1': 100 % of its spot weight enters the patient "
                                                        r"next to the scanner's padding outside its reconstruction "
                                                        r"field of view .*cut off at the reconstruction circle"):
            check_ct_truncation(g, [LATERAL], "plan")
    # the circle centred elsewhere (ReconstructionTargetCenterPatient): the body no longer touches it
    _with_tags(tmp_path / "trunc", ReconstructionTargetCenterPatient=[0.0, -40.0, 0.0])
    assert load_ct_series(tmp_path / "trunc").fov_circle_mm == (0.0, -40.0, 95.0)
    # the inscribed circle: the body cut at 101 mm (the image's half width), air in the corners beyond; marked
    # beyond the circle next to the cut only (a lateral beam there enters at the grid's edge: warned as such)
    from mcproton._io.ct import fov_cut_mask

    wide = _ct(tmp_path, "wide", a=130.0, pad=air, fov_r=101.0)
    assert wide.fov_circle_mm is None
    mask = fov_cut_mask(wide)
    assert mask is not None and mask.all(axis=0).any()
    assert not mask[:, X ** 2 + Y ** 2 <= 101.0 ** 2].any() and not mask[:, np.abs(X) < 50].any()


def test_an_intact_patient_and_a_body_reconstructed_beyond_the_circle_are_not_taken_for_cut(tmp_path):
    """No false alarm from the reconstruction circle: an intact head inside air (with and without the diameter), a
    body whose tissue goes on beyond the circle (an extended field of view: the corners hold the patient) and a couch
    crossing the circle.  The demo's head phantom: tests/test_demo.py::test_demo_small; the DCPT head CT: below."""
    intact = _ct(tmp_path, "intact", pad=-1024)
    _with_tags(tmp_path / "intact", ReconstructionDiameter="190")
    from mcproton._io.ct import fov_cut_mask

    assert fov_cut_mask(intact) is None and fov_cut_mask(load_ct_series(tmp_path / "intact")) is None
    hu = np.full((NZ, NY, NX), -1000, np.int16)
    hu[:, X ** 2 + Y ** 2 <= 125.0 ** 2] = 40   # tissue beyond the inscribed circle (101 mm), into the corners
    write_ct_series(hu, VOX, (float(XS[0]), float(YS[0]), -10.0), tmp_path / "beyond")
    assert fov_cut_mask(load_ct_series(tmp_path / "beyond")) is None
    couch = _ct(tmp_path, "couch", couch=True, fov_r=98.0, pad=-1024)
    assert fov_cut_mask(couch) is None


def test_the_dcpt_head_phantom_ct_is_not_taken_for_cut(dcpt_head_ct):
    """The real CT of the DCPT head phantom (an SPR map, 512 x 512, the phantom inside the reconstruction circle):
    no false alarm.  Not in the repository: MCPROTON_TEST_HEADPHANTOM_CT names its folder (tests/conftest.py); before
    (tests audit 21 F5) it was read from a fixed /tmp path where one was left, and passed silently where none was."""
    from mcproton._io.ct import fov_cut_mask

    assert fov_cut_mask(load_ct_series(dcpt_head_ct)) is None

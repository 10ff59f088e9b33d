"""plan.rtstruct on a slab phantom's CT (phantom.type = "slab_ct"): its material overrides (plan.struct_overrides,
default "apply") and plan.outside_external = "air" are put into the geometry as on a patient's CT, by the same code
(config._apply_struct_overrides), and their values are checked on every phantom type.  Before 2026-12-07 (audit 27
"dead options", F1) the slab CT took neither: a 2 g/cm3 bolus of the structure set was left out without a word (the
dose bitwise that of the run without it), "air" outside a narrow External did nothing, and plan.struct_overrides =
"bogus" or plan.outside_external = "air" without a structure set ran; on a water box an override was dropped too."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_factories import PHANTOM_PATIENT, make_plan, make_rtstruct, rect_contour, save

LAYERS = [("solid_water", 20.0, 1.032), ("pmma", 5.0, 1.19), ("solid_water", 40.0, 1.032)]
#: a 40 x 65 x 40 mm slab phantom along +y (surface at y = -30 mm, 10 mm of air in front), 4 x 2.5 x 4 mm voxels,
#: for a plan of one 80 MeV spot along its depth (RP.dcm: gantry 0, HFS)
SLAB = ['phantom.type = "slab_ct"', 'phantom.depth_axis = "+y"', "phantom.surface_mm = [0, -30, 0]",
        "phantom.air_mm = 10", "phantom.lateral_size_mm = [40, 40]", "phantom.voxel_mm = [4, 2.5, 4]",
        "phantom.layers = [" + ", ".join(f'{{material = "{m}", thickness_mm = {t}, density_g_cm3 = {r}}}'
                                         for m, t, r in LAYERS) + "]"]
BOLUS_VOXELS = 6 * 4 * 6   # x, z in [-12, 12] mm: 6 voxels of 4 mm each; y in [-30, -20]: 4 voxels of 2.5 mm


def _config(tmp: Path, *more: str) -> dict:
    from mcproton.config import load_config

    return load_config(None, [*_slab(tmp), *more])


def _slab(tmp: Path) -> list[str]:
    """The slab phantom's keys, its CT kept in tmp/ct, and the plan tmp/RP.dcm."""
    return [*SLAB, f'phantom.ct_dir = "{tmp / "ct"}"', f'plan.rtplan = "{tmp / "RP.dcm"}"',
            'plan.beam_model = "dcpt_v2"']


@pytest.fixture
def slab(tmp_path):
    """The plan RP.dcm, the slab phantom's CT in tmp/ct (in the plan's frame; read back by the runs: the same CT)
    and two RT Structs in its frame:
    RS.dcm, an External over the whole phantom and a 10 mm 'BOLUS' of REL_MASS_DENSITY 2.0 at its front (the
    auditor's case, smaller); RS_narrow.dcm, an External 24 mm wide only."""
    from mcproton.config import build_geometry

    save(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(80.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    g = build_geometry(_config(tmp_path))
    files = sorted((tmp_path / "ct").glob("*.dcm"))
    zs = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files)
    frame = str(pydicom.dcmread(files[0], stop_before_pixels=True).FrameOfReferenceUID)

    def rs(name: str, rois: dict, bolus: bool) -> Path:
        ds = make_rtstruct(rois, for_uid=frame)
        ds.RTROIObservationsSequence[0].RTROIInterpretedType = "EXTERNAL"
        if bolus:
            pp = Dataset()
            pp.ROIPhysicalProperty, pp.ROIPhysicalPropertyValue = "REL_MASS_DENSITY", 2.0
            ds.RTROIObservationsSequence[1].ROIPhysicalPropertiesSequence = Sequence([pp])
        return save(ds, tmp_path / name)

    rs("RS.dcm", {"EXTERNAL": [rect_contour(-25, 25, -30, 35, z) for z in zs],
                  "BOLUS": [rect_contour(-12, 12, -30, -20, z) for z in zs if -12 <= z <= 12]}, True)
    rs("RS_narrow.dcm", {"EXTERNAL": [rect_contour(-12, 12, -30, 35, z) for z in zs]}, False)
    return tmp_path, g


def test_the_structure_sets_bolus_is_in_the_slab_ct_as_on_the_ct_path(slab, monkeypatch, capsys):
    """The 2 g/cm3 bolus of plan.rtstruct is in the slab CT's geometry (its voxels, said on the console and recorded
    as on a CT), and the same CT read as phantom.type = "ct" with the same calibration and the same structure set
    gives the same geometry and, for the same beam and seed, the same dose bitwise; the dose differs from the run
    without the bolus, and with plan.struct_overrides = "ignore" the slab CT is as it was."""
    import mcproton as mcp
    from mcproton._io.hu_calibration import HUCalibration
    from mcproton._io.slab_ct import slab_ct
    from mcproton.config import build_beams, build_geometry

    tmp, g0 = slab
    capsys.readouterr()
    g1 = build_geometry(_config(tmp, f'plan.rtstruct = "{tmp / "RS.dcm"}"'))
    said = capsys.readouterr().err
    changed = g1.density_g_cm3_zyx != g0.density_g_cm3_zyx
    assert int(changed.sum()) == BOLUS_VOXELS and np.all(g1.density_g_cm3_zyx[changed] == np.float32(2.0))
    assert "structure-set override: ROI 'BOLUS' (ORGAN): REL_MASS_DENSITY 2 -> water at 2 g/cm3" in said, said
    (rec,) = g1.struct_overrides
    assert (rec["roi"], rec["material"], rec["density_g_cm3"], rec["voxels"]) == ("BOLUS", "water", 2.0, BOLUS_VOXELS)
    ignored = build_geometry(_config(tmp, f'plan.rtstruct = "{tmp / "RS.dcm"}"', 'plan.struct_overrides = "ignore"'))
    assert np.array_equal(ignored.density_g_cm3_zyx, g0.density_g_cm3_zyx)
    assert "ignored (plan.struct_overrides = 'ignore'): ROI 'BOLUS'" in capsys.readouterr().err

    # the same CT and structure set through phantom.type = "ct", read with the slab phantom's own calibration
    exact = slab_ct(LAYERS, surface_mm=(0, -30, 0), depth_axis="+y", air_mm=10, lateral_size_mm=(40, 40),
                    voxel_mm=(4, 2.5, 4)).calibration
    monkeypatch.setattr(HUCalibration, "load", classmethod(lambda cls, *a, **k: exact))
    g2 = build_geometry(_config(tmp, f'plan.rtstruct = "{tmp / "RS.dcm"}"')
                        | {"phantom": {"type": "ct", "ct_dir": str(tmp / "ct"), "calibration": "slab_ct"}})
    assert np.array_equal(g2.density_g_cm3_zyx, g1.density_g_cm3_zyx)
    assert np.array_equal(*(np.array([m.name for m in g.materials])[g.material_index_zyx] for g in (g1, g2)))
    assert g2.struct_overrides == g1.struct_overrides
    beam = build_beams(_config(tmp))[0]
    settings = mcp.RunSettings(primaries=1000, batches=2, backend="cpu", threads=1, seed=3)
    d1, d2, d0 = (mcp.simulate(g, beam, settings).dose_gy_zyx for g in (g1, g2, g0))
    assert np.array_equal(d1, d2)
    assert not np.array_equal(d1, d0)


def test_run_on_a_slab_ct_records_the_override_and_sets_air_outside_the_external(slab, capsys):
    """`mcproton run` on the slab CT with plan.rtstruct: the override is in the HDF5's density, its summary and its
    provenance (TissueHeterogeneityCorrection ROI_OVERRIDE, as on a CT); plan.outside_external = "air" with a
    24 mm wide External leaves air beside it (said on the console), where before the slabs stayed."""
    import h5py

    from mcproton.cli import main
    from mcproton.config import build_geometry

    tmp, g0 = slab
    cfg = tmp / "run.toml"
    cfg.write_text("[run]\nprimaries = 400\nbatches = 2\nbackend = \"cpu\"\nthreads = 1\n[output]\nplot = false\n")
    sets = [s.replace(" = ", "=") for s in (*_slab(tmp), f'plan.rtstruct = "{tmp / "RS.dcm"}"')]
    args = ["run", str(cfg), "--out", str(tmp / "o.h5"), "--quiet", "--no-checkpoint"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [(r["roi"], r["voxels"]) for r in s["struct_overrides_applied"]] == [("BOLUS", BOLUS_VOXELS)]
    with h5py.File(tmp / "o.h5") as f:
        assert int((f["density"][()] == np.float32(2.0)).sum()) == BOLUS_VOXELS
        assert json.loads(f["provenance"].attrs["tissue_heterogeneity"]) == ["IMAGE", "ROI_OVERRIDE"]

    g = build_geometry(_config(tmp, f'plan.rtstruct = "{tmp / "RS_narrow.dcm"}"', 'plan.outside_external = "air"'))
    assert "outside the External 'EXTERNAL': air (plan.outside_external = \"air\"" in capsys.readouterr().err
    x = g.axis_mm("x")
    beside, inside = np.abs(x) > 12, np.abs(x) < 12
    slabs = g0.density_g_cm3_zyx > 0.5
    assert np.all(g.density_g_cm3_zyx[:, :, beside] < 0.01) and slabs[:, :, beside].any()
    assert np.array_equal(g.density_g_cm3_zyx[:, :, inside], g0.density_g_cm3_zyx[:, :, inside])


@pytest.mark.parametrize("more,match", [
    (['plan.struct_overrides = "bogus"'], 'plan.struct_overrides must be "apply" or "ignore"; got \'bogus\''),
    (['plan.outside_external = "vacuum"'], 'plan.outside_external must be "ct" or "air"; got \'vacuum\''),
    (['plan.outside_external = "air"'], r'plan.outside_external = "air" needs plan.rtstruct'),
])
@pytest.mark.parametrize("kind", ["slab_ct", "water", "slabs"])
def test_bad_values_are_refused_on_every_phantom_type(tmp_path, kind, more, match):
    """The values of plan.struct_overrides and plan.outside_external, and "air" without a structure set, are refused
    on every phantom type as on a CT (before: only a CT's geometry read them)."""
    from mcproton.config import ConfigError, build_geometry, load_config

    base = {"slab_ct": [*SLAB, f'phantom.ct_dir = "{tmp_path / "ct"}"'],
            "water": ['phantom.type = "water"', "phantom.size_mm = [20, 20, 20]", "phantom.voxel_mm = 4"],
            "slabs": ['phantom.type = "slabs"', "phantom.lateral_size_mm = [20, 20]", "phantom.voxel_mm = [4, 4, 4]",
                      'phantom.layers = [{material = "water", thickness_mm = 20}]']}[kind]
    with pytest.raises(ConfigError, match=match):
        build_geometry(load_config(None, base + more))
    assert not (tmp_path / "ct").exists()   # refused before the slab CT is written


def test_a_phantom_that_is_not_a_ct_refuses_what_would_change_its_geometry(slab):
    """A water box with plan.rtstruct: its material overrides (plan.struct_overrides "apply", the default) and
    plan.outside_external = "air", which only a CT's geometry takes, are refused naming the keys and what to do;
    plan.struct_overrides = "ignore" (the structure set for its DVHs and outline only) runs, as does a structure set
    without overrides."""
    from mcproton.config import ConfigError, build_geometry, load_config

    tmp, _ = slab
    box = ['phantom.type = "water"', "phantom.size_mm = [40, 40, 40]", "phantom.voxel_mm = 4"]
    with pytest.raises(ConfigError, match=r"holds material overrides \(ROI 'BOLUS' \(REL_MASS_DENSITY 2\)\).*"
                                          r"phantom.type = 'water' is not built from a CT.*"
                                          r'set plan.struct_overrides = "ignore"'):
        build_geometry(load_config(None, box + [f'plan.rtstruct = "{tmp / "RS.dcm"}"']))
    with pytest.raises(ConfigError, match=r'plan.outside_external = "air" sets air .* is not built from a CT'):
        build_geometry(load_config(None, box + [f'plan.rtstruct = "{tmp / "RS_narrow.dcm"}"',
                                                'plan.outside_external = "air"']))
    build_geometry(load_config(None, box + [f'plan.rtstruct = "{tmp / "RS.dcm"}"', 'plan.struct_overrides = "ignore"']))
    build_geometry(load_config(None, box + [f'plan.rtstruct = "{tmp / "RS_narrow.dcm"}"']))


def _other_frame_struct(tmp: Path, name: str = "RS_other.dcm") -> Path:
    """RS.dcm's bolus and External in another frame of reference (a structure set of another CT)."""
    ds = pydicom.dcmread(tmp / "RS.dcm")
    other = "1.2.826.0.1.3680043.8.498.778"
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other
    for r in ds.StructureSetROISequence:
        r.ReferencedFrameOfReferenceUID = other
    ds.save_as(tmp / name)
    return tmp / name


def _inputs_refusal(cfg: dict) -> str:
    """The refusal (ConfigError) of `mcproton run`'s input checks (check_inputs) for ``cfg``."""
    import mcproton as mcp
    from mcproton._run.inputs import check_inputs
    from mcproton.config import ConfigError, build_beams, build_geometry

    g = build_geometry(cfg)
    with pytest.raises(ConfigError) as exc:
        check_inputs(cfg, mcp.RunSettings(primaries=100, backend="cpu"), g, build_beams(cfg))
    return str(exc.value)


def test_a_structure_set_of_another_frame_is_refused_on_slab_ct_as_on_ct(slab, monkeypatch):
    """plan.rtstruct in another frame of reference than the slab CT (written in the plan's): refused before the
    transport by the check of phantom.type = "ct" (check_struct_frame), in its words, naming the file, the ROIs, both
    frames and plan.allow_other_frame; the same CT and structure set read as phantom.type = "ct" are refused alike.
    Before (followb, 2026-12-07) the slab CT checked no frame: the structure set's bolus was put where its
    coordinates fell in the slabs, and only the DVH warned, after the transport."""
    from mcproton._io.hu_calibration import HUCalibration
    from mcproton._io.slab_ct import slab_ct

    tmp, g0 = slab
    rs = _other_frame_struct(tmp)
    on_slab = _inputs_refusal(_config(tmp, f'plan.rtstruct = "{rs}"'))
    common = (f"plan.rtstruct {rs}: the contours of ROI(s) 'EXTERNAL', 'BOLUS' in 1.2.826.0.1.3680043.8.498.778 lie in "
              "another frame of reference (ReferencedFrameOfReferenceUID (3006,0024)) than ")
    tail = (f"FrameOfReferenceUID {g0.frame_of_reference_uid}: the structure set belongs to another CT, so its body "
            "ROI would cut the dose, its material overrides would be put in the wrong place and its DVHs would be of "
            "other anatomy; ")
    assert on_slab == (f"{common}the slab phantom's CT's (the plan's) {tail}give a structure set in the plan's frame "
                       "of reference, or set plan.allow_other_frame = true if the two frames are known to coincide")
    exact = slab_ct(LAYERS, surface_mm=(0, -30, 0), depth_axis="+y", air_mm=10, lateral_size_mm=(40, 40),
                    voxel_mm=(4, 2.5, 4)).calibration
    monkeypatch.setattr(HUCalibration, "load", classmethod(lambda cls, *a, **k: exact))
    on_ct = _inputs_refusal(_config(tmp, f'plan.rtstruct = "{rs}"')
                            | {"phantom": {"type": "ct", "ct_dir": str(tmp / "ct"), "calibration": "slab_ct"}})
    assert on_ct == (f"{common}the CT's {tail}give the structure set of this CT, or set plan.allow_other_frame = true "
                     "if the two frames are known to coincide")


def test_a_plan_without_frame_links_no_structure_set_to_its_slab_ct(slab):
    """A plan that gives no FrameOfReferenceUID: its slab CT gets a frame of its own, in which no structure set lies;
    plan.rtstruct is refused, saying so."""
    tmp, _ = slab
    ds = pydicom.dcmread(tmp / "RP.dcm")
    del ds.FrameOfReferenceUID
    ds.save_as(tmp / "RP_noframe.dcm")
    cfg = _config(tmp, f'plan.rtstruct = "{tmp / "RS.dcm"}"', f'plan.rtplan = "{tmp / "RP_noframe.dcm"}"',
                  f'phantom.ct_dir = "{tmp / "ct_noframe"}"')
    msg = _inputs_refusal(cfg)
    assert "than the slab phantom's CT's (a new one: the plan gives no valid FrameOfReferenceUID (0020,0052)" in msg
    assert msg.endswith("export the plan again with its FrameOfReferenceUID and give a structure set in that frame, "
                        "or set plan.allow_other_frame = true if the two frames are known to coincide"), msg


def test_slab_ct_runs_a_structure_set_of_another_frame_with_allow_other_frame(slab, capsys, warnings_to_stderr):
    """`mcproton run` on the slab CT: refused (exit 2, nothing written) with a structure set of another frame;
    plan.allow_other_frame = true runs it with the warning, records "other_frame" and its RT Dose says OVERRIDE, as
    on a CT; the structure set in the slab CT's frame records none."""
    from mcproton import DoseResult
    from mcproton.cli import main

    tmp, _ = slab
    rs = _other_frame_struct(tmp)
    cfg = tmp / "run.toml"
    cfg.write_text("[run]\nprimaries = 200\nbatches = 2\nbackend = \"cpu\"\nthreads = 1\n[output]\nplot = false\n")
    sets = [a for s in _slab(tmp) for a in ("--set", s.replace(" = ", "="))]

    def run(name: str, *more: str) -> int:
        return main(["run", str(cfg), "--out", str(tmp / f"{name}.h5"), "--rtdose", str(tmp / f"{name}.dcm"),
                     "--quiet", "--no-checkpoint", *sets, *more])

    assert run("refused", "--set", f'plan.rtstruct="{rs}"') == 2
    err = capsys.readouterr().err
    assert "lie in another frame of reference" in err and "plan.allow_other_frame" in err, err
    assert not (tmp / "refused.h5").exists() and not (tmp / "refused.dcm").exists()
    assert run("allowed", "--set", f'plan.rtstruct="{rs}"', "--set", "plan.allow_other_frame=true") == 0
    assert "lie in another frame of reference" in capsys.readouterr().err
    assert DoseResult.load(tmp / "allowed.h5").provenance.get("overrides") == ["other_frame"]
    assert pydicom.dcmread(tmp / "allowed.dcm").DoseComment.startswith("OVERRIDE frame; ")
    assert run("same", "--set", f'plan.rtstruct="{tmp / "RS.dcm"}"', "--set", "plan.allow_other_frame=true") == 0
    assert DoseResult.load(tmp / "same.h5").provenance.get("overrides") == []

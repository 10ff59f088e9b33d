"""``mcproton run CONFIG --check-config`` (every check before the transport, nothing written) and what a new user
meets on the way: --out forgotten, no [phantom] section, relative paths (from the config file's folder, else from
the current folder; README "Config reference")."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from make_bad_input_table import BASE, PLAN, SLAB_CT

from mcproton.cli import main

ROOT = Path(__file__).resolve().parents[2]
PLAN05 = ROOT / "tests" / "data" / "dicom" / "RP_plan05.dcm"


@pytest.fixture
def no_transport(monkeypatch):
    import mcproton.run

    def refuse(*a, **k):
        raise AssertionError("--check-config reached the transport")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", refuse)
    monkeypatch.setattr(mcproton.run.Simulation, "run_histories_sparse", refuse)


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_check_config_prints_grid_and_beams_and_writes_nothing(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    before = _files(tmp_path)
    assert main(["run", str(cfg), "--check-config", "--out", str(tmp_path / "dose.h5")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["config_ok"] is True and got["phantom"] == "water"
    assert got["grid_xyz"] == [10, 10, 50] and got["voxel_mm"] == [4.0, 4.0, 2.0]   # 40 x 40 x 100 mm box
    assert got["primaries"] == 1000 and got["beams"][0]["spots"] == 1
    assert got["outputs"]["hdf5"].endswith("dose.h5")
    assert _files(tmp_path) == before   # no HDF5, no checkpoint, no plot


def test_check_config_refuses_what_the_run_refuses(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE.replace("primaries = 1000", "primaires = 1000"))
    assert main(["run", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "unknown key run.primaires (did you mean 'primaries'?)" in err


def test_check_config_leaves_a_slab_ct_folder_alone(tmp_path, capsys, no_transport):
    """A slab_ct phantom is built in a temporary folder: its ct_dir is not created (the run would then refuse it as
    not empty), and a ct_dir that already holds files is refused as the run refuses it."""
    cfg = tmp_path / "job.toml"
    cfg.write_text(SLAB_CT.replace("@EXTRA", 'ct_dir = "slab_ct"'))
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert not (tmp_path / "slab_ct").exists()
    (tmp_path / "slab_ct").mkdir()
    (tmp_path / "slab_ct" / "IM0001").write_text("a patient's CT")
    assert main(["run", str(cfg), "--check-config"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_out_is_required_without_check_config(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out is required" in err[0] and "--check-config" in err[0]


def test_a_config_without_phantom_says_it_uses_the_default_water_box(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE.split("[phantom]")[0] + "[beam]" + BASE.split("[beam]")[1])
    assert main(["run", str(cfg), "--check-config"]) == 0
    out, err = capsys.readouterr()
    assert "no [phantom] section" in err and "200 x 200 x 300 mm" in err
    assert json.loads(out)["grid_xyz"] == [100, 100, 300]   # the default: 2 x 2 x 1 mm voxels


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path, capsys, monkeypatch, no_transport):
    """rtplan = "RP.dcm" beside the config is found from any working folder; a path given with --set relative to
    the working folder is found too (nothing of that name beside the config); one found nowhere is named with the
    full path looked at and the rule."""
    sub = tmp_path / "plans"
    sub.mkdir()
    shutil.copy(PLAN05, sub / "RP.dcm")
    cfg = sub / "job.toml"
    cfg.write_text(PLAN)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    shutil.copy(PLAN05, elsewhere / "mine.dcm")
    assert main(["run", str(cfg), "--check-config", "--set", 'plan.rtplan="mine.dcm"']) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["run", str(cfg), "--check-config", "--set", 'plan.rtplan="nope.dcm"']) == 2
    err = capsys.readouterr().err
    assert str(sub / "nope.dcm") in err and "taken from the config file's folder" in err


def test_a_ct_folder_with_two_series_needs_phantom_ct_series(tmp_path, capsys, no_transport):
    """Two axial CT series in phantom.ct_dir (a re-scan, a 4-D CT's phase beside its average): refused with both
    listed and the key that chooses (before, the message told a config user to "pass series_uid="); with
    phantom.ct_series the chosen one is read (its grid, not the other's); a localizer beside one series is
    skipped with a warning."""
    import numpy as np
    import pydicom
    from make_bad_input_table import CT

    from mcproton.dicom import write_ct_series

    first = write_ct_series(np.zeros((4, 8, 8)), (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), tmp_path / "ct")
    second = write_ct_series(np.zeros((6, 8, 8)), (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), tmp_path / "b",
                             series_description="phase 50%")
    for p in second:
        shutil.move(p, tmp_path / "ct" / f"b_{p.name}")
    uid2 = str(pydicom.dcmread(tmp_path / "ct" / f"b_{second[0].name}").SeriesInstanceUID)
    cfg = tmp_path / "job.toml"
    cfg.write_text(CT.replace("@EXTRA", ""))
    assert main(["run", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "2 CT series" in err and "phantom.ct_series" in err and uid2 in err and "'phase 50%'" in err
    cfg.write_text(CT.replace("@EXTRA", f'ct_series = "{uid2}"'))
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 6    # the 6-slice series, not the 4-slice one
    for p in (tmp_path / "ct").glob("b_*"):    # the second series gone; a localizer in its place
        p.unlink()
    scout = pydicom.dcmread(first[0])
    scout.SeriesInstanceUID, scout.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.55", "1.2.826.0.1.3680043.8.498.56"
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.save_as(tmp_path / "ct" / "scout.dcm")
    cfg.write_text(CT.replace("@EXTRA", ""))
    with pytest.warns(UserWarning, match="localizer"):
        assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 4


def test_a_structure_set_drawn_on_another_ct_series_is_warned_about():
    """plan.rtstruct names the CT series its contours were drawn on (RayStation's plan03 RS names one): a CT of
    another series (a re-scan, another 4-D phase on the same frame) is warned about, the planning CT's is not."""
    import warnings
    from types import SimpleNamespace

    from mcproton import McprotonWarning
    from mcproton.config import _note_struct_drawn_on_another_series

    rs = ROOT / "tests" / "data" / "dicom" / "aptg_check" / "RS_plan03.dcm"
    drawn_on = "1.2.826.0.1.3680043.8.176.20111122133550298.10.5406771221"
    cfg = {"plan": {"rtstruct": str(rs)}}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _note_struct_drawn_on_another_series(cfg, SimpleNamespace(series_instance_uid=drawn_on,
                                                                  series_description="CT"))
    assert said == []
    with pytest.warns(McprotonWarning) as said:
        _note_struct_drawn_on_another_series(cfg, SimpleNamespace(series_instance_uid="1.2.3",
                                                                  series_description="4D 50%"))
    err = str(said[0].message)
    assert f"was drawn on CT series {drawn_on}, not on the CT read (1.2.3, '4D 50%')" in err and "ct_series" in err


def _plan_case(tmp_path, model='"dcpt_v5"'):
    shutil.copy(PLAN05, tmp_path / "RP.dcm")
    cfg = tmp_path / "job.toml"
    cfg.write_text(PLAN.replace('"dcpt_v5"', model))
    return cfg


def test_check_config_shows_the_beam_model_and_what_it_gives_each_layer(tmp_path, capsys, no_transport):
    """The model's own numbers per layer (a sigma of 0.4 mm or 4e9 protons/MU shows before any dose), and which
    model file: name, path, SHA-256, energy range (before: beams listed with spots and protons only)."""
    import hashlib

    from mcproton._io.beam_model import BUILTIN

    assert main(["run", str(_plan_case(tmp_path)), "--check-config"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    bm = got["beam_model"]
    assert bm["name"] == "dcpt_v5" and bm["path"] == str(BUILTIN["dcpt_v5"])
    assert bm["sha256"] == hashlib.sha256(BUILTIN["dcpt_v5"].read_bytes()).hexdigest()
    assert bm["energy_range_mev"] == [70.0, 244.0] and bm["table_sha256"]
    beam = got["beams"][0]
    table = beam["layer_table"]
    assert beam["layers"] == 13 and "E_nom" in table[0] and "protons/MU" in table[0]
    first = table[1].split()
    assert first[0] == "81.70" and float(first[1]) == pytest.approx(81.857, abs=1e-3)   # mean energy of v5
    assert 4 < float(first[3]) < 7 and 2e6 < float(first[7]) < 3e6            # sigma at iso (mm), protons/MU
    assert float(first[5]) == pytest.approx(2.3548 * float(first[3]), abs=0.02)   # one Gaussian: FWHM = 2.355 sigma
    assert [r.split()[0] for r in table[-2:]] == ["min", "max"] and "more layers" in table[4]


def test_check_config_layer_table_gives_the_core_sigma_and_the_fwhm_of_a_double_gaussian():
    """A double Gaussian (MCsquare's IBA nozzle, a 5.2 % halo of 41 mm at 100 MeV): the table gives the core's sigma
    at the isocentre (3.985 mm, 6.356 mrad, rho 0.0728, 410 mm: 4.92 mm) and the whole spot's FWHM, labelled; before,
    "sx_iso" was the rms of core and halo, 10.50 mm, twice the spot a physicist compares it with."""
    from types import SimpleNamespace

    import numpy as np

    from mcproton._io.beam_model import load_beam_model
    from mcproton.cli import _layer_table

    m = load_beam_model("mcsquare_upenn_iba_dn")
    beam = SimpleNamespace(meta={"beam_model": {"name": "m"}, "nominal_energies_mev": [100.0]})
    table = _layer_table({"m": ({}, m)}, beam)["layer_table"]
    assert table[0].split()[3:7] == ["sx_core", "sy_core", "fwhm_x", "fwhm_y"] and "heaviest" in table[0]
    row = [float(v) for v in table[1].split()]
    core_x = np.sqrt(3.985307 ** 2 + 2 * 0.072822 * 3.985307 * 0.006356 * 410 + (0.006356 * 410) ** 2)
    assert row[3] == pytest.approx(core_x, abs=0.01) and row[3] == pytest.approx(4.92, abs=0.01)
    assert row[5:7] == pytest.approx(m.spot_fwhm_mm(100.0), abs=0.01)


def test_run_records_the_beam_model_file(tmp_path, capsys):
    """The HDF5 provenance and the JSON summary name the beam model's file and SHA-256 (before: nothing)."""
    import h5py

    cfg = _plan_case(tmp_path)
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-checkpoint", "--allow-empty",
                 "--set", "run.primaries=200", "--set", "output.plot=false"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    bm = summary["beam_model"]
    assert bm["name"] == "dcpt_v5" and len(bm["sha256"]) == 64 and bm["path"].endswith("dcpt_v5.toml")
    with h5py.File(out) as f:
        prov = f["provenance"].attrs
        assert json.loads(prov["beam_model"]) == bm
        assert json.loads(prov["beam"])["beam_model"] == bm


def test_a_plan_energy_beyond_the_tables_names_the_beam_model(tmp_path, capsys, no_transport):
    """The energy + 5 sigma refusal of a plan's spot names the beam model file and its columns, not the config keys
    beam.energy_mev / beam.energy_spread_mev of a [beam] run (before)."""
    rows = "".join(f"{e},{e + 0.2},{0.09 * e:.2f},3e6,4,4,0.003,0.003,0,0\n" for e in range(70, 350, 10))
    (tmp_path / "t.csv").write_text("E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n" + rows)
    (tmp_path / "m.toml").write_text(
        'name="wide"\ntable="t.csv"\nplane_upstream_of_isocentre_mm=500.0\nenergy_spread_unit="MeV"\n'
        '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
        '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
        'correlation_x="cx"\ncorrelation_y="cy"\n')
    from mcproton._io.beam_model import load_beam_model
    from mcproton._run.inputs import check_inputs
    from mcproton.config import ConfigError, build_geometry, load_config, run_settings
    from mcproton.source import Beam, Spot

    cfg = load_config(_plan_case(tmp_path, '"m.toml"'))
    with pytest.warns(UserWarning, match="spread"):
        model = load_beam_model(tmp_path / "m.toml")
    ent = model.at(340)
    beam = Beam([Spot(ent.mean_energy_mev, position_mm=(0, 0, -10), energy_spread_mev=ent.energy_spread_mev)],
                name="1:F", meta={"beam_model": model.provenance()})
    with pytest.raises(ConfigError, match=r"reaches .* MeV, beyond the physics tables \(400 MeV\); the spot energies "
                                          r"come from beam model 'wide' \(.*m.toml\): check its columns mean_energy"):
        check_inputs(cfg, run_settings(cfg), build_geometry(cfg), [beam])


def test_a_beam_above_the_nuclear_data_is_warned_once(tmp_path, capsys, no_transport):
    """F4: 250-350 MeV ran without a word although the nuclear data end at 250 MeV (held constant above)."""
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    import warnings

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        assert main(["run", str(cfg), "--check-config", "--set", "beam.energy_mev=300"]) == 0
        said = [str(w.message) for w in got]
        assert sum("beam.energy_mev = 300 MeV is above 250 MeV, where mcproton's nuclear data end" in m
                   for m in said) == 1, said
        assert main(["run", str(cfg), "--check-config", "--set", "beam.energy_mev=240"]) == 0
        assert not any("nuclear data" in str(w.message) for w in got[len(said):])


def test_check_config_without_out_takes_the_rtdose_given(tmp_path, capsys, no_transport):
    """output.rtdose_per_beam with --rtdose on the command line and no --out (CSI audit 2026-12-05 F6: --rtdose was
    dropped without --out, and the per-beam RT Doses then refused for want of it): accepted, the RT Dose shown among
    the outputs; without any RT Dose the per-beam ones are still refused, and an --rtdose that is an input too."""
    cfg = _plan_case(tmp_path)
    cfg.write_text(cfg.read_text() + "\n[output]\nrtdose_per_beam = true\n")
    rd = tmp_path / "out" / "RD.dcm"
    assert main(["run", str(cfg), "--check-config", "--rtdose", str(rd)]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["outputs"] == {"hdf5": None, "rtdose": str(rd), "plot": None}
    assert not rd.parent.exists()
    assert main(["run", str(cfg), "--check-config"]) == 2
    assert "give --rtdose (or output.rtdose) too" in capsys.readouterr().err
    assert main(["run", str(cfg), "--check-config", "--rtdose", str(tmp_path / "RP.dcm")]) == 2
    assert "writing it would destroy an input" in capsys.readouterr().err


def _couch_kicked_plan06(tmp_path, gantry=90.0, couch=90.0):
    """RayStation plan06 (RS_3CM IN) turned to gantry ``gantry``, couch ``couch``: a non-coplanar field."""
    import pydicom

    ds = pydicom.dcmread(ROOT / "tests" / "data" / "dicom" / "RP_plan06_rs.dcm")
    cp0 = ds.IonBeamSequence[0].IonControlPointSequence[0]
    cp0.GantryAngle, cp0.PatientSupportAngle = gantry, couch
    ds.save_as(tmp_path / "RP.dcm")
    cfg = tmp_path / "job.toml"
    cfg.write_text(PLAN)
    return cfg


def test_check_config_says_where_each_beam_points_and_names_its_shifter(tmp_path, capsys, no_transport):
    """One line per beam: angles, position, isocentre, direction in LPS and in words, the range shifter and its
    distance (audit 17 "noncoplanar" F3: nothing told a vertex field from a lateral one); the layer table's header
    said "without a range shifter" for a beam that has RS_3CM."""
    assert main(["run", str(_couch_kicked_plan06(tmp_path)), "--check-config"]) == 0, capsys.readouterr().err
    beam = json.loads(capsys.readouterr().out)["beams"][0]
    line = beam["geometry"]
    assert line.startswith("gantry 90, couch 90, table-top eccentric 0 deg; HFS; isocentre (")
    assert "direction (0, 0, 1) LPS, inferior -> superior; range shifter RS_3CM (" in line
    assert "downstream face " in line and "mm from the isocentre)" in line and "not given" not in line
    assert "without this beam's range shifter RS_3CM" in beam["layer_table"][0]
    assert "isocentre without a range shifter:" not in beam["layer_table"][0]


def test_the_run_records_where_each_beam_points(tmp_path, capsys):
    """The JSON summary's beams and the HDF5 provenance's beam: gantry, couch, eccentric angle, position, isocentre,
    direction and shifters (beam_geometry), the same in both."""
    import h5py

    cfg = _couch_kicked_plan06(tmp_path)
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-checkpoint", "--allow-empty",
                 "--set", "run.primaries=200", "--set", "output.plot=false"]) == 0, capsys.readouterr().err
    beam = json.loads(capsys.readouterr().out)["beams"][0]
    assert (beam["gantry_angle_deg"], beam["couch_angle_deg"], beam["table_top_eccentric_angle_deg"]) == (90, 90, 0)
    assert beam["patient_position"] == "HFS" and beam["direction_lps"] == [0.0, 0.0, 1.0]
    assert len(beam["isocenter_mm"]) == 3 and [r["id"] for r in beam["range_shifters"]] == ["RS_3CM"]
    assert beam["range_shifters"][0]["isocenter_distance_mm"] > 0
    with h5py.File(out) as f:
        prov = json.loads(f["provenance"].attrs["beam"])
    assert {k: prov[k] for k in beam if k != "name"} == {k: v for k, v in beam.items() if k != "name"}


def test_direction_words_of_an_oblique_non_coplanar_beam():
    """HFS gantry 45, couch 315 (audit 17): every LPS component named, largest first, with its size."""
    from mcproton._io.rtplan import beam_direction_lps, direction_words

    d = beam_direction_lps(45.0, 315.0, "HFS")
    assert d == pytest.approx([-0.5, 0.70711, -0.5], abs=1e-4)
    assert direction_words(d) == "anterior -> posterior 0.71, left -> right 0.50, superior -> inferior 0.50"
    assert direction_words([0.0, 0.0, -1.0]) == "superior -> inferior"


def test_check_config_says_primaries_are_per_beam_and_gives_the_total(tmp_path, capsys, no_transport):
    """CSI audit F6: run.primaries is per beam (a 4-field plan at 200000 transports 800000, the summary's
    ``primaries``); --check-config printed the per-beam number alone as "primaries".  Now the total over the plan's
    beams is beside it, and the key's description says per beam."""
    import copy

    import pydicom

    from mcproton.config import SCHEMA

    cfg = _plan_case(tmp_path)
    rp = pydicom.dcmread(tmp_path / "RP.dcm")
    second = copy.deepcopy(rp.IonBeamSequence[0])   # plan05's one beam twice: a plan of two beams
    second.BeamNumber, second.BeamName = 2, "second"
    rp.IonBeamSequence.append(second)
    fg = rp.FractionGroupSequence[0]
    ref = copy.deepcopy(fg.ReferencedBeamSequence[0])
    ref.ReferencedBeamNumber = 2
    fg.ReferencedBeamSequence.append(ref)
    fg.NumberOfBeams = 2
    rp.save_as(tmp_path / "RP.dcm")
    assert main(["run", str(cfg), "--check-config", "--set", "run.primaries=3000"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert len(got["beams"]) == 2
    assert got["primaries"] == got["primaries_per_beam"] == 3000 and got["primaries_total"] == 6000
    assert got["primaries_note"] == "run.primaries is per beam: 2 beam(s) x 3000 = 6000 primary protons in all"
    assert main(["run", str(cfg), "--check-config", "--set", "run.target_uncertainty=0.02"]) == 0
    assert "in all at most (run.target_uncertainty may stop" in json.loads(capsys.readouterr().out)["primaries_note"]
    assert SCHEMA["run"]["primaries"][1].startswith("primary protons per beam")

"""Beam models: DCPT (TOML + CSV), MCsquare BDL parser, interpolation and errors."""
from __future__ import annotations


import numpy as np
import pytest

from mcproton._io.beam_model import BUILTIN, load_beam_model, parse_bdl
from mcproton._io.errors import BeamModelError

from dicom_factories import bdl_text_from_csv

MCSQ_CSV = BUILTIN["mcsquare_upenn_iba_dn"].parent / "beam_model_mcsquare_upenn_iba_dedicated_nozzle.csv"


def test_dcpt_tabulated_values():
    m = load_beam_model("dcpt_v2")
    assert m.plane_upstream_of_isocentre_mm == 500.0
    assert m.energy_range_mev == (70.0, 244.0)
    e = m.at(70.0)  # first row of the v2 table
    assert e.mean_energy_mev == pytest.approx(71.38)
    assert e.energy_spread_mev == pytest.approx(1.23)
    assert e.protons_per_mu == pytest.approx(2106924)
    (c,) = e.components
    assert c.sigma_mm == pytest.approx((4.472, 3.629))
    assert c.divergence_rad == pytest.approx((0.0061, 0.0056))
    assert c.correlation == pytest.approx((0.306094, 0.7405621))
    assert load_beam_model("dcpt_v5").plane_upstream_of_isocentre_mm == 600.0


def test_interpolation_is_linear_between_rows():
    m = load_beam_model("dcpt_v2")
    a, b, mid = m.at(70.0), m.at(70.1), m.at(70.05)
    assert mid.mean_energy_mev == pytest.approx(0.5 * (a.mean_energy_mev + b.mean_energy_mev))
    assert mid.components[0].sigma_mm[0] == pytest.approx(
        0.5 * (a.components[0].sigma_mm[0] + b.components[0].sigma_mm[0]))


def test_energy_out_of_range():
    m = load_beam_model("dcpt_v2")
    with pytest.raises(BeamModelError, match="outside"):
        m.at(250.0)
    with pytest.raises(BeamModelError, match="choose one"):
        load_beam_model("dcpt")


def test_bdl_parser_matches_csv(tmp_path):
    text = bdl_text_from_csv(MCSQ_CSV)
    p = tmp_path / "BDL_test.txt"
    p.write_text(text)
    m = load_beam_model(p)
    ref = load_beam_model("mcsquare_upenn_iba_dn")
    assert m.plane_upstream_of_isocentre_mm == 410.0
    assert m.virtual_source_axis_distances_mm == (2234.8, 1859.1)
    np.testing.assert_allclose(m.nominal_energy_mev, ref.nominal_energy_mev)
    np.testing.assert_allclose(m.energy_spread_mev, ref.energy_spread_mev)
    np.testing.assert_allclose(m.comp_sigma_x_mm, ref.comp_sigma_x_mm)
    e = m.at(100.0)
    assert e.energy_spread_mev == pytest.approx(0.66529)  # % of nominal 100 MeV -> MeV
    assert len(e.components) == 2 and e.components[0].weight == pytest.approx(0.948)
    assert e.components[1].sigma_mm == pytest.approx((38.94975, 22.33919))
    rs = m.range_shifter("Range_shifter_1")
    assert rs.wet_mm == 40.0 and rs.material == "pmma"   # MCsquare material 64 = PMMA
    assert rs.density == pytest.approx(1.19)
    with pytest.raises(BeamModelError, match="not in beam model"):
        m.range_shifter("RS_X")


def test_single_gaussian_bdl():
    text = ("--UPenn beam model (double gaussian)--\n\nNozzle exit to Isocenter distance\n400.0\n\n"
            "SMX to Isocenter distance\n2000.0\n\nSMY to Isocenter distance\n2500.0\n\nBeam parameters\n2 energies\n\n"
            "NominalEnergy MeanEnergy EnergySpread ProtonsMU SpotSize1x Divergence1x Correlation1x SpotSize1y "
            "Divergence1y Correlation1y\n100 100.5 1.0 1e6 4 0.003 0.5 3 0.004 0.6\n"
            "200 200.5 0.5 2e6 3 0.002 0.3 2 0.003 0.4\n")
    m = parse_bdl(text)
    e = m.at(150)
    assert e.energy_spread_mev == pytest.approx(0.5 * (1.0 + 1.0))  # 1 % of 100 and 0.5 % of 200
    assert e.protons_per_mu == pytest.approx(1.5e6) and len(e.components) == 1


@pytest.mark.parametrize("mutate,match", [
    (lambda t: t.replace("SMX to Isocenter distance\n2234.8", "SMX to Isocenter distance\nabc"), "not a number"),
    (lambda t: t.replace("Nozzle exit to Isocenter distance", "Nozzle exit"), "missing section"),
    (lambda t: "\n".join(t.splitlines()[:-5]), "truncated"),
    (lambda t: t.replace("SpotSize1x", "Bogus"), "lacks columns"),
    (lambda t: t.replace("\t0.948\t", "\tnan\t", 1), "NaN"),
])
def test_bad_bdl(tmp_path, mutate, match):
    text = mutate(bdl_text_from_csv(MCSQ_CSV))
    with pytest.raises(BeamModelError, match=match):
        parse_bdl(text)


def test_toml_model_with_range_shifter(tmp_path):
    (tmp_path / "t.csv").write_text("# test\nE,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n100,100,1,1e6,5,5,0.003,0.003,0,0\n"
                                    "200,200,1,2e6,4,4,0.002,0.002,0,0\n")
    (tmp_path / "m.toml").write_text(
        'name="t"\ntable="t.csv"\nplane_upstream_of_isocentre_mm=400.0\nvirtual_source_axis_distances_mm=[2000.0,2000.0]\n'
        '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
        '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
        'correlation_x="cx"\ncorrelation_y="cy"\n[[range_shifter]]\nid="RS40"\nmaterial="PMMA"\nwet_mm=40.0\n')
    m = load_beam_model(tmp_path / "m.toml")
    assert m.range_shifter("RS40").wet_mm == 40.0
    assert m.at(150).protons_per_mu == pytest.approx(1.5e6)
    (tmp_path / "bad.toml").write_text('name="t"\ntable="t.csv"\n')
    with pytest.raises(BeamModelError, match="missing key"):
        load_beam_model(tmp_path / "bad.toml")


_TOML_HEAD = ('name="t"\ntable="t.csv"\nplane_upstream_of_isocentre_mm=400.0\n'
              '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
              '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
              'correlation_x="cx"\ncorrelation_y="cy"\n[[range_shifter]]\nid="RS40"\n')


@pytest.mark.parametrize("rs, match", [
    ('material="PMMA"\nwet_mm=-40.0\n', "wet_mm = -40.0 must be a positive number"),
    ('material="PMMA"\nwet_mm=0.0\n', "wet_mm = 0.0 must be a positive number"),
    ('material="PMMA"\nwet_mm=40.0\ndensity_g_cm3=0\n', "density_g_cm3 = 0 must be a positive number"),
    ('material="unobtainium"\nwet_mm=40.0\n', "unknown material 'unobtainium'"),
    ('material="PMMA"\nwet_mm=40.0\nposition_mm=3\n', r"keys \['position_mm'\] are unknown"),
])
def test_toml_range_shifter_refused(tmp_path, rs, match):
    (tmp_path / "t.csv").write_text("E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n100,100,1,1e6,5,5,0.003,0.003,0,0\n")
    (tmp_path / "m.toml").write_text(_TOML_HEAD + rs)
    with pytest.raises(BeamModelError, match=match):
        load_beam_model(tmp_path / "m.toml")


def test_toml_range_shifter_thickness_from_wet(tmp_path):
    (tmp_path / "t.csv").write_text("E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n100,100,1,1e6,5,5,0.003,0.003,0,0\n")
    (tmp_path / "m.toml").write_text(_TOML_HEAD + 'material="lexan"\nwet_mm=57.0\nisocenter_distance_mm=300\n')
    rs = load_beam_model(tmp_path / "m.toml").range_shifter("RS40")
    assert rs.material == "lexan"   # resolved to polycarbonate by mcproton.materials
    assert rs.density == pytest.approx(1.2) and rs.isocenter_distance_mm == 300
    # NIST polycarbonate: linear stopping-power ratio to water ~1.15 at 100 MeV (PSTAR-type Bethe scaling)
    assert rs.thickness_mm() == pytest.approx(57.0 / 1.149, rel=0.005)


@pytest.mark.parametrize("wet", ["-40.0", "0"])
def test_bdl_range_shifter_wet_not_positive_refused(wet):
    text = bdl_text_from_csv(MCSQ_CSV).replace("RS_WET = 40.0", f"RS_WET = {wet}")
    with pytest.raises(BeamModelError, match="must be a positive number"):
        parse_bdl(text)


def test_bdl_range_shifter_material_by_name_or_mcsquare_number():
    text = bdl_text_from_csv(MCSQ_CSV)
    assert parse_bdl(text.replace("RS_material = 64", "RS_material = 66")).range_shifters[
        "Range_shifter_1"].material == "polycarbonate"                 # MCsquare 66 = Lexan
    assert parse_bdl(text.replace("RS_material = 64", "RS_material = Lexan")).range_shifters[
        "Range_shifter_1"].material == "polycarbonate"
    # a material mcproton does not have (MCsquare 67 = CFRP): loads, but cannot be transported (refused by a plan)
    assert parse_bdl(text.replace("RS_material = 64", "RS_material = 67")).range_shifters[
        "Range_shifter_1"].material == ""

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
    assert mid.components[0].sigma_mm[0] == pytest.approx(0.5 * (a.components[0].sigma_mm[0] + b.components[0].sigma_mm[0]))


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
    assert rs.wet_mm == 40.0 and rs.material == "64"
    with pytest.raises(BeamModelError, match="not in beam model"):
        m.range_shifter("RS_X")


def test_single_gaussian_bdl():
    text = ("--UPenn beam model (double gaussian)--\n\nNozzle exit to Isocenter distance\n400.0\n\n"
            "SMX to Isocenter distance\n2000.0\n\nSMY to Isocenter distance\n2500.0\n\nBeam parameters\n2 energies\n\n"
            "NominalEnergy MeanEnergy EnergySpread ProtonsMU SpotSize1x Divergence1x Correlation1x SpotSize1y "
            "Divergence1y Correlation1y\n100 100.5 1.0 1e6 4 0.003 0.5 3 0.004 0.6\n200 200.5 0.5 2e6 3 0.002 0.3 2 0.003 0.4\n")
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

"""Beam models: DCPT (TOML + CSV), MCsquare BDL parser, interpolation and errors."""
from __future__ import annotations


import re

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


_SINGLE_GAUSSIAN_BDL = (
    "--UPenn beam model (double gaussian)--\n\nNozzle exit to Isocenter distance\n400.0\n\n"
    "SMX to Isocenter distance\n2000.0\n\nSMY to Isocenter distance\n2500.0\n\nBeam parameters\n2 energies\n\n"
    "NominalEnergy MeanEnergy EnergySpread ProtonsMU Weight1 SpotSize1x Divergence1x Correlation1x SpotSize1y "
    "Divergence1y Correlation1y\n100 100.5 1.0 1e6 1 4 0.003 0.5 3 0.004 0.6\n"
    "200 200.5 0.5 2e6 1 3 0.002 0.3 2 0.003 0.4\n")


def test_single_gaussian_bdl():
    """The first 11 of MCsquare's 18 columns (up to Correlation1y) are a single Gaussian."""
    m = parse_bdl(_SINGLE_GAUSSIAN_BDL)
    e = m.at(150)
    assert e.energy_spread_mev == pytest.approx(0.5 * (1.0 + 1.0))  # 1 % of 100 and 0.5 % of 200
    assert e.protons_per_mu == pytest.approx(1.5e6) and len(e.components) == 1
    assert e.components[0].sigma_mm == pytest.approx((3.5, 2.5))


def test_single_gaussian_bdl_without_weight1_refused():
    """Without Weight1 the values are not where MCsquare reads them (its 5th column is Weight1): refused, naming it;
    before, read by the header's names."""
    text = _SINGLE_GAUSSIAN_BDL.replace(" Weight1", "").replace(" 1e6 1 ", " 1e6 ").replace(" 2e6 1 ", " 2e6 ")
    with pytest.raises(BeamModelError, match=r"have 10 values; MCsquare reads 18 by position"):
        parse_bdl(text)


_STD_HEADER = ("NominalEnergy MeanEnergy EnergySpread ProtonsMU Weight1 SpotSize1x Divergence1x Correlation1x "
               "SpotSize1y Divergence1y Correlation1y Weight2 SpotSize2x Divergence2x Correlation2x SpotSize2y "
               "Divergence2y Correlation2y").split()


def _with_header(names):
    """The test BDL with its 'Beam parameters' header replaced by ``names`` (the values unchanged)."""
    lines = bdl_text_from_csv(MCSQ_CSV).splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("NominalEnergy"))
    lines[k] = " \t ".join(names)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("names, match", [
    # a misspelt halo weight: before, the halo was dropped without a word (+4 % in a 4 x 4 cm field, -55 % outside)
    ([n if n != "Weight2" else "Weigth2" for n in _STD_HEADER],
     r"column 12 of the 'Beam parameters' header is 'Weigth2' \(did you mean 'Weight2'\?\), where MCsquare's BDL "
     r"has 'Weight2'.*by position"),
    # a misspelt core weight: before, replaced by 1.0 without a word
    ([n if n != "Weight1" else "Weigth1" for n in _STD_HEADER], "column 5 .* 'Weigth1'"),
    # the x and y blocks named the other way round: before, the spot's axes were swapped without a word
    (_STD_HEADER[:5] + _STD_HEADER[8:11] + _STD_HEADER[5:8] + _STD_HEADER[11:],
     r"column 6 of the 'Beam parameters' header is 'SpotSize1y' \(MCsquare's column 9\), where MCsquare's BDL has "
     r"'SpotSize1x'"),
    ([n.rstrip("12") if n.startswith("Weight") else n for n in _STD_HEADER],
     r"names 'Weight' twice \(columns 5 and 12\)"),
    (_STD_HEADER[:-1], "names 17 columns but its rows have 18 values"),
])
def test_bdl_header_checked_against_mcsquare_columns(names, match):
    with pytest.raises(BeamModelError, match=match):
        parse_bdl(_with_header(names))


def test_bdl_columns_read_by_position_header_case_ignored():
    """MCsquare and OpenTPS read the columns by position: a lower-case header reads the same model (before: the
    lower-case second component was dropped without a word); a column after the 18th is ignored with a warning."""
    ref = parse_bdl(_with_header(_STD_HEADER))
    low = parse_bdl(_with_header([n.lower() for n in _STD_HEADER]))
    assert low.comp_weight.shape[1] == 2
    for k in ("comp_weight", "comp_sigma_x_mm", "comp_sigma_y_mm", "comp_div_y_rad", "comp_corr_y"):
        np.testing.assert_array_equal(getattr(low, k), getattr(ref, k))
    lines = _with_header(_STD_HEADER + ["Foo"]).splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("NominalEnergy"))
    lines[k + 1:] = [ln + "\t7.0" for ln in lines[k + 1:]]
    said, m = _said(lambda: parse_bdl("\n".join(lines) + "\n"))
    assert len(said) == 1 and "after the 18th (Foo) are IGNORED" in said[0]
    np.testing.assert_array_equal(m.comp_sigma_y_mm, ref.comp_sigma_y_mm)


def test_bdl_without_the_blank_line_mcsquare_skips_warned():
    """MCsquare skips exactly two lines after "N energies" (the blank line and the header): without the blank line it
    reads other rows, so a warning says so, and the warning about rows beyond N no longer claims MCsquare's reading."""
    text = bdl_text_from_csv(MCSQ_CSV)
    head = text.split("energies\n")[0] + "energies\n"
    assert text.startswith(head + "\nNominalEnergy")
    said, m = _said(lambda: parse_bdl(head + text[len(head) + 1:]))
    assert len(said) == 1 and "follows" in said[0] and "MCsquare skips exactly two lines" in said[0]
    assert m.energy_range_mev == parse_bdl(text).energy_range_mev


def test_bdl_range_shifter_unknown_key_or_material_warned():
    """A misspelt range-shifter key, or a material mcproton does not have, loads (a plan that puts the shifter IN is
    refused) but is warned about when the model is read; before, silently."""
    text = bdl_text_from_csv(MCSQ_CSV)
    said, m = _said(lambda: parse_bdl(text.replace("RS_density", "RS_densty")))
    assert len(said) == 1 and "unknown key 'RS_densty'" in said[0] and "did you mean 'RS_density'" in said[0]
    assert m.range_shifter("Range_shifter_1").density_g_cm3 is None
    said, _ = _said(lambda: parse_bdl(text.replace("RS_material = 64", "RS_material = 67")))
    assert len(said) == 1 and "RS_material = '67' is not a material mcproton has" in said[0]
    said, _ = _said(lambda: parse_bdl(text))
    assert said == []


@pytest.mark.parametrize("mutate,match", [
    (lambda t: t.replace("SMX to Isocenter distance\n2234.8", "SMX to Isocenter distance\nabc"), "not a number"),
    (lambda t: t.replace("Nozzle exit to Isocenter distance", "Nozzle exit"), "missing section"),
    (lambda t: "\n".join(t.splitlines()[:-5]), "truncated"),
    (lambda t: t.replace("SpotSize1x", "Bogus"), "column 6 .* is 'Bogus'"),
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
        'energy_spread_unit="MeV"\n'
        '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
        '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
        'correlation_x="cx"\ncorrelation_y="cy"\n[[range_shifter]]\nid="RS40"\nmaterial="PMMA"\nwet_mm=40.0\n')
    m = load_beam_model(tmp_path / "m.toml")
    assert m.range_shifter("RS40").wet_mm == 40.0
    assert m.at(150).protons_per_mu == pytest.approx(1.5e6)
    (tmp_path / "bad.toml").write_text('name="t"\ntable="t.csv"\n')
    with pytest.raises(BeamModelError, match="missing key"):
        load_beam_model(tmp_path / "bad.toml")


_TOML_HEAD = ('name="t"\ntable="t.csv"\nplane_upstream_of_isocentre_mm=400.0\nenergy_spread_unit="MeV"\n'
              '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
              '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
              'correlation_x="cx"\ncorrelation_y="cy"\n[[range_shifter]]\nid="RS40"\n')


@pytest.mark.parametrize("rs, match", [
    ('material="PMMA"\nwet_mm=-40.0\n', "wet_mm = -40.0 must be a positive number"),
    ('material="PMMA"\nwet_mm=0.0\n', "wet_mm = 0.0 must be a positive number"),
    ('material="PMMA"\nwet_mm=40.0\ndensity_g_cm3=0\n', "density_g_cm3 = 0 must be a positive number"),
    ('material="unobtainium"\nwet_mm=40.0\n', "unknown material 'unobtainium'"),
    ('material="PMMA"\nwet_mm=40.0\nposition_mm=3\n', r"unknown key 'position_mm' in \[\[range_shifter\]\]"),
    # a nominal thickness that is not the WET's: before, 40 mm were transported (R80 pulled back 11.7 mm more) and
    # the provenance and the plan-vs-model check said 34.3 mm
    ('material="polycarbonate"\ndensity_g_cm3=1.2\nwet_mm=34.3\nphysical_thickness_mm=40.0\n',
     r"physical_thickness_mm = 40 mm of polycarbonate at 1.2 g/cm3 .* is 4[56]\.\d mm WET, but wet_mm = 34.3 mm"),
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


def test_toml_range_shifter_thickness_consistent_with_wet_accepted(tmp_path):
    """A thickness within 1 mm WET of wet_mm is taken (the slab transported), and what it carries is recorded."""
    (tmp_path / "t.csv").write_text("E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n100,100,1,1e6,5,5,0.003,0.003,0,0\n")
    (tmp_path / "m.toml").write_text(_TOML_HEAD + 'material="lexan"\nwet_mm=57.0\nphysical_thickness_mm=50.0\n')
    rs = load_beam_model(tmp_path / "m.toml").range_shifter("RS40")
    assert rs.thickness_mm() == 50.0
    assert rs.transported_wet_mm() == pytest.approx(50.0 * 1.149, rel=0.005)   # 57.4 mm, not 57.0
    assert rs.transported_wet_mm() != pytest.approx(57.0, abs=0.1)


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


# ------------------------------------------------------------------ a commissioning physicist's own model
# (the audit of 2026-12: /tmp/audit10/commissioning; docs/beam_model.md)
GOOD_CSV = ("E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n" + "".join(
    f"{e},{e + 0.3},{0.012 * e:.3f},{2e6 * (e / 70) ** 0.8:.4g},{5 - e / 100:.3f},{4.5 - e / 100:.3f},0.003,0.003,0.1,"
    "0.1\n" for e in range(70, 250, 10)))
GOOD_TOML = ('name="mine"\ntable="t.csv"\nplane_upstream_of_isocentre_mm=500.0\n'
             'virtual_source_axis_distances_mm=[2000.0,2500.0]\nenergy_spread_unit="MeV"\n'
             '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
             '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
             'correlation_x="cx"\ncorrelation_y="cy"\n')


def _model(tmp_path, toml=GOOD_TOML, csv=GOOD_CSV):
    (tmp_path / "t.csv").write_text(csv)
    (tmp_path / "m.toml").write_text(toml)
    return load_beam_model(tmp_path / "m.toml")


def _said(fn):
    """The mcproton warnings ``fn()`` gives (recorded whatever the filters show) and its result."""
    from mcproton._io.errors import recording_warnings

    import warnings

    with recording_warnings() as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn()
    return said, out


def test_good_model_loads_without_a_word(tmp_path):
    said, m = _said(lambda: _model(tmp_path))
    assert said == [] and m.energy_range_mev == (70.0, 240.0)
    said, _ = _said(lambda: [m.at(e) for e in (70, 155.5, 240)])
    assert said == []


@pytest.mark.parametrize("edit, match", [
    # F1: a misspelt key was dropped: the percent spread read as MeV (distal fall-off 3.2 instead of 4.0 mm)
    (lambda t: t.replace("energy_spread_unit=", "energy_spread_units="),
     r"unknown key 'energy_spread_units' in the top level \(did you mean 'energy_spread_unit'\?\)"),
    (lambda t: t.replace("virtual_source_axis_distances_mm", "virtual_source_axis_distance_mm"),
     r"did you mean 'virtual_source_axis_distances_mm'"),
    (lambda t: t.replace('protons_per_mu="ppmu"', 'protons_per_mu="ppmu"\nsigma="sx"'),
     r"unknown key 'sigma' in \[columns\]"),
    (lambda t: t.replace('weight=1.0', 'weight=1.0\nsigma_xx="sx"'),
     r"unknown key 'sigma_xx' in \[\[component\]\] 1 \(did you mean 'sigma_x'\?\)"),
    (lambda t: t.replace('energy_spread_unit="MeV"\n', ""), "energy_spread_unit is missing"),
    (lambda t: t.replace('energy_spread_unit="MeV"', 'energy_spread_unit="percent"'),
     "did you mean 'percent_of_nominal'"),
    # F11: internal errors before (KeyError)
    (lambda t: t.replace('energy_spread="dE"\n', ""), r"\[columns\] lacks energy_spread"),
    (lambda t: t.replace('mean_energy="Em"\n', ""), r"\[columns\] lacks mean_energy"),
    (lambda t: t.replace('sigma_y="sy"\n', ""), r"\[\[component\]\] 1 lacks sigma_y"),
    (lambda t: t.replace('mean_energy="Em"', 'mean_energy="E_mean"'), r"column 'E_mean' \(mean_energy\) is not in"),
])
def test_toml_keys_refused(tmp_path, edit, match):
    with pytest.raises(BeamModelError, match=match):
        _model(tmp_path, toml=edit(GOOD_TOML))


def test_spread_unit_may_be_left_out_only_without_a_spread(tmp_path):
    t = GOOD_TOML.replace('energy_spread_unit="MeV"\n', "").replace('energy_spread="dE"', "energy_spread=0")
    assert _model(tmp_path, toml=t).at(100).energy_spread_mev == 0


def test_semicolon_csv_named(tmp_path):
    """A European Excel export: before, AttributeError ('list' object has no attribute 'strip')."""
    with pytest.raises(BeamModelError, match=r"t.csv: the columns are separated by ';'.*the delimiter must be ','"):
        _model(tmp_path, csv=GOOD_CSV.replace(",", ";"))
    with pytest.raises(BeamModelError, match=r"t.csv: line 3 has more values than the header"):
        _model(tmp_path, csv=GOOD_CSV.replace("80,80.3,", "80,80,3,"))
    with pytest.raises(BeamModelError, match=r"t.csv: line 2, column 'Em' \(mean_energy\): 'x' is not a number"):
        _model(tmp_path, csv=GOOD_CSV.replace("70,70.3,", "70,x,"))


def test_one_number_protons_per_mu_over_an_energy_range_warned(tmp_path):
    """protons/MU rises with the energy: one number for 70-240 MeV is a placeholder (3.5e6 gave +72 % dose at 70
    MeV); before, accepted without a word.  One energy, or a span of 10 MeV or less, is not warned about."""
    toml = GOOD_TOML.replace('protons_per_mu="ppmu"', "protons_per_mu=3.5e6")
    said, m = _said(lambda: _model(tmp_path, toml=toml))
    assert len(said) == 1 and "protons_per_mu = 3500000.0 is one number for 70-240 MeV" in said[0]
    assert "PrimaryDosimeterUnit NP" in said[0] and m.protons_per_mu_at(70) == 3.5e6
    narrow = "\n".join(GOOD_CSV.splitlines()[:3]) + "\n"    # 70 and 80 MeV
    said, _ = _said(lambda: _model(tmp_path, toml=toml, csv=narrow))
    assert said == []


def test_tab_separated_csv_named(tmp_path):
    """Before: "column 'E' ... is not in ...; its columns: E<TAB>Em<TAB>...", naming the wanted name among them."""
    with pytest.raises(BeamModelError, match=r"t.csv: the columns are separated by tabs \(line 1\); the delimiter "
                                             r"must be ','"):
        _model(tmp_path, csv=GOOD_CSV.replace(",", "\t"))


def test_repeated_csv_column_name_refused(tmp_path):
    """x and y sigma both named 'sigma_mm' (and the TOML naming it for both axes): before, the last column won, x
    read y's values without a word (FWHM at the isocentre 8.6 instead of 9.7 mm)."""
    csv = GOOD_CSV.replace("sx,sy", "s,s", 1)
    toml = GOOD_TOML.replace('sigma_x="sx"', 'sigma_x="s"').replace('sigma_y="sy"', 'sigma_y="s"')
    assert toml != GOOD_TOML and csv != GOOD_CSV
    with pytest.raises(BeamModelError, match=r"t.csv: the header \(line 1\) names 's' twice \(columns 5 and 6\)"):
        _model(tmp_path, toml=toml, csv=csv)


def _edit_row(csv, e, col, value):
    lines = csv.splitlines()
    head = lines[0].split(",")
    for i, ln in enumerate(lines[1:], 1):
        v = ln.split(",")
        if float(v[0]) == e:
            v[head.index(col)] = str(value)
            lines[i] = ",".join(v)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("col, e, value, match", [
    # F2 refusals: two mean energies swapped (R80 +14 mm at 100 MeV), 15 % too high (+21 mm), GeV; a typo x 10
    ("Em", 100, 110.3, r"mean_energy \(column 'Em'\) does not increase with the nominal energy: 110.3 MeV at nominal "
                       r"energy 100 MeV \(line 5 of t.csv\)"),
    ("Em", 240, 276.0, r"mean_energy \(column 'Em'\) = 276 MeV at nominal energy 240 MeV \(line 19 of t.csv\) "
                       r"differs from the nominal energy by 15.0 %"),
    ("Em", 70, 0.0703, "differs from the nominal energy by 99.9 %"),
    ("ppmu", 160, 4e7, r"protons_per_mu \(column 'ppmu'\) = 4e\+07 at nominal energy 160 MeV .* is 10.9 x its "
                       "neighbour at 150 MeV"),
    # F11: the value, column and row of an energy beyond 350 MeV
    ("Em", 240, 360.0, r"mean_energy \(column 'Em'\) = 360 MeV at nominal energy 240 MeV \(line 19 of t.csv\) is "
                       r"outside \(0, 350\] MeV"),
    # audit 19 (review) F2: a spread Spot refuses (sigma > E / 5) was only warned about; a plan then ran with it
    ("dE", 100, 20.5, r"energy_spread \(column 'dE'\) = 20.5 MeV is 20.4 % of the mean energy 100.3 MeV at nominal "
                      r"energy 100 MeV \(line 5 of t.csv\), more than a fifth of it .* clamped to 0"),
])
def test_implausible_values_refused(tmp_path, col, e, value, match):
    with pytest.raises(BeamModelError, match=match) as exc:
        _model(tmp_path, csv=_edit_row(GOOD_CSV, e, col, value))
    assert str(tmp_path / "m.toml") in str(exc.value)   # the file named


@pytest.mark.parametrize("edits, match", [
    # a NaN nominal energy was reported as mean energies not increasing with it ("at nominal energy nan MeV")
    ([(100, "E", "nan")], r"nominal_energy \(column 'E'\) = nan \(line 5 of t.csv\) is NaN or infinite"),
    ([(150, "Em", "inf")], r"mean_energy \(column 'Em'\) = inf at nominal energy 150 MeV \(line 10 of t.csv\) is "
                           "NaN or infinite"),
    # any other: "contains NaN/inf values; check the table", with no line, column or energy
    ([(200, "sx", "-inf")], r"sigma_x \(column 'sx'\) = -inf at nominal energy 200 MeV \(line 15 of t.csv\)"),
    ([(80, "ppmu", "NaN")], r"protons_per_mu \(column 'ppmu'\) = nan at nominal energy 80 MeV \(line 3 of t.csv\)"),
    # the first in the file's order: line 4's last column before line 9's first
    ([(140, "E", "nan"), (90, "cy", "nan")], r"correlation_y \(column 'cy'\) = nan at nominal energy 90 MeV "
                                             r"\(line 4 of t.csv\)"),
])
def test_nan_or_inf_refused_naming_its_line_column_and_energy(tmp_path, edits, match):
    """The edges audit of 2026-12-07, F5: before any other check, naming the first non-finite value's place."""
    csv = GOOD_CSV
    for e, col, value in edits:
        csv = _edit_row(csv, e, col, value)
    with pytest.raises(BeamModelError, match=match) as exc:
        _model(tmp_path, csv=csv)
    assert str(tmp_path / "m.toml") in str(exc.value) and "does not increase" not in str(exc.value)
    assert "must be a finite number; correct the table" in str(exc.value)


def test_nan_in_a_bdl_names_its_row_and_column():
    text = bdl_text_from_csv(MCSQ_CSV).replace("\t0.948\t", "\tnan\t", 1)
    with pytest.raises(BeamModelError, match=r"weight of component 1 \(column 'Weight1'\) = nan at nominal energy "
                                             r"\d+ MeV \(row \d+ of 'Beam parameters'\) is NaN or infinite"):
        parse_bdl(text)


def _scaled(csv, col, f):
    lines = csv.splitlines()
    k = lines[0].split(",").index(col)
    out = [lines[0]]
    for ln in lines[1:]:
        v = ln.split(",")
        v[k] = f"{float(v[k]) * f:.6g}"
        out.append(",".join(v))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("csv, match", [
    # F2 warnings: sigma in cm (CAX dose x 4.7), protons/MU x 1000 and / 1000, spread x 5 (FWHM of a wide beam),
    # mean 5 % above nominal; a step of protons/MU between close energies at the end of the table
    (_scaled(_scaled(GOOD_CSV, "sx", 0.1), "sy", 0.1),
     r"spot sigma sigma_x \(column 'sx'\) = 0.43 mm at nominal energy 70 MeV .* below 1 mm"),
    (_scaled(GOOD_CSV, "ppmu", 1000), r"protons_per_mu \(column 'ppmu'\) = 2e\+09 .* outside 1e\+05-1e\+09.*units"),
    (_scaled(GOOD_CSV, "ppmu", 1e-3), r"= 2e\+03 at nominal energy 70 MeV"),
    (_scaled(GOOD_CSV, "dE", 5), r"energy_spread \(column 'dE'\) is 14.4 MeV = 6.0 % of the mean energy"),
    (_scaled(GOOD_CSV, "Em", 1.05), r"mean_energy \(column 'Em'\) differs from the nominal energy by more than "
                                    r"max\(3 MeV, 3 %\) at 18 energies"),
    (_edit_row(GOOD_CSV, 240, "ppmu", 1.2e7), r"protons_per_mu \(column 'ppmu'\) jumps by x 2.\d+ from nominal "
                                              "energy 230 MeV"),
], ids=["sigma_cm", "ppmu_x1000", "ppmu_div1000", "spread_x5", "mean_5pct", "ppmu_step_at_end"])
def test_implausible_values_warned(tmp_path, csv, match):
    said, _ = _said(lambda: _model(tmp_path, csv=csv))
    assert re.search(match, said[0]), said
    assert all(str(tmp_path / "m.toml") in w for w in said)
    assert len(said) == (2 if "sigma" in match else 1), said   # sigma: x and y


def test_sparse_model_and_energies_above_the_nuclear_data_warned_once(tmp_path):
    """F2: only 70 and 240 MeV (spread 34 % low at 115 MeV); F4: nuclear data held constant above 250 MeV."""
    csv = "\n".join(GOOD_CSV.splitlines()[i] for i in (0, 1, 18)) + "\n"
    m = _model(tmp_path, csv=csv)
    said, _ = _said(lambda: [m.at(e) for e in (115, 120, 70, 240)])
    assert len(said) == 1 and "115 MeV is interpolated linearly between the model's energies 70 and 240 MeV, 170 " \
        "MeV apart" in said[0], said
    csv = "E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n" + "".join(
        f"{e},{e + 0.3},1.0,2e7,4,4,0.003,0.003,0.1,0.1\n" for e in range(160, 340, 10))
    m = _model(tmp_path, csv=csv)
    said, _ = _said(lambda: [m.at(e) for e in (200, 300, 330)])
    assert len(said) == 1 and "mean energy at nominal energy 300 MeV = 300.3 MeV is above 250 MeV, where mcproton's " \
        "nuclear data end" in said[0], said


def test_a_model_reused_for_another_plan_says_it_is_above_the_nuclear_data_again(tmp_path):
    """In-process audit 25, F2: "above 250 MeV, not validated" was said once per model object, so a model loaded
    once and reused for a second plan or check (a script looping over plans) left it out of the second call's beams
    (``meta["warnings"]``, from which simulate's result takes them) and the second check's report, while nothing
    else says it for a plan's beams.  Now once per plan_to_beams call (and run or check), as the gap warning."""
    import warnings

    from dicom_factories import make_plan, spot_grid

    from mcproton._io.rtplan import load_rtplan, plan_to_beams

    csv = "E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n" + "".join(
        f"{e},{e + 0.3},1.0,2e7,4,4,0.003,0.003,0.1,0.1\n" for e in range(160, 340, 10))
    m = _model(tmp_path, csv=csv)
    said = "the mean energy at nominal energy 300 MeV = 300.3 MeV is above 250 MeV, where mcproton's nuclear data end"
    for layers in ([(300.0, spot_grid(1, 8.0), [1.0]), (200.0, spot_grid(1, 8.0), [1.0])],
                   [(300.0, spot_grid(2, 8.0), [1.0] * 4)]):
        plan = load_rtplan(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers,
                                       "meterset": 10.0}]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beams = plan_to_beams(plan, m)
        assert sum(said in w for w in beams[0].meta["warnings"]) == 1, beams[0].meta["warnings"]


def test_shipped_models_load_without_a_warning():
    from mcproton._io.beam_model import BUILTIN

    for name in BUILTIN:
        said, m = _said(lambda: load_beam_model(name))
        assert said == [], (name, said)
        assert m.provenance()["sha256"] and m.provenance()["table_sha256"] and m.path.endswith(".toml")


def test_bdl_rows_beyond_the_announced_count_are_ignored_as_mcsquare_does_with_a_warning(tmp_path):
    """F3: MCsquare (read_UPenn_BDL) reads the announced N rows; OpenTPS's BDL says 26 energies and lists 27: its
    225 MeV row is not used, as in the MCsquare doses of tests/data/dicom/opentps_head, but no longer silently."""
    from pathlib import Path

    bdl = Path(__file__).resolve().parents[1] / "data" / "dicom" / "opentps_head" / "BDL_default_DN_RangeShifter.txt"
    said, m = _said(lambda: load_beam_model(bdl))
    assert m.energy_range_mev == (20.0, 220.0)
    assert len(said) == 1 and "announces 26 energies but 27 rows follow" in said[0] and "225.000 MeV" in said[0] \
        and "IGNORED" in said[0], said
    import hashlib

    sha = hashlib.sha256(bdl.read_bytes()).hexdigest()
    assert m.provenance() == {"name": bdl.stem, "path": str(bdl), "sha256": sha}
    fixed = tmp_path / "bdl.txt"
    fixed.write_text(bdl.read_text().replace("26 energies", "27 energies"))
    said, m = _said(lambda: load_beam_model(fixed))
    assert said == [] and m.energy_range_mev == (20.0, 225.0)


def test_bdl_spot_sigma_in_cm_warned_naming_its_columns():
    text = bdl_text_from_csv(MCSQ_CSV)
    lines = text.splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("NominalEnergy"))
    head = lines[k].split()
    for i in range(k + 1, len(lines)):
        v = lines[i].split()
        if len(v) == len(head):
            v[head.index("SpotSize1x")] = f"{float(v[head.index('SpotSize1x')]) / 10:.5f}"
            lines[i] = "\t".join(v)
    said, _ = _said(lambda: parse_bdl("\n".join(lines) + "\n", source="bdl.txt"))
    assert len(said) == 1 and "sigma_x (column 'SpotSize1x/SpotSize2x')" in said[0] and "below 1 mm" in said[0]


def test_docs_template_loads(tmp_path):
    """F5: the minimal template of docs/beam_model.md (its TOML and CSV blocks) is a valid model."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "beam_model.md").read_text()
    toml = re.search(r"```toml\n(# my_machine.toml.*?)```", doc, re.S).group(1)
    csv = re.search(r"```\n(# my_machine.csv.*?)```", doc, re.S).group(1)
    (tmp_path / "my_machine.toml").write_text(toml)
    (tmp_path / "my_machine.csv").write_text(csv)
    said, m = _said(lambda: load_beam_model(tmp_path / "my_machine.toml"))
    assert said == [] and m.name == "my_machine" and m.machines == ("TR1",)
    assert m.at(150).components[0].sigma_mm[0] > 1


def test_plan_layers_in_a_gap_of_the_model_are_counted_in_one_warning(tmp_path):
    """Audit 18b F9: the gap warning named the first energy met ("nominal energy 86.48 MeV is interpolated ...") while
    all 13 layers of the field lay in the gap.  Now plan_to_beams says, once per gap, how many layers of which beams,
    their energies and share of the MU; at() says no more of it."""
    from dicom_factories import make_plan, save

    from mcproton._io.rtplan import load_rtplan, plan_to_beams

    csv = "\n".join(GOOD_CSV.splitlines()[i] for i in (0, 1, 18)) + "\n"   # 70 and 240 MeV only
    m = _model(tmp_path, csv=csv)
    spot = [(0.0, 0.0)]
    plan = load_rtplan(save(make_plan([
        {"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 30.0,
         "layers": [(120.0, spot, [1.0]), (110.0, spot, [1.0]), (100.0, spot, [1.0])]},
        {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 20.0,
         "layers": [(150.0, spot, [1.0]), (70.0, spot, [1.0])]}]), tmp_path / "RP.dcm"))
    said, _ = _said(lambda: plan_to_beams(plan, m, machine_check=False))
    gap = [w for w in said if "70 and 240 MeV" in w]
    assert len(gap) == 1, said
    assert "4 layer(s) of beam(s) 1, 2 (100-150 MeV, 80 % of the MU) lie between the model's energies 70 and 240 " \
        "MeV, 170 MeV apart" in gap[0], gap

"""The text tables a user gives, as spreadsheets and editors in other locales write them (locale audit 2026-12-07):
CSV tables (a beam model's, commissioning measurements: mcproton/_io/csv_table.py), the HU calibration's files
(hu_density.csv, hu_spr.csv, hu_materials.csv, MCsquare's HU_Density_Conversion.txt and HU_Material_Conversion.txt:
mcproton/_io/hu_calibration.py) and MCsquare BDLs (mcproton/_io/beam_model.py).

F2: a CSV row with fewer values than the header was taken, its missing cells "": with a trailing optional column the
rows leave off, one decimal comma made a row the right length and moved its values one column over (depth "20,0"
read as depth 20, IDD 0).  F3: HU_Material_Conversion.txt's "120,50 48" (a decimal comma in the HU bound) was read
as HU 120 -> material ID 50.  F4: one decimal comma in hu_materials.csv was "internal error: AttributeError", and
the file saved with ';' or tabs "line '...' is not 'HU_lo material_id'".  F9: a BDL saved "UTF-8 with BOM" whose
first line is a section was "missing section".  F10: one decoding rule for the CSV and calibration readers (text_file.
decode_utf8): what is read must be UTF-8, refused naming the line and the byte and saying "save it as UTF-8"; a '#'
comment is not read and may be in any encoding; a file saved as UTF-16 is named as such.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mcproton
from mcproton._io.beam_model import load_beam_model
from mcproton._io.csv_table import read_csv_table
from mcproton._io.errors import BeamModelError, CalibrationError
from mcproton._io.hu_calibration import HUCalibration
from mcproton._io.text_file import decode_utf8
from mcproton.commission import CommissionInputError, read_idd_csv

DATA = Path(mcproton.__file__).parent / "data"
CAL = DATA / "ct_calibration"
BDL = Path(__file__).resolve().parents[1] / "data" / "dicom" / "opentps_head" / "BDL_default_DN_RangeShifter.txt"
SAVE_AS = "save it as UTF-8 (a spreadsheet's 'Save as' offers 'CSV UTF-8', an editor's 'Save as' the encoding)"


# ---- F2: rows with fewer values than the header
def _idd_rows(comma_row: bool) -> list[str]:
    """The audit's IDD file: a trailing comment column the rows leave off; row 5 (line 6) with depth 20,0."""
    z = np.arange(0, 100, 5.0)
    d = np.exp(-((z - 70) / 8) ** 2) + 0.3 * (z < 70)
    rows = ["nominal_energy_mev,depth_mm,idd,comment"] + [f"100,{a:.1f},{b:.4f}" for a, b in zip(z, d)]
    if comma_row:
        rows[5] = rows[5].replace(".", ",", 1)   # 100,20,0,0.3000: four values, as many as the header's columns
    return rows


def test_a_row_with_fewer_values_than_the_header_is_refused_naming_the_line(tmp_path):
    """Before: read, the IDD at 20 mm 0.0 (the file: 0.3), and every check on the curve passed."""
    p = tmp_path / "idd.csv"
    p.write_text("\n".join(_idd_rows(comma_row=True)) + "\n")
    with pytest.raises(CommissionInputError) as exc:
        read_idd_csv(p)
    assert str(exc.value).startswith(
        f"measured IDD file {p}: line 2 has 3 values, fewer than the header (line 1) has columns (4; 'comment' "
        "missing); every row gives every column, an empty one as nothing between two commas (a trailing ',' for "
        "the last): with ',' as the delimiter, a decimal comma (0,5) in a short row moves the values"), exc.value
    # every row with its empty comment: read; the decimal comma then gives one value too many, refused
    p.write_text("\n".join(r + "," if i else r for i, r in enumerate(_idd_rows(comma_row=False))) + "\n")
    (z, idd), = read_idd_csv(p).values()
    assert idd[z == 20.0][0] == pytest.approx(0.3)
    p.write_text("\n".join(r + "," if i else r for i, r in enumerate(_idd_rows(comma_row=True))) + "\n")
    with pytest.raises(CommissionInputError, match="line 6 has more values than the header has columns"):
        read_idd_csv(p)


def test_read_csv_table_refuses_short_rows_and_keeps_empty_cells(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("# a comment\na,b,note\n1,2,\n3,4,x\n")
    assert read_csv_table(p, ValueError) == ([{"a": "1", "b": "2", "note": ""}, {"a": "3", "b": "4", "note": "x"}],
                                             [3, 4])
    p.write_text("# a comment\na,b,note\n1,2,\n3\n")
    with pytest.raises(ValueError, match=r"t\.csv: line 4 has 1 values, fewer than the header \(line 2\) has columns "
                                         r"\(3; 'b', 'note' missing\)"):
        read_csv_table(p, ValueError)


def test_a_beam_model_table_row_with_a_value_missing_is_refused(tmp_path):
    csv = "E,Em,dE,ppmu,sx,sy,dx,dy,cx,cy\n" + "".join(
        f"{e},{e + 0.3},{0.012 * e:.3f},{2e6 * (e / 70) ** 0.8:.4g},{5 - e / 100:.3f},{4.5 - e / 100:.3f},0.003,0.003,"
        "0.1,0.1\n" for e in range(70, 250, 10))
    toml = ('name="mine"\ntable="t.csv"\nplane_upstream_of_isocentre_mm=500.0\n'
            'virtual_source_axis_distances_mm=[2000.0,2500.0]\nenergy_spread_unit="MeV"\n'
            '[columns]\nnominal_energy="E"\nmean_energy="Em"\nenergy_spread="dE"\nprotons_per_mu="ppmu"\n'
            '[[component]]\nweight=1.0\nsigma_x="sx"\nsigma_y="sy"\ndivergence_x="dx"\ndivergence_y="dy"\n'
            'correlation_x="cx"\ncorrelation_y="cy"\n')
    (tmp_path / "m.toml").write_text(toml)
    (tmp_path / "t.csv").write_text(csv.replace(",0.1,0.1\n", ",0.1\n", 1))
    with pytest.raises(BeamModelError, match=r"t\.csv: line 2 has 9 values, fewer than the header \(line 1\) has "
                                             r"columns \(10; 'cy' missing\)"):
        load_beam_model(tmp_path / "m.toml")


# ---- F3: HU_Material_Conversion.txt with a third number
def _mcsquare_folder(tmp_path: Path, material_text: str) -> Path:
    d = tmp_path / "scanner"
    d.mkdir(exist_ok=True)
    (d / "HU_Density_Conversion.txt").write_text((CAL / "mcsquare_scanner_default_hu_density.csv").read_text())
    (d / "HU_Material_Conversion.txt").write_text(material_text)
    return d


MATERIALS = "\n".join(ln.replace(",", " ") for ln in
                      (CAL / "mcsquare_scanner_default_hu_material.csv").read_text().splitlines()) + "\n"


def _material_at(cal: HUCalibration, hu: float) -> str:
    return cal.materials[int(cal.material_index_from_hu(np.array([hu]))[0])].name


@pytest.mark.parametrize("old, new, shown", [
    ("\n120 48", "\n120,50 48", "'120,50 48 Schneider_Marrow_Bone01' holds 3 numbers"),   # before: Bone03
    ("\n1000 57", "\n1 000 57", "'1 000 57 Schneider_Marrow_Bone10' holds 3 numbers"),   # before: "ID 0"
    ("\n120 48", "\n120 48 49", "'120 48 49 Schneider_Marrow_Bone01' holds 3 numbers"),
])
def test_a_material_table_line_with_a_third_number_is_refused(tmp_path, old, new, shown):
    text = MATERIALS.replace(old, new)
    line = text.splitlines().index(next(ln for ln in text.splitlines() if ln.startswith(new[1:]))) + 1
    with pytest.raises(CalibrationError) as exc:
        HUCalibration.load(_mcsquare_folder(tmp_path, text))
    msg = str(exc.value)
    assert f"HU_Material_Conversion.txt line {line}: {shown}; a HU -> material table has two, HU_lo and a material " \
           "ID (then, optionally, the material's name). A decimal comma (120,5)" in msg, msg


def test_a_material_table_as_mcsquare_writes_it_is_read(tmp_path):
    """Names after the ID, as a comment or as a third field, and a comment holding a number: read as before."""
    ref = HUCalibration.load(_mcsquare_folder(tmp_path, MATERIALS))
    assert _material_at(ref, 150) == "mcsquare_Schneider_Marrow_Bone01"
    text = "# HU\tMaterial label\n-1050\t39\t# Air 1\n-950 40 # 2\n-120,41,Adipose 3\n120 48 Bone\n"
    cal = HUCalibration.load(_mcsquare_folder(tmp_path, text))
    assert [_material_at(cal, h) for h in (-1000, -500, 0, 150)] == [
        "mcsquare_Schneider_Air", "mcsquare_Schneider_Lung", "mcsquare_Schneider_AT_AG_SI1",
        "mcsquare_Schneider_Marrow_Bone01"]


def test_a_material_id_that_is_not_whole_is_refused(tmp_path):
    with pytest.raises(CalibrationError, match=r"line 2: material ID '48\.5' is not a whole number"):
        HUCalibration.load(_mcsquare_folder(tmp_path, "-1050 39\n120 48.5\n"))


# ---- F4: hu_materials.csv through the CSV reader
def _composition_folder(tmp_path: Path, materials: str, encoding: str = "utf-8") -> Path:
    d = tmp_path / "cal"
    d.mkdir(exist_ok=True)
    (d / "hu_spr.csv").write_bytes((CAL / "dcpt_spr_brain_hu_spr.csv").read_bytes())
    (d / "hu_materials.csv").write_bytes(materials.encode(encoding))
    return d


BODY = [ln for ln in (CAL / "dcpt_spr_brain_materials.csv").read_text().splitlines() if not ln.startswith("#")]


def test_one_decimal_comma_in_hu_materials_is_refused_naming_the_line(tmp_path):
    """Before: mcproton: internal error: AttributeError: 'list' object has no attribute 'strip'."""
    rows = list(BODY)
    rows[3] = rows[3].replace("0.0412", "0,0412", 1)
    with pytest.raises(CalibrationError, match=r"hu_materials\.csv: line 4 has more values than the header has "
                                               r"columns \(15\); the delimiter must be ','"):
        HUCalibration.load(_composition_folder(tmp_path, "\n".join(rows) + "\n"))
    rows[3] = rows[3].replace("0,0412", '"0,0412"', 1)   # quoted: one value that is not a number
    with pytest.raises(CalibrationError, match=r"hu_materials\.csv: line 4: w_H '0,0412' is not a number"):
        HUCalibration.load(_composition_folder(tmp_path, "\n".join(rows) + "\n"))


@pytest.mark.parametrize("sep, named", [(";", "';'"), ("\t", "tabs")])
def test_hu_materials_with_semicolons_or_tabs_is_refused_naming_the_delimiter(tmp_path, sep, named):
    """Before: "line '-1024 DCPT_brain_01 0 0.000124 ...' is not 'HU_lo material_id'" (read as MCsquare's form)."""
    text = "\n".join(ln.replace(",", sep) for ln in BODY) + "\n"
    with pytest.raises(CalibrationError, match=rf"hu_materials\.csv: the columns are separated by {named} \(line 1\)"):
        HUCalibration.load(_composition_folder(tmp_path, text))


def test_a_short_row_in_hu_materials_is_refused(tmp_path):
    rows = list(BODY)
    rows[3] = rows[3].rsplit(",", 1)[0]
    with pytest.raises(CalibrationError, match=r"line 4 has 14 values, fewer than the header \(line 1\) has columns "
                                               r"\(15; 'topas_density_per_spr' missing\)"):
        HUCalibration.load(_composition_folder(tmp_path, "\n".join(rows) + "\n"))


def test_hu_materials_as_shipped_is_read(tmp_path):
    ref = HUCalibration.load("dcpt_spr_brain")
    cal = HUCalibration.load(_composition_folder(tmp_path, "\ufeff" + "\r\n".join(BODY) + "\r\n"))
    h = np.arange(-1000.0, 2000.0, 25.0)
    np.testing.assert_allclose(cal.density_from_hu(h), ref.density_from_hu(h))


# ---- F9: BDL saved "UTF-8 with BOM"
def test_a_bdl_with_a_byte_order_mark_before_its_first_section_is_read(tmp_path):
    """Before: "missing section 'nozzle exit to isocenter distance'; not an MCsquare BDL file?"."""
    ref = load_beam_model(BDL)
    lines = BDL.read_bytes().split(b"\n")
    assert lines[3].startswith(b"Nozzle exit to Isocenter distance")
    p = tmp_path / "bdl.txt"
    p.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines[3:]))   # no title: the section is the first line
    m = load_beam_model(p)
    assert m.plane_upstream_of_isocentre_mm == ref.plane_upstream_of_isocentre_mm
    assert m.virtual_source_axis_distances_mm == ref.virtual_source_axis_distances_mm
    np.testing.assert_array_equal(m.mean_energy_mev, ref.mean_energy_mev)


def test_a_bdl_saved_as_utf16_is_named(tmp_path):
    p = tmp_path / "bdl.txt"
    p.write_bytes(BDL.read_text().encode("utf-16"))   # with its byte-order mark
    with pytest.raises(BeamModelError, match=r"bdl\.txt: saved as UTF-16 \(it begins with the byte-order mark 0xff "
                                             r"0xfe"):
        load_beam_model(p)


# ---- F10: one decoding rule
def test_a_beam_model_table_with_a_windows_1252_comment_is_read_and_a_name_in_it_refused(tmp_path):
    """Before: "cannot be read ('utf-8' codec can't decode byte 0xe6 in position 790: invalid continuation byte)";
    the comment is not read, so it is read now; a byte that is not UTF-8 in the header is refused naming the line."""
    src = DATA / "beam_models" / "dcpt"
    (tmp_path / "m.toml").write_text((src / "dcpt_v5.toml").read_text())
    text = (src / "dcpt_beam_model_full.csv").read_text(encoding="utf-8")
    assert not text.isascii()   # a comment names the Danish centre (Aarhus: 'æ' is 0xe6 in Windows-1252)
    (tmp_path / "dcpt_beam_model_full.csv").write_bytes(text.encode("cp1252"))
    m = load_beam_model(tmp_path / "m.toml")
    np.testing.assert_array_equal(m.protons_per_mu, load_beam_model("dcpt_v5").protons_per_mu)
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    lines[head] = lines[head].replace("model_version", "modèl_version")
    (tmp_path / "dcpt_beam_model_full.csv").write_bytes("\n".join(lines).encode("cp1252"))
    with pytest.raises(BeamModelError) as exc:
        load_beam_model(tmp_path / "m.toml")
    assert str(exc.value) == (f"{tmp_path / 'dcpt_beam_model_full.csv'}: not UTF-8 at line {head + 1} (byte 0xe8); "
                              f"{SAVE_AS}"), exc.value


def test_a_csv_saved_as_utf16_is_named(tmp_path):
    """Before: for hu_density.csv "line 1: '\ufffd\ufffd' is not 'HU density'", for a commissioning CSV the codec's
    message."""
    (tmp_path / "hu_density.csv").write_bytes("HU,density_gcm3\n-1000,0.0012\n0,1.0\n2000,2.0\n".encode("utf-16"))
    (tmp_path / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    with pytest.raises(CalibrationError) as exc:
        HUCalibration.load(tmp_path)
    assert str(exc.value) == (f"{tmp_path / 'hu_density.csv'}: saved as UTF-16 (it begins with the byte-order mark "
                              f"0xff 0xfe, as a spreadsheet's 'Unicode text' export does); {SAVE_AS}"), exc.value
    p = tmp_path / "idd.csv"
    p.write_bytes("\n".join(_idd_rows(comma_row=False)).encode("utf-16-le"))   # no byte-order mark
    with pytest.raises(CommissionInputError, match=r"idd\.csv: saved as UTF-16 without a byte-order mark \(every "
                                                   r"other byte is 0, from line 1\); save it as UTF-8"):
        read_idd_csv(p)
    p.write_bytes("\n".join(_idd_rows(comma_row=False)).encode("utf-16-be"))
    with pytest.raises(CommissionInputError, match=r"idd\.csv: saved as UTF-16 without a byte-order mark"):
        read_idd_csv(p)


# ---- review of 2026-12-07, R4: a file that is not text is not "saved as UTF-16"
RP = Path(__file__).resolve().parents[1] / "data" / "dicom" / "RP_plan05.dcm"


def test_an_rt_plan_or_a_dose_result_given_as_the_beam_model_is_named_as_such(tmp_path):
    """The RT Plan as the beam model (plan.beam_model and plan.rtplan mixed up): before, "holds a NUL byte at line
    1: not a text file (UTF-16 without a byte-order mark?); save it as UTF-8 (a spreadsheet's 'Save as' ...)", which
    points at the wrong thing (before 2026-12-07: "unknown beam-model format").  An HDF5 dose and another binary
    file the same way."""
    with pytest.raises(BeamModelError) as exc:
        load_beam_model(RP)
    assert str(exc.value) == (f"{RP}: unknown beam-model format: a DICOM file (an RT Plan?), not a beam model; give "
                              "a .toml model or an MCsquare BDL text file"), exc.value
    h5 = tmp_path / "result.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    png = tmp_path / "bdl.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    for p, kind in ((h5, "an HDF5 file (a dose result?)"), (png, "a binary file")):
        with pytest.raises(BeamModelError) as exc:
            load_beam_model(p)
        assert str(exc.value).startswith(f"{p}: unknown beam-model format: {kind}, not a beam model"), exc.value
    for p in (RP, h5, png):
        with pytest.raises(BeamModelError) as exc:
            load_beam_model(p)
        assert "UTF" not in str(exc.value) and "spreadsheet" not in str(exc.value), exc.value


def test_a_binary_file_given_as_a_table_is_not_a_text_file(tmp_path):
    """A DICOM file as a CSV table (the readers of commissioning, calibration and beam-model tables): "not a text
    file", no advice to save it as UTF-8."""
    p = tmp_path / "idd.csv"
    p.write_bytes(RP.read_bytes())
    with pytest.raises(CommissionInputError) as exc:
        read_idd_csv(p)
    assert "idd.csv: not a text file (a DICOM file: it holds a NUL byte at line 1); give the text file meant " \
        "here" in str(exc.value), exc.value
    assert "UTF" not in str(exc.value) and "spreadsheet" not in str(exc.value)


def test_calibration_comments_may_hold_any_bytes_and_names_must_be_utf8(tmp_path):
    """A Windows-1252 comment in MCsquare's files (a line of its own or after the numbers): read as before.  A
    material's name in Windows-1252: before, read with a replacement character; now refused naming the line."""
    dens = (CAL / "mcsquare_scanner_default_hu_density.csv").read_text()
    d = _mcsquare_folder(tmp_path, MATERIALS.replace("\n120 48", "\n120 48 # Knochenmark für Gerät 2"))
    (d / "HU_Density_Conversion.txt").write_bytes(("# Kalibrierung für Gerät 2\n" + dens).encode("cp1252"))
    (d / "HU_Material_Conversion.txt").write_bytes((d / "HU_Material_Conversion.txt").read_text().encode("cp1252"))
    assert _material_at(HUCalibration.load(d), 150) == "mcsquare_Schneider_Marrow_Bone01"
    rows = list(BODY)
    rows[1] = rows[1].replace("DCPT_brain_01", "Gehirn_Luft_ä")
    with pytest.raises(CalibrationError) as exc:
        HUCalibration.load(_composition_folder(tmp_path, "\n".join(rows) + "\n", encoding="cp1252"))
    assert str(exc.value) == f"{tmp_path / 'cal' / 'hu_materials.csv'}: not UTF-8 at line 2 (byte 0xe4); {SAVE_AS}"


def test_a_material_name_after_the_id_is_not_read_and_may_be_in_any_encoding(tmp_path):
    """Review of 2026-12-07, R5: MCsquare's HU_Material_Conversion.txt as mcsquare_default's, saved as Latin-1 with
    ``-950 40 Lunge_ä`` (the name after the ID, which is never read: the ID gives the material, and OpenTPS's reader
    takes the first two fields).  Loaded before 2026-12-07; then refused "not UTF-8 at line 2 (byte 0xe4)".  Read
    again, with mcsquare_default's materials; a byte that is not UTF-8 in the HU bound or the ID, and a third
    number, are still refused."""
    ref = HUCalibration.load("mcsquare_default")
    lines = MATERIALS.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("-950 40"))
    lines[i] = "-950 40 Lunge_ä"
    d = _mcsquare_folder(tmp_path, "")
    (d / "HU_Material_Conversion.txt").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    cal = HUCalibration.load(d)
    assert [m.name for m in cal.materials] == [m.name for m in ref.materials]
    assert [m.mass_fractions for m in cal.materials] == [m.mass_fractions for m in ref.materials]
    for bad, complaint in (("-950 4\xe40 Lunge", f"not UTF-8 at line {i + 1} (byte 0xe4)"),
                           ("-950\xe4 40 Lunge", f"not UTF-8 at line {i + 1} (byte 0xe4)"),
                           ("-950 40 41 Lunge_\xe4", f"line {i + 1}: '-950 40 41 Lunge_\ufffd' holds 3 numbers")):
        lines[i] = bad
        (d / "HU_Material_Conversion.txt").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        with pytest.raises(CalibrationError) as exc:
            HUCalibration.load(d)
        assert complaint in str(exc.value), exc.value


def test_decode_utf8_comments():
    raw = "# Gerät\nHU,rho # für\nx,y\n".encode("cp1252")
    assert decode_utf8(raw, "f", ValueError, comments="inline") == "# Ger\ufffdt\nHU,rho # f\ufffdr\nx,y\n"
    with pytest.raises(ValueError, match=r"f: not UTF-8 at line 2 \(byte 0xfc\)"):   # '#' within a CSV row is data
        decode_utf8(raw, "f", ValueError, comments="line")
    with pytest.raises(ValueError, match=r"f: not UTF-8 at line 1 \(byte 0xe4\); save it as UTF-8 \(a TOML file"):
        decode_utf8(raw, "f", ValueError)   # a TOML file: every byte
    assert decode_utf8("\ufeffHU é\n".encode("utf-8"), "f", ValueError) == "HU é\n"

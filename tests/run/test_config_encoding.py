"""The TOML files a user gives (the run config, mcproton check's action levels, a beam model) are read as UTF-8
whatever the locale, a byte-order mark is removed, and a file that is not UTF-8 is refused naming the line and the
byte (deployment audit of 2026-12-05, F10 and F11; mcproton/_io/text_file.py).

F10: the run config was decoded with the locale's encoding (``Path.read_text()``): under a Latin-1 locale a UTF-8
``body_outline = "Körper"`` became "KÃ¶rper" and the run was refused for an ROI that does not exist.  The locale is
simulated two ways: ``Path.read_text`` decoding as Latin-1 when no encoding is given (what it does under such a
locale), and a subprocess under ``LC_ALL=C`` with Python's UTF-8 mode off (an ASCII locale).
F11: a config saved as "UTF-8 with BOM" was "not valid TOML (at line 1, column 1)"; one saved as Windows-1252 gave
the codec's message, naming neither the file nor the line.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import log_lines  # tests/fakes.py
from run_helpers import CFG

from mcproton.config import ConfigError, load_config

BOM = b"\xef\xbb\xbf"
#: a run config with non-ASCII text: an ROI name compared with the structure set's, and a comment
UMLAUT_CFG = CFG.format(primaries=1000, run_extra="") + '# Müller, Zoë\nbody_outline = "Körper"\n'


def _write(path: Path, text: str, *, encoding: str = "utf-8", bom: bool = False) -> Path:
    path.write_bytes((BOM if bom else b"") + text.encode(encoding))
    return path


def test_the_config_is_utf8_under_a_latin1_locale(tmp_path, monkeypatch):
    """``read_text()`` without an encoding decodes as the locale says (here Latin-1): the config is not read so."""
    cfg = _write(tmp_path / "job.toml", UMLAUT_CFG)
    real = Path.read_text

    def latin1_locale(self, encoding=None, errors=None, **kw):
        return real(self, encoding=encoding or "latin-1", errors=errors, **kw)

    monkeypatch.setattr(Path, "read_text", latin1_locale)
    assert load_config(cfg)["output"]["body_outline"] == "Körper"


def test_the_config_is_utf8_under_an_ascii_locale(tmp_path):
    """A subprocess under LC_ALL=C with UTF-8 mode off: the locale's encoding is ASCII ('ascii' codec can't decode
    byte 0xc3, before)."""
    cfg = _write(tmp_path / "job.toml", UMLAUT_CFG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    code = ("import locale, sys; from mcproton.config import load_config; "
            "print(locale.getpreferredencoding(False), ascii(load_config(sys.argv[1])['output']['body_outline']))")
    proc = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert proc.returncode == 0, proc.stderr
    enc, value = proc.stdout.split()
    assert value == ascii("Körper")
    if enc.lower().replace("-", "") == "utf8":
        pytest.skip("this Python reads the C locale as UTF-8: the locale could not be made ASCII")


@pytest.mark.parametrize("bom", [False, True])
def test_a_config_with_a_byte_order_mark_is_read(tmp_path, bom):
    cfg = _write(tmp_path / "job.toml", UMLAUT_CFG, bom=bom)
    assert load_config(cfg)["output"]["body_outline"] == "Körper"


def test_a_config_that_is_not_utf8_is_refused_naming_the_line_and_byte(tmp_path, capsys):
    from mcproton.cli import main

    text = UMLAUT_CFG.replace("# Müller", "# M\u00fcller")   # cp1252: ü is the byte 0xfc
    cfg = _write(tmp_path / "job.toml", text, encoding="cp1252")
    line = text.splitlines().index("# Müller, Zoë") + 1
    with pytest.raises(ConfigError, match=rf"job\.toml: not UTF-8 at line {line} \(byte 0xfc\); save it as UTF-8"):
        load_config(cfg)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 2
    err = log_lines(capsys.readouterr().err.strip())
    assert err == [f"mcproton: config error: {cfg}: not UTF-8 at line {line} (byte 0xfc); save it as UTF-8 (a TOML "
                   "file must be UTF-8; an editor's 'Save as' offers the encoding)"], err


def test_the_checks_action_levels_are_read_as_utf8_with_a_bom_and_refused_when_not_utf8(tmp_path):
    from mcproton._check.levels import ActionLevels

    text = "# Grenzwerte für die Prüfung\n[levels]\ngamma_3_2_min = 97.0\n"
    levels = ActionLevels.load(_write(tmp_path / "bom.toml", text, bom=True))
    assert levels.gamma_3_2_min == 97.0
    with pytest.raises(ConfigError, match=r"cp\.toml: not UTF-8 at line 1 \(byte 0xfc\)"):
        ActionLevels.load(_write(tmp_path / "cp.toml", text, encoding="cp1252"))


def test_a_beam_model_toml_with_a_bom_is_read_and_one_not_utf8_refused(tmp_path):
    import mcproton
    from mcproton._io.beam_model import load_beam_model
    from mcproton._io.errors import BeamModelError

    src = Path(mcproton.__file__).parent / "data" / "beam_models" / "dcpt"
    shutil.copy(src / "dcpt_beam_model_full.csv", tmp_path)
    text = "# Strahlmodell für Raum 1\n" + (src / "dcpt_v5.toml").read_text(encoding="utf-8")
    ref = load_beam_model(src / "dcpt_v5.toml")
    model = load_beam_model(_write(tmp_path / "bom.toml", text, bom=True))
    assert model.nominal_energy_mev.tolist() == ref.nominal_energy_mev.tolist()
    assert model.protons_per_mu.tolist() == ref.protons_per_mu.tolist()
    with pytest.raises(BeamModelError, match=r"cp\.toml: not UTF-8 at line 1 \(byte 0xfc\)"):
        load_beam_model(_write(tmp_path / "cp.toml", text, encoding="cp1252"))


def test_a_calibration_csv_with_a_byte_order_mark_is_read(tmp_path):
    """Spreadsheets export "CSV UTF-8" with a BOM: it was part of the first column's name (or the first number)."""
    from mcproton._io.hu_calibration import HUCalibration

    _write(tmp_path / "hu_density.csv", "HU,density_gcm3\n-1000,0.0012\n0,1.0\n2000,2.0\n", bom=True)
    _write(tmp_path / "hu_materials.csv", "hu_lo,name,w_H,w_O\n-1000,air_like,0.111,0.889\n0,water,0.111,0.889\n",
           bom=True)
    c = HUCalibration.load(tmp_path)
    assert c.density_from_hu(1000) == pytest.approx(1.5)


def _latin1_locale() -> str | None:
    """A Latin-1 locale installed on this machine (``locale -a``, or one built with localedef into $LOCPATH), or
    None."""
    try:
        names = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        names = []
    if os.environ.get("LOCPATH") and Path(os.environ["LOCPATH"]).is_dir():
        names += sorted(os.listdir(os.environ["LOCPATH"]))
    return next((n for n in names if n.lower().replace("-", "").endswith(("iso88591", "iso885915"))), None)


def _under_locale(name: str, code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL=name, PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)


def test_a_folder_named_in_utf8_is_found_under_a_latin1_locale(tmp_path):
    """The config read as UTF-8 gives the path "Müller/..."; a folder whose name is its UTF-8 bytes (made on a UTF-8
    system) is found under a Latin-1 locale too (it was found before only because the config was misread)."""
    loc = _latin1_locale()
    if loc is None:
        pytest.skip("no Latin-1 locale installed (locale -a)")
    (tmp_path / "Müller").mkdir()
    (tmp_path / "Müller" / "rtplan.dcm").write_bytes(b"x")
    cfg = _write(tmp_path / "job.toml", '[plan]\nrtplan = "Müller/rtplan.dcm"\n')
    code = ("import sys; from mcproton.config import load_config, _resolve; c = load_config(sys.argv[1]); "
            "print(_resolve(c, c['plan']['rtplan']).exists())")
    proc = _under_locale(loc, code, str(cfg))
    assert proc.returncode == 0 and proc.stdout.split() == ["True"], proc.stderr


def test_a_non_ascii_path_under_an_ascii_locale_is_one_line_naming_the_remedy(tmp_path):
    """Under LC_ALL=C with Python's UTF-8 mode off, a non-ASCII name cannot be a file name: one line saying so and
    what to do (it was the codec's message)."""
    (tmp_path / "Müller" / "ct").mkdir(parents=True)
    cfg = _write(tmp_path / "job.toml", CFG.format(primaries=1000, run_extra="").replace(
        'type = "water"', 'type = "ct"\nct_dir = "Müller/ct"'))
    proc = _under_locale("C", "from mcproton.cli import main; import sys; sys.exit(main(sys.argv[1:]))", "run",
                         str(cfg), "--out", str(tmp_path / "o.h5"), "--check-config")
    if "ascii" not in _under_locale("C", "import sys; print(sys.getfilesystemencoding())").stdout.lower():
        pytest.skip("this Python's file system encoding is not ASCII under LC_ALL=C")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "cannot hold in a file name" in err[0] and "LC_ALL=C.UTF-8" in err[0], err

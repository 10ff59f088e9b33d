"""A path whose name an ASCII locale cannot hold is refused before the transport (automation audit 2026-12-06, F5;
mcproton/_io/path_text.py).

Under ``LC_ALL=C`` with Python's UTF-8 mode and the C-locale coercion off, a non-ASCII name from the command line or
a folder is held with surrogate escapes: it opens, but the report's and the HDF5's UTF-8 text cannot hold it.  Before,
``mcproton run`` transported and then failed writing the HDF5 ("'utf-8' codec can't encode ... surrogates not
allowed"), the result left only in a checkpoint; ``mcproton check`` ran its MC and failed writing the report.  Each
command runs in a subprocess under that environment (a refusal: about a second each).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import CFG

ROOT = Path(__file__).resolve().parents[2]
#: "Müller" as a UTF-8 system writes it on disk
MUELLER = b"M\xc3\xbcller"
REFUSAL = "holds characters that this locale's encoding (ascii) cannot hold in a file name: run under a UTF-8 locale"


def _ascii_locale(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", OMP_NUM_THREADS="1")
    code = ("import sys; from mcproton.cli import main; "
            "import locale; print('fs', sys.getfilesystemencoding(), file=sys.stderr); sys.exit(main())")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env, cwd=cwd, timeout=300)


def _skip_unless_ascii(proc: subprocess.CompletedProcess) -> None:
    if b"fs ascii" not in proc.stderr:
        pytest.skip("this Python's file system encoding under LC_ALL=C is not ASCII: the locale could not be made "
                    "ASCII")


def test_run_with_its_config_in_a_non_ascii_folder_is_refused_before_the_transport(tmp_path):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/" + MUELLER))
    folder.mkdir()
    (folder / "job.toml").write_text(CFG.format(primaries=2000, run_extra=""), encoding="utf-8")
    proc = _ascii_locale("run", b"M\xc3\xbcller/job.toml", "--out", "o.h5", "--quiet", cwd=tmp_path)
    _skip_unless_ascii(proc)
    err = proc.stderr.decode("ascii", "backslashreplace")
    assert proc.returncode == 2, err
    assert "config's folder" in err and REFUSAL in err, err
    assert "surrogates" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.fsdecode(MUELLER)], "nothing written: no checkpoint"


def test_run_with_a_non_ascii_out_is_refused(tmp_path):
    (tmp_path / "job.toml").write_text(CFG.format(primaries=2000, run_extra=""), encoding="utf-8")
    proc = _ascii_locale("run", "job.toml", "--out", MUELLER + b".h5", "--quiet", cwd=tmp_path)
    _skip_unless_ascii(proc)
    err = proc.stderr.decode("ascii", "backslashreplace")
    assert proc.returncode == 2 and "--out" in err and REFUSAL in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


@pytest.mark.parametrize("batch", [False, True])
def test_check_of_a_non_ascii_patient_folder_is_refused_before_anything_is_read(tmp_path, batch):
    pytest.importorskip("pymedphys")   # the check asks for its gamma's package first
    export = tmp_path / "export"
    patient = Path(os.fsdecode(bytes(export) + b"/Pat " + MUELLER))
    patient.mkdir(parents=True)
    (patient / "RP.dcm").write_bytes(b"not read")
    where = ["export", "--batch"] if batch else [os.fsencode(patient)]
    proc = _ascii_locale("check", *where, "--beam-model", "dcpt_v5", "--out", "checks", "--quiet", cwd=tmp_path)
    _skip_unless_ascii(proc)
    err = proc.stderr.decode("ascii", "backslashreplace")
    assert proc.returncode == 2, err
    assert ("a patient's sub-folder" if batch else "the patient folder") in err and REFUSAL in err, err
    assert not (tmp_path / "checks").exists()


def test_a_write_that_meets_such_a_name_names_the_cause():
    """The outputs' writers (the last line of defence): UTF-8's "surrogates not allowed" read as the locale's."""
    from mcproton.cli import _one_line

    exc = UnicodeEncodeError("utf-8", '{"path": "/data/Pat \udcc3\udc9c"}', 20, 22, "surrogates not allowed")
    text = _one_line(exc)
    assert text.startswith("a file name in an output's text ('Ü') holds characters that this locale's encoding")
    assert "run under a UTF-8 locale" in text


def test_names_held_or_not():
    from mcproton._io.path_text import holds_unwritable_text

    assert not holds_unwritable_text("/data/plain/RP.dcm")
    assert holds_unwritable_text("/data/Pat \udcc3\udc9c")   # surrogate escapes: no UTF-8 text holds them


def _ct_job(tmp_path: Path) -> Path:
    """A 40 mm water CT (write_phantom_ct, 5 mm voxels) and a 70 MeV pencil config of 1000 primaries."""
    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct

    g = box_phantom("water", (40.0, 40.0, 40.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-17.5, -17.5, -17.5)
    write_phantom_ct(g, tmp_path / "ct")
    (tmp_path / "job.toml").write_text(
        '[run]\nprimaries = 1000\nbatches = 2\nbackend = "cpu"\nthreads = 1\n[phantom]\ntype = "ct"\nct_dir = "ct"\n'
        '[beam]\nenergy_mev = 70.0\nposition_mm = [0.0, 0.0, -30.0]\ndirection = [0.0, 0.0, 1.0]\n'
        'sigma_mm = [3.0, 3.0]\n[output]\nplot = false\n', encoding="utf-8")
    return tmp_path / "job.toml"


def test_a_stray_non_ascii_note_in_the_ct_folder_does_not_refuse_the_run(tmp_path):
    """New-features audit 2026-12-06, F4: every entry of phantom.ct_dir was refused by its name, so a note beside the
    slices ("Notiz_für_Physik.txt", opened by the CT reader, found not DICOM and skipped unnamed) refused the whole
    run under an ASCII locale.  Now only the files the CT reader may read as DICOM (and so may name) are: the run
    completes and writes its HDF5 (the note's name written nowhere)."""
    _ct_job(tmp_path)
    (tmp_path / "ct" / os.fsdecode(b"Notiz_f\xc3\xbcr_Physik.txt")).write_text("bitte nicht löschen", encoding="utf-8")
    proc = _ascii_locale("run", "job.toml", "--out", "o.h5", "--quiet", cwd=tmp_path)
    _skip_unless_ascii(proc)
    err = proc.stderr.decode("ascii", "backslashreplace")
    assert proc.returncode == 0, err
    assert (tmp_path / "o.h5").is_file()


def test_a_non_ascii_ct_slice_is_still_refused(tmp_path):
    """A slice the CT reader reads (named like DICOM) keeps its refusal: its name may be written in a warning, which
    the HDF5's provenance keeps."""
    _ct_job(tmp_path)
    first = sorted((tmp_path / "ct").iterdir())[0]
    first.rename(first.with_name(os.fsdecode(MUELLER + b".dcm")))
    proc = _ascii_locale("run", "job.toml", "--out", "o.h5", "--quiet", cwd=tmp_path)
    _skip_unless_ascii(proc)
    err = proc.stderr.decode("ascii", "backslashreplace")
    assert proc.returncode == 2 and "a file of phantom.ct_dir" in err and REFUSAL in err, err
    assert not (tmp_path / "o.h5").exists()

"""``mcproton commission``'s --out (audit 26 exitcodes, F1): it had no lock, no stop-signal handling and no record of a
run that did not complete, so the earlier PASS ``commission.json`` stayed in --out after a SIGTERM during the Monte
Carlo, after a full disk while the failing re-commissioning wrote its report (beside that run's new figure), and
under a second commissioning that failed into the same folder at the same time.  Now, as ``mcproton validate``: the
folder's lock (a second run exits 3), the earlier report set aside into ``earlier_commission_<date>/`` as it starts
(removed once the new report is complete), and a stop or an error leaves ``commission.json`` as the record of it
(``passed`` false, ``status``, ``exit_status``), never a PASS that is not this run's.

No transport: --spots only (the in-air comparison is analytic)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mcproton.cli import main


@pytest.fixture(scope="module")
def spots(tmp_path_factory):
    """Measured spot sizes that dcpt_v5 passes (its own in-air sigma, within 5 %), and ones it fails (x 1.5)."""
    from mcproton._io.beam_model import load_beam_model
    from mcproton.commission import model_spot_sigma_mm

    v5 = load_beam_model("dcpt_v5")
    d = tmp_path_factory.mktemp("spots")
    for name, f in (("ok.csv", 1.03), ("bad.csv", 1.5)):
        lines = ["nominal_energy_mev,z_mm,sigma_x_mm,sigma_y_mm"]
        for e in (100.0, 160.0):
            for z in (-200.0, 0.0, 200.0):
                sx, sy = model_spot_sigma_mm(v5, e, z)
                lines.append(f"{e},{z},{f * float(sx):.4f},{f * float(sy):.4f}")
        (d / name).write_text("\n".join(lines) + "\n")
    return d / "ok.csv", d / "bad.csv"


def _commission(out: Path, spot_file: Path) -> int:
    return main(["commission", "--beam-model", "dcpt_v5", "--spots", str(spot_file), "--out", str(out),
                 "--threads", "1"])


def _earlier_pass(out: Path, ok: Path) -> dict[str, bytes]:
    assert _commission(out, ok) == 0
    doc = json.loads((out / "commission.json").read_text())
    assert doc["passed"] is True and doc["status"] == "pass" and doc["exit_status"] == 0
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _aside(out: Path) -> Path:
    moved = list(out.glob("earlier_commission_*"))
    assert len(moved) == 1, sorted(p.name for p in out.iterdir())
    return moved[0]


def _no_pass_in(out: Path) -> None:
    """No commission.json directly in ``out`` says passed."""
    doc = json.loads((out / "commission.json").read_text())
    assert doc["passed"] is False and doc["status"] != "pass", doc


def test_sigterm_during_the_comparison_leaves_a_record_not_the_earlier_pass(spots, tmp_path):
    ok, _bad = spots
    out = tmp_path / "cm"
    before = _earlier_pass(out, ok)
    script = textwrap.dedent("""
        import os, signal, sys, time
        import mcproton.commission as c
        from mcproton.cli import main

        def fits(*a, **k):   # during the comparison (where the IDDs' Monte Carlo runs)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)

        c._spot_fits = fits
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.run([sys.executable, "-c", script, "commission", "--beam-model", "dcpt_v5", "--spots", str(ok),
                           "--out", str(out), "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr   # before: -15, no word, the PASS in place
    assert "interrupted by SIGTERM: no report was written to --out" in proc.stderr, proc.stderr
    _no_pass_in(out)
    record = json.loads((out / "commission.json").read_text())
    assert record["status"] == "interrupted" and record["exit_status"] == 143
    moved = _aside(out)
    assert record["earlier_outputs_moved_to"] == str(moved)
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == before   # kept as it was
    assert sorted(p.name for p in out.iterdir()) == ["commission.json", moved.name]   # no lock, no figure
    # the next complete commissioning removes the record and the folder it names
    assert _commission(out, ok) == 0
    assert sorted(p.name for p in out.iterdir()) == ["commission.html", "commission.json", "spots.png"]


@pytest.mark.parametrize("record_fits", [True, False])
def test_a_full_disk_while_the_failing_report_is_written_leaves_no_pass(record_fits, spots, tmp_path, monkeypatch,
                                                                        capsys):
    """Before: exit 3, and --out held the earlier PASS commission.json and commission.html beside the failing run's
    new spots.png.  Now this run's files are removed and commission.json records the failure; where even the record
    cannot be written (``record_fits`` False), the earlier report stays in earlier_commission_<date>/."""
    import errno

    from mcproton._io import atomic

    ok, bad = spots
    out = tmp_path / "cm"
    before = _earlier_pass(out, ok)
    real, failed = atomic.atomic_write_file, []

    def full(target, write):   # the report's JSON (the first write, or every one) meets a full disk
        if Path(target) == out / "commission.json" and not (record_fits and failed):
            failed.append(target)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return real(target, write)

    monkeypatch.setattr(atomic, "atomic_write_file", full)
    assert _commission(out, bad) == 3
    err = capsys.readouterr().err
    assert not (out / "spots.png").exists(), "the failing run's figure is left"
    moved = _aside(out)
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == before
    if record_fits:
        _no_pass_in(out)
        assert json.loads((out / "commission.json").read_text())["status"] == "environment_error"
        assert "records this commissioning, which did not complete" in err, err
    else:
        assert sorted(p.name for p in out.iterdir()) == [moved.name]
        assert f"its record could not be written to {out / 'commission.json'}" in err
        assert f"the earlier report stays in {moved}" in err, err


def test_a_second_commissioning_on_a_busy_out_is_refused(spots, tmp_path, capsys):
    from mcproton._io.lock import OutputLock

    ok, bad = spots
    out = tmp_path / "cm"
    before = _earlier_pass(out, ok)
    with OutputLock(out, "--out", folder=True):   # another commissioning (or check, validate) writes it now
        assert _commission(out, bad) == 3
    assert "is being written by another run now" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_refused_input_sets_the_earlier_pass_aside_and_a_new_folder_gets_nothing(spots, tmp_path, capsys):
    ok, _bad = spots
    out = tmp_path / "cm"
    _earlier_pass(out, ok)
    assert _commission(out, tmp_path / "missing.csv") == 2
    _no_pass_in(out)
    assert json.loads((out / "commission.json").read_text())["status"] == "refused"
    _aside(out)
    capsys.readouterr()
    assert _commission(tmp_path / "new", tmp_path / "missing.csv") == 2
    assert not (tmp_path / "new").exists()


def test_every_report_says_its_status(spots, tmp_path):
    ok, bad = spots
    assert _commission(tmp_path / "b", bad) == 1
    doc = json.loads((tmp_path / "b" / "commission.json").read_text())
    assert doc["status"] == "fail" and doc["exit_status"] == 1 and doc["passed"] is False
    assert os.path.isfile(tmp_path / "b" / "commission.html")
    assert signal.SIGTERM   # (the module's imports are used)

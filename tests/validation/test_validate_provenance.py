"""What ties ``mcproton validate``'s summary.json to what it validated (audit 25 provenance, F2): its ``engine`` held
the settings of the first simulation only, so a validation of cases without a simulation (stopping_power, which
validates the physics data) wrote ``"engine": {}`` and no mcproton version, and two physics data sets gave two PASS
reports that no field told apart; the reference files were named without a hash.  Now summary.json (and the report)
record the build (version, kernel, physics data, code) and every reference file's SHA-256, whatever cases ran."""
from __future__ import annotations

import json

from mcproton.validation import runner


def test_a_validation_without_simulations_records_the_build_and_the_reference_files(tmp_path):
    from mcproton import __version__
    from mcproton._build import check_build_identity, physics_files_sha256
    from mcproton._io.file_hash import sha256_file
    from mcproton.validation.reference import HERE
    from mcproton.validation.report import ENGINE_NOTE

    out = tmp_path / "v"
    assert runner.main(["--quick", "--backend", "cpu", "--out", str(out), "--cases", "stopping_power"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["engine"] == {} and s["engine_note"] == ENGINE_NOTE   # no simulation ran
    assert s["mcproton_version"] == __version__ and s["build"] == check_build_identity()
    assert s["build"]["physics_files_sha256"] == physics_files_sha256() and s["build"]["code_sha256"]
    [case] = s["cases"]
    names = case["reference_files"]
    assert names and sorted(s["reference_files_sha256"]) == sorted(names)
    assert all(s["reference_files_sha256"][n] == sha256_file(HERE / n) for n in names)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert s["build"]["physics_files_sha256"] in html and s["reference_files_sha256"][names[0]] in html

"""Audit 18b F13: on the command line every warning of a check was printed twice, on stderr as it happened and again
in the stdout summary ("warning (during the check): ...").  Then stderr held them back to the end, giving only a
count, which the progress-log audit 26 (F1) found hid the warning that a check would take 32 h until it ended, and
every warning from the log of a check killed with SIGKILL.  Now: on stderr once each, as each is raised; gathered
again, once each, in the summary on stdout (what is read and pasted; check.html and check.json keep them too), with
the count on stderr at the end; a check that does not finish has them on stderr, said as they came."""
from __future__ import annotations

from types import SimpleNamespace

from mcproton._check import api
from mcproton._io.errors import McprotonWarning, recorded, records_warnings, warn
from mcproton.cli import main


def _fake_check(fail: bool):
    @records_warnings
    def check(**kw):
        warn("the first thing to know about this plan", McprotonWarning)
        warn("the second thing", McprotonWarning)
        if fail:
            raise api.CheckInputError("the inputs do not fit")
        said = list(dict.fromkeys(recorded()))
        return SimpleNamespace(
            passed=True, warnings=said, report_html="out/check.html", report_json="out/check.json", mc_rtdose={},
            out_dir=None, summary=lambda: "mcproton check: PASS\n" + "\n".join(
                f"  warning (during the check): {w}" for w in said))
    return check


def test_each_warning_is_printed_once_in_full(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(api, "check", _fake_check(False))
    assert main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    assert out.count("the first thing to know about this plan") == 1 and out.count("the second thing") == 1, out
    assert err.count("mcproton: warning: the first thing to know about this plan") == 1, err
    assert err.count("mcproton: warning: the second thing") == 1, err
    assert ("2 warning(s) during the check, each said above as it came: in full in the summary below and in "
            "out/check.html") in err, err


def test_a_check_that_does_not_finish_prints_them_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(api, "check", _fake_check(True))
    assert main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")]) == 2   # refused
    err = capsys.readouterr().err
    assert err.count("mcproton: warning: the first thing to know about this plan") == 1, err
    assert err.count("mcproton: warning: the second thing") == 1, err

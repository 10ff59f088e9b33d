"""``mcproton check`` as its log shows it (the progress-log audit 26): a check's warnings reach the log as they are
raised, so a check killed with SIGKILL leaves them (F1); its long-run warning names the check's options and judges
every beam (F2, F3) and its bars' per-beam target is explained (F7); ``--batch`` says each patient's verdict as it
ends (F4), says the warnings about the whole batch once and names the patient of every other (F5), and its lines carry
the time of day in a log file (F6)."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_head import write_case  # noqa: E402

from mcproton._check import api  # noqa: E402
from mcproton._io.errors import McprotonRuntimeWarning  # noqa: E402

STAMP = r"\[\d\d:\d\d:\d\d\] "
#: a beam model that warns as it is read: a BDL whose 'Beam parameters' announce 2 energies and give 3 rows
_ROW = ("{e:.3f} \t {e:.3f} \t 0.665290 \t 86703300.0 \t 0.948000 \t 3.985307 \t 0.006356 \t 0.072822 \t 5.586431 \t "
        "0.006545 \t -0.266240 \t 0.052000 \t 38.949745 \t 0.045088 \t -0.125083 \t 22.339186 \t 0.036249 \t -0.222186")
_COLUMNS = ("NominalEnergy MeanEnergy EnergySpread ProtonsMU Weight1 SpotSize1x Divergence1x Correlation1x SpotSize1y "
            "Divergence1y Correlation1y Weight2 SpotSize2x Divergence2x Correlation2x SpotSize2y Divergence2y "
            "Correlation2y").replace(" ", " \t ")
BDL = ("--a test beam model (double gaussian)--\n\nNozzle exit to Isocenter distance\n410.0\n\nSMX to Isocenter "
       "distance\n2234.8\n\nSMY to Isocenter distance\n1859.1\n\nBeam parameters\n2 energies\n\n" + _COLUMNS + "\n"
       + "\n".join(_ROW.format(e=e) for e in (70.0, 100.0, 130.0)) + "\n")


def _batch(tmp_path, *names):
    """A batch folder of patients without DICOM (each refused by the check's pairing)."""
    root = tmp_path / "PTS"
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "notes.txt").write_text("x")
    return root


def test_a_checks_warnings_are_in_its_log_when_it_is_killed(tmp_path):
    """F1: a check held its warnings back to its summary (or to its error), so a check killed with SIGKILL (the OOM
    killer, a batch system's KillWait) left a log without any: not the beam model's, not that the run would take 32
    h.  The check here is the run of a water box whose first batch gives that warning, then waits to be killed."""
    script = textwrap.dedent(f"""
        import sys, time
        from mcproton._check import api
        from mcproton._check.compute import check_wording
        from mcproton._run import streaming
        from mcproton._run.job import JobOptions, run_job
        from mcproton.geometry import box_phantom
        from mcproton.settings import RunSettings
        from mcproton.source import Beam

        def check(**kw):   # the check's MC: a run in the check's words
            streaming.LONG_RUN_S = 0.0   # this run "takes more than a day"
            g = box_phantom("water", (40.0, 40.0, 60.0), (4.0, 4.0, 2.0))
            s = RunSettings(primaries=2000, batch_size=200, seed=1, backend="cpu", threads=1)
            run_job(None, s, g, [Beam.pencil(70.0, position_mm=(0.0, 0.0, -1.0))], None,
                    JobOptions(checkpoint=False, progress=False, wording=check_wording()))
            print("transported", flush=True)
            time.sleep(600)

        api.check = check
        from mcproton.cli import main
        sys.exit(main(["check", {str(tmp_path)!r}, "--beam-model", "dcpt_v5", "--out", {str(tmp_path / "o")!r}]))
    """)
    log = tmp_path / "check.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            line: list[str] = []
            reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
            reader.start()
            reader.join(timeout=120)
            assert line == ["transported\n"], (line, log.read_text())
        finally:
            proc.kill()   # SIGKILL: no handler runs, nothing is flushed at exit
            proc.wait(timeout=30)
    text = log.read_text()
    assert "mcproton: warning: the remaining 1,800 primaries would take about" in text, text
    assert "--time-limit SECONDS" in text and "run.time_limit_s" not in text, text


@pytest.fixture(scope="module")
def two_beams(tmp_path_factory):
    beams = [{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
              "layers": [(100.0, [(0.0, 0.0)], [1.0])]} for g in (90.0, 270.0)]
    return write_case(tmp_path_factory.mktemp("head"), shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5,
                      beams=beams)


def test_a_checks_long_run_warning_names_its_options_and_judges_every_beam(two_beams, tmp_path, monkeypatch, capsys):
    """F2: the check's long-run warning told of run.time_limit_s, a checkpoint and --resume (mcproton run's), none of
    which a check has; F3: it judged the first beam alone.  F7: a line says what the beams' bars stop at."""
    pytest.importorskip("pymedphys")
    from mcproton._run import streaming

    monkeypatch.setattr(streaming, "LONG_RUN_S", 0.0)
    lines: list[str] = []
    with pytest.warns(McprotonRuntimeWarning) as rec:
        res = api.check(plan=two_beams["plan"], dose=two_beams["dose"], ct=two_beams["ct"], beam_model="dcpt_v5",
                        primaries=2000, target_uncertainty=0.05, backend="cpu", threads=1, gamma_points=100,
                        gamma_workers=1, out=tmp_path / "o", report=False, progress=True, log=lines.append)
    said = [str(w.message) for w in rec if "would take about" in str(w.message)]
    assert len(said) == 1, said
    msg = said[0]
    assert msg.startswith("the remaining ") and " primaries of the run (" in msg and "of the beams after it)" in msg
    assert "unless --target-uncertainty stops the run earlier; give --time-limit SECONDS" in msg, msg
    assert "run.time_limit_s" not in msg and "run.primaries" not in msg and "--resume" not in msg, msg
    assert msg in res.warnings
    assert any(line.startswith("mcproton check: the MC of 2 beams: 5 % plan target = 7.07 % per beam for 2 beams")
               for line in lines), lines
    bars = [b for b in capsys.readouterr().err.splitlines() if " protons " in b]
    assert bars and not any("7.07107" in b for b in bars), bars


def test_the_command_line_says_a_checks_warnings_as_they_come(monkeypatch, capsys):
    """F1: on stderr as each is raised (before the check goes on), once each, and again gathered in the summary; in a
    log file with the time of day in front."""
    from types import SimpleNamespace

    from mcproton._io.errors import recorded, records_warnings, warn
    from mcproton.cli import main

    seen: list[str] = []

    @records_warnings
    def check(**kw):
        warn("the run would take about 32.0 h", McprotonRuntimeWarning)
        warn("the run would take about 32.0 h", McprotonRuntimeWarning)   # said twice: shown once
        seen.append(capsys.readouterr().err)   # what stderr holds while the check goes on
        said = list(dict.fromkeys(recorded()))
        return SimpleNamespace(passed=True, warnings=said, report_html=None, report_json="o/check.json",
                               mc_rtdose={}, out_dir=None, summary=lambda: "mcproton check: PASS\n" + "\n".join(
                                   f"  warning (during the check): {w}" for w in said))

    monkeypatch.setattr(api, "check", check)
    assert main(["check", "folder", "--beam-model", "dcpt_v5", "--out", "o"]) == 0
    # dated in a log file, as every line of the check there (review b of audit 26, R5)
    assert len(seen) == 1 and re.fullmatch(STAMP + r"mcproton: warning: the run would take about 32\.0 h\n", seen[0]), \
        seen
    out = capsys.readouterr().out
    assert out.count("warning (during the check): the run would take about 32.0 h") == 1, out


def test_a_batch_says_each_verdict_as_the_patient_ends(tmp_path, monkeypatch, capsys):
    """F4: the verdicts were printed after the last patient only, so a batch stopped during a patient (SIGTERM, the
    batch system's time limit) left a log without the outcome of the patients that had ended.  F6: the batch's lines
    carry the time of day in a log file."""
    from mcproton._check.inputs import CheckInputError
    from mcproton._signals import RunInterrupted
    from mcproton.cli import main

    root = _batch(tmp_path, "a", "b")

    def check(*, folder, **kw):
        if Path(folder).name == "a":
            raise CheckInputError("no RT Ion Plan in PTS/a")
        raise RunInterrupted("interrupted by SIGTERM after 1,000 of 20,000 primaries of beam 1", 143)

    monkeypatch.setattr(api, "check", check)
    assert main(["check", str(root), "--batch", "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o")]) == 143
    err = capsys.readouterr().err.splitlines()
    said = [i for i, line in enumerate(err) if "mcproton check --batch: a: REFUSED (CheckInputError: no RT Ion Plan "
            "in PTS/a), after " in line]
    stopped = [i for i, line in enumerate(err) if "mcproton check --batch: interrupted during b" in line]
    assert len(said) == 1 and stopped and said[0] < stopped[0], err
    assert re.match(STAMP + r"mcproton check --batch: a \(1 of 2\)$", err[0]), err
    assert re.match(STAMP + "mcproton check --batch: a: REFUSED", err[said[0]]), err


def test_a_batch_says_its_warnings_once_and_names_each_patients(tmp_path, monkeypatch, capsys):
    """F5: the beam model's warning came twice for each patient (the reuse key read the model aloud, then the check),
    and the batch's own warnings (the model, --target-uncertainty above its action level) once for each patient,
    refused ones too; a patient's own warnings did not name it.  The patients here are refused by the real check."""
    from mcproton.cli import main

    bdl = tmp_path / "bdl.txt"
    bdl.write_text(BDL)
    root = _batch(tmp_path, "a", "b")
    # the command line as a batch job runs it (in a test, Python's own showing of warnings is pytest's)
    run = subprocess.run([sys.executable, "-m", "mcproton.cli", "check", str(root), "--batch", "--beam-model", str(bdl),
                          "--target-uncertainty", "0.05", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    err = run.stderr
    assert err.count("'Beam parameters' announces 2 energies but 3 rows follow") == 1, err
    assert err.count("is above the action level for the MC's own statistical uncertainty") == 1, err
    assert err.index("announces 2 energies") < err.index("mcproton check --batch: a (1 of 2)"), err

    from mcproton._io.errors import recorded, records_warnings, warn

    kept: dict[str, list[str]] = {}

    @records_warnings
    def check(*, folder, **kw):   # a patient's own warning, and the batch's one said again by its check
        name = Path(folder).name
        api._warn_target_above_level(0.05, api.ActionLevels.load(None))
        warn(f"patient {name}'s own warning", McprotonRuntimeWarning)
        kept[name] = recorded()   # what its check.json would keep
        raise api.CheckInputError(f"no RT Ion Plan in {name}")

    monkeypatch.setattr(api, "check", check)
    assert main(["check", str(root), "--batch", "--beam-model", "dcpt_v5", "--target-uncertainty", "0.05",
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "mcproton: warning: [a] patient a's own warning" in err and "mcproton: warning: [b] patient b's own " \
        "warning" in err, err
    assert err.count("is above the action level") == 1, err
    # only the showing changes: each patient's check records its warnings in full, the batch's among them
    assert [len(kept[p]) for p in "ab"] == [2, 2] and kept["b"][1] == "patient b's own warning", kept

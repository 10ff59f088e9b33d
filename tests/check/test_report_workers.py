"""The report's figures drawn in forked worker processes (mcproton/_check/report.py FigureWorkers, on
mcproton/_forked.py): the check's largest host step was its report, 6.8 s of matplotlib drawing independent figures
one after the other (BENCHMARKS.md, 2026-12-06 host time).  The figures drawn by workers are the bytes of those
drawn in the check's process; a figure that fails in a worker raises its error as it does without workers; a worker
that dies has its figures drawn in the check's process; no fork, one CPU or too little memory: no workers; a stop
signal while the workers draw ends them all and the check as before.

No transport: the checks reuse an MC dose made from the analytic dose of test_check.py's ``base`` (``mc=``), as
tests/check/test_report.py does; the number of workers is forced (figure_worker_count), so that the workers are
tested on a machine of any size.
"""
from __future__ import annotations

import json

import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _tps, base  # noqa: E402,F401  (base: test_check's module fixture)
from test_report import FAST, _fake_mc  # noqa: E402

import mcproton._check.report as report_module  # noqa: E402
from mcproton._check.api import check  # noqa: E402


def _images(res) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([^"]+)"', Path(res.report_html).read_text(encoding="utf-8"))


def _check(base, out: str, workers: int, monkeypatch, **kw):  # noqa: F811
    """The check of the report's test (plan dose and two beam doses, MC 5 % higher), its figures drawn by
    ``workers`` forked processes (0: here)."""
    monkeypatch.setattr(report_module, "figure_worker_count", lambda figures, voxels: workers)
    d = base["dir"]
    doses = [_tps(base, "rw_plan", base["blob"]),
             _tps(base, "rw_b1", base["blob"] / 2, summation_type="BEAM", referenced_beam_number=1),
             _tps(base, "rw_b2", base["blob"] / 2, summation_type="BEAM", referenced_beam_number=2)]
    return check(plan=d / "RP.dcm", dose=doses, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                 mc=_fake_mc(base, 1.05), out=d / out, **{**FAST, **kw})


@pytest.fixture(scope="module")
def serial(base):  # noqa: F811
    with pytest.MonkeyPatch.context() as mp:
        return _check(base, "rw_serial", 0, mp)


@pytest.mark.single_thread   # forks the figure workers (tests/conftest.py)
def test_figures_drawn_by_workers_are_the_bytes_drawn_here(base, serial):  # noqa: F811
    """Three workers for the six figures that do not show the gammas: the page's seven PNGs are byte for byte those
    of the check that drew them all here, and the provenance says who drew them."""
    with pytest.MonkeyPatch.context() as mp:
        par = _check(base, "rw_workers", 3, mp)
    assert serial.provenance["report_workers"] == 0 and serial.provenance["report_workers_cpu_s"] == 0
    assert par.provenance["report_workers"] == 3 and par.provenance["report_workers_cpu_s"] > 0
    assert len(_images(serial)) == 7 and _images(par) == _images(serial)
    assert par.to_dict()["checks"] == serial.to_dict()["checks"]
    assert multiprocessing.active_children() == []


@pytest.mark.single_thread   # forks the figure workers (tests/conftest.py)
@pytest.mark.parametrize("workers", [0, 3])
def test_a_figure_that_fails_in_a_worker_raises_its_error_as_without_workers(base, workers, monkeypatch):  # noqa: F811
    """A beam figure that raises: with workers (the first worker that fails has its figures drawn here again, where
    the error is raised; the others are ended) the check fails with that error and its record, as it does with
    none; no worker left running.  The other figures, shared among the same workers as before, are blank
    (tests/conftest.py): drawing them is most of the check's time, and none of them fails."""
    def broken(res, b):
        raise ValueError(f"beam {b}'s figure cannot be drawn")

    from speedups import blank_report_figures

    from mcproton.errors import McprotonInternalError

    blank_report_figures(monkeypatch, keep=("beam_1", "beam_2"))
    monkeypatch.setattr(report_module, "_beam_figure", broken)
    logs: list[str] = []
    # a figure's error is the check's internal error naming it (strings audit 19, F1), with it as its cause
    with pytest.raises(McprotonInternalError, match=r"figures \(ValueError: beam \d's figure cannot be drawn") as info:
        _check(base, f"rw_broken_{workers}", workers, monkeypatch, log=logs.append)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.check_record["error_type"] == "McprotonInternalError"   # recorded in --out, as without workers
    drawn_here = [m for m in logs if "drawing the report's figures" in m]
    assert len(drawn_here) == (1 if workers else 0), logs
    assert all("ValueError: beam" in m and "cannot be drawn" in m for m in drawn_here), drawn_here
    assert multiprocessing.active_children() == []


@pytest.mark.single_thread   # forks the figure workers (tests/conftest.py)
def test_a_worker_that_dies_has_its_figures_drawn_here(base, serial, monkeypatch):  # noqa: F811
    """A worker that ends without an answer (killed: out of memory) is logged, its figures drawn here: the same
    page as without workers."""
    parent, real = os.getpid(), report_module._beam_figure

    def dies(res, b):
        if os.getpid() != parent:
            os._exit(3)
        return real(res, b)

    monkeypatch.setattr(report_module, "_beam_figure", dies)
    logs: list[str] = []
    res = _check(base, "rw_dies", 3, monkeypatch, log=logs.append)
    died = [m for m in logs if "ended (exit code 3) without an answer" in m]
    assert len(died) == 2 and all("drawing" in m and "beam_" in m for m in died), logs
    assert res.provenance["report_workers"] == 1
    assert _images(res) == _images(serial)
    assert multiprocessing.active_children() == []


def test_how_many_workers(monkeypatch):
    """One per figure, at most one per usable CPU, as many as half the memory available holds; none below 4 CPUs,
    without fork (or with another thread running) or room for fewer than two."""
    import mcproton._cpus as cpus
    import mcproton._forked as forked
    import mcproton._run.inputs as inputs
    from mcproton._run.inputs import Memory

    each = report_module.FIGURE_WORKER_MB * 1e6 + report_module.FIGURE_WORKER_GRIDS * 8 * 10**6
    monkeypatch.setattr(forked.BackgroundProcess, "available", staticmethod(lambda: True))
    monkeypatch.setattr(inputs, "available_memory", lambda: None)
    for n_cpu, expected in ((1, 0), (2, 0), (3, 0), (4, 4), (16, 6)):
        monkeypatch.setattr(cpus, "usable_cpus", lambda n=n_cpu: n)
        assert report_module.figure_worker_count(6, 10**6) == expected, n_cpu
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 16)
    for mem, expected in ((2 * 3.5 * each, 3), (2 * 1.9 * each, 0), (1e12, 6)):
        monkeypatch.setattr(inputs, "available_memory", lambda m=mem: Memory(m, 0.0))
        assert report_module.figure_worker_count(6, 10**6) == expected, mem
    monkeypatch.setattr(forked.BackgroundProcess, "available", staticmethod(lambda: False))
    assert report_module.figure_worker_count(6, 10**6) == 0


def test_without_workers_the_figures_are_drawn_here(base, serial, monkeypatch):  # noqa: F811
    """The check's own choice (figure_worker_count) where there is no fork: drawn here, the same page."""
    import mcproton._forked as forked

    monkeypatch.setattr(forked.BackgroundProcess, "available", staticmethod(lambda: False))
    d = base["dir"]
    res = check(plan=d / "RP.dcm", dose=[d / f"{n}.dcm" for n in ("rw_plan", "rw_b1", "rw_b2")], ct=d / "ct",
                struct=d / "RS.dcm", beam_model="dcpt_v2", mc=_fake_mc(base, 1.05), out=d / "rw_nofork", **FAST)
    assert res.provenance["report_workers"] == 0 and _images(res) == _images(serial)


#: The check of the subprocess, its figures in three workers; a worker, as it starts drawing a plane figure, leaves
#: a file named by its PID, signals the check and waits: the signal comes while the workers draw.
SCRIPT = textwrap.dedent("""
    import os, pathlib, pickle, signal, sys, time
    from pathlib import Path

    import mcproton._check.api as api
    import mcproton._check.report as report
    from mcproton._run.job import RunInterrupted

    d, mc_file, out, sig, group, marks = (Path(sys.argv[1]), sys.argv[2], sys.argv[3], getattr(signal, sys.argv[4]),
                                          sys.argv[5], Path(sys.argv[6]))
    parent = os.getpid()
    report.figure_worker_count = lambda figures, voxels: 3

    def drawing(*args, **kwargs):
        assert os.getpid() != parent, "a plane figure drawn in the check's process"
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)   # the test's pipe not held open by a worker left behind
        (marks / str(os.getpid())).touch()
        os.killpg(0, sig) if group == "group" else os.kill(parent, sig)
        time.sleep(600)

    report._plane_figure = drawing
    try:
        api.check(plan=d / "RP.dcm", dose=d / "rw_plan.dcm", ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                  mc=pickle.loads(Path(mc_file).read_bytes()), out=out, gamma_points=200, progress=False,
                  backend="cpu")
    except RunInterrupted as exc:
        print(f"mcproton: {exc}", file=sys.stderr)
        sys.exit(exc.code)
""")


def _session_processes(sid: int) -> list[int]:
    """The processes of session ``sid`` still running (zombies are not running)."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            stat = (p / "stat").read_text()
        except OSError:   # not a process, or it ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":   # state, ppid, pgrp, session
            out.append(int(p.name))
    return out


@pytest.mark.needs_pymedphys   # the check in a subprocess, or its skip caught (tests/conftest.py)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the figure workers are forked (Linux)")
@pytest.mark.parametrize("sig, to", [("SIGTERM", "self"), ("SIGINT", "group")])
def test_a_check_stopped_while_its_workers_draw_ends_them_and_says_what_was_written(base, tmp_path, sig, to):  # noqa: F811
    """SIGTERM to the check, or Ctrl-C in a terminal (SIGINT to the whole group, the workers too), while the figure
    workers draw: exit status 128 + signal, the check's message of a stop after the MC (what --out holds), no
    traceback, and no process of the check's session left."""
    _tps(base, "rw_plan", base["blob"])
    mc_file = tmp_path / "mc.pickle"
    mc_file.write_bytes(pickle.dumps(_fake_mc(base, 1.05)))
    out, marks = tmp_path / "chk", tmp_path / "drawing"
    marks.mkdir()
    script = tmp_path / "stop.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(base["dir"]), str(mc_file), str(out), sig, to,
                             str(marks)], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        err = proc.communicate(timeout=300)[1]
        left = _session_processes(proc.pid)
        assert proc.returncode == 128 + getattr(signal, sig), err
        assert "Traceback" not in err, err
        assert (f"mcproton: interrupted by {sig} after the MC (the comparison with the TPS dose, the gamma analysis, "
                f"the report); written in --out {out}: RD_mc.dcm; no report (check.html) and no result (check.json) "
                "were written: the folder holds no complete report") in err, err
        # check.json: the record of the interrupted check (since 2026-12-06, integrators audit F1), not a report
        assert sorted(p.name for p in out.iterdir()) == ["RD_mc.dcm", "check.json"]
        assert json.loads((out / "check.json").read_text())["status"] == "interrupted"
        assert len(list(marks.iterdir())) >= 1          # a worker was drawing when the signal came
        assert left == [], left                          # every worker ended with the check
    finally:   # what the check left running (the test failed): not left behind
        if proc.poll() is None:
            proc.kill()
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.single_thread   # forks the figure workers (tests/conftest.py)
@pytest.mark.parametrize("workers", [0, 3])
def test_a_missing_glyph_is_recorded_once_whoever_draws_the_figures(base, tmp_path, monkeypatch, capfd,  # noqa: F811
                                                                    workers):
    """Review 2 of 2026-12-06, F3: with figure workers (4 or more CPUs) each worker printed its own missing-glyph
    warning and none reached check.json or CheckResult.warnings; drawn here (2 CPUs) it was said and recorded once.
    The workers now hand the characters back and the check says them once, in its record, either way.  Each of
    the report's figures (its names from the report's figure_builders, shared among the same workers) is an empty
    figure here, with the name drawn in it: the missing glyph is found as each is encoded (report._png), whatever
    else a figure holds, and drawing the maps was most of the time."""
    import json
    from functools import partial

    from matplotlib.figure import Figure

    import mcproton.plots as P

    orig = report_module._png

    def png(fig, glyphs=None):
        fig.text(0.5, 0.5, "\u5c0f\u8111")   # stands for a CJK ROI name drawn in every figure
        return orig(fig, glyphs) if glyphs is not None else orig(fig)

    names_of = report_module.figure_builders
    monkeypatch.setattr(report_module, "figure_builders",
                        lambda res, names=None: {n: partial(report_module._glyphs_said_once, Figure)
                                                 for n in names_of(res, names)})
    monkeypatch.setattr(report_module, "_png", png)
    monkeypatch.setattr(P, "_GLYPHS_SAID", set())
    monkeypatch.setattr(report_module, "figure_worker_count", lambda figures, voxels: workers)
    d = base["dir"]
    res = check(plan=d / "RP.dcm", dose=[_tps(base, f"glyph{workers}", base["blob"])], ct=d / "ct",
                struct=d / "RS.dcm", beam_model="dcpt_v2", mc=_fake_mc(base, 1.0), out=tmp_path / "out", **FAST)
    printed = capfd.readouterr().err.count("has no glyph for")
    recorded = [w for w in json.loads(Path(res.report_json).read_text())["warnings"] if "has no glyph" in w]
    assert bool(res.provenance["report_workers"]) == bool(workers)
    assert len(recorded) == 1 and "\u5c0f \u8111" in recorded[0], recorded
    assert sum("has no glyph" in w for w in res.warnings) == 1 and printed <= 1, (res.warnings, printed)

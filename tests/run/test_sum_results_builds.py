"""sum_results refuses results computed by different builds of mcproton or with different physics, unless told to
add them (``allow=("mixed_builds",)`` / ``("mixed_physics",)``: recorded as an override, each part's build kept);
a result whose file does not record its build, or the refusals it passed, is said to be unknown, not taken for the
same build or for "no override" (the compat audit of 2026-12-06, F1 and F5: a beam re-run after an upgrade, or with
``water_model = "pstar"``, was added to the other beams without a word and the sum named result 1's kernel and physics
for all; a file written before ``provenance["overrides"]`` existed was written again as an ordinary RT Dose).  The
old files are made here from new ones by deleting what older versions did not write.  Monte Carlo: 400 primaries on
a 5 x 5 x 20 water box on the CPU."""
from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pydicom
import pytest

from mcproton import (Beam, DoseResult, McprotonRuntimeWarning, PhysicsSettings, RunSettings, StudyReference,
                      box_phantom, simulate, sum_results, write_result_rtdose)
from mcproton.config import ConfigError

TINY = {"primaries": 400, "batches": 10, "backend": "cpu", "threads": 1, "seed": 3}
PSTAR = PhysicsSettings(water_model="pstar", nuclear=False)


def _run(beam_index: int, physics: PhysicsSettings | None = None, energy: float = 70.0):
    g = box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))
    beam = Beam.pencil(energy, position_mm=(0, 0, -5), sigma_mm=(2, 2), total_protons=1e9)
    beam.name = f"beam {beam_index + 1}"
    settings = RunSettings(**TINY, **({"physics": physics} if physics else {}))
    return simulate(g, beam, settings, beam_index=beam_index, log=None)


@pytest.fixture(scope="module")
def runs():
    return _run(0), _run(1, energy=72.0)


def _said(rec) -> list[str]:
    return [str(w.message) for w in rec if issubclass(w.category, McprotonRuntimeWarning)]


def _old_file(result, path, *, drop=("build",), edit=None):
    """``result`` saved, and its file's provenance made as an older mcproton wrote it: the keys ``drop`` deleted,
    ``edit`` ({key: value}) written instead."""
    result.save(path)
    with h5py.File(path, "r+") as f:
        prov = f["provenance"].attrs
        for k in drop:
            if k in prov:   # (an mcproton before this test's fix wrote neither: the test then fails below)
                del prov[k]
        for k, v in (edit or {}).items():
            prov[k] = json.dumps(v) if isinstance(v, dict) else v
    return path


def _quiet_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DoseResult.load(path)


def test_results_of_other_physics_settings_are_refused_unless_allowed(runs, tmp_path):
    a, _ = runs
    b = _run(1, PSTAR)
    with pytest.raises(ConfigError) as exc:
        sum_results([a, b])
    msg = str(exc.value)
    assert "the results were computed with different physics settings" in msg, msg
    assert "result 2 (beam 'beam 2'): physics nuclear False against True, water_model 'pstar' against 'icru90'" in msg
    assert "allow=(\"mixed_physics\",)" in msg and "mixed_builds" not in msg, msg
    with pytest.warns(McprotonRuntimeWarning, match="summed as given") as rec:
        s = sum_results([a, b], allow=("mixed_physics",))
    assert rec[0].filename == __file__
    np.testing.assert_array_equal(s.dose_gy_zyx, a.dose_gy_zyx + b.dose_gy_zyx)   # summed as asked
    assert s.provenance["overrides"] == ["mixed_physics"]
    # every part's physics, not result 1's alone
    assert [p["physics"]["water_model"] for p in s.provenance["summed_builds"]] == ["icru90", "pstar"]
    assert s.provenance["physics"].startswith("mixed") and s.provenance["tables"].startswith("mixed")
    assert s.provenance["kernel_hash"] == a.provenance["kernel_hash"]   # one build: said once
    back = _quiet_load(s.save(tmp_path / "mixed.h5"))
    assert back.provenance["summed_builds"] == s.provenance["summed_builds"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dc = write_result_rtdose(back, tmp_path / "RD.dcm")["dose_comment"]
    assert dc.startswith("OVERRIDE"), dc
    # the mixed sum added to another result: refused again, naming the part that differs
    with pytest.raises(ConfigError, match=r"result 1, part 2 \(beam 'beam 2'\): physics nuclear False"):
        sum_results([s, _run(2)])


def test_a_result_of_another_build_is_refused_naming_both_kernels(runs, tmp_path):
    a, b = runs
    other = "f" * 64
    build = {**b.provenance.get("build", {}), "kernel_hash": other}
    old = _quiet_load(_old_file(b, tmp_path / "b.h5", drop=(), edit={"kernel_hash": other, "build": build}))
    with pytest.raises(ConfigError) as exc:
        sum_results([a, old])
    msg = str(exc.value)
    assert "the results were not computed by one build of mcproton" in msg, msg
    assert (f"result 2 (beam 'beam 2'): transport kernel source (kernel_hash) ffffffffffffffff against "
            f"{a.provenance['kernel_hash'][:16]}") in msg, msg
    assert "allow=(\"mixed_builds\",)" in msg, msg
    with pytest.warns(McprotonRuntimeWarning, match="summed as given"):
        s = sum_results([a, old], allow="mixed_builds")
    assert s.provenance["overrides"] == ["mixed_builds"]
    assert [p["kernel_hash"] for p in s.provenance["summed_builds"]] == [a.provenance["kernel_hash"], other]
    assert s.provenance["kernel_hash"].startswith("mixed") and s.provenance["build"].startswith("mixed")
    # other physics data (the same kernel): refused too
    data = _quiet_load(_old_file(b, tmp_path / "d.h5", drop=(),
                                 edit={"build": {**b.provenance.get("build", {}), "physics_files_sha256": "0" * 64}}))
    with pytest.raises(ConfigError, match=r"physics data files \(physics_files_sha256\) 0000000000000000 against"):
        sum_results([a, data])
    # a physics table of the same material that differs (an I-value changed between the builds)
    tables = dict(b.provenance["tables"])
    tables["i_values_ev"] = {**tables["i_values_ev"], "water": 75.0}
    tab = _quiet_load(_old_file(b, tmp_path / "t.h5", drop=(), edit={"tables": tables}))
    with pytest.raises(ConfigError, match=r"physics tables: tables.i_values_ev\['water'\] 75.0 against 78.0"):
        sum_results([a, tab])


def test_a_result_that_does_not_record_its_build_is_unknown_not_the_same(runs, tmp_path):
    a, b = runs
    old = _quiet_load(_old_file(b, tmp_path / "old.h5"))       # as every result before 2026-12-06 (no "build")
    for first, second, k in ((a, old, 2), (old, a, 1)):
        with pytest.raises(ConfigError) as exc:
            sum_results([first, second])
        msg = str(exc.value)
        assert "physics data files (physics_files_sha256)" in msg, msg
        assert "written by an older mcproton that did not record physics_files_sha256" in msg, msg
        said = ("physics_files_sha256) not recorded (written by" if k == 2
                else "where result 1's is not recorded (written by")
        assert said in msg, msg
    # an mcproton run output of before: its build in run_identity, the same as this one's: summed
    ident = _quiet_load(_old_file(b, tmp_path / "run.h5",
                                  edit={"run_identity": json.dumps({"build": a.provenance["build"]})}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        s = sum_results([a, ident])
    assert s.provenance["build"] == a.provenance["build"] and "summed_builds" not in s.provenance
    # two results that both lack it: compared on what they record (kernel, physics, tables)
    old2 = _quiet_load(_old_file(a, tmp_path / "old2.h5"))
    assert sum_results([old2, old]).provenance["overrides"] == []


def test_the_beams_of_one_run_sum_as_before(runs, tmp_path):
    """Results of one build and physics (a plan's beams, a check's top-up, saved and loaded): no refusal, no
    warning, the sum records the one build once."""
    a, b = runs
    loaded = [_quiet_load(r.save(tmp_path / f"{k}.h5")) for k, r in enumerate(runs)]
    for rs in (runs, loaded, (a, loaded[1])):
        with warnings.catch_warnings():
            warnings.simplefilter("error", McprotonRuntimeWarning)
            s = sum_results(rs)
        assert s.provenance["build"] == a.provenance["build"] and s.provenance["physics"] == a.provenance["physics"]
        assert "summed_builds" not in s.provenance and s.provenance["overrides"] == []
    with pytest.raises(ValueError, match="allow = 'mixed'"):
        sum_results(runs, allow="mixed")


def _tagged(path, tag: str) -> None:
    """The RT Dose at ``path`` says OVERRIDE in its DoseComment (its details given up to the placeholder plan's note
    there), ``tag`` in its SeriesDescription, and that the overrides are unknown in its ImageComments."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.DoseComment.startswith("OVERRIDE"), ds.DoseComment
    assert ds.SeriesDescription.endswith(f"; {tag}"), ds.SeriesDescription
    assert "overrides unknown: not recorded in" in ds.ImageComments, ds.ImageComments


def test_every_result_records_its_overrides_even_none(runs, tmp_path):
    """F5: [] for none, in memory and in the file, so that a file without the key is told apart."""
    a, _ = runs
    assert a.provenance["overrides"] == []
    a.save(tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5") as f:
        assert "overrides" in f["provenance"].attrs
    back = DoseResult.load(tmp_path / "a.h5")
    assert back.provenance["overrides"] == [] and "overrides_not_recorded" not in back.provenance


def test_a_file_without_the_overrides_record_is_written_with_overrides_unknown(runs, tmp_path):
    """F5: a file of an mcproton before ``provenance["overrides"]`` (a run past plan.allow_other_frame left no trace)
    was written again by write_result_rtdose as an ordinary dose, and its sum with a new result kept the new one's
    overrides alone."""
    a, b = runs
    path = _old_file(b, tmp_path / "old.h5", drop=("build", "overrides"))
    old = _quiet_load(path)
    with pytest.warns(McprotonRuntimeWarning, match="does not record whether its dose was computed past one of "
                                                    "mcproton's refusals") as rec:
        write_result_rtdose(old, tmp_path / "RD_old.dcm", study=StudyReference())
    assert any(str(path) in m and "OVERRIDE unknown" in m for m in _said(rec)), _said(rec)
    _tagged(tmp_path / "RD_old.dcm", "OVERRIDE unknown")
    assert "overrides" not in old.provenance and old.provenance["overrides_not_recorded"] == str(path)
    # saved again: still unknown, naming the first file
    again = _quiet_load(old.save(tmp_path / "again.h5"))
    assert again.provenance["overrides_not_recorded"] == str(path)
    # summed with a new result that passed a refusal: both said
    a2 = _quiet_load(a.save(tmp_path / "a.h5"))
    a2.provenance["overrides"] = ["other_frame"]
    old.provenance["build"] = a.provenance.get("build")   # the same build: only the overrides are the point here
    with pytest.warns(McprotonRuntimeWarning, match="the sum's overrides are unknown too"):
        s = sum_results([a2, old])
    assert s.provenance["overrides"] == ["other_frame"] and s.provenance["overrides_not_recorded"] == str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_result_rtdose(s, tmp_path / "RD_sum.dcm")
    _tagged(tmp_path / "RD_sum.dcm", "OVERRIDE frame,unknown")
    # told what it holds: an ordinary dose again
    old.provenance["overrides"] = []
    del old.provenance["overrides_not_recorded"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        assert not write_result_rtdose(old, tmp_path / "RD_told.dcm")["dose_comment"].startswith("OVERRIDE")


def _software_versions(path) -> list[str]:
    return list(pydicom.dcmread(path, stop_before_pixels=True).SoftwareVersions)


def test_the_rt_dose_names_the_build_that_computed_its_dose(runs, tmp_path):
    """SoftwareVersions names the build that computed the dose (the result's ``provenance["build"]``, a mixed sum's
    parts), "unknown" where the result does not record it, and the mcproton that wrote the file as "written by";
    a dose of this build as before (check review 2026-12-06, R3: a re-exported older result, and a sum of mixed
    builds, were stamped with the writer's kernel and physics data)."""
    from mcproton._build import check_build_identity, software_versions

    a, b = runs
    me = check_build_identity()
    version, kernel, data, code = me["version"], me["kernel_hash"][:16], me["physics_files_sha256"][:16], \
        me["code_sha256"][:16]
    writer = f"written by mcproton {version} code {code}"

    def written(result, name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the OVERRIDE of a mixed sum, said elsewhere
            write_result_rtdose(result, tmp_path / name)
        sv = _software_versions(tmp_path / name)
        assert all(len(v) <= 64 and "\\" not in v for v in sv), sv   # LO: 64 characters, no backslash
        return sv

    # this build's dose, in memory and re-exported from its file: as before (the check's RD_mc.dcm too)
    own = [f"mcproton {version}", f"kernel {kernel}", f"physics data {data}", f"code {code}"]
    assert software_versions() == own
    assert written(a, "RD_a.dcm") == own
    assert written(_quiet_load(a.save(tmp_path / "a.h5")), "RD_a_again.dcm") == own
    # a result of another kernel (an older dose.h5 re-exported): its kernel, this build's physics data
    other = "f" * 64
    old = _quiet_load(_old_file(b, tmp_path / "b.h5", drop=(), edit={
        "kernel_hash": other, "build": {**b.provenance["build"], "kernel_hash": other,
                                        "physics_files_sha256": "1" * 64}}))
    assert written(old, "RD_old.dcm") == [f"mcproton {version}", "kernel ffffffffffffffff",
                                          "physics data 1111111111111111", f"code {code}", writer]
    # a result that does not record its build (before 2026-12-06): the kernel it records, its physics data and code
    # unknown
    unrecorded = _quiet_load(_old_file(b, tmp_path / "u.h5"))
    assert written(unrecorded, "RD_u.dcm") == [f"mcproton {version}", f"kernel {kernel}", "physics data unknown",
                                               "code unknown", writer]
    # a sum of mixed builds: each part's where they fit, "mixed" alone where they do not
    with pytest.warns(McprotonRuntimeWarning, match="summed as given"):
        mixed = sum_results([a, old], allow="mixed_builds")
    assert written(mixed, "RD_mixed.dcm") == [f"mcproton {version}", f"kernel mixed: {kernel}, ffffffffffffffff",
                                              f"physics data mixed: {data}, 1111111111111111", f"code {code}", writer]
    third = _quiet_load(_old_file(b, tmp_path / "e.h5", edit={"kernel_hash": "e" * 64}))   # no build either
    with pytest.warns(McprotonRuntimeWarning, match="summed as given"):
        three = sum_results([mixed, third], allow="mixed_builds")
    assert written(three, "RD_three.dcm") == [f"mcproton {version}", "kernel mixed",    # 66 characters listed
                                              f"physics data mixed: {data}, 1111111111111111, unknown",
                                              f"code mixed: {code}, unknown", writer]


def test_the_rt_dose_names_the_code_that_computed_its_dose(runs, tmp_path):
    """Review 2b, R2: a result records the code's SHA-256 that computed it (audit 25 provenance, F5: the Python that
    makes the spots changes the dose without changing the kernel or the physics data), but SoftwareVersions compared
    only the version, kernel and physics data and named the writer's code as the dose's: a dose.h5 of another
    install's Python, re-exported, said "code <writer's>" with no "written by".  Now the dose's code is named, then
    the writer; a sum of parts of different code says "code mixed"."""
    import copy

    from mcproton._build import check_build_identity

    a, b = runs
    me = check_build_identity()
    own = [f"mcproton {me['version']}", f"kernel {me['kernel_hash'][:16]}",
           f"physics data {me['physics_files_sha256'][:16]}"]
    writer = f"written by mcproton {me['version']} code {me['code_sha256'][:16]}"
    loaded = _quiet_load(a.save(tmp_path / "a.h5"))
    loaded.provenance["build"] = {**loaded.provenance["build"], "code_sha256": "0" * 64}
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        write_result_rtdose(loaded, tmp_path / "RD_other_code.dcm")
    assert _software_versions(tmp_path / "RD_other_code.dcm") == [*own, "code 0000000000000000", writer]
    other = copy.copy(b)
    other.provenance = {**b.provenance, "build": {**b.provenance["build"], "code_sha256": "0" * 64}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        write_result_rtdose(sum_results([a, other]), tmp_path / "RD_mixed_code.dcm")
    assert _software_versions(tmp_path / "RD_mixed_code.dcm") == [*own, "code mixed", writer]


def test_a_sum_names_the_code_only_where_every_part_was_computed_by_it(runs):
    """Audit 25 provenance, F5: a result's ``build`` records the code's SHA-256 (the Python that makes the spots and
    converts the CT changes the dose without changing the kernel or the physics data).  It is not compared (pure
    Python changes are summed, as before), so a sum keeps it only where every part records the same; else it says the
    parts differ, never result 1's for all."""
    import copy

    from mcproton._build import check_build_identity
    from mcproton._run.result import MIXED_CODE

    a, b = runs
    assert a.provenance["build"] == check_build_identity()
    assert sum_results([a, b]).provenance["build"] == check_build_identity()
    other = copy.copy(b)
    other.provenance = {**b.provenance, "build": {**b.provenance["build"], "code_sha256": "0" * 64}}
    s = sum_results([a, other]).provenance["build"]
    assert "code_sha256" not in s and s["code_sha256_of_parts"] == MIXED_CODE
    assert {k: s[k] for k in ("version", "kernel_hash", "physics_files_sha256")} == {
        k: a.provenance["build"][k] for k in ("version", "kernel_hash", "physics_files_sha256")}


def test_a_sum_of_run_outputs_records_each_run_not_result_1s_for_all(small_cfg, tmp_path, monkeypatch, capsys):
    """Review 2b, R1: the sum of two ``mcproton run`` outputs (the documented per-beam runs, ``plan.beams = [N]``)
    copied result 1's run records as the sum's: its command line, ``--set`` options and effective config, its RT
    Dose's UIDs (the sum's HDF5 then named a file that holds result 1's dose alone), ``resumed`` false and one
    segment although part 2 was resumed, and the sum's RT Dose said "seed 777" though part 2 used seed 778.  Now the
    sum has no command or RT Dose record of its own, the records that differ say so, each part's is in
    ``summed_runs`` (also through a save and a second sum), and its RT Dose names both seeds.  (Water box, 4000
    primaries a run; part 2 stopped by its time limit on a ticking clock and resumed.)"""
    from test_run_time_limit_resume import _ticking_clock

    from mcproton._run.builds import RUN_FILE_KEYS, RUNS_DIFFER, run_record
    from mcproton.cli import COMMAND_RECORD_KEYS, main

    assert set(COMMAND_RECORD_KEYS) <= set(RUN_FILE_KEYS)
    cfg = small_cfg(4000)
    monkeypatch.chdir(tmp_path)
    absolute = ["--set", "beam.total_protons=1e9"]
    assert main(["run", str(cfg), "--out", "a.h5", "--rtdose", "a_rd.dcm", "--quiet", "--set", "run.seed=777",
                 "--set", "beam.energy_mev=100", *absolute]) == 0
    b_run = ["run", str(cfg), "--out", "b.h5", "--quiet", "--set", "run.seed=778", "--set", "beam.energy_mev=80",
             *absolute]
    with monkeypatch.context() as m:
        _ticking_clock(m)
        assert main([*b_run, "--set", "run.time_limit_s=4"]) == 0
        assert main([*b_run, "--resume"]) == 0
    capsys.readouterr()
    a, b = _quiet_load(tmp_path / "a.h5"), _quiet_load(tmp_path / "b.h5")
    assert b.provenance["resumed"] is True and len(b.provenance["segments"]) == 2 and "rtdose_uids" in a.provenance
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        s = sum_results([a, b])
    p = s.provenance
    assert not [k for k in RUN_FILE_KEYS if k in p], [k for k in RUN_FILE_KEYS if k in p]
    assert p["resumed"] is True
    assert {k: p[k] for k in ("seed", "segments", "batches")} == dict.fromkeys(("seed", "segments", "batches"),
                                                                               RUNS_DIFFER)
    assert p["kernel_build"] == a.provenance["kernel_build"] and p["batch_size"] is None   # the same in both
    assert p["summed_runs"] == [run_record(a.provenance), run_record(b.provenance)]
    assert [r["seed"] for r in p["summed_runs"]] == [777, 778]
    assert [r["set_options"] for r in p["summed_runs"]] == [
        ["run.seed=777", "beam.energy_mev=100", "beam.total_protons=1e9"],
        ["run.seed=778", "beam.energy_mev=80", "beam.total_protons=1e9"]]
    back = _quiet_load(s.save(tmp_path / "sum.h5"))
    assert "rtdose_uids" not in back.provenance and back.provenance["summed_runs"] == p["summed_runs"]
    write_result_rtdose(back, tmp_path / "sum_rd.dcm")
    said = pydicom.dcmread(tmp_path / "sum_rd.dcm", stop_before_pixels=True).ImageComments
    assert "; seeds 777, 778;" in said and "seed 777;" not in said, said
    # a sum of the sum and a run: each run once more, flattened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a and a share their random numbers (said elsewhere)
        again = sum_results([back, a]).provenance
    assert [r["seed"] for r in again["summed_runs"]] == [777, 778, 777] and "invocation" not in again


def test_the_beams_of_one_run_keep_their_run_records(runs):
    """Review 2b, R1: the beams of one run (one seed, one batching, one kernel) sum to the run's records, with no
    ``summed_runs``, as ``mcproton run``'s total has always recorded them.  Two ``simulate`` calls are two runs
    whose parts' ``started`` (local time, to the second) differ whenever they straddle a second, and the sum then
    rightly keeps each part's record: the beams of one ``mcproton run`` share one part, as ``b`` does here (before,
    the test failed so, run alone on a loaded machine: isolation audit 32, F7)."""
    import dataclasses

    a, b = runs
    segments = [dict(s, started=t["started"]) for s, t in zip(b.provenance["segments"], a.provenance["segments"])]
    b = dataclasses.replace(b, provenance={**b.provenance, "segments": segments})
    p = sum_results([a, b]).provenance
    assert {k: p[k] for k in ("seed", "batches", "batch_size", "resumed", "segments", "kernel_build")} == {
        k: a.provenance[k] for k in ("seed", "batches", "batch_size", "resumed", "segments", "kernel_build")}
    assert "summed_runs" not in p and p["seed"] == 3 and p["resumed"] is False

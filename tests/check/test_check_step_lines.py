"""``mcproton check`` says a line as each long step starts (the scale audit of 2026-12-07, F4: a clinical check was
silent for 15 s before its MC and 49 s after it, a 1024 x 1024 x 800 CT for 66 s before it): reading the CT, its
conversion to materials, the structures, the MC doses to the TPS grid, the 3-D gammas with their number of points,
the DVH metrics, the ranges, the figures and the report; none with --quiet (``progress=False``).  With every gamma
point (--gamma-points 0) and more than GAMMA_ESTIMATE_POINTS of them, a line with the time to expect.  A small
synthetic head (one beam, a PTV and an organ), the CPU, few primaries."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import circle_contour, make_rtstruct, save  # noqa: E402
from synthetic_head import FOR, write_case  # noqa: E402

STEPS = ("mcproton check: reading the CT (", "mcproton check: converting the CT's HU to materials and densities ...",
         "mcproton check: structures: the ROIs of RS.dcm on the TPS grid (",
         "mcproton check: the MC doses and their uncertainties to the TPS grid ...",
         "mcproton check: 3-D gammas: 3 searches",
         "mcproton check: DVH metrics of 3 structures, each with 4 draws of the MC's noise (64 for the targets) ...",
         "mcproton check: distal ranges (R80) of 1 beam ...", "mcproton check: the report's figures ...",
         "mcproton check: writing the report (")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("head")
    c = write_case(out, shape_zyx=(16, 48, 48), pixel_mm=4.0, slice_mm=4.0, dose_mm=5.0)
    zs = [-30.0 + 4.0 * k for k in range(16)]
    rois = {"External": [circle_contour(0, 0, 80, z) for z in zs],
            "PTV": [circle_contour(0, 0, 20, z) for z in zs if abs(z) <= 20],
            "Brainstem": [circle_contour(-40, 0, 10, z) for z in zs if abs(z) <= 12]}
    save(make_rtstruct(rois, for_uid=FOR), out / "RS.dcm")
    return {**c, "struct": out / "RS.dcm"}


def _check(case, tmp_path, **kw):
    pytest.importorskip("pymedphys")
    from mcproton._check.api import check

    lines: list[str] = []
    check(plan=case["plan"], dose=case["dose"], ct=case["ct"], struct=case["struct"], beam_model="dcpt_v5",
          primaries=2000, target_uncertainty=None, backend="cpu", threads=1, gamma_workers=1, out=tmp_path / "o",
          log=lines.append, **kw)
    return lines


def test_each_long_step_says_a_line_as_it_starts(case, tmp_path):
    lines = _check(case, tmp_path, gamma_points=200)
    at = []
    for s in STEPS:
        found = [i for i, line in enumerate(lines) if line.startswith(s)]
        assert len(found) == 1, (s, lines)
        at.append(found[0])
    # in the order the steps run: the CT, the structures (before the MC), the MC's doses, the gammas started, the
    # structures' metrics, the ranges and figures computed meanwhile (with workers; here, with one process, the
    # gammas after them: said so), the report last
    waiting = lines.index("mcproton check: 3-D gammas: computing them in this process ...")
    assert at == sorted(at) and at[-2] < waiting < at[-1], lines
    gam = lines[at[4]]
    assert gam == ("mcproton check: 3-D gammas: 3 searches for the plan dose's 4 criteria on 600 points in all (at "
                   "most 200 per search, at random among the points above 10 % of each one's TPS dose maximum), in "
                   "this process after the next steps ..."), gam
    assert not any("--gamma-points 0" in line for line in lines), lines


def test_every_gamma_point_says_how_long_to_expect(monkeypatch):
    """Above GAMMA_ESTIMATE_POINTS points with --gamma-points 0: the points (all, and the busiest process's) and the
    time at GAMMA_CPU_S_PER_POINT over the worker processes' shares; below it, or with a subset, no estimate."""
    import mcproton._check.api as api
    import mcproton._check.compare as compare

    ref = np.zeros((20, 60, 100))
    ref[:, :, :50] = 1.0   # 60,000 points above 10 %
    body = np.ones(ref.shape, bool)
    assert compare.gamma_evaluable_points(ref, body) == 60_000 == compare._gamma_reference(ref, body, 10.0, None, 0)[2]
    half = np.where(np.arange(100) < 25, 1.0, 0.05) * ref   # 30,000 of them above 10 % of its own maximum
    jobs = [((None, ref, None, body), {})] * 3 + [((None, half, None, body), {})]
    lines = api._gamma_step_lines(jobs, None, 2, 3, 1, 0)
    assert lines[0] == ("3-D gammas: 4 searches (3 for the plan dose's 4 criteria, 1 per beam) on 210,000 points in "
                        "all (every one of the points above 10 % of each one's TPS dose maximum), in 2 worker "
                        "processes beside the next steps ..."), lines
    # the shares of two workers: searches 1 and 3 (120,000 points), 2 and 4 (90,000)
    assert lines[1].startswith("3-D gammas of every point (--gamma-points 0): 210,000 points, 120,000 of them in the "
                               "busiest process; expect about 30.0 s to 96.0 s for them (0.25-0.8 ms of CPU per "
                               "point and search, measured on 1-2 mm clinical TPS grids"), lines
    assert len(api._gamma_step_lines(jobs, 10_000, 2, 3, 1, 0)) == 1
    assert len(api._gamma_step_lines(jobs[:1], None, 2, 1, 0, 0)) == 1   # 60,000 points: none
    monkeypatch.setattr(api, "GAMMA_ESTIMATE_POINTS", 50_000)
    assert len(api._gamma_step_lines(jobs[:1], None, 2, 1, 0, 0)) == 2


def test_the_gamma_normalisation_takes_no_copy_of_the_grid():
    """The gamma's normalisation is the reference's near-maximum in the body (the dose that at least
    compare.NEAR_MAX_VOXELS of the body's voxels with dose receive: its 8th largest; its maximum until gamma audit 28,
    F1, then for a while the 99.9th percentile: review d, R1), computed without a float copy of the body's voxels
    (``ref[body]``: 8 bytes a voxel, ~60 MB on a 1 mm head grid; the review of 2026-12-07, F8): slab by slab, the
    value a sort gives; the evaluable points are counted with boolean temporaries only."""
    import tracemalloc

    import mcproton._check.compare as compare

    from scipy.ndimage import median_filter

    rng = np.random.default_rng(3)
    ref = rng.normal(1.0, 2.0, (80, 100, 120))
    body = rng.random(ref.shape) < 0.9
    # noise alone has no high-dose region: its near-maximum (the 8th-largest voxel, 9.74) lies 3.3 x above that of its
    # 3 x 3 x 3 medians, which it is normalised to (compare._plateau_near_max, audit 31 norm F1; before, 9.74)
    med = median_filter(np.where(body, ref, 0.0).astype(np.float32), size=3, mode="constant", cval=0.0)
    want = float(np.sort(med[body & (med > 0)])[-compare.NEAR_MAX_VOXELS])
    assert compare._gamma_cut(ref, body, 10.0) == pytest.approx((want, 0.1 * want), rel=1e-12, abs=0)
    assert want < float(np.sort(ref[body & (ref > 0)])[-compare.NEAR_MAX_VOXELS]) / 3
    assert compare._gamma_cut(-np.abs(ref), body, 10.0) == (0.0, 0.0)   # no voxel with dose
    assert compare._gamma_cut(ref, np.zeros(ref.shape, bool), 10.0) == (0.0, 0.0)
    tracemalloc.start()
    try:
        compare._gamma_cut(ref, body, 10.0)
        cut_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        n = compare.gamma_evaluable_points(ref, body)
        count_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == int(np.count_nonzero(body & (ref >= 0.1 * want)))
    assert cut_peak < ref.size, (cut_peak, ref.nbytes)   # a copy of the body's voxels: 7.2 x ref.size bytes
    assert count_peak < 3 * ref.size, (count_peak, ref.nbytes)   # two boolean temporaries at most


def test_the_cli_says_them_and_not_with_quiet(case, tmp_path, capsys, monkeypatch, report_figures_blank):
    """``mcproton check`` on the terminal: the lines on stderr (the gammas in worker processes where there are two
    CPUs); --quiet (``progress=False``): none, the other status lines as before, and the gammas' points are not
    counted for a line that is not said (each reference's maximum and points were computed for nothing: the review
    of 2026-12-07, F8).  Only stderr is read: the report's figures blank (tests/conftest.py)."""
    pytest.importorskip("pymedphys")
    import mcproton._check.api as api
    from mcproton.cli import main

    counted = []
    real = api._gamma_step_lines
    monkeypatch.setattr(api, "_gamma_step_lines", lambda *a: counted.append(1) or real(*a))

    argv = ["check", "--plan", str(case["plan"]), "--dose", str(case["dose"]), "--ct", str(case["ct"]), "--struct",
            str(case["struct"]), "--beam-model", "dcpt_v5", "--primaries", "2000", "--target-uncertainty", "0",
            "--backend", "cpu", "--gamma-points", "200"]
    main(argv + ["--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert all(s in err for s in STEPS), err
    assert len(counted) == 1
    main(argv + ["--out", str(tmp_path / "b"), "--quiet", "--gamma-workers", "1"])
    err = capsys.readouterr().err
    assert not any(s in err for s in STEPS) and "mcproton check: plan RP.dcm" in err, err
    assert len(counted) == 1, "the gamma step lines were computed with --quiet"

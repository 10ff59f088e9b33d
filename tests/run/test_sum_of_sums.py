"""sum_results of parts that are themselves sums keeps every beam's record (audit 26 h5schema, F1).

The beams of one plan split across jobs (``plan.beams = [0, 1]`` on one node, ``[2]`` on another: each job's output
with two or more beams is a sum) and summed: the sum kept one empty record for each part that was a sum, so its RT
Dose was written as DoseSummationType PLAN with the dose of ONE fraction (30 x low for a 30-fraction plan), no plan
reference; and a beam present in two parts was added in quadrature without a word.  Now the parts' records are
flattened (beam records, indices, seeds, primaries), and records that are mixed (some of a plan, some not) are
refused instead of being taken for "beams without a plan".  Monte Carlo: 300 primaries per beam on a 40 mm water box."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcproton import DoseResult, McprotonRuntimeWarning, RunSettings, box_phantom, simulate, sum_results
from mcproton.dicom import load_rtplan, plan_to_beams, result_dose_contents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, save  # noqa: E402

FRACTIONS = 30
TINY = {"primaries": 300, "batches": 3, "backend": "cpu", "threads": 1, "seed": 7}


@pytest.fixture(scope="module")
def plan_beams(tmp_path_factory):
    """Each of a 3-beam, 30-fraction plan's beams run on its own stream (as mcproton run gives beam i of the plan
    stream i), and the plan's UID."""
    tmp = tmp_path_factory.mktemp("plan")
    ds = make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(80.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 2.0} for g in (0.0, 90.0, 270.0)], n_fractions=FRACTIONS)
    save(ds, tmp / "RP.dcm")
    beams = plan_to_beams(load_rtplan(tmp / "RP.dcm"), "dcpt_v2")
    g = box_phantom("water", (40.0, 40.0, 40.0), (4.0, 4.0, 4.0))
    g.origin_mm = (-18.0, -18.0, -18.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [simulate(g, b, RunSettings(**TINY), beam_index=i, log=None) for i, b in enumerate(beams)]
    return runs, str(ds.SOPInstanceUID)


def _contents(r):
    c = result_dose_contents(r)
    return (c.summation_type, c.fractions, c.fractions_planned, c.scale, c.beam_numbers, c.plan_sop_instance_uid)


def test_a_plan_split_in_two_jobs_and_summed_is_the_whole_plan(plan_beams, tmp_path):
    runs, uid = plan_beams
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)   # independent streams: no warning
        full = sum_results(runs)
        job01 = sum_results(runs[:2])
        job01.save(tmp_path / "job01.h5")
        runs[2].save(tmp_path / "job2.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # no body outline, ...
        parts = [DoseResult.load(tmp_path / "job01.h5"), DoseResult.load(tmp_path / "job2.h5")]
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        total = sum_results(parts)
    np.testing.assert_array_equal(total.dose_gy_zyx, full.dose_gy_zyx)
    # the whole course of the plan, its 30 fractions (scale 30), all its beams, its UID: as the full run's
    assert _contents(full) == ("PLAN", FRACTIONS, FRACTIONS, float(FRACTIONS), [1, 2, 3], uid)
    assert _contents(total) == _contents(full)
    p = total.provenance
    assert [b["beam_number"] for b in p["summed_beams"]] == [1, 2, 3]
    assert p["summed_beam_indices"] == [0, 1, 2] and p["summed_beam_seeds"] == [7, 7, 7]
    assert p["summed_primaries"] == [r.primaries for r in runs]
    # and saved, loaded: the same
    total.save(tmp_path / "total.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _contents(DoseResult.load(tmp_path / "total.h5")) == _contents(full)
    # the uncertainty of the nested sum is the flat sum's (independent streams: in quadrature)
    np.testing.assert_allclose(total.uncertainty_rel_zyx, full.uncertainty_rel_zyx, rtol=1e-6)


def test_a_beam_in_two_parts_is_caught_by_the_shared_stream_check(plan_beams):
    runs, _ = plan_beams
    plan_run = sum_results(runs[:2])      # beams 0 and 1 of the plan
    with pytest.warns(McprotonRuntimeWarning, match=r"2 results share their random numbers.*\(7, 0\)"):
        sum_results([plan_run, runs[0]])  # beam 0 again, on its stream (7, 0)
    with warnings.catch_warnings():       # beam 2: another stream, no warning
        warnings.simplefilter("error", McprotonRuntimeWarning)
        sum_results([plan_run, runs[2]])


def test_mixed_beam_records_are_refused_not_taken_for_beams_without_a_plan(plan_beams):
    """A sum written before the fix kept {} for a part that was a sum: some records of a plan, others empty.  Its
    RT Dose was PLAN at scale 1 (one fraction as the whole course); now refused, naming the records."""
    runs, _ = plan_beams
    old = sum_results([runs[0], runs[1]])
    old.provenance["summed_beams"][1] = {}   # as the older sum_results wrote a part that was a sum
    with pytest.raises(ValueError, match=r"beam records are mixed: 1 of 2 record a beam number.*beam record\(s\) 2"
                       r".*contents="):
        result_dose_contents(old)

"""A sum of beams has one plan and one number of fractions (audit 26 interact, F1).

``sum_results`` checked the grid, the normalisation, builds, physics and positions of its parts, not their plan or
fractions; the HDF5 (``plan_fractions``), the RT Dose (``_contents_of``) and ``mcnamara_of_result`` then read the
first beam record for all.  A beam of a 5-fraction boost plan summed with a beam of a 17-fraction plan was saved as
"1 of 17 planned fractions" and written into the RT Dose x 17 (3.4 x too high for the boost); a run of one fraction
summed with runs of all 17 (``plan.all_fractions``) was saved as "one fraction" and given to the RBE as one.  Now
sum_results refuses such parts (ConfigError naming the results, their beams and values), and plan_fractions and the
RT Dose's contents refuse records that disagree.  Monte Carlo: 300 primaries per beam on a 40 mm water box."""
from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mcproton import RunSettings, box_phantom, simulate, sum_results
from mcproton.config import ConfigError
from mcproton.dicom import dose_contents, load_rtplan, plan_to_beams, result_dose_contents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, save  # noqa: E402

TINY = {"primaries": 300, "batches": 3, "backend": "cpu", "threads": 1, "seed": 7}


def _plan(path: Path, n_fractions: int) -> Path:
    save(make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(80.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 2.0} for g in (0.0, 90.0)], n_fractions=n_fractions), path)
    return path


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Beam 2 of a 17-fraction plan (one fraction, and all 17), beam 1 of another plan of 5 fractions (a boost),
    and beam 1 of the 17-fraction plan (one fraction), each run on its stream."""
    tmp = tmp_path_factory.mktemp("plans")
    main = load_rtplan(_plan(tmp / "RP.dcm", 17))
    boost = load_rtplan(_plan(tmp / "RP_boost.dcm", 5))
    g = box_phantom("water", (40.0, 40.0, 40.0), (4.0, 4.0, 4.0))
    g.origin_mm = (-18.0, -18.0, -18.0)

    def run(beam, index):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return simulate(g, beam, RunSettings(**TINY), beam_index=index, log=None)

    one = plan_to_beams(main, "dcpt_v2")
    every = plan_to_beams(main, "dcpt_v2", all_fractions=True)
    return SimpleNamespace(b1=run(one[0], 0), b2=run(one[1], 1), b2_all=run(every[1], 1),
                           boost_b1=run(plan_to_beams(boost, "dcpt_v2")[0], 0), uid=main.sop_instance_uid,
                           boost_uid=boost.sop_instance_uid)


def test_a_beam_of_a_17_fraction_plan_and_a_beam_of_a_5_fraction_boost_are_not_summed(plans):
    """Before: summed without a word, saved as "1 of 17 planned fractions", its RT Dose x 17 for both beams."""
    with pytest.raises(ConfigError) as e:
        sum_results([plans.b2, plans.boost_b1])
    said = str(e.value)
    assert "not beams of one RT Ion Plan holding the same fractions" in said
    assert "fractions planned (fractions_planned): 17 in result 1 (beam '2:F2'); 5 in result 2 (beam '1:F1')" in said
    assert f"{plans.uid} in result 1" in said and f"{plans.boost_uid} in result 2" in said
    assert "planning system" in said   # what to do for a plan sum


def test_one_fraction_and_all_fractions_are_not_summed(plans):
    """Before: saved as "1 of 17 planned fractions (one fraction)" with one beam of all 17 in it; the McNamara RBE
    took its dose per fraction as the whole dose."""
    with pytest.raises(ConfigError, match=r"fractions held \(fractions\): 1 in result 1 \(beam '1:F1'\); 17 in "
                                          r"result 2 \(beam '2:F2'\)"):
        sum_results([plans.b1, plans.b2_all])
    # a part that is itself a sum gives each of its beams: named in the message too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match=r"17 in result 1 \(beam '2:F2'\); 1 in result 2 \(beam '1:F1'\), "
                                              r"result 2 \(beam '2:F2'\)"):
            sum_results([plans.b2_all, sum_results([plans.b1, plans.b2])])


def test_a_plan_beam_and_a_beam_that_does_not_say_its_fractions_are_not_summed(plans):
    """A record that does not say how many fractions it holds (a file of an mcproton before 2026-12-05, a beam of no
    plan) beside one that does: which fractions the sum holds is not known."""
    beam = {k: v for k, v in plans.b1.provenance["beam"].items() if k not in ("fractions", "fractions_planned")}
    old = dataclasses.replace(plans.b1, provenance={**plans.b1.provenance, "beam": beam})
    with pytest.raises(ConfigError, match=r"fractions held \(fractions\): not recorded in result 1 \(beam '1:F1'\); "
                                          r"1 in result 2 \(beam '2:F2'\).*fractions_planned=N"):
        sum_results([old, plans.b2])


def test_the_beams_of_one_plan_are_summed_as_before(plans):
    total = sum_results([plans.b1, plans.b2])
    c = result_dose_contents(total)
    assert (c.summation_type, c.fractions, c.fractions_planned, c.scale, c.beam_numbers,
            c.plan_sop_instance_uid) == ("PLAN", 17, 17, 17.0, [1, 2], plans.uid)
    from mcproton._io.hdf5 import plan_fractions

    assert plan_fractions(total.provenance) == (1, 17, "1 of 17 planned fractions (one fraction)")


def _records(**second):
    first = {"name": "1:F1", "beam_number": 1, "fractions": 1, "fractions_planned": 17, "plan_beam_numbers": [1, 2],
             "plan_sop_instance_uid": "1.2.3"}
    return [first, {**first, "name": "2:F2", "beam_number": 2, **second}]


@pytest.mark.parametrize("second, said", [
    ({"fractions_planned": 5, "plan_sop_instance_uid": "1.2.4"}, r"fractions planned \(fractions_planned\): 17 in "
     r"beam record 1 '1:F1'; 5 in beam record 2 '2:F2'; and RT Ion Plan .*1\.2\.3 in beam record 1"),
    ({"plan_sop_instance_uid": "1.2.4"}, r"RT Ion Plan \(SOP Instance UID\) \(plan_sop_instance_uid\): 1\.2\.3 in "
     r"beam record 1 '1:F1'; 1\.2\.4 in beam record 2 '2:F2'"),
    ({"fractions": 17}, r"fractions held \(fractions\): 1 in beam record 1 '1:F1'; 17 in beam record 2 '2:F2'"),
    ({"plan_beam_numbers": [1, 2, 3]}, r"the plan's beam numbers .*\[1, 2\] in beam record 1"),
])
def test_records_that_disagree_are_refused_by_the_hdf5_the_rt_dose_and_the_rbe(second, said):
    """plan_fractions (the HDF5's fractions), the RT Dose's contents and mcnamara_of_result read the first record
    for all before; each now refuses, naming the records and their values.  Records that agree: as before."""
    from mcproton._io.hdf5 import plan_fractions
    from mcproton.rbe import mcnamara_of_result

    metas = _records(**second)
    with pytest.raises(ValueError, match=said):
        dose_contents([SimpleNamespace(meta=m) for m in metas])
    prov = {"summed_beams": metas}
    with pytest.raises(ValueError, match="disagree on the plan or fractions its dose holds"):
        plan_fractions(prov)
    with pytest.raises(ValueError, match=said):
        plan_fractions(prov)
    g = box_phantom("water", (8.0, 8.0, 8.0), (4.0, 4.0, 4.0))
    res = SimpleNamespace(provenance=prov, normalisation="Gy (sum of 2 beams)", geometry=g,
                          dose_gy_zyx=np.ones(g.shape_zyx), dose_to_water_gy_zyx=np.ones(g.shape_zyx),
                          let_d_kev_um_zyx=np.ones(g.shape_zyx))
    with pytest.raises(ValueError, match=said):
        mcnamara_of_result(res, 2.0)
    agree = _records()
    assert plan_fractions({"summed_beams": agree}) == (1, 17, "1 of 17 planned fractions (one fraction)")
    c = dose_contents([SimpleNamespace(meta=m) for m in agree])
    assert (c.summation_type, c.fractions, c.scale, c.plan_sop_instance_uid) == ("PLAN", 17, 17.0, "1.2.3")

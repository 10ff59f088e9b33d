"""A plan's result says in its ``normalisation`` which dose it holds: one fraction (of N planned) and physical dose
(robustness audit 2026-12-06, F4: "Gy (sum of 3 beams: Gy for 8.49e+09 protons; ...)" said neither, and a scenario's
D95 was to be compared with a per-fraction or per-course prescription in Gy(RBE))."""
from __future__ import annotations

import mcproton as mcp
from mcproton._io.beam_model import load_beam_model
from mcproton._io.rtplan import load_rtplan, plan_to_beams

from dicom_factories import make_plan

NOTE = "1 of 17 planned fractions; physical dose, no RBE"


def test_a_plans_beams_and_their_sum_say_one_fraction_of_n_and_physical_dose(tmp_path):
    layer = [(70.0, [(0.0, 0.0)], [1.0])]
    plan = load_rtplan(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 20.0), "layers": layer},
                                  {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 20.0), "layers": layer}],
                                 n_fractions=17))
    beams = plan_to_beams(plan, load_beam_model("dcpt_v2"))
    g = mcp.box_phantom("water", size_mm=(60, 60, 80), voxel_mm=(4, 4, 4), origin_mm=(-28, -28, -18))
    settings = mcp.RunSettings(primaries=300, seed=2, backend="cpu", threads=1)
    results = [mcp.simulate(g, b, settings, beam_index=i, log=None) for i, b in enumerate(beams)]
    for r, b in zip(results, beams):
        assert r.normalisation == f"Gy for {b.total_protons:.6g} protons ({NOTE})"
    total = mcp.sum_results(results)
    assert total.normalisation.startswith("Gy (sum of 2 beams: Gy for ")
    assert total.normalisation.endswith(f" protons; {NOTE})") and total.normalisation.count(NOTE) == 1
    total.save(tmp_path / "plan.h5")
    assert mcp.DoseResult.load(tmp_path / "plan.h5").normalisation == total.normalisation
    # a beam that is not a plan's: no such note
    pencil = mcp.Beam.pencil(70.0, position_mm=(0, 0, -25), total_protons=1e9)
    assert mcp.simulate(g, pencil, settings, log=None).normalisation == "Gy for 1e+09 protons"

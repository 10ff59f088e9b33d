"""Energy layers whose protons all stop in their range shifter (the paediatric audit, F1): a 70 MeV layer (CSDA
range 41 mm in water) behind RS_5CM of dcpt_v5 (57 mm WET) deposits nothing in the patient.  Beside a 110 MeV
layer it ran without a word (63 % of the incident energy ended in the shifter); alone it was blamed on the beam
geometry and the phantom after the transport.  Now such layers are warned about before the transport, a beam whose
every layer stops is refused, and the post-run message reads the ledger's shifter entries."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mcproton import McprotonRuntimeWarning
from mcproton._io.beam_model import load_beam_model
from mcproton._io.rtplan import load_rtplan, plan_to_beams
from mcproton._run.inputs import check_result, check_shifter_ranges, shifter_wet_mm
from mcproton.config import ConfigError
from mcproton.source import Beam, RangeShifterSlab, Spot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, spot_grid  # noqa: E402


def _plan_beam(layers_mev, rs_id="RS_5CM"):
    ds = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0, "rs_id": rs_id,
                     "layers": [(e, spot_grid(3, 5.0), [1.0] * 9) for e in layers_mev]}])
    (beam,) = plan_to_beams(load_rtplan(ds), load_beam_model("dcpt_v5"))
    return beam


def test_a_layer_that_stops_in_the_shifter_is_warned_about_and_a_beam_that_stops_entirely_refused():
    mixed = _plan_beam([70.0, 110.0])
    with pytest.warns(McprotonRuntimeWarning, match=r"plan '1:F1': 1 energy layer\(s\) \(70 MeV \(mean energy 70.14 "
                                                    r"MeV\); 4\d.\d % of the beam's protons\) stop in range shifter "
                                                    r"'RS_5CM' of WET 57.0 mm: the CSDA range in water of 70.14 MeV "
                                                    r"is 41.2 mm \(ICRU 90\).*RangeShifterID mapped to the wrong"):
        check_shifter_ranges([mixed], "plan")
    with pytest.raises(ConfigError, match=r"plan '1:F1': every energy layer stops in its range shifter, so no "
                                          r"proton of this beam would reach the patient: .*'RS_5CM' of WET 57.0 mm"):
        check_shifter_ranges([_plan_beam([70.0])], "plan")
    with warnings.catch_warnings():   # behind RS_3CM (34 mm WET) 70 MeV (41 mm) passes: a shallow peak, not warned
        warnings.simplefilter("error")
        check_shifter_ranges([_plan_beam([70.0, 110.0], rs_id="RS_3CM")], "plan")


def test_the_margin_of_energy_spread_and_straggling():
    """A layer whose range lies just below the WET still sends its upper tail through: passed; one whose range
    with 3 sigma of energy spread and straggling is below it: warned about (here refused: its only layer)."""
    slab = RangeShifterSlab("pmma", 40.0, 1.19, 100.0, id="RS_T")
    wet = shifter_wet_mm(slab)
    assert wet == pytest.approx(40.0 * 1.164, rel=0.01)   # PMMA: SPR ~1.164 (tests/io/test_rtplan.py)

    def beam(e):
        return Beam([Spot(energy_mev=e, energy_spread_mev=0.5, position_mm=(0.0, 0.0, -300.0),
                          direction=(0.0, 0.0, 1.0), range_shifter=slab)], name="B")

    from mcproton.planning.kernel import energy_for_range_mm

    e_at_wet = float(energy_for_range_mm(wet))
    check_shifter_ranges([beam(e_at_wet - 0.5)], "beam")   # mean range 0.5 MeV short of the WET: its tail passes
    with pytest.raises(ConfigError, match=r"'RS_T' of WET 46.\d mm"):
        check_shifter_ranges([beam(e_at_wet - 6.0)], "beam")


def _result(ledger, dose=0.0):
    return SimpleNamespace(ledger=ledger, dose_gy_zyx=np.full((2, 2, 2), dose))


def test_the_no_dose_message_names_the_shifter_that_took_the_protons():
    slab = RangeShifterSlab("polycarbonate", 47.5, 1.2, 100.0, id="RS_5CM")
    beams = [Beam([Spot(energy_mev=70.0, range_shifter=slab)], name="1:F1")]
    led = {"incident": 1.4e6, "deposited": 0.0, "shifter": 1.4e6, "shifter_removed": 20000, "primaries": 20000}
    with pytest.raises(RuntimeError, match=r"no dose anywhere .*100 % of the primaries \(20000 of 20000\) and 100 % "
                                           r"of the incident energy ended in range shifter 'RS_5CM'") as exc:
        check_result(_result(led), beams=beams)
    assert "--allow-empty" not in str(exc.value) and "thin phantom" not in str(exc.value)
    led = {"incident": 1.4e6, "deposited": 0.0, "shifter": 1e4, "shifter_removed": 100, "primaries": 20000}
    with pytest.raises(RuntimeError, match="--allow-empty"):   # not the shifter's doing: the message as before
        check_result(_result(led), beams=beams)
    led = {"incident": 1e6, "deposited": 1e5, "missed": 3e5, "escaped": 0.0, "shifter": 6e5,
           "shifter_removed": 12000, "primaries": 20000}
    check_result(_result(led, 1.0), beams=beams)   # most of it in the shifter but dose scored, nothing lost: passes
    led["escaped"] = 5.5e5
    with pytest.raises(RuntimeError, match=r"55 % of the beam's incident energy left the grid.*60 % of the primaries "
                                           r".*range shifter 'RS_5CM'.*; else check the beam"):
        check_result(_result(led, 1.0), beams=beams)


def test_energy_only_names_the_layer_that_stops_in_the_shifter():
    """plan.range_shifter_model = "energy_only" lowers the energy before the transport and cannot do it for a layer
    that stops: refused (as before), now naming the beam, the layer, the shifter and the likely cause."""
    from mcproton._io.errors import DicomInputError

    ds = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0, "rs_id": "RS_5CM",
                     "layers": [(e, spot_grid(3, 5.0), [1.0] * 9) for e in (110.0, 70.0)]}])
    with pytest.raises(DicomInputError, match=r"beam 1 control point 2 \(70 MeV\): range shifter 'RS_5CM': a 70.1\d* "
                                              r"MeV beam stops in a range shifter of 57 mm WET.*wrong \[\[range_sh"):
        plan_to_beams(load_rtplan(ds), load_beam_model("dcpt_v5"), range_shifter_model="energy_only")

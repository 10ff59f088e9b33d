"""The Python API refuses what it cannot run with a message that names the problem, and warns of what
``mcproton run`` refuses as plausible but wrong (the audit of the Python API: its crash table, W2, W4, M3):
before, each case below ended in an internal traceback (``'float' object cannot be interpreted as an integer``,
``'dict' object has no attribute 'backend'``, ``could not broadcast``, ``substring not found``, h5py's
``file signature not found``) or in a silently wrong result (nuclear physics on for ``"false"``, a zero depth-dose,
an empty dose, a box of another size).  The Monte Carlo runs here are a few hundred primaries on the CPU."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton import Beam, PhysicsSettings, RunSettings, box_phantom, simulate

TINY = {"primaries": 400, "batches": 2, "backend": "cpu", "threads": 1, "seed": 3}


@pytest.fixture(scope="module")
def box():
    return box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))


# ------------------------------------------------------------------------------------------- RunSettings (M3)
@pytest.mark.parametrize("field,value,words", [
    ("batches", 2.5, "run.batches = 2.5 is not a whole number"),
    ("primaries", 1000.5, "run.primaries = 1000.5 is not a whole number"),
    ("seed", 1.5, "run.seed = 1.5 is not a whole number"),
    ("seed", "7", "run.seed = '7' has the wrong type (text)"),
    ("primaries", "1000", "run.primaries = '1000' has the wrong type (text)"),
    ("threads", 1.5, "run.threads = 1.5 is not a whole number"),
    ("batch_size", "10", "run.batch_size = '10' has the wrong type"),
    ("gpu", True, "run.gpu = True has the wrong type (bool)"),
    ("primaries", float("nan"), "run.primaries = nan is not a whole number"),
    ("time_limit_s", "60", "run.time_limit_s = '60' has the wrong type (text)"),
])
def test_run_settings_refuse_what_is_not_a_number_of_the_right_kind(field, value, words):
    with pytest.raises(ValueError) as exc:
        RunSettings(**{field: value})
    assert words in str(exc.value)


def test_run_settings_keep_whole_numbers_as_the_ints_the_run_uses():
    s = RunSettings(primaries=1e5, seed=np.int64(7), batches=4.0, threads=np.int32(2))
    assert (s.primaries, s.seed, s.batches, s.threads) == (100_000, 7, 4, 2)
    assert all(type(v) is int for v in (s.primaries, s.seed, s.batches, s.threads))
    assert RunSettings(seed=2**62 + 1).seed == 2**62 + 1     # exact: not through a float


@pytest.mark.parametrize("value", ["false", "False", 1, 0, None, 1.0])
def test_physics_switches_refuse_anything_but_a_bool(value):
    with pytest.raises(ValueError, match=r"physics.nuclear = .* has the wrong type .*give True or False"):
        RunSettings(physics={"nuclear": value})
    with pytest.raises(ValueError, match=r"physics.msc = .* give True or False"):
        PhysicsSettings(msc=value)


def test_physics_switches_take_python_and_numpy_bools_and_record_python_bools():
    p = PhysicsSettings(nuclear=np.bool_(False), straggling=True)
    assert p.nuclear is False and p.straggling is True
    with pytest.raises(ValueError, match=r"physics.e_cut_mev = '0.5' has the wrong type \(text\)"):
        PhysicsSettings(e_cut_mev="0.5")


def test_the_seed_recorded_is_the_seed_used(box):
    r = simulate(box, Beam.pencil(70.0, position_mm=(0, 0, -5)), RunSettings(**{**TINY, "seed": 7.0}))
    assert r.provenance["seed"] == 7 and type(r.provenance["seed"]) is int

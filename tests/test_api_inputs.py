"""The Python API refuses what it cannot run with a message that names the problem, and warns of what
``mcproton run`` refuses as plausible but wrong (the audit of the Python API: its crash table, W2, W4, M3):
before, each case below ended in an internal traceback (``'float' object cannot be interpreted as an integer``,
``'dict' object has no attribute 'backend'``, ``could not broadcast``, ``substring not found``, h5py's
``file signature not found``) or in a silently wrong result (nuclear physics on for ``"false"``, a zero depth-dose,
an empty dose, a box of another size).  The Monte Carlo runs here are a few hundred primaries on the CPU."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import mcproton
from mcproton import Beam, PhysicsSettings, RunSettings, Spot, box_phantom, simulate
from mcproton._io.errors import McprotonRuntimeWarning, McprotonWarning

TINY = {"primaries": 400, "batches": 10, "backend": "cpu", "threads": 1, "seed": 3}


@pytest.fixture(scope="module")
def box():
    return box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 2.0))


@pytest.mark.parametrize("threads", [0, -1])
def test_config_run_threads_below_one_is_refused_as_its_message_says(threads):
    """run.threads = -1 was refused with "must be >= 1 or unset" but run.threads = 0 was taken as unset (the
    environment audit 19, F8): both are refused, as RunSettings(threads=0) is."""
    from mcproton.config import ConfigError, run_settings

    with pytest.raises(ConfigError, match=f"run.threads must be >= 1 or unset; got {threads}"):
        run_settings({"run": {"threads": threads}})
    assert run_settings({"run": {}}).threads is None


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


def test_the_most_primaries_the_message_names_are_accepted():
    """'too large (max 2^40)' refused 2^40 itself (the edges audit of 2026-12-07, F5): the largest is 2^40 - 1, and
    the message and the target-uncertainty refusal say so."""
    assert RunSettings(primaries=2**40 - 1).primaries == 2**40 - 1
    with pytest.raises(ValueError) as exc:
        RunSettings(primaries=2**40)
    assert "run.primaries 1099511627776 is too large (at most 2^40 - 1 = 1099511627775)" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        RunSettings(target_uncertainty=1e-5)
    assert "max" not in str(exc.value) and "run.primaries' largest, 2^40 - 1" in str(exc.value)


@pytest.mark.parametrize("threads", [1000, 100_000, 10**18])
def test_run_settings_refuse_thousands_of_threads(threads, monkeypatch):
    """run.threads = 1000 aborted in libgomp and 100000 segfaulted, --check-config saying OK (the hostile-inputs
    audit of 2026-12-06, F7): above 4 per CPU of the machine (at least 256) it is refused, naming the key."""
    import os

    from mcproton.settings import MIN_THREAD_LIMIT, thread_limit

    monkeypatch.setattr(os, "cpu_count", lambda: 8)   # the limit of an 8-CPU machine: 256
    assert thread_limit() == MIN_THREAD_LIMIT == 256
    with pytest.raises(ValueError, match=rf"run.threads = {threads} is more than mcproton accepts here \(256"):
        RunSettings(threads=threads)
    assert RunSettings(threads=256).threads == 256
    monkeypatch.setattr(os, "cpu_count", lambda: 128)   # a large node: 4 per CPU
    assert RunSettings(threads=512).threads == 512


@pytest.mark.parametrize("target", [1e-300, 1e-20, 9.9e-5])
def test_run_settings_refuse_a_target_uncertainty_no_run_reaches(target):
    """run.target_uncertainty = 1e-300 ended in "internal error: OverflowError" (the hostile-inputs audit of
    2026-12-06, F8): below 1e-4 (0.01 %) it is refused, saying what is achievable."""
    with pytest.raises(ValueError, match=r"run.target_uncertainty = .* is below 0.0001 \(0.01 %\), which no run "
                                         r"reaches.*give e.g. 0.01 for 1 %"):
        RunSettings(target_uncertainty=target)
    assert RunSettings(target_uncertainty=1e-4).target_uncertainty == 1e-4


@pytest.mark.parametrize("target", [0.1, 0.2, 0.5, 0.99])
def test_a_configs_target_uncertainty_meant_as_percent_is_refused_with_the_fraction(target):
    """run.target_uncertainty = 0.5 meant 0.5 % stopped a run at 3 % with a tenth of its primaries, without a word
    (the units audit of 2026-12-07, F2): a config's 0.1 (10 %) and more is refused, naming the fraction to give, as
    mcproton check's --target-uncertainty 5 names 0.05.  RunSettings itself takes (0, 1) (the check's per-beam
    targets, quick tests)."""
    from mcproton.config import ConfigError, run_settings

    with pytest.raises(ConfigError, match=rf"run.target_uncertainty = {target:g} is {100 * target:g} %, .*it is a "
                                          rf"fraction, so this looks like a percent \({target:g} % is "
                                          rf"{target / 100:g}\): give {target / 100:g} for {target:g} %"):
        run_settings({"run": {"target_uncertainty": target}})
    assert run_settings({"run": {"target_uncertainty": 0.05}}).target_uncertainty == 0.05
    assert RunSettings(target_uncertainty=target).target_uncertainty == target
    with pytest.raises(ValueError, match=r"must be a fraction in \(0, 1\), e.g. 0.01 for 1 %; got 1.5 \(1.5 % is "
                                         r"0.015\)"):
        RunSettings(target_uncertainty=1.5)


def test_a_checks_target_uncertainty_meant_as_percent_is_named_in_its_warning():
    """mcproton check takes --target-uncertainty 0.5 (it FAILs its own MC above 2 %: a wrong FAIL, no wrong PASS) and
    says so before the MC; the warning also names the fraction 0.5 % is, as mcproton run's refusal does."""
    from mcproton._check.api import _warn_target_above_level
    from mcproton._check.levels import ActionLevels
    from mcproton._io.errors import McprotonRuntimeWarning

    with pytest.warns(McprotonRuntimeWarning, match=r"will FAIL that level.*if 0.5 % was meant \(0.5 % is 0.005\), "
                                                    r"give --target-uncertainty 0.005"):
        _warn_target_above_level(0.5, ActionLevels())
    with pytest.warns(McprotonRuntimeWarning) as said:
        _warn_target_above_level(0.05, ActionLevels())
    assert "was meant" not in str(said[0].message)


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


# ------------------------------------------------------------------------------- simulate's arguments (crash)
def test_simulate_takes_a_dict_of_run_settings(box):
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5))
    a = simulate(box, beam, dict(TINY))
    b = simulate(box, beam, RunSettings(**TINY))
    assert a.backend == "cpu" and a.primaries == 400
    np.testing.assert_array_equal(a.dose_gy_zyx, b.dose_gy_zyx)
    with pytest.raises(ValueError, match="settings must be a mcproton.RunSettings, a dict of its fields or None"):
        simulate(box, beam, 1000)


def test_simulate_refuses_a_list_of_beams_or_a_spot_saying_what_to_do(box):
    beam = Beam.pencil(70.0, position_mm=(0, 0, -5))
    with pytest.raises(ValueError, match=r"simulate runs one beam; got a list of 2.*beam_index=i.*sum_results"):
        simulate(box, [beam, beam], TINY)
    with pytest.raises(ValueError, match=r"got a Spot: give Beam\(\[spot\]\)"):
        simulate(box, Spot(70.0), TINY)
    with pytest.raises(ValueError, match="geometry must be a mcproton.VoxelGeometry"):
        simulate(np.zeros((3, 3, 3)), beam, TINY)


@pytest.mark.parametrize("kw,words", [
    ({"position_mm": (0, -10)}, "spot position_mm must be 3 numbers (x, y, z) in mm; got (0, -10)"),
    ({"position_mm": (0, 0, 0, 1)}, "spot position_mm must be 3 numbers"),
    ({"position_mm": "origin"}, "spot position_mm must be 3 numbers"),
    ({"sigma_mm": (3.0,)}, "spot sigma_mm must be 2 numbers (x, y) in the beam frame"),
    ({"direction": (0, 1)}, "spot direction must be a non-zero finite 3-vector"),
])
def test_a_spot_of_the_wrong_shape_is_refused_when_made(kw, words):
    with pytest.raises(ValueError) as exc:
        Beam.pencil(70.0, **kw)
    assert words in str(exc.value)


def test_a_beam_of_something_else_than_spots_is_refused():
    with pytest.raises(ValueError, match=r"takes a list of Spots; give \[spot\]"):
        Beam(Spot(70.0))
    with pytest.raises(ValueError, match="every spot must be a mcproton.source.Spot; got a dict"):
        Beam([{"energy_mev": 70.0}])


# ---------------------------------------------------------------------------- what mcproton run refuses (W4)
def _runtime_warnings(rec) -> list[str]:
    return [str(w.message) for w in rec if issubclass(w.category, McprotonRuntimeWarning)]


def test_simulate_warns_of_a_beam_that_misses_the_grid(box):
    with pytest.warns(McprotonRuntimeWarning) as rec:
        r = simulate(box, Beam.pencil(70.0, position_mm=(500, 0, -10)), TINY)
    said = _runtime_warnings(rec)
    assert any("every spot of beam 'pencil 70 MeV' misses the phantom" in m and "mcproton run refuses" in m
               for m in said), said
    assert rec[0].filename == __file__     # points at the call of simulate
    assert float(r.dose_gy_zyx.max()) == 0.0   # run as given


def test_simulate_warns_of_a_source_inside_the_phantom(box):
    with pytest.warns(McprotonRuntimeWarning) as rec:
        simulate(box, Beam.pencil(70.0, position_mm=(0, 0, 10)), TINY)
    assert any("lies inside the phantom" in m for m in _runtime_warnings(rec))


def test_simulate_warns_of_energies_that_mcproton_run_refuses_or_warns_of(box):
    """Transport audit F3: an energy at or below the cut-off scored nothing, and one above 250 MeV (the nuclear
    data's end) ran, both without a word from simulate, while mcproton run refuses / warns."""
    with pytest.warns(McprotonWarning) as rec:
        r = simulate(box, Beam.pencil(0.3, position_mm=(0, 0, -5)), TINY)
    said = [str(w.message) for w in rec]
    assert any("0.3 MeV is at or below the cut-off physics.e_cut_mev" in m and "mcproton run refuses" in m
               for m in said), said
    assert float(r.dose_gy_zyx.max()) == 0.0
    with pytest.warns(McprotonWarning, match="nuclear data end"):
        simulate(box, Beam.pencil(260.0, position_mm=(0, 0, -5)), TINY)


def test_simulate_of_a_sound_beam_says_nothing(box):
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)
        simulate(box, Beam.pencil(70.0, position_mm=(0, 0, -5)), TINY)


def test_box_phantom_warns_of_a_size_that_is_not_whole_voxels_and_says_the_size_made():
    with pytest.warns(McprotonWarning,
                      match=r"size_mm x = 41 mm is 20.5 voxels of 2 mm.*the box made is 40 x 40 x 60 mm"):
        g = box_phantom("water", (41, 40, 60), 2)
    assert g.shape_zyx == (30, 20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)
        box_phantom("water", (40, 40, 60), 2)                 # exact multiples: no warning
        box_phantom("water", (0.3 * 10, 4.0, 6.0), (0.3, 2.0, 2.0))   # 3.0000000000000004 / 0.3: a multiple


# ------------------------------------------------------------------------- depth-dose and loading (W2, crash)
@pytest.fixture(scope="module")
def pencil(box):
    return simulate(box, Beam.pencil(70.0, position_mm=(0, 0, -5)), TINY)


def test_integrated_depth_dose_refuses_a_result_without_deposited_energy(pencil, tmp_path):
    """A file written by mcproton run / demo (write_result_hdf5 without edep) has no deposited energy: before, its
    depth-dose was zeros without a word."""
    from mcproton._io.hdf5 import write_result_hdf5

    p = write_result_hdf5(pencil, tmp_path / "run.h5")          # as mcproton run writes it
    back = mcproton.DoseResult.load(p)
    assert back.edep_mev_zyx is None
    with pytest.raises(ValueError, match=r"needs the deposited energy .*mcproton run.*DoseResult.save"):
        back.integrated_depth_dose()
    z, idd = mcproton.DoseResult.load(pencil.save(tmp_path / "saved.h5")).integrated_depth_dose()
    assert idd.max() > 0


def test_integrated_depth_dose_axis_must_be_x_y_or_z(pencil):
    with pytest.raises(ValueError, match=r"axis must be 'x', 'y' or 'z' \(lower case\); got 'Z'"):
        pencil.integrated_depth_dose("Z")
    with pytest.raises(ValueError, match="axis must be"):
        pencil.depth_axis_mm("depth")


def test_depth_axis_is_absolute_and_the_idd_depth_from_the_front_face():
    g = box_phantom("water", (20.0, 20.0, 10.0), (4.0, 4.0, 1.0), origin_mm=(-8.0, -8.0, 100.5))
    r = simulate(g, Beam.pencil(70.0, position_mm=(0, 0, 95)), TINY)
    assert r.depth_axis_mm()[:2].tolist() == [100.5, 101.5]
    assert r.integrated_depth_dose()[0][:2].tolist() == [0.5, 1.5]


def test_loading_a_file_that_is_not_hdf5_is_a_dose_file_error(tmp_path):
    from mcproton._io.hdf5 import DoseFileError

    p = tmp_path / "notes.txt"
    p.write_text("not a dose\n")
    with pytest.raises(DoseFileError, match="is not an HDF5 file, so not an mcproton dose file"):
        mcproton.DoseResult.load(p)
    with pytest.raises(FileNotFoundError):
        mcproton.DoseResult.load(tmp_path / "missing.h5")


# ------------------------------------------------------------- wrong-typed inputs (audit 2026-12-05 F11)
@pytest.mark.parametrize("make,words", [
    (lambda: Spot("70"), "spot energy_mev = '70' has the wrong type (text): give the mean kinetic energy in MeV"),
    (lambda: Beam.pencil("70"), "spot energy_mev = '70' has the wrong type (text)"),
    (lambda: Beam.pencil(None), "spot energy_mev = None has the wrong type (NoneType)"),
    (lambda: Beam.pencil([70.0]), "spot energy_mev = [70.0] has the wrong type (list)"),
    (lambda: Beam.pencil(np.array([70.0])), "has the wrong type (array of shape (1,)): give the mean kinetic "
                                            "energy in MeV, one number, not several"),
    (lambda: Spot(70.0, energy_spread_mev="0.5"), "spot energy_spread_mev = '0.5' has the wrong type (text)"),
    (lambda: Spot(70.0, energy_spread_mev=None), "spot energy_spread_mev = None has the wrong type"),
    (lambda: Spot(70.0, weight=None), "spot weight = None has the wrong type (NoneType)"),
    (lambda: Spot(70.0, weight="1"), "spot weight = '1' has the wrong type (text)"),
    (lambda: Spot(70.0, sigma_mm=("3", "3")), "spot sigma_mm must be 2 numbers (x, y) in the beam frame"),
    (lambda: Spot(70.0, direction="z"), "spot direction must be a non-zero finite 3-vector of numbers; got 'z'"),
    (lambda: Beam.pencil(70.0, total_protons="1e9"), "beam total_protons = '1e9' has the wrong type (text)"),
    (lambda: Beam(None), "Beam(spots) takes a list of Spots; got a NoneType"),
    (lambda: box_phantom("water", (10, 10, 10), float("nan")), "box_phantom voxel_mm = nan contains NaN or inf"),
    (lambda: box_phantom("water", (10, 10, 10), "1"), "box_phantom voxel_mm = '1': give the voxel size"),
    (lambda: box_phantom("water", (10, 10), 1), "box_phantom size_mm = (10, 10): give the box's size (x, y, z)"),
    (lambda: box_phantom("water", (10, 10, 10), 1, density_g_cm3="1"), "box_phantom density_g_cm3 = '1' has the "
                                                                        "wrong type (text)"),
    (lambda: mcproton.slab_phantom([("water", float("nan"))], (10, 10), 1),
     "layer 'water' thickness nan mm is not a positive whole number"),
    (lambda: mcproton.slab_phantom([("water", "10")], (10, 10), 1),
     "slab_phantom layer 1 (water) thickness_mm = '10' has the wrong type (text)"),
    (lambda: mcproton.slab_phantom([("water",)], (10, 10), 1), "slab_phantom layer 1 = ('water',): give (material, "
                                                               "thickness_mm)"),
])
def test_wrong_typed_inputs_are_refused_naming_the_parameter(make, words):
    """Before: Spot("70") was accepted and kept the text (simulate failed in Beam.max_energy_mev), the others ended
    in "ufunc 'isfinite' not supported", "Unknown format code 'g'", "cannot convert float NaN to integer" or a
    voxel size "1" read as a number."""
    with pytest.raises(ValueError) as exc:
        make()
    assert words in str(exc.value)


def test_spot_numbers_are_kept_as_floats_from_numpy_scalars_and_0d_arrays():
    s = Spot(np.float32(70.5), energy_spread_mev=np.array(0.5), weight=np.int64(3))
    assert (s.energy_mev, s.energy_spread_mev, s.weight) == (70.5, 0.5, 3.0)
    assert all(type(v) is float for v in (s.energy_mev, s.energy_spread_mev, s.weight))
    b = Beam.pencil(np.array(70.0), total_protons=np.int64(10**9))
    assert b.name == "pencil 70 MeV" and b.total_protons == 1e9 and type(b.total_protons) is float
    from mcproton.source import make_spots

    fast = make_spots(np.array([70.0, 80.0]), np.zeros((2, 3)), np.tile([0.0, 0.0, 1.0], (2, 1)),
                      np.tile([1.0, 0.0, 0.0], (2, 1)), energy_spread_mev=np.zeros(2), sigma_mm=[(1.0, 1.0)] * 2,
                      divergence_rad=[(0.0, 0.0)] * 2, correlation=[(0.0, 0.0)] * 2, weight=np.array([1.0, 2.0]))
    assert [type(s.energy_mev) for s in fast] == [float, float] and [s.weight for s in fast] == [1.0, 2.0]
    with pytest.raises(ValueError, match="spot energy_mev = '70' has the wrong type"):   # as Spot refuses it
        make_spots(["70"], np.zeros((1, 3)), [(0.0, 0.0, 1.0)], [(1.0, 0.0, 0.0)], energy_spread_mev=[0.0],
                   sigma_mm=[(1.0, 1.0)], divergence_rad=[(0.0, 0.0)], correlation=[(0.0, 0.0)], weight=[1.0])


def test_a_beam_takes_its_spots_from_a_generator_or_tuple_as_a_list():
    b = Beam(Spot(e) for e in (70.0, 80.0))
    assert isinstance(b.spots, list) and [s.energy_mev for s in b.spots] == [70.0, 80.0]
    assert isinstance(Beam((Spot(70.0),)).spots, list)


def test_a_misspelt_setting_is_refused_with_the_name_it_is_likely_to_be(box):
    """Before: Python's bare "unexpected keyword argument 'primary'"."""
    with pytest.raises(TypeError, match=r"RunSettings has no setting 'primary' \(did you mean 'primaries'\?\); "
                                        r"its settings are primaries, seed"):
        simulate(box, Beam.pencil(70.0, position_mm=(0, 0, -5)), {"primary": 500})
    with pytest.raises(TypeError, match=r"PhysicsSettings has no setting 'nucler' \(did you mean 'nuclear'\?\)"):
        RunSettings(physics={"nucler": False})
    import inspect

    assert "primaries" in inspect.signature(RunSettings).parameters   # help() still shows the fields

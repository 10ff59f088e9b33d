"""Primaries sampled at or below physics.e_cut_mev are not transported: the kernel counts their energy as missed and
they deposit nothing (kernels/transport.cu start_history).  Only the mean energy was checked against the cut-off, so
a beam whose energy spread put a sixth of its primaries below a raised cut-off ran with no word (the edges audit of
2026-12-07, F4: 12 MeV, 2 MeV spread, 10 MeV cut-off: 12 % of the incident energy missed).  ``mcproton run`` and
``simulate`` now warn when the expected fraction of such primaries exceeds 1e-6, naming the beam, the cut-off and
the fix; a therapy beam with the default cut-off is not warned about.  A few thousand primaries on the CPU."""
from __future__ import annotations

import warnings

import pytest
from make_bad_input_table import BASE
from scipy.stats import norm

from mcproton import Beam, McprotonRuntimeWarning, PhysicsSettings, RunSettings, Spot, box_phantom, simulate
from mcproton._run.inputs import E_CUT_TAIL_WARN, check_beam_energies, fraction_below_cut
from mcproton.cli import main

LOW = ["--set", "beam.energy_mev=12.0", "--set", "beam.energy_spread_mev=2.0", "--set", "physics.e_cut_mev=10.0"]


def _said(call) -> list[str]:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in got if "cut-off" in str(w.message)]


def test_fraction_below_the_cut_is_the_weighted_gaussian_tail():
    spots = [Spot(12.0, energy_spread_mev=2.0, weight=1.0), Spot(100.0, energy_spread_mev=1.0, weight=3.0),
             Spot(11.0, weight=2.0)]   # no spread: never below a cut-off under its energy
    frac, worst = fraction_below_cut(Beam(spots), 10.0)
    assert frac == pytest.approx(norm.cdf(-1.0) / 6, rel=1e-12) and worst == 0
    assert fraction_below_cut(Beam([Spot(100.0, energy_spread_mev=1.0)]), 0.5) == (0.0, -1)


def test_a_config_beam_with_a_tail_below_the_cut_off_is_warned_about(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    rc = []
    said = _said(lambda: rc.append(main(["run", str(cfg), "--check-config", *LOW])))
    assert rc == [0], capsys.readouterr().err
    assert len(said) == 1 and said[0].startswith(
        "beam.energy_mev = 12 MeV with beam.energy_spread_mev = 2 MeV: an expected 16 % of the primaries are sampled "
        "at or below the cut-off physics.e_cut_mev = 10 MeV")
    assert "counted as missed" in said[0] and "lower physics.e_cut_mev" in said[0]
    # a therapy beam with the default cut-off: its tail is 69.5 sigma below
    assert not _said(lambda: rc.append(main(["run", str(cfg), "--check-config", "--set", "beam.energy_mev=70.0",
                                             "--set", "beam.energy_spread_mev=1.0"])))
    assert rc == [0, 0], capsys.readouterr().err


def test_simulate_warns_and_the_tail_is_what_misses():
    """The warning says what the ledger shows: the missed energy is the Gaussian's energy below the cut-off,
    (mu Phi(z) - sigma phi(z)) / mu = 11.8 % at z = -1; its sd with 2000 primaries is 0.65 %, so 0.03 is 4.6 sd
    (false-positive rate < 1e-5)."""
    g = box_phantom("water", (40.0, 40.0, 20.0), (4.0, 4.0, 1.0))
    s = RunSettings(primaries=2000, batches=10, backend="cpu", threads=1, seed=5,
                    physics=PhysicsSettings(e_cut_mev=10.0))
    with pytest.warns(McprotonRuntimeWarning, match=r"an expected 16 % of the primaries are sampled at or below the "
                                                    r"cut-off physics\.e_cut_mev = 10 MeV"):
        r = simulate(g, Beam.pencil(12.0, energy_spread_mev=2.0, position_mm=(0, 0, -1)), s, log=None)
    led = r.ledger
    expect = (12.0 * norm.cdf(-1.0) - 2.0 * norm.pdf(-1.0)) / 12.0
    assert led["missed"] / led["incident"] == pytest.approx(expect, abs=0.03)
    assert not _said(lambda: simulate(g, Beam.pencil(70.0, energy_spread_mev=1.0, position_mm=(0, 0, -1)),
                                      RunSettings(primaries=50, batches=10, backend="cpu", threads=1), log=None))


def test_the_warning_threshold_and_a_beam_of_several_spots():
    """The default cut-off 0.5 MeV against the lowest energies a 5-sigma spread allows: 2.5 MeV with sigma 0.5 MeV
    is 4 sigma above it (3.2e-5 of the primaries: warned), 3 MeV is 5 sigma (2.9e-7: not)."""
    s = RunSettings()
    assert norm.cdf(-5.0) < E_CUT_TAIL_WARN < norm.cdf(-4.0)
    assert _said(lambda: check_beam_energies([Beam.pencil(2.5, energy_spread_mev=0.5)], s, "beam"))
    assert not _said(lambda: check_beam_energies([Beam.pencil(3.0, energy_spread_mev=0.5)], s, "beam"))
    beam = Beam([Spot(100.0, energy_spread_mev=1.0), Spot(2.5, energy_spread_mev=0.5)], name="G1")
    said = _said(lambda: check_beam_energies([beam], s, "plan"))
    assert len(said) == 1 and said[0].startswith("plan 'G1': an expected 1.6e-05 of the primaries")
    assert "most of it from spot 1: 2.5 MeV, spread 0.5 MeV" in said[0]

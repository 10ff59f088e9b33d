"""The demo's plan cache (mcproton/planning/_plan_cache.py; the host-time audit of 2026-12-07, F1): a plan read back
is the plan stored to the bit, and so is its Monte Carlo dose; a damaged entry is named and the plan made again; the
cache can be turned off; the key moves with what makes the plan; a plan whose making warned is not stored; demos
storing together leave one whole entry.

The plan is the demo's at 4 mm, made once per session (tests/conftest.py ``demo_plan_4mm_shared``): the cache keeps
whatever its planner returns, so a planner that hands out copies of that plan (with posterior_fossa_plan's signature,
whose every argument keys the entry) tests it without optimising again."""
from __future__ import annotations

import copy
import functools
import threading
import warnings

import numpy as np
import pytest

from mcproton.demo import _demo_plan
from mcproton.phantoms import reference_plans as RP
from mcproton.planning import _plan_cache as PC


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The plan cache on, in a folder of this test's (tests/conftest.py turns it off for the others)."""
    folder = tmp_path / "plans"
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.setenv(PC.DIR_ENV, str(folder))
    return folder


@pytest.fixture
def planner(demo_plan_4mm_shared):
    """(geometry, target, planner, calls): ``planner(g, **kw)`` returns a copy of the demo plan at 4 mm and counts its
    calls; its signature is posterior_fossa_plan's (functools.wraps), whose arguments key the entry."""
    g, plan = demo_plan_4mm_shared
    calls: list[dict] = []

    @functools.wraps(RP.posterior_fossa_plan)
    def made(geometry, **kw):
        calls.append(kw)
        return copy.deepcopy(plan)

    return g, plan.target_mask_zyx.copy(), made, calls


def _weights_byte(path) -> int:
    """The offset in the entry ``path`` of a byte in the middle of the last field's spot weights."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as z, np.load(path) as npz:
        names = json.loads(npz["names"].tobytes().decode())
        info = z.getinfo(f"a{names.index('fields/2/weights')}.npy")
    raw = path.read_bytes()
    start = info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")   # the local header's end
    assert info.compress_type == zipfile.ZIP_STORED
    return start + info.file_size - 100


def _notes(monkeypatch):
    """The cache's notes (mcproton: note: lines on stderr in the demo), collected."""
    said: list[str] = []
    import mcproton._io.console as console

    monkeypatch.setattr(console, "write_stderr", lambda text: said.append(text))
    return said


def test_a_plan_read_from_the_cache_is_the_plan_stored_and_gives_the_same_dose_to_the_bit(cache, planner):
    from mcproton.planning import verify_plan
    from mcproton.settings import RunSettings

    g, target, made, calls = planner
    first, rec1 = _demo_plan(made, g, target)
    second, rec2 = _demo_plan(made, g, target)
    assert len(calls) == 1, "the second plan was made again, not read from the cache"
    assert rec1 == {"plan_from_cache": False, "cache": "stored", "file": rec1["file"]}
    assert rec2 == {"plan_from_cache": True, "cache": "read", "file": rec1["file"]}
    assert rec1["file"].startswith(str(cache)) and len(list(cache.glob("plan-*.npz"))) == 1
    assert PC._same(first, second) and second is not first
    for a, b in zip(first.fields, second.fields):   # the spots and their machine, field by field
        for attr in ("u_mm", "v_mm", "energy_mev", "nominal_energy_mev", "weights", "direction", "isocentre_mm",
                     "axis_x"):
            x, y = getattr(a, attr), getattr(b, attr)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), attr
        assert (a.name, a.sigma_air_mm, a.source_distance_mm) == (b.name, b.sigma_air_mm, b.source_distance_mm)
        assert a.machine.describe() == b.machine.describe()
    assert first.model_stats == second.model_stats and first.meta == second.meta
    assert first.summary() == second.summary()
    # the Monte Carlo of each: the same dose, uncertainty and LET to the bit
    settings = RunSettings(primaries=3000, seed=7, backend="cpu", threads=1)
    res_a, st_a = verify_plan(first, g, settings)
    res_b, st_b = verify_plan(second, g, settings)
    for name in ("dose_gy_zyx", "uncertainty_rel_zyx", "let_d_kev_um_zyx"):
        x, y = getattr(res_a, name), getattr(res_b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert res_a.dose_gy_zyx.max() > 0 and st_a == st_b


@pytest.mark.parametrize("damage", ["garbage", "truncated", "one byte changed", "empty"])
def test_a_damaged_entry_is_named_and_the_plan_made_again_and_stored_anew(cache, planner, monkeypatch, damage):
    g, target, made, calls = planner
    _, rec = _demo_plan(made, g, target)
    path = cache / rec["file"].rsplit("/", 1)[1]
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an entry" * 100)
    elif damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "one byte changed":     # one bit of a spot weight of the last field (the zip's CRC-32 and the
        i = _weights_byte(path)            # entry's SHA-256 each see it)
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    else:
        path.write_bytes(b"")
    said = _notes(monkeypatch)
    plan, rec = _demo_plan(made, g, target)
    assert len(calls) == 2 and rec["plan_from_cache"] is False and rec["cache"] == "stored"
    assert len(said) == 1 and f"the plan cache's entry {path} cannot be read" in said[0], said
    assert "optimised again" in said[0]
    # stored anew: the next demo reads it
    again, rec = _demo_plan(made, g, target)
    assert len(calls) == 2 and rec["plan_from_cache"] and PC._same(plan, again)


def test_an_entry_rewritten_whole_with_another_weight_is_refused_by_its_sha256(cache, planner, monkeypatch):
    """A zip whose members are each whole (their CRC-32 right) but whose weights are not those the entry's SHA-256
    was taken of: refused, and the plan made again."""
    g, target, made, calls = planner
    _, rec = _demo_plan(made, g, target)
    with np.load(rec["file"]) as z:
        members = {k: z[k] for k in z.files}
    names = __import__("json").loads(members["names"].tobytes().decode())
    k = f"a{names.index('fields/0/weights')}"
    members[k] = members[k].copy()
    members[k][0] *= 1.0000001
    with open(rec["file"], "wb") as fh:
        np.savez(fh, **members)
    said = _notes(monkeypatch)
    _, rec = _demo_plan(made, g, target)
    assert len(calls) == 2 and rec["cache"] == "stored"
    assert len(said) == 1 and "does not match its SHA-256 (damaged)" in said[0], said


@pytest.mark.parametrize("value", ["0", "off", "No", "false"])
def test_the_cache_is_off_with_mcproton_plan_cache_0(cache, planner, monkeypatch, value):
    g, target, made, calls = planner
    monkeypatch.setenv(PC.SWITCH_ENV, value)
    for _ in range(2):
        _, rec = _demo_plan(made, g, target)
        assert rec == {"plan_from_cache": False, "cache": f"off ({PC.SWITCH_ENV}={value})", "file": None}
    assert len(calls) == 2 and not cache.exists()


def test_a_switch_not_understood_is_said_and_the_cache_off(cache, planner, monkeypatch):
    g, target, made, calls = planner
    monkeypatch.setenv(PC.SWITCH_ENV, "/my/plans")
    said = _notes(monkeypatch)
    _, rec = _demo_plan(made, g, target)
    assert not rec["plan_from_cache"] and rec["cache"].startswith("off") and not cache.exists()
    assert len(said) == 1 and "MCPROTON_PLAN_CACHE='/my/plans' is not one of" in said[0]
    assert PC.DIR_ENV in said[0]


def test_the_folder_is_beside_the_kernel_cache_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.delenv(PC.DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert PC.cache_folder(print) == (tmp_path / "xdg" / "mcproton" / "plans", "")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert PC.cache_folder(print) == (tmp_path / "home" / ".cache" / "mcproton" / "plans", "")
    monkeypatch.setenv(PC.DIR_ENV, "$HOME/my plans")           # expanded as MCPROTON_CACHE_DIR is
    assert PC.cache_folder(print) == (tmp_path / "home" / "my plans", "")
    said: list[str] = []
    monkeypatch.setenv(PC.DIR_ENV, "$NO_SUCH_VARIABLE_HERE/plans")
    folder, why = PC.cache_folder(said.append)
    assert folder is None and why.startswith("off") and "cannot be expanded" in said[0]


def test_an_unwritable_folder_is_said_and_the_plan_made(planner, monkeypatch, tmp_path):
    g, target, made, calls = planner
    (tmp_path / "a file").write_text("x")
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.setenv(PC.DIR_ENV, str(tmp_path / "a file" / "plans"))
    said = _notes(monkeypatch)
    plan, rec = _demo_plan(made, g, target)
    assert len(calls) == 1 and not rec["plan_from_cache"] and rec["cache"].startswith("made: not cached")
    assert len(said) == 1 and "cannot be written" in said[0] and PC.SWITCH_ENV in said[0]


def test_the_key_moves_with_what_makes_the_plan(planner, monkeypatch):
    import dataclasses

    import mcproton._build as build
    from mcproton._io.beam_model import load_beam_model

    g, target, made, _ = planner
    settings = PC.plan_settings(made, {"prescription_gy_rbe": 1.8, "target": target}, skip=("geometry", "target"))
    # every argument of posterior_fossa_plan, its defaults too, and optimise_plan's seed
    assert settings["iterations"] == RP.ITERATIONS and settings["max_points"] == 6000
    assert settings["beam_model"] == "dcpt_v5" and settings["optimise_plan seed"] == 0
    model = load_beam_model("dcpt_v5")
    key = PC.plan_key(g, target, settings, model)
    assert key == PC.plan_key(copy.deepcopy(g), target.copy(), dict(settings), load_beam_model("dcpt_v5"))
    rho = g.density_g_cm3_zyx.copy()
    rho.flat[rho.size // 2] = np.nextafter(rho.flat[rho.size // 2], np.float32(10))   # one voxel, one ulp
    t2 = target.copy()
    t2.flat[np.flatnonzero(t2)[0]] = False
    changed = {
        "density": PC.plan_key(dataclasses.replace(g, density_g_cm3_zyx=rho), target, settings, model),
        "voxel size": PC.plan_key(dataclasses.replace(g, voxel_size_mm=(4.0, 4.0, 4.001)), target, settings,
                                  model),
        "target": PC.plan_key(g, t2, settings, model),
        "iterations": PC.plan_key(g, target, {**settings, "iterations": 119}, model),
        "prescription": PC.plan_key(g, target, {**settings, "prescription_gy_rbe": 2.0}, model),
        "beam model": PC.plan_key(g, target, settings, dataclasses.replace(model, table_sha256="0" * 64)),
    }
    monkeypatch.setattr(build, "code_sha256", lambda: "another code")
    changed["code"] = PC.plan_key(g, target, settings, model)
    monkeypatch.undo()
    monkeypatch.setattr(np, "__version__", "0.0.0")
    changed["numpy"] = PC.plan_key(g, target, settings, model)
    monkeypatch.undo()
    assert len(set(changed.values()) | {key}) == len(changed) + 1, changed
    with pytest.raises(PC._Uncacheable, match="made in memory"):   # no file to key a model made in memory by
        PC.plan_key(g, target, settings, dataclasses.replace(model, sha256=""))


def test_a_plan_whose_making_warned_is_said_and_not_stored(cache, planner):
    g, target, made, calls = planner

    @functools.wraps(RP.posterior_fossa_plan)
    def warns(geometry, **kw):
        warnings.warn("a planner's warning", UserWarning)
        return made(geometry, **kw)

    for _ in range(2):
        with pytest.warns(UserWarning, match="a planner's warning"):
            _, rec = _demo_plan(warns, g, target)
        assert not rec["plan_from_cache"] and rec["cache"] == "made: not cached (its making warned: 1 warning(s))"
    assert len(calls) == 2 and not list(cache.glob("plan-*.npz"))


def test_demos_storing_together_leave_one_whole_entry(cache, planner):
    """Four demos that found no entry store the same plan at once (the cache's store, each in its own thread): each
    writes a whole temporary file and renames it into place, so the entry left is whole and read back, and no
    temporary file is left."""
    from mcproton._io.beam_model import load_beam_model

    g, target, made, calls = planner
    model = load_beam_model("dcpt_v5")
    settings = PC.plan_settings(made, {"prescription_gy_rbe": 1.8, "target": target}, skip=("geometry", "target"))
    key = PC.plan_key(g, target, settings, model)
    path = PC._entry_path(cache, key)
    plans = [made(g) for _ in range(4)]
    barrier = threading.Barrier(4)
    done: list[str] = []

    def store(plan):
        barrier.wait(timeout=60)
        done.append(PC._store(path, key, plan, g, target, model, note=done.append))

    threads = [threading.Thread(target=store, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert done == ["stored"] * 4
    assert [p.name for p in cache.iterdir()] == [path.name]
    plan, rec = _demo_plan(made, g, target)
    assert rec["plan_from_cache"] and rec["file"] == str(path) and len(calls) == 4 and PC._same(plan, plans[0])


def test_the_least_recently_used_entries_beyond_the_limit_and_old_temporaries_are_removed(cache, planner,
                                                                                            monkeypatch):
    import os
    from pathlib import Path

    from mcproton._io.beam_model import load_beam_model

    g, target, made, calls = planner
    monkeypatch.setattr(PC, "MAX_ENTRIES", 2)
    model = load_beam_model("dcpt_v5")

    def plan_for(prescription):   # another key for each prescription (the plan itself is the same copy)
        kw = {"prescription_gy_rbe": prescription, "target": target}
        return PC.cached_plan(lambda: made(g, **kw), g, target, PC.plan_settings(made, kw, skip=("geometry", "target")),
                              beam_model=model, note=print)[1]

    a, b = plan_for(1.8), plan_for(1.9)
    assert a["cache"] == b["cache"] == "stored" and a["file"] != b["file"]
    os.utime(a["file"], (1e9, 1e9))
    os.utime(b["file"], (1e9 + 1, 1e9 + 1))
    assert plan_for(1.8)["plan_from_cache"]          # a read: used now
    old, new = cache / ".mcp-0123456789ab-old.tmp", cache / ".mcp-0123456789ab-new.tmp"   # a killed write's, and
    old.write_bytes(b"x")                                                                 # one being written
    new.write_bytes(b"x")
    os.utime(old, (1e9, 1e9))
    c = plan_for(2.0)                                # stored: b, the least recently used, removed
    assert {p.name for p in cache.glob("plan-*.npz")} == {Path(a["file"]).name, Path(c["file"]).name}
    assert not old.exists() and new.exists() and len(calls) == 3

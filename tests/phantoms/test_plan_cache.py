"""The demo's plan cache (mcproton/planning/_plan_cache.py; the host-time audit of 2026-12-07, F1): a plan read back
is the plan stored to the bit, and so is its Monte Carlo dose; a damaged entry is named and the plan made again; the
cache can be turned off; the key moves with what makes the plan (the BLAS core and the environment that chooses it
among it); a plan whose making warned is not stored; demos storing together leave one whole entry; a folder that
cannot be searched or written, or another user's entry, never stops the demo: the plan is kept in the per-user
temporary folder (the review of audit 27's merges, R1 and R5); tidying removes only the cache's own files (R3).

The plan is the demo's at 4 mm, made once per session (tests/conftest.py ``demo_plan_4mm_shared``): the cache keeps
whatever its planner returns, so a planner that hands out copies of that plan (with posterior_fossa_plan's signature,
whose every argument keys the entry) tests it without optimising again."""
from __future__ import annotations

import copy
import functools
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcproton.demo import _demo_plan
from mcproton.phantoms import reference_plans as RP
from mcproton.planning import _plan_cache as PC


@pytest.fixture(autouse=True)
def spare(tmp_path, monkeypatch):
    """The per-user temporary folder (where entries go that the cache's folder cannot take) in this test's folder:
    ``<tmp>/mcproton-<uid>/plans``."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "tmp" / f"mcproton-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "plans"


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
    assert rec1 == {"plan_from_cache": False, "cache": "stored", "file": rec1["file"], "shipped": None,
                    "shipped_not_used": None}
    assert rec2 == {"plan_from_cache": True, "cache": "read", "file": rec1["file"], "shipped": None,
                    "shipped_not_used": None}
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
        assert rec == {"plan_from_cache": False, "cache": f"off ({PC.SWITCH_ENV}={value})", "file": None,
                       "shipped": None, "shipped_not_used": None}
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
    monkeypatch.delenv("MCPROTON_CACHE_DIR", raising=False)
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


def test_an_unwritable_folder_is_said_and_the_plan_kept_in_the_per_user_folder(planner, monkeypatch, tmp_path, spare):
    """A folder that cannot be written (here under a file: as root every mode can be written) keeps the plan in the
    per-user temporary folder, as the kernel cache does, with one note; the next demo reads it there, with a note only
    where the folder is the user's own MCPROTON_PLAN_CACHE_DIR (review of audit 27's merges, R5: "cannot be written"
    on every demo, never cached)."""
    g, target, made, calls = planner
    (tmp_path / "a file").write_text("x")
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.setenv(PC.DIR_ENV, str(tmp_path / "a file" / "plans"))
    said = _notes(monkeypatch)
    plan, rec = _demo_plan(made, g, target)
    assert len(calls) == 1 and not rec["plan_from_cache"] and rec["cache"] == "stored"
    assert rec["file"].startswith(str(spare)) and os.path.isfile(rec["file"])
    assert len(said) == 1 and f"the plan cache {tmp_path / 'a file' / 'plans'} cannot be written" in said[0], said
    assert f"kept in {spare} instead" in said[0] and PC.SWITCH_ENV in said[0] and PC.DIR_ENV in said[0]
    said.clear()
    again, rec2 = _demo_plan(made, g, target)
    assert len(calls) == 1 and rec2 == {"plan_from_cache": True, "cache": "read", "file": rec["file"],
                                         "shipped": None, "shipped_not_used": None}
    assert PC._same(plan, again)
    assert len(said) == 1 and "holds no entry of this plan" in said[0] and f"read from {spare}" in said[0], said
    # the default folder (a read-only home, XDG_CACHE_HOME here): kept there too, and read back without a word
    monkeypatch.delenv(PC.DIR_ENV)
    monkeypatch.delenv("MCPROTON_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))
    said.clear()
    _, rec3 = _demo_plan(made, g, target)
    assert rec3["plan_from_cache"] and rec3["file"] == rec["file"] and said == []
    # the per-user folder unusable too (open to others): said, and the plan made without the cache
    os.remove(rec["file"])
    os.chmod(spare.parent, 0o777)
    _, rec4 = _demo_plan(made, g, target)
    assert len(calls) == 2 and rec4["cache"].startswith("made: not cached (the plan cache ") and said, said
    assert "nor can it be kept in the per-user temporary folder" in said[-1] and "open to other users" in said[-1]


def _refused(monkeypatch, folder, calls: tuple[str, ...] = ("stat", "lstat", "open", "listdir", "scandir", "mkdir")):
    """This user may not search ``folder`` (emulated: as root every mode passes): os.stat, os.lstat, os.open,
    os.listdir, os.scandir, os.mkdir, open and Path.exists of a path in it raise PermissionError, as a folder of
    another group (0750) or a root-squashed NFS home does; ``calls``: those of os refused (open always; Path.exists
    with os.stat), e.g. open alone for a file this user may not read."""
    import builtins
    from pathlib import Path

    inside = str(folder)

    def refusing(real):
        @functools.wraps(real)
        def call(path, *a, **kw):
            if isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(inside):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path, *a, **kw)
        return call

    for name in calls:
        monkeypatch.setattr(os, name, refusing(getattr(os, name)))
    monkeypatch.setattr(builtins, "open", refusing(builtins.open))
    if "stat" in calls:
        monkeypatch.setattr(Path, "exists", refusing(Path.exists))


def test_a_folder_that_cannot_be_searched_is_said_and_the_demo_goes_on(planner, monkeypatch, tmp_path, spare):
    """Review of audit 27's merges, R1: a cache folder this user may not search (PermissionError from stat, as
    Path.exists raises it on Python 3.11) stopped the demo with a traceback.  Now it is named once, the plan made and
    kept in the per-user folder, and the next demo reads it there (said again: the folder is still not usable)."""
    g, target, made, calls = planner
    folder = tmp_path / "locked" / "plans"
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.setenv(PC.DIR_ENV, str(folder))
    said = _notes(monkeypatch)
    _refused(monkeypatch, tmp_path / "locked")
    plan, rec = _demo_plan(made, g, target)
    assert len(calls) == 1 and rec["cache"] == "stored" and rec["file"].startswith(str(spare))
    assert len(said) == 1 and f"the plan cache {folder} cannot be searched by this user (Permission denied" in said[0]
    assert f"kept in {spare} instead" in said[0], said
    said.clear()
    again, rec = _demo_plan(made, g, target)
    assert len(calls) == 1 and rec["plan_from_cache"] and PC._same(plan, again)
    assert len(said) == 1 and "cannot be searched" in said[0] and f"read from {spare}" in said[0], said


def test_another_users_entry_is_named_with_its_owner_and_left_alone(cache, planner, monkeypatch, spare):
    """Review of audit 27's merges, R5: another user's entry that this user may not read (0600 under umask 077, in a
    group-shared folder) was called damaged, "optimised again and the entry written anew" (and replaced where the
    folder let it), and the folder "cannot be written" in a sticky one.  Now its owner and mode are named, it is left
    as it is, and the plan is kept in the per-user folder."""
    g, target, made, calls = planner
    _, rec = _demo_plan(made, g, target)
    entry = rec["file"]
    os.chmod(entry, 0o600)
    try:
        os.chown(entry, 65534, 65534)       # as root: another user's
        owner = 65534
    except (PermissionError, AttributeError):
        owner = os.getuid() if hasattr(os, "getuid") else None
    before = (open(entry, "rb").read(), os.stat(entry).st_mtime_ns)
    said = _notes(monkeypatch)
    _refused(monkeypatch, entry, calls=("open",))     # not readable by this user (as root: emulated)
    plan, rec2 = _demo_plan(made, g, target)
    monkeypatch.undo()
    assert len(calls) == 2 and rec2["cache"] == "stored" and rec2["file"].startswith(str(spare))
    assert len(said) == 1 and f"the plan cache's entry {entry} is not readable by this user" in said[0], said
    assert f"owner uid {owner}, mode 0600" in said[0] and "chmod a+r" in said[0] and "damaged" not in said[0]
    assert PC.DIR_ENV not in said[0] and "cannot be written" not in said[0]    # the folder is fine
    if owner == 65534:
        assert "another user's" in said[0]
    assert (open(entry, "rb").read(), os.stat(entry).st_mtime_ns) == before     # left as it was


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
        done.append(PC._store(path, key, plan, g, target, model, note=done.append)[0])

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
    from mcproton._io.atomic import TEMP_PREFIX, name_tag

    tag = f"{TEMP_PREFIX}{name_tag(Path(b['file']).name)}"       # a killed write's of an entry, and one being written
    old, new = cache / f"{tag}-old.tmp", cache / f"{tag}-new.tmp"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (1e9, 1e9))
    c = plan_for(2.0)                                # stored: b, the least recently used, removed
    assert {p.name for p in cache.glob("plan-*.npz")} == {Path(a["file"]).name, Path(c["file"]).name}
    assert not old.exists() and new.exists() and len(calls) == 3


def test_tidying_removes_only_the_caches_own_files(cache, planner, monkeypatch):
    """Review of audit 27's merges, R3: a folder given as the cache's that holds a user's own plan-<name>.npz files
    (40 of them, a day old) lost all but the newest 32 at a store.  Now only the cache's entries (plan-<64 hex>.npz)
    count and are removed, and only their temporary files."""
    import time
    from pathlib import Path

    from mcproton._io.atomic import TEMP_PREFIX, name_tag

    g, target, made, calls = planner
    monkeypatch.setattr(PC, "MAX_ENTRIES", 2)
    cache.mkdir(parents=True)
    day_ago = time.time() - 86400
    foreign = [cache / f"plan-patient{k:02d}.npz" for k in range(40)] + [
        cache / f"plan-{'a' * 63}.npz", cache / f"plan-{'A' * 64}.npz", cache / f"plan-{'a' * 64}.npz.bak",
        cache / f"{TEMP_PREFIX}{name_tag('plan-patient00.npz')}-x.tmp", cache / ".mcp-0123456789ab-x.tmp"]
    for p in foreign:
        p.write_bytes(b"the user's")
        os.utime(p, (day_ago, day_ago))
    model = __import__("mcproton._io.beam_model", fromlist=["x"]).load_beam_model("dcpt_v5")
    files = []
    for prescription in (1.8, 1.9, 2.0):
        kw = {"prescription_gy_rbe": prescription, "target": target}
        rec = PC.cached_plan(lambda: made(g, **kw), g, target, PC.plan_settings(made, kw, skip=("geometry", "target")),
                             beam_model=model, note=print)[1]
        assert rec["cache"] == "stored"
        files.append(Path(rec["file"]))
        os.utime(files[-1], (day_ago + len(files), day_ago + len(files)))
    assert all(p.exists() for p in foreign), [p.name for p in foreign if not p.exists()]
    assert [p.exists() for p in files] == [False, True, True]


def test_tidying_removes_the_stale_temporary_files_of_the_caches_entries_only(tmp_path):
    """The temporary files (``.mcp-<tag>-*.tmp``) that writes of the cache's entries (``keep``'s among them) left
    over an hour ago are removed; a fresh one, another file's, one whose tag is cut short or that does not end
    .tmp are kept (the tags are matched by their start: the re-read of 2026-12-07, a 4)."""
    import time

    from mcproton._io.atomic import TEMP_PREFIX, name_tag

    entry, keep = tmp_path / f"plan-{'a' * 64}.npz", tmp_path / f"plan-{'b' * 64}.npz"
    entry.write_bytes(b"entry")
    old = time.time() - 2 * PC.STALE_TEMPORARY_S
    stale = [tmp_path / f"{TEMP_PREFIX}{name_tag(p.name)}-x1.tmp" for p in (entry, keep)]
    kept = [tmp_path / f"{TEMP_PREFIX}{name_tag('plan-mine.npz')}-x.tmp",
            tmp_path / f"{TEMP_PREFIX}{name_tag(entry.name)[:11]}-x.tmp",
            tmp_path / f"{TEMP_PREFIX}{name_tag(entry.name)}-x.tmp.bak",
            tmp_path / f"x{TEMP_PREFIX}{name_tag(entry.name)}-x.tmp"]
    for p in stale + kept:
        p.write_bytes(b"")
        os.utime(p, (old, old))
    fresh = tmp_path / f"{TEMP_PREFIX}{name_tag(entry.name)}-x2.tmp"
    fresh.write_bytes(b"")
    PC._tidy(tmp_path, keep)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in [*kept, fresh, entry])


def test_the_key_holds_the_environment_and_the_blas_core_that_choose_the_kernels(planner, monkeypatch):
    """Review of audit 27's merges, R4: OPENBLAS_CORETYPE=Sandybridge gave another plan (its last bits) under the same
    key.  The environment variables that choose the BLAS kernels, and the core threadpoolctl reports where it is
    installed, are in the key; the thread count and the library's path are not (the plan is the same)."""
    import sys
    import types

    from mcproton._io.beam_model import load_beam_model

    g, target, made, _ = planner
    settings = PC.plan_settings(made, {"prescription_gy_rbe": 1.8, "target": target}, skip=("geometry", "target"))
    model = load_beam_model("dcpt_v5")
    for var in PC.KERNEL_ENV:
        monkeypatch.delenv(var, raising=False)

    def key() -> str:
        return PC.plan_key(g, target, settings, model)

    plain = key()
    for var, value in (("OPENBLAS_CORETYPE", "Sandybridge"), ("MKL_CBWR", "COMPATIBLE"),
                       ("NPY_DISABLE_CPU_FEATURES", "AVX512F")):
        monkeypatch.setenv(var, value)
        assert key() != plain, var
        monkeypatch.delenv(var)
    assert key() == plain

    def threadpoolctl(architecture: str, threads: int, path: str) -> types.ModuleType:
        module = types.ModuleType("threadpoolctl")
        module.threadpool_info = lambda: [   # type: ignore[attr-defined]
            {"user_api": "blas", "internal_api": "openblas", "prefix": "libscipy_openblas", "version": "0.3.28",
             "architecture": architecture, "threading_layer": "pthreads", "num_threads": threads, "filepath": path},
            {"user_api": "openmp", "internal_api": "openmp", "prefix": "libgomp", "version": None,
             "num_threads": threads, "filepath": "/lib/libgomp.so.1"}]
        return module

    monkeypatch.setitem(sys.modules, "threadpoolctl", threadpoolctl("Haswell", 1, "/a/libscipy_openblas.so"))
    haswell = key()
    monkeypatch.setitem(sys.modules, "threadpoolctl", threadpoolctl("Haswell", 8, "/b/libscipy_openblas.so"))
    assert key() == haswell != plain
    monkeypatch.setitem(sys.modules, "threadpoolctl", threadpoolctl("SkylakeX", 1, "/a/libscipy_openblas.so"))
    assert key() != haswell


def test_mcproton_cache_dir_moves_the_plans_with_the_kernels(monkeypatch, tmp_path):
    """The plans are kept with the kernels: in ``plans`` of MCPROTON_CACHE_DIR where it is set (the review of audit
    27's merges, R5: the README said "beside the kernels", and setting it moved the kernels only)."""
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.delenv(PC.DIR_ENV, raising=False)
    monkeypatch.setenv("MCPROTON_CACHE_DIR", str(tmp_path / "kernels here"))
    assert PC.cache_folder(print) == (tmp_path / "kernels here" / "plans", "")
    monkeypatch.setenv(PC.DIR_ENV, str(tmp_path / "my plans"))       # its own setting first
    assert PC.cache_folder(print) == (tmp_path / "my plans", "")
    said: list[str] = []
    monkeypatch.delenv(PC.DIR_ENV)
    monkeypatch.setenv("MCPROTON_CACHE_DIR", "$NO_SUCH_VARIABLE_HERE/kernels")
    folder, why = PC.cache_folder(said.append)
    assert folder is None and "MCPROTON_CACHE_DIR='$NO_SUCH_VARIABLE_HERE/kernels' cannot be expanded" in said[0]


@pytest.mark.parametrize("warned", [False, True])
def test_the_beam_model_is_loaded_once_for_the_key_and_the_plan(monkeypatch, warned):
    """The demo's plan keys its entry by the beam model loaded from its name; on a cache miss (here: the cache off)
    the plan is made on that model, not on a second load of it (the re-read of 2026-12-07, a 2: loaded twice).  A
    model whose loading warned is loaded again in the making, as before, so that its warnings keep the plan out of
    the cache."""
    import mcproton._io.beam_model as bm

    real, loaded = bm.load_beam_model, []

    def load(name):
        model = real(name)
        if warned:
            model.made_with_warnings = ["a beam model's warning"]
        loaded.append(model)
        return model

    monkeypatch.setattr(bm, "load_beam_model", load)

    @functools.wraps(RP.posterior_fossa_plan)
    def made(geometry, **kw):
        return RP._machine_spec(kw.get("beam_model", RP.DEFAULT_BEAM_MODEL), None, 0.0)["beam_model"]

    model, rec = _demo_plan(made, None, None)
    assert rec["cache"].startswith("off") and [m.name for m in loaded] == [RP.DEFAULT_BEAM_MODEL] * (1 + warned)
    assert model is loaded[-1]


# ---------------------------------------------------------------------- the plan shipped with mcproton
@pytest.fixture
def shipped(tmp_path, planner):
    """A shipped plan (as scripts/make_shipped_demo_plan.py writes the default demo's) of the 4 mm demo plan, under
    the recipe key the demo gives it (mcproton.demo.plan_inputs), in this test's folder; the planner's calls then
    cleared."""
    from mcproton.demo import plan_inputs

    g, target, made, calls = planner
    _, settings, model = plan_inputs(made, g, target)
    path = tmp_path / "shipped" / "demo_plan.npz"
    path.parent.mkdir()
    PC.write_shipped(path, made(g), g, target, settings, model, {k: f"test {k}" for k in PC.SHIPPED_SAID})
    calls.clear()
    return path


def test_the_shipped_plan_is_used_where_its_recipe_is_the_demos_said_so_and_not_stored(cache, planner, shipped,
                                                                                      monkeypatch):
    """No entry in the cache: the shipped plan of this recipe is the demo's plan, to the bit, not optimised; the
    record and the progress line say that it is the shipped plan and when and where it was optimised; it is not
    stored in the cache (an entry there is this machine's own optimisation), so every demo says it is shipped."""
    from mcproton.demo import _plan_cache_said, plan_inputs

    g, target, made, calls = planner
    said = _notes(monkeypatch)
    for _ in range(2):
        plan, rec = _demo_plan(made, g, target, shipped=shipped)
        assert calls == [] and said == [] and PC._same(plan, made(g)) and calls.pop() is not None
        assert rec["plan_from_cache"] is False and rec["cache"] == "shipped (not stored in the cache)"
        assert rec["file"] == str(shipped) and rec["shipped"]["file"] == str(shipped)
        assert rec["shipped"]["optimised"] == "test optimised" and rec["shipped"]["cpu_model"] == "test cpu_model"
        assert rec["shipped"]["recipe_key"] == PC.recipe_key(g, target, *plan_inputs(made, g, target)[1:])
        assert not cache.exists() or not list(cache.iterdir())
    line = _plan_cache_said(rec)
    assert line.startswith(f"the plan shipped with mcproton ({shipped}), optimised test optimised on test platform")
    assert "MCPROTON_PLAN_CACHE=0 optimises it here" in line


def test_this_machines_own_entry_comes_before_the_shipped_plan(cache, planner, shipped):
    g, target, made, calls = planner
    _, rec = _demo_plan(made, g, target)                        # optimised here and stored (no shipped plan given)
    _, rec2 = _demo_plan(made, g, target, shipped=shipped)
    assert len(calls) == 1 and rec["cache"] == "stored"
    assert rec2 == {"plan_from_cache": True, "cache": "read", "file": rec["file"], "shipped": None,
                    "shipped_not_used": None}


@pytest.mark.parametrize("change", ["physics data", "phantom", "beam model"])
def test_a_shipped_plan_of_another_recipe_is_named_and_the_plan_optimised_and_stored(cache, planner, shipped,
                                                                                      monkeypatch, change):
    """The shipped plan's recipe key differs from the demo's (here made to: the physics data, one voxel's density by
    one ulp, the beam model's table): a note names the part that differs ("optimising the plan here"), the record
    keeps it (``shipped_not_used``: summary.json and dose.h5 then say it), and the plan is optimised and stored in
    the cache as without a shipped plan.  The note names no script: scripts/ is in no wheel or sdist (the review of
    2026-12-07's shipped plan, R3)."""
    import dataclasses

    import mcproton._build as build
    import mcproton._io.beam_model as beam_model

    g, target, made, calls = planner
    if change == "physics data":
        monkeypatch.setattr(build, "physics_files_sha256", lambda: "0" * 64)
        what = "the physics data"
    elif change == "phantom":
        rho = g.density_g_cm3_zyx.copy()
        rho.flat[rho.size // 2] = np.nextafter(rho.flat[rho.size // 2], np.float32(10))
        g = dataclasses.replace(g, density_g_cm3_zyx=rho)
        what = "the phantom"
    else:
        load = beam_model.load_beam_model
        monkeypatch.setattr(beam_model, "load_beam_model",
                            lambda *a, **kw: dataclasses.replace(load(*a, **kw), table_sha256="0" * 64))
        what = "the beam model"
    said = _notes(monkeypatch)
    plan, rec = _demo_plan(made, g, target, shipped=shipped)
    # (the beam model's case: the planner here hands out the plan made on the real model, which the changed one's
    # provenance is not, so the cache does not store it; the fallback to the planner is what is tested)
    stored = "stored" if change != "beam model" else \
        "made: not cached (the entry would not give back the same plan to the bit)"
    assert len(calls) == 1 and rec["shipped"] is None and rec["cache"] == stored and not rec["plan_from_cache"]
    assert len(said) == 1 and f"the plan shipped with mcproton for this demo ({shipped}) is for another " \
        "recipe: " in said[0] and f"{what} " in said[0] and "scripts/" not in said[0], said
    assert said[0] == f"mcproton: note: {rec['shipped_not_used']}; optimising the plan here\n"
    assert ("another NumPy, SciPy or CPU made another phantom" in said[0]) == (change == "phantom"), said
    assert [k for k in ("physics data", "phantom", "beam model") if f"the {k} " in said[0]] == [change], said


def test_a_damaged_entry_of_this_machine_skips_the_shipped_plan_and_the_record_says_why(cache, planner, shipped,
                                                                                         monkeypatch):
    """This machine's own entry of the plan damaged: the plan is optimised and the entry written anew (not the
    shipped plan read), and the record says why the shipped plan was not used (``shipped_not_used``: the review of
    2026-12-07's shipped plan, R3)."""
    g, target, made, calls = planner
    _, rec = _demo_plan(made, g, target)                        # optimised here and stored
    data = bytearray(Path(rec["file"]).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(rec["file"]).write_bytes(bytes(data))
    said = _notes(monkeypatch)
    _, rec2 = _demo_plan(made, g, target, shipped=shipped)
    assert len(calls) == 2 and rec2["cache"] == "stored" and rec2["shipped"] is None
    assert len(said) == 1 and f"the plan cache's entry {rec['file']}" in rec2["shipped_not_used"], rec2
    assert rec2["shipped_not_used"].endswith("(the plan is optimised here and its entry written anew)")


@pytest.mark.parametrize("value", ["0", "off"])
def test_mcproton_plan_cache_0_turns_the_shipped_plan_off_too(cache, planner, shipped, monkeypatch, value):
    """``MCPROTON_PLAN_CACHE=0`` optimises the plan, as it always said: no cache, no shipped plan, no note."""
    g, target, made, calls = planner
    monkeypatch.setenv(PC.SWITCH_ENV, value)
    said = _notes(monkeypatch)
    _, rec = _demo_plan(made, g, target, shipped=shipped)
    assert len(calls) == 1 and said == []
    assert rec == {"plan_from_cache": False, "cache": f"off ({PC.SWITCH_ENV}={value})", "file": None, "shipped": None,
                   "shipped_not_used": None}


def test_the_shipped_plan_is_used_where_the_cache_folder_cannot_be_used(planner, shipped, monkeypatch):
    """The cache on, its folder unusable (a variable that cannot be expanded: said by the cache): the shipped plan
    is used all the same, and the record says the cache is off and why."""
    g, target, made, calls = planner
    monkeypatch.setenv(PC.SWITCH_ENV, "1")
    monkeypatch.setenv(PC.DIR_ENV, "$MCPROTON_TEST_UNSET_VARIABLE/plans")
    monkeypatch.delenv("MCPROTON_TEST_UNSET_VARIABLE", raising=False)
    said = _notes(monkeypatch)
    _, rec = _demo_plan(made, g, target, shipped=shipped)
    assert calls == [] and rec["shipped"] is not None and rec["cache"].startswith("shipped; the cache is off (")
    assert len(said) == 1 and "cannot be expanded" in said[0], said


@pytest.mark.parametrize("damage", ["missing", "one byte changed"])
def test_a_missing_or_damaged_shipped_plan_is_named_and_the_plan_optimised(cache, planner, shipped, monkeypatch,
                                                                           damage):
    g, target, made, calls = planner
    if damage == "missing":
        shipped.unlink()
    else:
        data = bytearray(shipped.read_bytes())
        data[len(data) // 2] ^= 0x01
        shipped.write_bytes(bytes(data))
    said = _notes(monkeypatch)
    _, rec = _demo_plan(made, g, target, shipped=shipped)
    assert len(calls) == 1 and rec["shipped"] is None and rec["cache"] == "stored"
    assert len(said) == 1 and f"the plan shipped with mcproton for this demo ({shipped})" in said[0], said
    assert ("is missing" if damage == "missing" else "cannot be read") in said[0]
    assert said[0] == f"mcproton: note: {rec['shipped_not_used']}; optimising the plan here\n"


def test_the_recipe_key_leaves_out_the_code_and_the_libraries_that_the_cache_key_holds(planner, monkeypatch):
    """The shipped plan's key is of what the plan is made for and of the planner's code, not of the machine or the
    rest of the code (a fresh machine with other code around the planner, another BLAS or CPU reads it); the cache's
    key holds them."""
    import mcproton._build as build
    from mcproton.demo import plan_inputs

    g, target, made, _ = planner
    args = (g, target, *plan_inputs(made, g, target)[1:])
    keys = (PC.recipe_key(*args), PC.plan_key(*args))
    monkeypatch.setattr(build, "code_sha256", lambda: "another code")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    monkeypatch.setattr(np, "__version__", "0.0.0")
    assert PC.recipe_key(*args) == keys[0] and PC.plan_key(*args) != keys[1]
    monkeypatch.setattr(build, "physics_files_sha256", lambda: "other physics")
    assert PC.recipe_key(*args) != keys[0]


# ---------------------------------------------------------------------- the planner's code in the recipe (review R1)
def test_a_change_of_the_planners_code_is_another_recipe_and_the_shipped_plan_is_not_used(cache, planner, shipped,
                                                                                          monkeypatch):
    """The planner's code is part of the recipe (the review of 2026-12-07's shipped plan, R1: a change of the spots'
    spacing left the recipe key as it was, and the default demo used the old planner's shipped plan, labelled as
    this demo's): with another planner (its SHA-256 changed here, as an edit of mcproton/planning/spots.py changes
    it) the recipe key differs, the shipped plan is not used, and the note and the record name the planner's code."""
    from mcproton.demo import plan_inputs

    g, target, made, calls = planner
    args = (g, target, *plan_inputs(made, g, target)[1:])
    key = PC.recipe_key(*args)
    monkeypatch.setattr(PC, "planner_code_sha256", lambda: "another planner")
    assert PC.recipe_key(*args) != key
    said = _notes(monkeypatch)
    plan, rec = _demo_plan(made, g, target, shipped=shipped)
    assert len(calls) == 1 and rec["shipped"] is None and rec["cache"] == "stored"
    assert "is for another recipe: the planner's code (mcproton/planning, phantoms/reference_plans.py and" \
        in rec["shipped_not_used"], rec
    assert len(said) == 1 and rec["shipped_not_used"] in said[0], said


def test_the_planners_code_is_the_planning_modules_that_make_a_plan_and_the_reference_plans(tmp_path, monkeypatch):
    """:func:`planner_code_files`: every module of mcproton/planning but the plan cache and the Monte Carlo of a
    made plan (a new module counts until it is named there), phantoms/reference_plans.py, and the modules outside
    mcproton/planning that the planner runs for the plan's numbers, by their names in a wheel; a change of one
    file's bytes is another :func:`planner_code_sha256`.  The beam model's reader (``BeamModel.at``: each layer's
    spot sigma, divergence and energy spread) and the source (``make_spots``, ``RangeShifterSlab``) were not keyed
    (the 28th audit's re-read, F3): an edit there that changed the demo's plan left the shipped plan in use."""
    import mcproton._io.beam_model as beam_model
    import mcproton.planning as planning
    import mcproton.source as source

    files = PC.planner_code_files()
    here = {f"planning/{f.name}" for f in Path(planning.__file__).parent.glob("*.py")}
    also = {"phantoms/reference_plans.py", "_io/beam_model.py", "source.py", "geometry.py", "_io/rtplan.py",
            "validation/reference.py", "validation/range_shifter_model.py"}
    assert set(files) == here - {"planning/_plan_cache.py", "planning/verify.py"} | also
    assert {"planning/spots.py", "planning/optimiser.py", "planning/raytrace.py"} <= set(files)
    assert files["_io/beam_model.py"] == Path(beam_model.__file__).resolve()
    assert files["source.py"] == Path(source.__file__).resolve()
    assert all(f.is_file() for f in files.values())
    copies = {}
    for name, f in files.items():
        copies[name] = tmp_path / name
        copies[name].parent.mkdir(exist_ok=True)
        copies[name].write_bytes(f.read_bytes())
    monkeypatch.setattr(PC, "planner_code_files", lambda: dict(copies))
    before = PC.planner_code_sha256()
    spots = copies["planning/spots.py"]
    spots.write_text(spots.read_text().replace("0.8", "1.0", 1))
    assert PC.planner_code_sha256() != before
    before = PC.planner_code_sha256()
    reader = copies["_io/beam_model.py"]
    reader.write_text(reader.read_text() + "\n")
    assert PC.planner_code_sha256() != before
    spots.unlink()
    with pytest.raises(PC._Uncacheable, match="the planner's code cannot be read"):
        PC.planner_code_sha256()


# ---------------------------------------------------------------------- what a stale shipped plan says (review R2)
@pytest.mark.parametrize("change", ["phantom", "phantom, made on this machine", "physics data", "both"])
def test_a_shipped_plan_of_another_recipe_says_whether_to_make_it_anew(planner, shipped, monkeypatch, change):
    """In a checkout (the script's --check, the stale test): where a given part differs (the physics data here) the
    shipped plan is stale and the script makes it anew; where only the phantom differs (one voxel by one ulp, as
    another NumPy might make it) it says the NumPy, SciPy and machine it was made with and this one's, and not to
    make it anew blindly (the review of 2026-12-07's shipped plan, R2: it said "stale, regenerate", and a plan made
    anew on another machine's NumPy would then mismatch on the one it was made on); where the shipped plan was made
    with this machine's libraries and CPU (its record's ``libraries``), the phantom's code changed: stale.  For the
    demo (not in a checkout) no script is named."""
    import dataclasses

    import scipy

    import mcproton._build as build
    from mcproton.demo import plan_inputs

    g, target, made, _ = planner
    settings, model = plan_inputs(made, g, target)[1:]
    if change == "phantom, made on this machine":
        PC.write_shipped(shipped, made(g), g, target, settings, model,
                         {**{k: f"test {k}" for k in PC.SHIPPED_SAID}, "libraries": PC._libraries()})
    if change.startswith("phantom") or change == "both":
        rho = g.density_g_cm3_zyx.copy()
        rho.flat[rho.size // 2] = np.nextafter(rho.flat[rho.size // 2], np.float32(10))
        g = dataclasses.replace(g, density_g_cm3_zyx=rho)
    if change in ("physics data", "both"):
        monkeypatch.setattr(build, "physics_files_sha256", lambda: "0" * 64)
    plan, _, why = PC.shipped_plan(shipped, g, target, settings, model, in_checkout=True)
    assert plan is None and f"for this demo ({shipped}) is for another recipe: " in why, why
    run = f"run python {PC.SHIPPED_SCRIPT} (and commit the file)"
    if change == "phantom":
        assert "the phantom (its material, density or label arrays, its materials or grid) differs (it was made " \
            f"with NumPy test numpy and SciPy test scipy on test platform (test cpu_model), this is NumPy " \
            f"{np.__version__} and SciPy {scipy.__version__} on " in why, why
        assert "if you changed neither the phantom generator nor the target, do not make it anew" in why
        assert why.endswith(f"if you changed them, {run}"), why
    elif change == "phantom, made on this machine":
        assert why.endswith("differs (it was made with the NumPy, SciPy, BLAS and CPU of this machine: the phantom "
                            f"generator or the target was changed): it is stale; {run}"), why
    else:
        assert why.endswith(f": it is stale; {run}") and "do not make it anew" not in why, why
        assert ("the phantom" in why) == (change == "both"), why
    _, _, said = PC.shipped_plan(shipped, g, target, settings, model)
    assert "scripts/" not in said and "stale" not in said and said == why[:len(said)], said


# ---------------------------------------------------------------------- the README (review R6)
def test_the_readme_names_every_value_of_plan_cache_cache():
    """README.md's plan-cache paragraph lists what ``plan_cache.cache`` may say, the shipped plan's two values
    among them, and ``shipped_not_used`` (the review of 2026-12-07's shipped plan, R6)."""
    import re

    text = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for value in ('"read"', '"stored"', '"made: not cached (why)"', '"off (why)"',
                  '"shipped (not stored in the cache)"', '"shipped; the cache is off (why)"'):
        assert value in text, value
    assert re.search(r"`plan_cache\.shipped_not_used`", text)

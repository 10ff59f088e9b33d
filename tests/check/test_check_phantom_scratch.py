"""The phantom's CT of ``check(phantom_from_struct=True)`` without an output folder (resources audit 31, F1).

Before 2026-12-07 it was written to ``tempfile.mkdtemp(prefix="mcproton_check_")`` and never removed: ~29 MB and 274
slices for plan06's phantom on every call, two folders per test-suite run (37 folders, 1.1 GB, in /tmp of the audit
machine), and as many again for a check that failed after writing it.  Now that folder is the check's own: removed
once its slices are hashed (the record keeps the series UID, the slice count and the SHA-256), and removed too where
the check fails or is stopped; the record no longer names a folder that does not exist."""
from __future__ import annotations

import json
import sys
import tempfile
from html import escape
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import FAST, _levels, _tps, base  # noqa: E402,F401  (base: test_check's module fixture)
from test_check_phantom_options import water_external  # noqa: E402

from mcproton._check import api  # noqa: E402
from mcproton._check.report import _files_table  # noqa: E402


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder for this test alone (what is left in it is what the check left)."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture(scope="module")
def phantom_rs(base, tmp_path_factory):  # noqa: F811
    """The structure set with the External overridden to water: a phantom can be built."""
    return water_external(base["dir"] / "RS.dcm", tmp_path_factory.mktemp("rs") / "RS.dcm")


def _phantom_check(base, rs, **kw):  # noqa: F811
    return api.check(plan=base["dir"] / "RP.dcm", dose=_tps(base, "rd_phantom", base["blob"]),
                     struct=rs, phantom_from_struct=True, beam_model="dcpt_v2", primaries=1500,
                     target_uncertainty=None, report=False, levels=_levels(), log=lambda m: None, **FAST, **kw)


def test_phantom_ct_without_out_is_removed_and_not_named(base, phantom_rs, private_tmp):  # noqa: F811
    res = _phantom_check(base, phantom_rs)
    assert list(private_tmp.iterdir()) == []   # before: mcproton_check_*/ with the phantom's slices
    (ct,) = [i for i in res.provenance["inputs"] if i["role"].startswith("CT")]
    assert ct["path"] is None and ct["slices"] > 0 and len(ct["sha256"]) == 64 and ct["series_instance_uid"]
    assert "removed" in ct["kept"] and "out=" in ct["kept"]
    assert "mcproton_check_" not in res.provenance["ct"] and "removed" in res.provenance["ct"]
    assert f"none: {escape(ct['kept'])} (" in _files_table(res.provenance["inputs"])   # the report's files table
    # nothing in the record names the removed folder (review b of audit 31, R1: provenance.geometry_notes, and so
    # check.json and the report's settings, said "CT ... written to /tmp/mcproton_check_...")
    assert str(private_tmp) not in json.dumps(res.to_dict()), [n for n in res.provenance["geometry_notes"]]
    assert any("written to a temporary folder" in n for n in res.provenance["geometry_notes"])


def test_phantom_ct_without_out_is_removed_when_the_check_fails(base, phantom_rs, private_tmp, monkeypatch):  # noqa: F811
    class Boom(Exception):
        pass

    def fail(*a, **k):
        (d,) = private_tmp.iterdir()   # the phantom's CT written: then the failure
        assert d.name.startswith("mcproton_check_") and any(d.iterdir())
        raise Boom

    monkeypatch.setattr(api, "build_geometry", fail)   # after the phantom's CT is written
    with pytest.raises(Boom):
        _phantom_check(base, phantom_rs)
    assert list(private_tmp.iterdir()) == []


def test_phantom_ct_without_out_is_removed_when_it_cannot_be_built(base, private_tmp):  # noqa: F811
    with pytest.raises(api.CheckInputError, match="no ROI has a material override"):
        api.check(plan=base["dir"] / "RP.dcm", dose=_tps(base, "rd_phantom", base["blob"]),
                  struct=base["dir"] / "RS.dcm", phantom_from_struct=True, beam_model="dcpt_v2", primaries=1500,
                  target_uncertainty=None, report=False, levels=_levels(), log=lambda m: None, **FAST)
    assert list(private_tmp.iterdir()) == []   # before: an empty mcproton_check_*/ for each refusal


def test_phantom_ct_with_out_is_kept_and_named(base, phantom_rs, private_tmp, tmp_path):  # noqa: F811
    res = _phantom_check(base, phantom_rs, out=tmp_path / "out")
    (ct,) = [i for i in res.provenance["inputs"] if i["role"].startswith("CT")]
    assert Path(ct["path"]) == (tmp_path / "out" / "phantom_ct").resolve() and Path(ct["path"]).is_dir()
    assert "kept" not in ct and str(tmp_path / "out" / "phantom_ct") in res.provenance["ct"]


def test_phantom_ct_that_cannot_be_written_leaves_no_empty_folder(base, phantom_rs, private_tmp, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    """Resources audit 31, F5: a full disk while the phantom's CT was written left an empty OUT/phantom_ct/ (the
    slices written were removed; the folder, made for them, was not)."""
    import errno

    from mcproton._io import ct as ct_io

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ct_io, "write_ct_series_image", full)
    with pytest.raises(OSError, match="No space"):
        _phantom_check(base, phantom_rs, out=tmp_path / "out")
    assert not (tmp_path / "out" / "phantom_ct").exists()

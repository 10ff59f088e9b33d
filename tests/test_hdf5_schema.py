"""README "Output (HDF5)" lists every item a dose file holds (audit 26 h5schema, F6: ``dose_raw``, ``body_mask``, the
demo's ``ctv``, a dozen root attributes, the groups ``result`` and ``dvh``'s attributes were not in it, nor the dtypes;
``density``, ``material_index`` and ``labels`` had no ``axes`` attribute).  The table is read here and compared with
the files that ``mcproton run`` (a CT plan with an RT Struct: fractions, study, body outline, DVHs; a paediatric
phantom with a beam without ``total_protons``: labels, a dose per primary), ``mcproton demo`` and
``DoseResult.save`` write: anything written that the table does not name fails, as does a dtype or an attribute
other than documented, and an item documented as written "always" that a file lacks."""
from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- the HDF5 layout: every item; tests/test_hdf5_schema.py reads this table -->"
sys.path.insert(0, str(ROOT / "tests" / "io"))
from dicom_factories import PHANTOM_PATIENT, make_plan, save  # noqa: E402


def documented() -> dict[tuple[str, str], dict]:
    """{(kind, item): {"dtype", "attributes", "written"}} of the README's table ("dataset", "group", "root")."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, "README lost the marker of its HDF5 table"
    rows = text.split(MARKER, 1)[1].strip().split("\n\n", 1)[0].splitlines()[2:]
    out = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 7, row
        item, kind, dtype, _unit, attrs, written, _what = cells
        kind = kind.split(" ")[0]   # "dataset (z, y, x)", "root attribute", "group"
        out[(kind, item.strip("`"))] = {"dtype": dtype.split(" ")[0], "written": written,
                                        "attributes": set(re.findall(r"`([^`]+)`", attrs)),
                                        "checked": "the table below" not in attrs}
    return out


def _dtype_name(dt: np.dtype) -> str:
    return "text" if dt.kind in "OSU" else dt.name


def _attr_dtype(v) -> str:
    if isinstance(v, str):
        return "text"
    return np.asarray(v).dtype.name


def written(path: Path) -> dict[tuple[str, str], dict]:
    """What a file holds, in the table's terms (a DVH group per ROI as ``dvh/<ROI>``)."""
    out: dict[tuple[str, str], dict] = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            out[("root", k)] = {"dtype": _attr_dtype(v), "attributes": set()}

        def visit(name: str, obj) -> None:
            parts = name.split("/")
            if parts[0] == "dvh" and len(parts) > 1:
                parts[1] = "<ROI>"
            key = "/".join(parts)
            kind = "dataset" if isinstance(obj, h5py.Dataset) else "group"
            entry = out.setdefault((kind, key), {"attributes": set(), "shape": getattr(obj, "shape", None)})
            entry["attributes"] |= set(obj.attrs)
            if kind == "dataset":
                entry["dtype"] = _dtype_name(obj.dtype)
                entry["axes"] = obj.attrs.get("axes")

        f.visititems(visit)
    return out


def _compare(path: Path, docs: dict) -> None:
    found = written(path)
    undocumented = sorted(f"{kind} {item}" for kind, item in found if (kind, item) not in docs)
    assert not undocumented, f"{path.name} holds items README 'Output (HDF5)' does not name: {undocumented}"
    for key, got in found.items():
        doc = docs[key]
        if "dtype" in got and doc["dtype"] not in ("", "JSON"):
            assert got["dtype"] == doc["dtype"], f"{path.name} {key}: {got['dtype']}, documented {doc['dtype']}"
        if doc["dtype"] == "JSON":
            assert got["dtype"] == "text", (path.name, key)
        if doc["checked"]:
            extra = sorted(got["attributes"] - doc["attributes"])
            assert not extra, f"{path.name} {key}: attributes {extra} not documented"
        if key[0] == "dataset" and len(got["shape"] or ()) == 3 and "axes" in doc["attributes"]:
            assert got["axes"] == "zyx", f"{path.name} {key}: axes {got['axes']!r}"
    missing = sorted(f"{kind} {item}" for (kind, item), doc in docs.items()
                     if doc["written"].startswith("always") and (kind, item) not in found)
    assert not missing, f"{path.name} lacks items README documents as written always: {missing}"


def test_the_table_is_read():
    docs = documented()
    assert ("dataset", "dose") in docs and docs[("dataset", "dose")]["dtype"] == "float64"
    assert ("root", "format_version") in docs and ("group", "dvh/<ROI>") in docs
    assert docs[("dataset", "density")]["attributes"] >= {"unit", "axes"}


def _ct_plan_case(tmp: Path) -> Path:
    """A 80 mm water CT (5 mm voxels) with an RT Struct (a body, a target) and a 3-fraction one-beam plan."""
    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, tmp / "ct")
    xs = g.origin_mm[0] + 5.0 * np.arange(16)
    target = np.zeros(g.shape_zyx, bool)
    target[6:10, 6:10, 6:10] = True
    write_rtstruct({"body": np.broadcast_to(xs < 20, g.shape_zyx).copy(), "target": target}, g, ct, tmp / "RS.dcm")
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(90.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], frame_of_reference_uid=ct.frame_of_reference_uid, n_fractions=3,
                   **PHANTOM_PATIENT), tmp / "RP.dcm")
    cfg = tmp / "plan.toml"
    cfg.write_text('[run]\nprimaries = 1000\nbatches = 2\nbackend = "cpu"\nthreads = 1\nseed = 11\n[phantom]\n'
                   'type = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                   'rtstruct = "RS.dcm"\n[output]\nplot = false\n')
    return cfg


PAEDIATRIC = """[run]
primaries = 1000
seed = 3
batches = 2
backend = "cpu"
threads = 1

[phantom]
type = "paediatric"
age_years = 5
voxel_mm = 6.0
region = "head"

[beam]
energy_mev = 120.0
position_mm = [0.0, 0.0, -200.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [4.0, 4.0]

[output]
plot = false
"""


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    from mcproton import Beam, RunSettings, box_phantom, simulate
    from mcproton.cli import main

    tmp = tmp_path_factory.mktemp("schema")
    (tmp / "ped.toml").write_text(PAEDIATRIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(_ct_plan_case(tmp)), "--out", str(tmp / "plan.h5"), "--quiet"]) == 0
        assert main(["run", str(tmp / "ped.toml"), "--out", str(tmp / "ped.h5"), "--quiet"]) == 0
        r = simulate(box_phantom("water", (20.0, 20.0, 40.0), (4.0, 4.0, 4.0)),
                     Beam.pencil(70.0, position_mm=(0, 0, -5), total_protons=1e9),
                     RunSettings(primaries=300, batches=3, backend="cpu", threads=1), log=None)
    r.save(tmp / "saved.h5")
    return {k: tmp / f"{k}.h5" for k in ("plan", "ped", "saved")}


@pytest.mark.parametrize("kind", ["plan", "ped", "saved"])
def test_every_item_a_run_writes_is_documented(run_files, kind):
    _compare(run_files[kind], documented())


def test_the_runs_write_what_the_table_is_about(run_files):
    """The files hold the conditional items too (else the comparison above checks less than it says)."""
    plan, ped, saved = (written(run_files[k]) for k in ("plan", "ped", "saved"))
    assert {("root", "fractions"), ("dataset", "body_mask"), ("dataset", "dose_raw"), ("group", "dvh/<ROI>"),
            ("dataset", "dvh/<ROI>/dose_gy")} <= set(plan)
    assert {("dataset", "labels"), ("root", "label_names"), ("dataset", "dose_raw")} <= set(ped)
    assert ("dataset", "edep_mev_per_primary") in saved
    with h5py.File(run_files["ped"], "r") as f:   # a dose per primary: dose_raw in its unit (F3)
        assert f["dose_raw"].attrs["unit"] == f["dose"].attrs["unit"] == "Gy per primary"


@pytest.fixture
def demo_file(demo_plan_4mm_shared, monkeypatch, tmp_path):
    """The demo's dose.h5, its plan made once per session (tests/conftest.py, as tests/test_demo.py does)."""
    import copy

    import mcproton.phantoms.reference_plans as reference_plans
    from mcproton.demo import run_demo

    plan = demo_plan_4mm_shared[1]
    monkeypatch.setattr(reference_plans, "posterior_fossa_plan", lambda g, **kw: copy.deepcopy(plan))
    run_demo(tmp_path / "demo", primaries=2000, voxel_mm=4.0, backend="cpu", quiet=True, threads=1)
    return tmp_path / "demo" / "dose.h5"


def test_every_item_the_demo_writes_is_documented(demo_file):
    _compare(demo_file, documented())
    assert {("dataset", "ctv"), ("root", "plan"), ("dataset", "labels")} <= set(written(demo_file))

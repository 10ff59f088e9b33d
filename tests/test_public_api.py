"""The public API: ``import mcproton`` gives what a research script needs, lazily; a DoseResult saves and loads
through the versioned HDF5 layout; the README's Python example uses public names only and runs."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mcproton

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_all_matches_the_lazy_table():
    assert set(mcproton.__all__) == {"__version__"} | set(mcproton._LAZY)
    assert len(mcproton.__all__) == len(set(mcproton.__all__))
    for name in mcproton.__all__:
        assert getattr(mcproton, name) is not None, name
    assert set(mcproton.__all__) <= set(dir(mcproton))
    from mcproton.run import DoseResult, simulate
    assert mcproton.DoseResult is DoseResult and mcproton.simulate is simulate
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        mcproton.simulat  # noqa: B018


def test_public_submodules_resolve_after_import_mcproton_alone():
    """``mcp.dicom.dose_contents`` (the README's) works in a fresh interpreter after ``import mcproton as mcp``
    alone, whatever the script touched before (audit 2026-12-05 F10: AttributeError until something else imported
    mcproton.dicom); ``import mcproton`` itself still imports none of them."""
    code = ("import sys, mcproton as mcp; "
            "print('numpy' in sys.modules, 'mcproton.dvh' in sys.modules); "
            "print(mcp.dicom.dose_contents.__name__, mcp.dvh.dose_stats.__name__, mcp.body.__name__, "
            "mcp.rbe.__name__, mcp.phantoms.__name__, mcp.planning.__name__, mcp.validation.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == [
        "False False", "dose_contents dose_stats mcproton.body mcproton.rbe mcproton.phantoms mcproton.planning "
        "mcproton.validation"]
    assert "dicom" in dir(mcproton) and "check" in dir(mcproton)
    with pytest.raises(AttributeError, match="no attribute 'dicm'"):
        mcproton.dicm  # noqa: B018


def test_the_lazy_submodules_are_every_public_module():
    """Every public module and package of mcproton/ (no leading underscore; phantoms and validation are installed
    inside the package, pyproject package-dir) is in the lazy list, and every name in it is one."""
    found = {p.stem for p in (ROOT / "mcproton").glob("*.py") if not p.name.startswith("_")}
    found |= {p.parent.name for p in (ROOT / "mcproton").glob("*/__init__.py") if not p.parent.name.startswith("_")}
    assert set(mcproton._SUBMODULES) == found | {"phantoms", "validation"}


def test_check_has_its_real_signature_and_documents_every_parameter():
    """``mcp.check?`` shows the parameters (audit 2026-12-05 F8: ``(*args, **kwargs)`` and a docstring pointing to
    a private module), and the docstring has an entry for each (``name :`` or ``a, b :`` at the start of a line)."""
    import inspect

    params = set(inspect.signature(mcproton.check).parameters)
    assert {"plan", "folder", "beam_model", "out", "progress", "log", "gamma_points", "seed"} <= params
    documented: set[str] = set()
    for m in re.finditer(r"^    (\w+(?:, \w+)*) :", mcproton.check.__doc__, re.M):
        documented |= set(m.group(1).split(", "))
    assert params - documented == set(), f"mcproton.check's docstring lacks {sorted(params - documented)}"
    assert "mcproton._" not in mcproton.check.__doc__
    assert "log=lambda line: None" in mcproton.check.__doc__   # how a script silences the status lines


def test_import_mcproton_is_lazy():
    code = ("import sys, mcproton; "
            "print([m for m in ('numpy', 'mcproton.run', 'mcproton.geometry', 'mcproton.dicom', 'h5py') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"import mcproton eagerly imported {out.stdout.strip()}"


@pytest.fixture(scope="module")
def result():
    """A tiny real run on a two-material geometry (so that material definitions must round-trip)."""
    g = mcproton.slab_phantom([("water", 6.0), ("bone_compact_icru", 4.0, 1.8)], lateral_size_mm=(8, 8),
                              voxel_mm=(4, 4, 2))
    beam = mcproton.Beam.pencil(70.0, position_mm=(0, 0, -5), sigma_mm=(2, 2), total_protons=1e9)
    return mcproton.simulate(g, beam, mcproton.RunSettings(primaries=400, batches=4, backend="cpu", seed=3))


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), k   # NaN == NaN


def test_save_load_round_trip(result, tmp_path):
    p = result.save(tmp_path / "r.h5")
    with __import__("h5py").File(p, "r") as f:
        assert f.attrs["format_version"] == "mcproton-dose/1"
        units = json.loads(f["ledger"].attrs["units"])   # every entry's unit, in the file (interop audit, F4)
        assert set(units) == set(result.ledger) and units["deposited"] == "MeV" and units["steps"] == "count"
    back = mcproton.DoseResult.load(p)
    for k in ("dose_gy_zyx", "dose_to_water_gy_zyx", "edep_mev_zyx"):   # dose to water: float64 since 2026-12-07
        np.testing.assert_array_equal(getattr(back, k), getattr(result, k), err_msg=k)
    for k in ("let_d_kev_um_zyx", "uncertainty_rel_zyx"):   # stored as float32
        np.testing.assert_array_equal(getattr(back, k), getattr(result, k).astype(np.float32), err_msg=k)
    assert result.dose_gy_zyx.max() > 0
    g, bg = result.geometry, back.geometry
    np.testing.assert_array_equal(bg.material_index_zyx, g.material_index_zyx)
    np.testing.assert_array_equal(bg.density_g_cm3_zyx, g.density_g_cm3_zyx)
    assert tuple(bg.voxel_size_mm) == tuple(g.voxel_size_mm) and tuple(bg.origin_mm) == tuple(g.origin_mm)
    assert list(bg.materials) == list(g.materials)
    for k in ("normalisation", "mean_rel_uncertainty_50", "primaries", "wall_s", "protons_per_second", "backend",
              "device"):
        assert getattr(back, k) == getattr(result, k), k
    assert back.normalisation.startswith("Gy for 1e+09")
    _same(back.ledger, result.ledger)
    assert json.dumps(back.provenance, sort_keys=True, default=str) == \
        json.dumps(result.provenance, sort_keys=True, default=str)
    z0, idd0 = result.integrated_depth_dose()
    z1, idd1 = back.integrated_depth_dose()
    np.testing.assert_array_equal(z1, z0)
    np.testing.assert_array_equal(idd1, idd0)


def test_future_version_refused(result, tmp_path):
    import h5py

    from mcproton._io.hdf5 import DoseFileError

    p = result.save(tmp_path / "r.h5")
    with h5py.File(p, "a") as f:
        f.attrs["format_version"] = "mcproton-dose/2"
    with pytest.raises(DoseFileError, match=r"'mcproton-dose/2'.*newer mcproton"):
        mcproton.DoseResult.load(p)
    with h5py.File(p, "a") as f:
        f.attrs["format_version"] = "something-else/1"
    with pytest.raises(ValueError, match="not an mcproton dose format"):
        mcproton.DoseResult.load(p)


def test_file_without_version_read_as_version_0_with_a_warning(result, tmp_path):
    import h5py

    p = result.save(tmp_path / "r.h5")
    with h5py.File(p, "a") as f:   # the layout written before the format had a version
        for k in ("format_version", "materials_json", "geometry_name"):
            del f.attrs[k]
        del f["result"], f["edep_mev_per_primary"]
    with pytest.warns(UserWarning, match="no format_version.*version 0"):
        back = mcproton.DoseResult.load(p)
    np.testing.assert_array_equal(back.dose_gy_zyx, result.dose_gy_zyx)
    assert [m.name for m in back.geometry.materials] == [m.name for m in result.geometry.materials]
    assert back.primaries == result.primaries and back.edep_mev_zyx is None
    with h5py.File(p, "a") as f:
        del f["dose"]
    with pytest.raises(ValueError, match="not an mcproton dose file.*dose"):
        mcproton.DoseResult.load(p)


def _readme_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    i = text.index("Python API:")
    return re.search(r"```python\n(.*?)```", text[i:], re.S).group(1)


def test_readme_example_uses_public_names_only():
    code = _readme_python_block()
    compile(code, "README.md", "exec")
    assert "mcproton._" not in code and "from mcproton" not in code, "the README example imports a private module"
    used = set(re.findall(r"\bmcp\.(\w+)", code))
    assert used and used <= set(mcproton.__all__), f"not public: {used - set(mcproton.__all__)}"


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README block itself, with 200 primaries instead of 100 000 and the CPU backend."""
    code = _readme_python_block()
    assert "primaries=100_000" in code and 'backend="auto"' in code
    code = code.replace("primaries=100_000", "primaries=200").replace('backend="auto"', 'backend="cpu"')
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102
    assert (tmp_path / "water.h5").is_file()
    assert ns["res"].primaries == 200 and ns["idd"].shape == ns["z_mm"].shape and ns["idd"].max() > 0


def test_save_load_keeps_the_body_mask_and_raw_dose(result, tmp_path):
    """The datasets a body outline adds (mcproton/body.py: ``dose_raw``, ``body_mask`` with its outline source)."""
    import dataclasses

    r = dataclasses.replace(result)
    mask = np.ones(result.dose_gy_zyx.shape, np.uint8)
    mask[0] = 0
    r.extra_datasets = {"dose_raw": (result.dose_gy_zyx, {"unit": "Gy"}),
                        "body_mask": (mask, {"outline": "ct: -400 HU"})}
    back = mcproton.DoseResult.load(r.save(tmp_path / "b.h5"))
    np.testing.assert_array_equal(back.extra_datasets["body_mask"][0], mask)
    np.testing.assert_array_equal(back.extra_datasets["dose_raw"][0], result.dose_gy_zyx)
    assert back.extra_datasets["body_mask"][1] == {"outline": "ct: -400 HU"}
    assert back.extra_datasets["dose_raw"][1] == {"unit": "Gy"}

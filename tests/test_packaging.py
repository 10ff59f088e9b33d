"""A non-editable `pip install .` carries the kernels, data tables, phantom and validation data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_non_editable_install_has_kernels_and_data(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    pkg = target / "mcproton"
    src = {p.relative_to(ROOT / "kernels") for p in (ROOT / "kernels").rglob("*") if p.suffix in (".h", ".cu")}
    inst = {p.relative_to(pkg / "kernels") for p in (pkg / "kernels").rglob("*") if p.suffix in (".h", ".cu")}
    assert src and src == inst, f"kernel sources missing from the wheel: {sorted(map(str, src - inst))}"
    for rel in ("data/stopping_power/icru90_protons_water.csv", "data/nuclear/icru63_nonelastic_p_elements.csv",
                "data/nuclear/pp_elastic.csv", "data/nuclear/barashenkov_proton_nucleus.csv",
                "data/materials/materials.csv",
                "phantoms/data/tissues.csv", "validation/topas_idd/idd_mc_topas_matrad_generic_water_subset.csv"):
        assert (pkg / rel).is_file(), f"{rel} is not installed"
    # the installed package compiles and finds its kernels from anywhere
    code = ("import mcproton._kernels.source as s; t = s.assemble('transport.cu'); "
            "assert 'mcp_transport' in t; print(s.kernels_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(target) in out.stdout

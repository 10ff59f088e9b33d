"""mcproton check without pymedphys (the deployment audit of 2026-12-05, F3): a plain install did not bring it, and
the check read everything and ran the whole Monte Carlo before stopping at its gamma with "internal error ...
please report it".  Now pymedphys is a dependency (where it installs), and without it the check refuses at once, in
one line naming the pip command, before it reads a file or creates its output folder."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import log_text  # tests/fakes.py

import mcproton
from mcproton._check.api import check_batch
from mcproton.cli import main

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_pymedphys(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymedphys", None)   # `import pymedphys` raises ImportError


def test_check_refuses_before_reading_anything(no_pymedphys, tmp_path, capsys):
    out = tmp_path / "chk"
    # the folder does not exist: a refusal about it would mean the inputs were read first
    rc = main(["check", str(tmp_path / "no_such_patient"), "--beam-model", "dcpt_v5", "--out", str(out), "--quiet"])
    err = log_text(capsys.readouterr().err.strip())
    # a package missing from this installation: the machine (exit 3), not the input (mcproton.errors)
    assert rc == 3 and len(err.splitlines()) == 1, err
    assert err.startswith("mcproton: error: mcproton check needs pymedphys") and "pip install 'pymedphys" in err
    assert "internal error" not in err and not out.exists()


def test_the_api_and_the_batch_refuse_too(no_pymedphys, tmp_path):
    with pytest.raises(RuntimeError, match=r"mcproton check needs pymedphys.*pip install"):
        mcproton.check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v5", out=tmp_path / "chk")
    with pytest.raises(RuntimeError, match=r"mcproton check needs pymedphys.*pip install"):
        check_batch(tmp_path / "no_such_folder", tmp_path / "chks", beam_model="dcpt_v5")
    assert not (tmp_path / "chk").exists() and not (tmp_path / "chks").exists()


def test_a_plain_install_brings_pymedphys_where_it_installs():
    """pymedphys's base install is light (a 7.5 MB pure-Python wheel and three pure-Python dependencies, measured),
    so it is a dependency, on the Pythons its newest release (0.41) declares (< 3.13)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert "pymedphys>=0.41; python_version<'3.13'" in deps


def test_on_python_313_the_refusal_says_which_pythons_pymedphys_installs_on(no_pymedphys, monkeypatch, tmp_path):
    """pymedphys 0.41 declares Python < 3.13, so there it is not installed with mcproton: the refusal says so."""
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    with pytest.raises(RuntimeError, match=r"pip install 'pymedphys>=0.41' \(pymedphys 0.41.*Python 3.10-3.12"):
        mcproton.check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v5")


def test_the_docs_give_the_refusals_exit_status():
    """docs/check.md said "exit status 2" for the refusal without pymedphys, the code exits 3 (audit 24 "docs" F1)."""
    from mcproton.errors import EXIT_ENVIRONMENT

    text = " ".join((ROOT / "docs" / "check.md").read_text(encoding="utf-8").split())
    sentence = text[text.index("Where it cannot be imported, `mcproton check`"):]
    sentence = sentence[:sentence.index("`mcproton info` lists it")]
    assert f"(exit status {EXIT_ENVIRONMENT}," in sentence, sentence

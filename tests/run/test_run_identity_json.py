"""``run_identity`` in an ``mcproton run`` HDF5 is one JSON object, None is JSON ``null``, and the README's
"Verifying a run against its inputs" code runs as written (audit 26 h5schema, F4).  Before, ``run_identity`` was
JSON inside a JSON string (``json.loads`` gave a str: the README's step 1 failed with a TypeError), holding more JSON
texts (``beam_models``, ``output_settings``), and None was stored as the text "none".  Files written so before are
still read (``DoseResult.load``, ``--resume``).  A 40 x 40 x 100 mm water box, 500 primaries."""
from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from pathlib import Path

import h5py
import pytest
from run_helpers import no_transport, write_cfg

from mcproton import DoseResult
from mcproton.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _recipe() -> str:
    """The README's Python block of "Verifying a run against its inputs"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Verifying a run against its inputs", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 1, "the section should hold one Python block"
    return blocks[0]


def _run_recipe() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_recipe(), "README.md (Verifying a run)", "exec"), {})
    return out.getvalue()


@pytest.fixture
def run_output(tmp_path, monkeypatch, capsys):
    write_cfg(tmp_path / "run.toml", 500)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "run.toml", "--out", "dose.h5", "--quiet", "--set", "run.seed=5"]) == 0
    capsys.readouterr()
    return tmp_path / "dose.h5"


def test_run_identity_is_one_json_object_and_none_is_null(run_output):
    with h5py.File(run_output, "r") as f:
        prov = f["provenance"].attrs
        ident = json.loads(prov["run_identity"])
        batch_size = prov["batch_size"]
    assert isinstance(ident, dict), type(ident)
    assert any(k.endswith("run.toml") for k in ident["input_files_sha256"]), ident["input_files_sha256"]
    # no JSON text inside: the output settings and the beam models are objects (a [beam] run has no model: null)
    assert isinstance(ident["output_settings"], dict) and ident["output_settings"]["plot"] is False
    assert ident["beam_models"] == [None]
    assert batch_size == "null" and json.loads(batch_size) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = DoseResult.load(run_output)
    assert r.provenance["run_identity"] == ident and r.provenance["batch_size"] is None


def test_the_readme_recipe_runs_as_written(run_output):
    said = _run_recipe()
    assert "inputs changed or gone since the run: none" in said, said
    assert "the config and --set options give the config that ran: True" in said, said
    cfg = run_output.parent / "run.toml"
    cfg.write_text(cfg.read_text() + "# edited\n")   # the file changed, not the config it gives
    said = _run_recipe()
    assert f"inputs changed or gone since the run: ['{cfg}']" in said, said
    assert "the config and --set options give the config that ran: True" in said, said


def test_an_older_file_is_still_read_and_still_complete_for_resume(run_output, monkeypatch, capsys):
    """A file written before: run_identity the JSON string of its text (with its nested JSON texts), None "none"."""
    with h5py.File(run_output, "r+") as f:
        prov = f["provenance"].attrs
        ident = json.loads(prov["run_identity"])
        older = dict(ident, output_settings=json.dumps(ident["output_settings"], sort_keys=True),
                     beam_models=[json.dumps(m, sort_keys=True) for m in ident["beam_models"]])
        prov["run_identity"] = json.dumps(json.dumps(older, sort_keys=True))
        prov["batch_size"] = "none"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = DoseResult.load(run_output)
    assert r.provenance["run_identity"] == ident and r.provenance["batch_size"] is None
    no_transport(monkeypatch)
    assert main(["run", "run.toml", "--out", "dose.h5", "--quiet", "--set", "run.seed=5", "--resume"]) == 0
    assert "already complete" in capsys.readouterr().err

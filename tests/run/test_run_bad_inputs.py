"""Bad inputs: each case of tests/run/make_bad_input_table.py fails before any transport with exit status 2
and one message naming the key (run in-process here; the script runs the real CLI and writes
docs/bad_inputs.md)."""
from __future__ import annotations

import pytest
from make_bad_input_table import CASES, case_argv

from mcproton.cli import main


@pytest.mark.parametrize("case,args,text,must", CASES, ids=[c[0] for c in CASES])
def test_bad_input_message(case, args, text, must, tmp_path, capsys, monkeypatch):
    import mcproton.run

    def no_transport(*a, **k):
        raise AssertionError("a bad input reached the transport")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", no_transport)
    rc = main(case_argv(args, text, tmp_path, 0))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("mcproton:"), err
    assert must in err[0], err[0]
    assert not list(tmp_path.glob("*.h5"))


def test_doc_lists_every_case():
    from make_bad_input_table import DOC

    text = DOC.read_text()
    for case, *_ in CASES:
        assert f"| {case} |" in text, f"docs/bad_inputs.md lacks {case!r}: rerun tests/run/make_bad_input_table.py"

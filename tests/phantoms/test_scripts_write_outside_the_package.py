"""The phantoms' scripts never write into the installed package (the packaging audit of 2026-12-07, F4):
verify_craniospinal wrote its figure into site-packages/mcproton/phantoms/figures/ by default (a read-only install
failed there with a traceback after the whole plan and Monte Carlo, losing --out's summary.json, and ``pip
uninstall`` left the folder behind); make_figures, a developer's tool, wrote into an installed package too."""
from __future__ import annotations

from pathlib import Path

import pytest

import mcproton.phantoms.make_figures as mf
import mcproton.phantoms.verify_craniospinal as vc


@pytest.fixture
def runs(monkeypatch):
    """verify_craniospinal's plan and Monte Carlo replaced by a stand-in that records its figure and writes it."""
    calls = []

    def stand_in(voxel_mm, primaries, *, figure=None, **kw):
        calls.append(figure)
        figure.write_bytes(b"png")
        return {"target_rel": {"d95_rel": 0.97}, "figure": str(figure)}, None, None

    monkeypatch.setattr(vc, "verify_craniospinal", stand_in)
    return calls


def test_the_figure_goes_to_out_else_to_the_working_folder(runs, tmp_path, monkeypatch):
    assert vc.main(["--out", str(tmp_path / "csi")]) == 0
    assert runs[-1] == tmp_path / "csi" / "craniospinal_dose.png"
    assert (tmp_path / "csi" / "summary.json").is_file() and (tmp_path / "csi" / "craniospinal_dose.png").is_file()
    monkeypatch.chdir(tmp_path)
    assert vc.main([]) == 0
    assert runs[-1].resolve() == tmp_path / "craniospinal_dose.png"
    assert vc.main(["--figure", str(tmp_path / "figs" / "f.png")]) == 0   # a folder that is not there is made
    assert (tmp_path / "figs" / "f.png").is_file()
    package = Path(vc.__file__).resolve().parent
    assert all(package not in f.resolve().parents for f in runs), runs


def test_the_function_draws_no_figure_unless_asked():
    import inspect

    assert inspect.signature(vc.verify_craniospinal).parameters["figure"].default is None


@pytest.mark.parametrize("option", ["--out", "--figure"])
def test_an_output_folder_that_cannot_be_made_is_refused_before_the_run(runs, tmp_path, capsys, option):
    (tmp_path / "a_file").write_text("")
    value = tmp_path / "a_file" / ("csi" if option == "--out" else "f.png")
    with pytest.raises(SystemExit) as exc:
        vc.main([option, str(value)])
    assert exc.value.code == 2 and not runs
    err = capsys.readouterr().err
    assert f"{option}: the folder {tmp_path / 'a_file'}" in err and f"give another with {option}" in err


def test_make_figures_refuses_an_installed_package(tmp_path, monkeypatch, capsys):
    installed = tmp_path / "site-packages" / "mcproton" / "phantoms"
    installed.mkdir(parents=True)
    monkeypatch.setattr(mf, "HERE", installed)
    with pytest.raises(SystemExit) as exc:
        mf.main([])
    assert exc.value.code == 2
    assert "is an installed package, not a checkout's phantoms/ folder" in capsys.readouterr().err
    assert list(installed.iterdir()) == []   # nothing written
    here = Path(mf.__file__).resolve().parent   # this checkout's phantoms/ (an editable install) or an installed one
    assert mf.in_checkout(here) == (here.parent / "pyproject.toml").is_file()


@pytest.mark.parametrize("argv, words", [
    (["--primaries", "16e6"], "argument --primaries: 16e6 is written as a decimal number: write 16000000"),
    (["--primaries", "2.5"], "argument --primaries: invalid int value: '2.5'"),
    (["--threads", "1.0"], "argument --threads: 1.0 is written as a decimal number: write 1"),
    (["--prim", "1000"], "unrecognized arguments: --prim"),   # a prefix was taken for --primaries
    (["--out", ""], "argument --out: an empty path: give a folder name"),
])
def test_verify_craniospinal_follows_the_command_lines_rules(argv, words, runs, capsys):
    """Its options as every mcproton command line takes them (mcproton/_io/cli_args.py): by their whole name, whole
    numbers as digits, no empty path; it took 16e6, 2.5 and prefixes (review 26a, R9)."""
    with pytest.raises(SystemExit) as exc:
        vc.main(argv)
    assert exc.value.code == 2 and not runs
    assert words in capsys.readouterr().err


def test_verify_craniospinal_takes_its_primaries_as_digits(tmp_path, monkeypatch):
    seen = []

    def stand_in(voxel_mm, primaries, **kw):
        seen.append(primaries)
        return {"target_rel": {"d95_rel": 0.97}}, None, None

    monkeypatch.setattr(vc, "verify_craniospinal", stand_in)
    monkeypatch.chdir(tmp_path)
    assert vc.main(["--primaries", "16_000_000"]) == 0 and vc.main([]) == 0
    assert seen == [16_000_000, 16_000_000] and all(type(n) is int for n in seen)


def test_make_figures_takes_options_by_their_whole_name(capsys):
    """``--he`` was taken for --help (exit 0): refused now (review 26a, R9)."""
    with pytest.raises(SystemExit) as exc:
        mf.main(["--he"])
    assert exc.value.code == 2 and "unrecognized arguments: --he" in capsys.readouterr().err

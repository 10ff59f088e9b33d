"""How the command line prints warnings: mcproton's own (McprotonWarning) as one ``mcproton: warning:`` line,
every other warning (NumPy's, a library's deprecation) as Python prints it, with its category, even when it was
raised from a line of mcproton's code (before, the formatter decided by the file and relabelled those)."""
from __future__ import annotations

import warnings

from mcproton import McprotonWarning
from mcproton._io.errors import McprotonRuntimeWarning
from mcproton.cli import _warning_line


def test_own_warnings_are_one_line_others_keep_their_category():
    fmt = _warning_line(warnings.formatwarning)
    here = __import__("mcproton.cli").cli.__file__      # a file of the package, as NumPy's warnings would carry
    assert fmt("the CT has no position", McprotonWarning, here, 10) == "mcproton: warning: the CT has no position\n"
    assert fmt("tracks stopped", McprotonRuntimeWarning, "/elsewhere.py", 1).startswith("mcproton: warning: ")
    numpy_like = fmt("divide by zero encountered in divide", RuntimeWarning, here, 10)
    assert "RuntimeWarning: divide by zero" in numpy_like and "mcproton: warning" not in numpy_like
    assert "DeprecationWarning" in fmt("old API", DeprecationWarning, here, 10)


def test_main_restores_the_formatter(tmp_path):
    from mcproton.cli import main

    before = warnings.formatwarning
    assert main(["run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o.h5")]) == 2
    assert warnings.formatwarning is before


def test_warnings_are_recorded_whatever_the_filters_each_time_and_per_block():
    """recording_warnings keeps every mcproton warning issued inside it (a signed check report and a run's HDF5
    keep what was said), whatever Python's filters show: an ignored warning and the second issue of one message
    from one place (which Python's default prints once) are recorded too; nested blocks each keep their own."""
    from mcproton._io.errors import recorded, records_warnings, recording_warnings, warn

    def twice():
        for _ in range(2):
            warn("the same message from one place")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with recording_warnings() as outer:
            warn("first", McprotonRuntimeWarning)
            with recording_warnings() as inner:
                twice()
            assert recorded() == ["first"] + ["the same message from one place"] * 2
        assert recorded() == []    # no block open: nothing kept
        warn("outside every block")   # issued still (a warning), recorded by no one
    assert inner == ["the same message from one place"] * 2
    assert outer == ["first"] + inner

    @records_warnings
    def job():
        warn("during the job")
        return recorded()

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert job() == ["during the job"]
    assert [str(w.message) for w in shown] == ["during the job"] and shown[0].category is McprotonWarning


def test_the_command_line_shows_a_warning_each_time_it_is_issued(monkeypatch):
    """``mcproton`` shows each of its warnings every time (Python's default filter prints a message once per
    place: the second patient of a batch with the same warning would not see it), and leaves the filters as they
    were."""
    import mcproton.cli as cli
    from mcproton._io.errors import warn

    def go(_args):
        for _ in range(2):
            warn("the same words twice")
        return 0

    monkeypatch.setitem(cli._PASSTHROUGH, "warn-twice", go)   # a command that warns twice from one place
    shown = []
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")   # Python's own default: once per place
        warnings.showwarning = lambda m, *a, **k: shown.append(str(m))
        before = list(warnings.filters)
        assert cli.main(["warn-twice"]) == 0
        assert warnings.filters == before
    assert shown == ["the same words twice"] * 2


def test_nested_blocks_keep_their_own_lists_even_when_equal_and_threads_keep_their_own():
    """An outer block with nothing recorded yet around an inner one (a CLI block around a check: the two lists are
    equal when the inner one closes) keeps recording after it, and both close cleanly (before: the outer list was
    removed in the inner one's place, then ValueError); two checks in two threads each record their own
    warnings (before: each other's, on a signed report; the review of 2026-12-05)."""
    import threading

    from mcproton._io.errors import recorded, recording_warnings, warn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with recording_warnings() as outer:
            with recording_warnings() as inner:
                pass
            warn("after the inner block")
        assert outer == ["after the inner block"] and inner == []

        got: dict[str, list[str]] = {}
        both_open = threading.Barrier(2)

        def patient(name: str) -> None:
            with recording_warnings():
                both_open.wait()
                warn(f"warning about {name}'s CT")
                both_open.wait()
                got[name] = recorded()

        threads = [threading.Thread(target=patient, args=(n,)) for n in ("A", "B")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == {"A": ["warning about A's CT"], "B": ["warning about B's CT"]}

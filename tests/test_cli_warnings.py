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

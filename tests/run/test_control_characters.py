"""Control characters from names and file names never reach the terminal raw (audit 17 hostile F10: a BeamName
holding "ESC ]0;pwned BEL" set the terminal's title; a plan file named "RP<newline>mcproton: check PASSED x.dcm"
printed a line saying PASSED in a check that failed)."""
from __future__ import annotations

import io
import sys

from mcproton._io.console import DroppingStream, dropping_std_streams, printable


def test_printable_escapes_every_control_character_and_bidi_override():
    assert printable("1:b\x1b]0;pwned\x07") == "1:b\\x1b]0;pwned\\x07"
    assert printable("RP\nmcproton: check PASSED x.dcm") == "RP\\nmcproton: check PASSED x.dcm"
    assert printable("a\tb\rc\x7f\x9b\u202e\u2066") == "a\\tb\\rc\\x7f\\x9b\\u202e\\u2066"
    assert printable("PTV 54/30 Gy (é, 頭)") == "PTV 54/30 Gy (é, 頭)"   # printable text as it is


def test_stderr_under_the_command_line_escapes_controls_but_keeps_lines():
    raw = io.StringIO()
    s = DroppingStream(raw, escape_controls=True)
    assert s.write("beam 1/3: 1:b\x1b]0;pwned\x07 (9 spots)\n\rline\ttab\n") == 44
    assert raw.getvalue() == "beam 1/3: 1:b\\x1b]0;pwned\\x07 (9 spots)\n\rline\ttab\n"
    plain = io.StringIO()
    DroppingStream(plain).write("\x1b[1m")   # stdout (JSON) passes as it is
    assert plain.getvalue() == "\x1b[1m"


def test_the_command_lines_stderr_escapes_and_its_stdout_does_not(capsys):
    with dropping_std_streams():
        sys.stderr.write("x\x1b[2Jy\n")
        sys.stdout.write("{}\n")
    out, err = capsys.readouterr()
    assert err == "x\\x1b[2Jy\n" and out == "{}\n"

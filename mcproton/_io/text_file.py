"""Text files the user gives (run configs, check action levels, beam-model TOMLs, CSV tables, HU calibrations) read
as UTF-8, whatever the locale.

TOML is UTF-8 by definition.  ``Path.read_text()`` decodes with the locale's encoding instead: under a Latin-1 or
EUC-JP locale (older clinic Linux installs) a UTF-8 config's ``body_outline = "Körper"`` was read as "KÃ¶rper" and
the run refused for an ROI that does not exist (deployment audit of 2026-12-05, F10).  A leading byte-order mark
(what Windows editors write for "UTF-8 with BOM") is removed, as Python's ``utf-8-sig`` does: the TOML parser took
it for a statement ("not valid TOML at line 1, column 1", F11).  A file that is not UTF-8 (saved as Windows-1252:
``ü`` is the byte 0xfc) is refused naming the line and the byte, not with the codec's position in the file.

The CSV tables (beam models, commissioning measurements, HU calibrations) are read by the same rule (locale audit of
2026-12-07, F10: a beam-model table's Windows-1252 comment gave "'utf-8' codec can't decode byte 0xe6 in position
790", while the HU calibration took its data with the bytes replaced): their ``#`` comments are not read, so a comment
may hold any bytes; what is read (the header, names, numbers) must be UTF-8.  A file saved as UTF-16 (a spreadsheet's
"Unicode text" export: every other byte 0) is named as such (it was "line 1: '��' is not 'HU density'").
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

#: the UTF-8 encoding of U+FEFF, the byte-order mark some editors put at the start of a UTF-8 file
UTF8_BOM = b"\xef\xbb\xbf"
#: the byte-order marks of UTF-16 (little- and big-endian; UTF-32 LE begins with the first too)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

#: what to do about a TOML file that is not UTF-8
TOML_ADVICE = "a TOML file must be UTF-8; an editor's 'Save as' offers the encoding"
#: ... and about a CSV table or a calibration text file
TABLE_ADVICE = "a spreadsheet's 'Save as' offers 'CSV UTF-8', an editor's 'Save as' the encoding"


def refuse_utf16(raw: bytes, path: str | Path, error: type[Exception], advice: str) -> None:
    """``error`` for a file saved as UTF-16 (its byte-order mark, or NUL bytes: a text file holds none)."""
    if raw[:2] in UTF16_BOMS:
        raise error(f"{path}: saved as UTF-16 (it begins with the byte-order mark 0x{raw[0]:02x} 0x{raw[1]:02x}, as a "
                    f"spreadsheet's 'Unicode text' export does); save it as UTF-8 ({advice})")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise error(f"{path}: holds a NUL byte at line {line}: not a text file (UTF-16 without a byte-order mark?); "
                    f"save it as UTF-8 ({advice})")


def decode_utf8(raw: bytes, path: str | Path, error: type[Exception], *, advice: str = TOML_ADVICE,
                comments: Literal["line", "inline"] | None = None) -> str:
    """``raw`` (the bytes of the file ``path``) decoded as UTF-8 without a leading byte-order mark; ``error``
    naming the file, the line and the byte where it is not UTF-8, or saying that it is UTF-16, with ``advice``.
    ``comments``: "line" (a line whose first other character is '#') or "inline" (from a '#' to the line's end) are
    comments, which are not read: their bytes may be in another encoding (decoded with replacement characters)."""
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    refuse_utf16(raw, path, error, advice)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        first = exc.start
    if comments is not None:
        lines = raw.split(b"\n")
        out = []
        for i, line in enumerate(lines):
            if comments == "line":
                body, rest = (b"", line) if line.lstrip().startswith(b"#") else (line, b"")
            else:   # '#' (0x23) is never part of a multi-byte UTF-8 character
                cut = line.find(b"#")
                body, rest = (line, b"") if cut < 0 else (line[:cut], line[cut:])
            try:
                out.append(body.decode("utf-8") + rest.decode("utf-8", errors="replace"))
            except UnicodeDecodeError as exc:
                first = sum(len(ln) + 1 for ln in lines[:i]) + exc.start
                break
        else:
            return "\n".join(out)
    line_no = raw.count(b"\n", 0, first) + 1
    raise error(f"{path}: not UTF-8 at line {line_no} (byte 0x{raw[first]:02x}); save it as UTF-8 "
                f"({advice})") from None


def is_number(token: str) -> bool:
    """Whether the text field ``token`` reads as a number (``float``)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_utf8(path: str | Path, error: type[Exception]) -> str:
    """The text of the file ``path`` as :func:`decode_utf8` decodes it (an OSError reading it is raised as it is)."""
    return decode_utf8(Path(path).read_bytes(), path, error)

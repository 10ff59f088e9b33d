"""Text files the user gives (run configs, check action levels, beam-model TOMLs) read as UTF-8, whatever the locale.

TOML is UTF-8 by definition.  ``Path.read_text()`` decodes with the locale's encoding instead: under a Latin-1 or
EUC-JP locale (older clinic Linux installs) a UTF-8 config's ``body_outline = "Körper"`` was read as "KÃ¶rper" and
the run refused for an ROI that does not exist (deployment audit of 2026-12-05, F10).  A leading byte-order mark
(what Windows editors write for "UTF-8 with BOM") is removed, as Python's ``utf-8-sig`` does: the TOML parser took
it for a statement ("not valid TOML at line 1, column 1", F11).  A file that is not UTF-8 (saved as Windows-1252:
``ü`` is the byte 0xfc) is refused naming the line and the byte, not with the codec's position in the file.
"""
from __future__ import annotations

from pathlib import Path

#: the UTF-8 encoding of U+FEFF, the byte-order mark some editors put at the start of a UTF-8 file
UTF8_BOM = b"\xef\xbb\xbf"


def decode_utf8(raw: bytes, path: str | Path, error: type[Exception]) -> str:
    """``raw`` (the bytes of the file ``path``) decoded as UTF-8 without a leading byte-order mark; ``error``
    naming the file, the line and the byte where it is not UTF-8."""
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: not UTF-8 at line {line} (byte 0x{raw[exc.start]:02x}); save it as UTF-8 (a TOML file "
                    "must be UTF-8; an editor's 'Save as' offers the encoding)") from None


def read_utf8(path: str | Path, error: type[Exception]) -> str:
    """The text of the file ``path`` as :func:`decode_utf8` decodes it (an OSError reading it is raised as it is)."""
    return decode_utf8(Path(path).read_bytes(), path, error)

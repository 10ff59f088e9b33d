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
"Unicode text" export: every other byte 0) is named as such (it was "line 1: '��' is not 'HU density'"); a file that
is not text at all (a DICOM or HDF5 file given in place of a table) is "not a text file", without that advice.
"""
from __future__ import annotations

import re
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


#: how many bytes at the start of a file :func:`utf16_without_bom` looks at
UTF16_SNIFF_BYTES = 512


def utf16_without_bom(raw: bytes) -> bool:
    """Whether ``raw`` (a file's first bytes) looks like text saved as UTF-16 without a byte-order mark: in its first
    :data:`UTF16_SNIFF_BYTES` bytes, every other byte 0 (at least 90 % of the odd or of the even ones, the high byte
    of an ASCII character) and the others not (at most 10 % of them 0, at least 90 % printable ASCII or white
    space).  A binary file (a DICOM file's 128 zero bytes of preamble, an HDF5 file) does not."""
    head = raw[:UTF16_SNIFF_BYTES]
    if len(head) < 4:
        return False
    halves = head[0::2], head[1::2]
    for zeros, chars in (halves, halves[::-1]):
        if zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) <= 0.1 * len(chars):
            text = sum(1 for b in chars if 32 <= b < 127 or b in (9, 10, 13))
            if text >= 0.9 * len(chars):
                return True
    return False


#: the signature of an HDF5 file (an mcproton dose result) at its start
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def binary_kind(raw: bytes) -> str:
    """What the file whose first bytes are ``raw`` is, where it is not text: "a DICOM file" (the prefix 'DICM' at
    byte 128), "an HDF5 file", "a binary file" (a NUL byte, and not UTF-16: :func:`utf16_without_bom`); "" for text
    (or UTF-16 text, which :func:`refuse_utf16` names)."""
    if raw[128:132] == b"DICM":
        return "a DICOM file"
    if raw.startswith(HDF5_SIGNATURE):
        return "an HDF5 file"
    if raw[:2] in UTF16_BOMS or b"\x00" not in raw or utf16_without_bom(raw):
        return ""
    return "a binary file"


def refuse_utf16(raw: bytes, path: str | Path, error: type[Exception], advice: str) -> None:
    """``error`` for a file saved as UTF-16 (its byte-order mark, or every other byte 0: :func:`utf16_without_bom`)
    and for one that is not text at all (a NUL byte elsewhere: a text file holds none; a DICOM or HDF5 file given in
    place of a text file), without the advice to save it as UTF-8 then (review of 2026-12-07, R4)."""
    if raw[:2] in UTF16_BOMS:
        raise error(f"{path}: saved as UTF-16 (it begins with the byte-order mark 0x{raw[0]:02x} 0x{raw[1]:02x}, as a "
                    f"spreadsheet's 'Unicode text' export does); save it as UTF-8 ({advice})")
    nul = raw.find(b"\x00")
    if nul < 0:
        return
    line = raw.count(b"\n", 0, nul) + 1
    if utf16_without_bom(raw):
        raise error(f"{path}: saved as UTF-16 without a byte-order mark (every other byte is 0, from line {line}); "
                    f"save it as UTF-8 ({advice})")
    raise error(f"{path}: not a text file ({binary_kind(raw)}: it holds a NUL byte at line {line}); give the text "
                "file meant here")


def decode_utf8(raw: bytes, path: str | Path, error: type[Exception], *, advice: str = TOML_ADVICE,
                comments: Literal["line", "inline"] | None = None, fields: int | None = None) -> str:
    """``raw`` (the bytes of the file ``path``) decoded as UTF-8 without a leading byte-order mark; ``error``
    naming the file, the line and the byte where it is not UTF-8, or saying that it is UTF-16, with ``advice``.
    ``comments``: "line" (a line whose first other character is '#') or "inline" (from a '#' to the line's end) are
    comments, which are not read: their bytes may be in another encoding (decoded with replacement characters).
    ``fields`` (with ``comments``): only the first so many fields of a line (separated by white space, ',' or ';')
    are read, the rest of it is not, like a comment (MCsquare's HU_Material_Conversion.txt: HU_lo and the material
    ID, then a name that is never read: review of 2026-12-07, R5)."""
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
            if fields is not None:   # white space, ',' and ';' are never part of a multi-byte UTF-8 character
                read = re.match(rb"(?:[\s,;]*[^\s,;]+){0,%d}" % fields, body)
                end = read.end() if read else 0
                body, rest = body[:end], body[end:] + rest
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

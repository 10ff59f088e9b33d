"""A damaged attribute of a million values is quoted shortened in its message (audit 17 hostile F11: a 1,000,000-entry
GridFrameOffsetVector gave a 12.7 MB one-line error message)."""
from __future__ import annotations

import pytest

from mcproton._io.dicom_common import QUOTE_CHARS, number_values, shorten
from mcproton._io.errors import DicomInputError


def test_shorten():
    assert shorten("abc") == "abc"
    assert shorten("x" * 1000) == "x" * QUOTE_CHARS + "... (1,000 characters)"


@pytest.mark.parametrize("value", [b"0.0\\4.0\\" * 500_000, "1,5" * 500_000])
def test_a_long_bad_value_is_quoted_short(value):
    with pytest.raises(DicomInputError) as e:
        number_values(value, "GridFrameOffsetVector", "RD.dcm", "export it again")
    assert len(str(e.value)) < 400 and "GridFrameOffsetVector (3004,000C)" in str(e.value)


def test_a_wrong_count_of_a_million_values_is_quoted_short():
    with pytest.raises(DicomInputError) as e:
        number_values([f"{k}.0" for k in range(10**6)], "GridFrameOffsetVector", "RD.dcm", "export it again", count=3)
    msg = str(e.value)
    assert len(msg) < 400 and "holds 1000000 value(s) (0.0\\1.0\\2.0" in msg and "not 3" in msg

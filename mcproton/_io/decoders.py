"""The decoders pydicom needs for compressed CT slices: which compressed transfer syntaxes it can decode on this
machine (``mcproton info``'s ``dicom_decoders``), and the pip command where it cannot (the CT reader's refusal).
Before (audit 27 encodings, F5) a CT in JPEG Lossless without a decoder was refused as "truncated/corrupted or uses
a compression pydicom cannot decode", and a site learnt that its archive's CTs could not be read only at the first
run."""
from __future__ import annotations

#: the pip commands that give pydicom 3 a decoder (its pixel data handlers: pylibjpeg with its libjpeg plugin for
#: JPEG Lossless, JPEG-LS and JPEG Baseline/Extended, with its openjpeg plugin for JPEG 2000 and HTJ2K; or GDCM)
LIBJPEG = "pip install pylibjpeg pylibjpeg-libjpeg"
OPENJPEG = "pip install pylibjpeg pylibjpeg-openjpeg"
#: the decoder that covers every group but HTJ2K
GDCM = "pip install python-gdcm"

#: the compressed transfer syntaxes (PS3.5 A.4, PS3.6 Annex A) a CT may be stored in, as ``mcproton info`` lists them:
#: (name, UIDs, the pip command that gives pydicom 3 a decoder for them, "" where pydicom decodes them itself; whether
#: python-gdcm decodes them too: all but HTJ2K).  Pillow (a dependency of matplotlib) decodes JPEG Baseline/Extended
#: 8-bit and JPEG 2000 where it is built with OpenJPEG
DECODER_GROUPS: tuple[tuple[str, tuple[str, ...], str, bool], ...] = (
    ("JPEG Lossless (.57, .70)", ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"), LIBJPEG, True),
    ("JPEG-LS (.80, .81)", ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"), LIBJPEG, True),
    ("JPEG 2000 (.90, .91)", ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"), OPENJPEG, True),
    ("HTJ2K (.201, .202, .203)", ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
     OPENJPEG, False),
    ("JPEG Baseline/Extended (.50, .51)", ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"), LIBJPEG, True),
    ("RLE Lossless (.5)", ("1.2.840.10008.1.2.5",), "", True),
)

#: the CT reader's advice where a slice cannot be decoded and the syntax is not one :func:`install_for` knows
DECODER_ADVICE = (f"for JPEG Lossless and JPEG-LS `{LIBJPEG}`, for JPEG 2000 `{OPENJPEG}`, or `{GDCM}` for all; or "
                  "re-export the CT uncompressed")


def _decoder(uid: str):
    """pydicom 3's decoder of the transfer syntax ``uid`` (None with pydicom 2, which has no such registry, or for a
    syntax it has no decoder for)."""
    try:
        from pydicom.pixels import get_decoder
    except ImportError:
        return None
    try:
        return get_decoder(uid)
    except (NotImplementedError, ValueError):
        return None


def install_for(uid: str) -> str:
    """The pip command(s) that give pydicom a decoder for the transfer syntax ``uid``, e.g. "`pip install pylibjpeg
    pylibjpeg-libjpeg` (or `pip install python-gdcm`)"; "" for a syntax not in :data:`DECODER_GROUPS`."""
    for _, uids, pip, gdcm in DECODER_GROUPS:
        if uid in uids and pip:
            return f"`{pip}`" + (f" (or `{GDCM}`)" if gdcm else "")
    return ""


def missing_decoder(uid: str) -> bool:
    """Whether pydicom has no usable decoder here for the compressed transfer syntax ``uid`` (False where it has
    one, or where this cannot be told: pydicom 2)."""
    d = _decoder(uid)
    return d is not None and not d.is_available


def decoder_status() -> dict[str, str]:
    """Each group of :data:`DECODER_GROUPS`: "yes (<the plugins pydicom would use>)", or "missing: <pip command>"
    (``mcproton info``)."""
    out = {}
    for name, uids, _, _ in DECODER_GROUPS:
        d = _decoder(uids[0])
        if d is None:
            out[name] = "unknown (pydicom < 3 does not say which decoders it has)"
        elif d.is_available:
            out[name] = f"yes ({', '.join(sorted(d.available_plugins))})"
        else:
            out[name] = f"missing: {install_for(uids[0])}"
    return out

"""Whether an existing file is one that mcproton wrote, so that a new output of the same name may replace it.

One rule for ``mcproton phantom`` / ``mcproton demo`` (their output folder, phantoms/dicom_export.py) and
``mcproton run`` (its --out, RT Dose(s) and plot, mcproton/_run/inputs.py check_replaceable): a planning system's
RT Dose, structure set or plan, or a user's HDF5 or figure, of an output's name is refused, never replaced (the
phantom audit F4; the hostile-inputs audit of 2026-12-06, F3: ``mcproton run`` replaced any file, a TPS RT Dose
among them, calling it "the existing output of an earlier run"); and an output replaces only a file of its own
kind (:func:`other_kind`: an RT Dose only an RT Dose, not a CT slice or an RT Ion Plan that mcproton wrote; the
identity audit of 2026-12-07, F7).
"""
from __future__ import annotations

from pathlib import Path

from .dicom_common import (CT_IMAGE_STORAGE, RT_DOSE_STORAGE, RT_ION_PLAN_STORAGE, RT_PLAN_STORAGE,
                           RT_STRUCTURE_SET_STORAGE)
from .text_file import HDF5_SIGNATURE as _HDF5_SIGNATURE

#: PNG chunk keyword and text with which matplotlib names itself in a PNG (a figure drawn before 2026-12-06)
_MATPLOTLIB_PNG_SOFTWARE = (b"Software", b"Matplotlib")
#: the text chunk of the PNGs mcproton writes since 2026-12-06 (mcproton/plots.py; "mcproton commission" in
#: mcproton/commission.py): keyword "Software", text starting "mcproton"
MCPROTON_PNG_SOFTWARE = (b"Software", b"mcproton")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_marked_by_mcproton(path: str | Path) -> bool:
    """Whether the PNG ``path`` carries mcproton's own text chunk (:data:`MCPROTON_PNG_SOFTWARE`), not only
    matplotlib's."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    key, maker = MCPROTON_PNG_SOFTWARE
    return head.startswith(_PNG_SIGNATURE) and key + b"\0" + maker in head


def _kind(p: Path) -> str:
    """The file's kind by its suffix (.dcm, .h5/.hdf5, .png, .json), else by its first bytes (an output named
    without the usual suffix: --out result)."""
    suffix = p.suffix.lower()
    if suffix in (".dcm", ".png", ".json"):
        return suffix
    if suffix in (".h5", ".hdf5"):
        return ".h5"
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return suffix
    if head.startswith(_HDF5_SIGNATURE):
        return ".h5"
    if head.startswith(_PNG_SIGNATURE):
        return ".png"
    if head[128:132] == b"DICM":
        return ".dcm"
    return suffix


def written_by_mcproton(path) -> tuple[bool, str]:
    """Whether the file ``path`` is one that mcproton wrote (an earlier phantom, demo or run of the same output
    names, which a new one may replace), and if not, what it is: a DICOM file with Manufacturer "mcproton" (as every
    mcproton writer sets it), an HDF5 file with mcproton's ``format_version`` (or, without one, the layout of a
    phantom or dose file written before 2026-12-04), a PNG with mcproton's or matplotlib's text chunk (mcproton's
    figures), the demo's summary.json.  A link or anything but a regular file is not (writing through it would
    replace what it points to)."""
    p = Path(path)
    if p.is_symlink():
        return False, "a link"
    if not p.is_file():
        return False, "not a regular file"
    kind = _kind(p)
    try:
        if kind == ".dcm":
            from .dicom_common import read_dicom_header

            ds = read_dicom_header(p, specific_tags=["Manufacturer"])
            if ds is None:
                return False, "not a DICOM file"
            maker = str(ds.get("Manufacturer", "") or "")
            return maker == "mcproton", f"Manufacturer {maker!r}" if maker else "no Manufacturer"
        if kind == ".h5":
            import h5py

            with h5py.File(p, "r") as f:
                version = str(f.attrs.get("format_version", ""))
                if version:
                    return version.startswith("mcproton-"), f"format_version {version!r}"
                old = "material_index" in f and ("materials" in f or "materials" in f.attrs)
                return old, "an earlier mcproton layout" if old else "no mcproton format_version"
        if kind == ".png":
            with open(p, "rb") as fh:
                head = fh.read(4096)
            marks = (_MATPLOTLIB_PNG_SOFTWARE, MCPROTON_PNG_SOFTWARE)
            return (head.startswith(_PNG_SIGNATURE) and any(k + b"\0" + m in head for k, m in marks),
                    "not a figure of mcproton's")
        if kind == ".json":
            import json

            d = json.loads(p.read_text(encoding="utf-8"))
            ours = isinstance(d, dict) and {"case", "files", "prescription_gy_rbe"} <= set(d)
            return ours, "not an mcproton summary"
    except Exception as exc:  # noqa: BLE001 - not readable as what its name says: not ours
        return False, f"unreadable as {kind[1:].upper() or 'what its name says'}: {type(exc).__name__}"
    return False, "not a file mcproton writes"


#: what each kind of output of ``mcproton run`` is, in a message ("... not an RT Dose")
OUTPUT_KINDS = {"rtdose": "an RT Dose", "hdf5": "a dose HDF5 of mcproton run", "png": "a figure"}

#: the kinds of DICOM object mcproton writes, by SOP class, in a message
_DICOM_OBJECTS = {CT_IMAGE_STORAGE: "a CT slice", RT_DOSE_STORAGE: "an RT Dose",
                  RT_STRUCTURE_SET_STORAGE: "an RT Struct", RT_PLAN_STORAGE: "an RT Plan",
                  RT_ION_PLAN_STORAGE: "an RT Ion Plan"}


def other_kind(path, output: str) -> str:
    """For a file ``path`` that mcproton wrote (:func:`written_by_mcproton`), what it is where an output of kind
    ``output`` (a key of :data:`OUTPUT_KINDS`) must not replace it, e.g. "a CT slice that mcproton wrote (SOP class
    1.2.840.10008.5.1.4.1.1.2)"; "" where it is an earlier output of that kind, which the output may replace.  An RT
    Dose replaces only an RT Dose (not a CT slice of another series, an RT Struct or an RT Ion Plan that mcproton
    wrote: the identity audit of 2026-12-07, F7), the dose HDF5 only a dose HDF5 (not a phantom file of ``mcproton
    phantom``, nor a DICOM file), the plot only a figure."""
    p = Path(path)
    kind = _kind(p)
    if output == "png":
        return "" if kind == ".png" else f"{_described(p, kind)} that mcproton wrote"
    if kind == ".dcm":
        from .dicom_common import read_dicom_header

        try:
            ds = read_dicom_header(p, specific_tags=["SOPClassUID", "Modality"])
            if ds is None:
                return "a file that is not DICOM now"
            sop = str(ds.get("SOPClassUID", "") or "")
            modality = str(ds.get("Modality", "") or "")
        except Exception as exc:  # noqa: BLE001 - not readable: not replaced
            return f"a DICOM file that mcproton wrote, unreadable now ({type(exc).__name__})"
        if output == "rtdose" and sop == RT_DOSE_STORAGE:
            return ""
        what = _DICOM_OBJECTS.get(sop) or f"a DICOM object of Modality {modality or 'none'}"
        return f"{what} that mcproton wrote (SOP class {sop or 'none'})"
    if kind == ".h5":
        from .hdf5 import FORMAT_NAME   # the dose HDF5's ("mcproton-dose"): --out replaces only such a file

        version = _hdf5_version(p)
        if output == "hdf5" and (version.startswith(FORMAT_NAME) or not version):   # no version: an older layout
            return ""
        return "an HDF5 file that mcproton wrote" + (f" (format_version {version!r})" if version else "")
    return f"{_described(p, kind)} that mcproton wrote"


def _described(p: Path, kind: str) -> str:
    return {".dcm": "a DICOM file", ".h5": "an HDF5 file", ".png": "a PNG image", ".json": "a JSON file"}.get(
        kind, f"a file ({p.suffix or 'no suffix'})")


def _hdf5_version(p: Path) -> str:
    try:
        import h5py

        with h5py.File(p, "r") as f:
            return str(f.attrs.get("format_version", ""))
    except Exception:  # noqa: BLE001 - written_by_mcproton read it a moment ago
        return ""

"""The tube voltage (kVp) a HU calibration was measured for, and its comparison with the CT's.

A HU -> density (or SPR) curve belongs to one scanner, tube voltage and reconstruction kernel: bone's CT number rises
as the tube voltage falls (photoelectric absorption in calcium grows as the spectrum softens), so a curve measured at
120 kVp gives an 80 kVp scan's bone too much density, and a proton range through it comes out short.  A child is
often scanned at 80-100 kVp.

A calibration folder states its tube voltage in a comment line of one of its tables (the HU -> density or SPR table,
or the material table)::

    # kVp: 120
    # kVp: 100, 120        (a curve the clinic validated at both)
    # kVp: not stated

The CT's KVP (0018,0060) (:func:`~mcproton._io.ct.ct_acquisition`; each distinct one where its slices differ,
:func:`~mcproton._io.ct.slices_kvp`; none where it is no one tube voltage) is compared with it where both are known
(:func:`kvp_comparison`): ``mcproton run``, ``HUCalibration.to_geometry`` (the Python API) and ``mcproton
check`` warn of a difference (:func:`kvp_warning`), and record the comparison.  Scanners offer tube voltages in
discrete steps at least 10 kV apart (Siemens 70-150 kVp in 10 kV steps, GE 70/80/100/120/140, Philips
80/100/120/140, Canon 80/100/120/135), so any two that differ by more than :data:`KVP_MATCH_TOLERANCE_KV` (a DICOM
KVP written as 119.98) are two protocols.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import CalibrationError, McprotonWarning, warn

#: two tube voltages within this (kV) are the same setting (a KVP written as 119.98 or 120.4): a scanner's settings are
#: at least 5 kV apart (Canon 135 / GE 140), most 10-20 kV
KVP_MATCH_TOLERANCE_KV = 2.5
#: the tube voltages a calibration may state (kV): clinical CT runs at 70-150 kVp; a value outside is a typo or a unit
#: (0.12 for 120, 120000 in volts) and is refused
KVP_RANGE_KV = (40.0, 160.0)
#: below this CT tube voltage (kV) ``mcproton check`` notes a calibration that states none
#: (:func:`kvp_not_stated_note`): the paediatric protocols (70-90 kVp), where a generic 120 kVp curve is furthest off
LOW_KVP_BELOW_KV = 100.0

#: a comment line stating the tube voltage: "# kVp: 120", "#KVP=120", "# kVp 120", "# kV: 120", "# tube voltage: 120
#: kVp", "# Tube voltage (kVp) 120" (a full-width colon read as one; review a of audit 33, R3: all but the first two
#: were passed over as ordinary comments, and the calibration read as stating none); "kV"/"kVp" followed by ":", "=", a
#: number, "not stated" or nothing (review c of audit 33, R1: "# kV-CBCT calibration" was read as one, "the tube
#: voltage '-CBCT' is not one in 40-160 kVp")
_KVP_LINE = re.compile(r"^\s*#+\s*(?:kvp?|tube\s+voltage)\b(?:\s*\(\s*kvp?\s*\))?"
                       r"\s*(?:[:=]|(?=\d|not\b|unknown\b|$))(.*)$", re.IGNORECASE)
#: any other comment that names a tube voltage ("# measured at 80 kVp"): with no kVp line in the file, refused, not
#: read as "not stated"; beside one, refused only where its kV number is not the line's (:data:`_KV_NUMBER`)
#: ("kilovolt(s)", "kilovoltage" too: review c of audit 33, R4, "# Peak kilovoltage: 80" was passed over)
_KVP_WORD = re.compile(r"(?<![a-z])kvp?(?![a-z])|tube\s+voltage|kilovolt", re.IGNORECASE)
#: a tube voltage a comment names: "120 kV", "120kVp", "119.98 kVp", "80 kilovolt", "kilovoltage: 80"
_KV_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:kvp?(?![a-z])|kilovolt)|kilovoltage\W*(\d+(?:\.\d+)?)",
                        re.IGNORECASE)
#: a file name or path in a comment ("HLUT_120kVp_Body.txt", "C:\\HLUT\\120kVp\\body.csv", "/ct/80kV/curve"): not a
#: tube voltage the comment states (review c of audit 33, R1: "# exported from HLUT_120kVp_Body.txt" was refused)
_FILE_NAME = re.compile(r"\S*[/\\_]\S*|\S+\.[a-z][a-z0-9]{0,4}(?![a-z0-9])", re.IGNORECASE)
_WIDE = str.maketrans({"\uff1a": ":", "\uff1d": "="})   # full-width colon and equals sign (an East Asian keyboard)
_NOT_STATED = ("not stated", "unknown", "not known")
_KVP_FORM = "'# kVp: 120' (or '# kVp: 100, 120' for a curve validated at both, or '# kVp: not stated')"

#: what each built-in calibration states of its tube voltage, and where that was looked for (none states one: each is
#: "not stated" with the source read; a kVp is added here only with a citation, and the test
#: tests/io/test_calibration_kvp.py::test_the_built_ins_state_no_kvp_their_sources_do_not_give holds them to it)
BUILTIN_KVP = {
    "schneider2000": (None, "not stated: the sources mcproton transcribes (Schneider et al. 2000's fits as encoded in "
                            "OpenTOPAS examples/Patient/HUtoMaterialSchneider.txt, the compositions as in OpenGATE's "
                            "Schneider2000MaterialsTable.txt) name no tube voltage"),
    "mcsquare": (None, "not stated: MCsquare's Scanners/<name>/HU_Density_Conversion.txt and "
                       "HU_Material_Conversion.txt (e0404/MCsquare 211eefe; 'default' is OpenTPS's UCL_Toshiba) "
                       "name no tube voltage"),
    "dcpt_spr_brain": (None, "not stated: a stopping-power-ratio map's calibration (DCPT's Siemens DirectSPR series, "
                             "dual energy; nbassler/dicomexport 7397eb6 SPRtoMaterial__Brain.txt names no tube "
                             "voltage); its values are SPRs, not one tube voltage's HU"),
}


def builtin_kvp(name: str) -> tuple[tuple[float, ...] | None, str]:
    """(the tube voltages, where stated) of the built-in calibration ``name`` (:data:`BUILTIN_KVP`)."""
    key = "mcsquare" if name.startswith("mcsquare") else name
    return BUILTIN_KVP.get(key, (None, "not stated"))


def _values(text: str, where: str) -> tuple[float, ...] | None:
    """The tube voltages of a ``# kVp:`` line's ``text`` (None for "not stated"); anything else is refused."""
    said = text.strip().rstrip(".").strip()
    said = re.sub(r"\s*\([^()]*\)$", "", said).strip()   # a trailing remark: "# kVp: 135 (Canon)" (review c, R1)
    if said.lower() in _NOT_STATED:
        return None
    if re.search(r"\d\s*[-\u2013]\s*\d", said):   # "80-140" (review c of audit 33, R4)
        raise CalibrationError(f"{where}: {said!r} is a range, and a range is not a tube voltage: list the voltages "
                               f"the curve was validated at, '# kVp: 80, 140' ({_KVP_FORM})")
    toks = [t for t in re.split(r"[\s,;/]+", said) if t and t.lower() not in ("kv", "kvp", "and")]
    vals = []
    for t in toks:
        try:
            v = float(t.lower().removesuffix("kvp").removesuffix("kv"))
        except ValueError:
            v = float("nan")
        if not KVP_RANGE_KV[0] <= v <= KVP_RANGE_KV[1]:
            raise CalibrationError(
                f"{where}: the tube voltage {t!r} is not one in {KVP_RANGE_KV[0]:g}-{KVP_RANGE_KV[1]:g} kVp; state "
                f"the kVp the curve was measured at as {_KVP_FORM}")
        vals.append(v)
    if not vals:
        raise CalibrationError(f"{where}: the line states no tube voltage; write {_KVP_FORM}")
    return tuple(sorted(set(vals)))


def stated_kvp(path: str | Path) -> tuple[bool, tuple[float, ...] | None, str]:
    """(whether the file has a ``# kVp:`` comment line, its tube voltages or None for "not stated", "path line n").
    A file that states it twice is refused (state it once); a comment may be in any encoding, and the file may start
    with a byte-order mark.  ``# kVp 120``, ``# kV: 120`` and ``# tube voltage: 120 kVp`` are read as ``# kVp: 120``;
    with no such line, any other comment naming a tube voltage (``# kV-dependent``, ``# measured at 80 kVp``) is refused
    with its file and line, not passed over as "not stated" (review a of audit 33, R3); beside one, only a comment whose
    kV number is not the line's is refused, naming both lines, and a file name in a comment (``HLUT_120kVp.txt``) is no
    tube voltage (review c of audit 33, R1).  Only whole ``#`` comment lines are read."""
    found: list[tuple[int, tuple[float, ...] | None]] = []
    naming: list[tuple[int, str, str]] = []   # other comments naming a tube voltage: (line, the comment, its words)
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc}") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.lstrip("\ufeff").translate(_WIDE)   # a byte-order mark (Excel's "CSV UTF-8", Notepad)
        if not line.lstrip().startswith("#"):
            continue
        m = _KVP_LINE.match(line)
        if m:
            found.append((lineno, _values(m.group(1), f"{path} line {lineno}")))
        elif _KVP_WORD.search(words := _FILE_NAME.sub(" ", line)):
            naming.append((lineno, line.strip(), words))
    if len(found) > 1:
        raise CalibrationError(f"{path}: lines {found[0][0]} and {found[1][0]} both state the tube voltage (# kVp:); "
                               "state it once")
    if not found:
        if naming:
            lineno, comment, _ = naming[0]
            raise CalibrationError(
                f"{path} line {lineno}: the comment {comment!r} names a tube voltage but is not a line mcproton "
                f"reads as one, so the calibration would be taken as stating none; state the kVp the curve was "
                f"measured at on a line of its own as {_KVP_FORM}, and reword the comment without 'kV'/'kVp'")
        return False, None, ""
    (at, kvp), where = found[0], f"{path} line {found[0][0]}"
    for lineno, comment, words in naming:   # beside a kVp line: refused only where it names another voltage
        named = [float(a or b) for a, b in _KV_NUMBER.findall(words)]
        other = [v for v in named if kvp is None or all(abs(v - k) > KVP_MATCH_TOLERANCE_KV for k in kvp)]
        if other:
            raise CalibrationError(
                f"{path}: line {lineno}, {comment!r}, names {other[0]:g} kV, and line {at} states the curve's tube "
                f"voltage as {listed_kvp(kvp)}: they conflict; correct whichever is wrong (the '# kVp:' line is the "
                f"one mcproton reads, {_KVP_FORM})")
    return True, kvp, where


def calibration_kvp(files: Iterable[str | Path]) -> tuple[tuple[float, ...] | None, str]:
    """(the tube voltages, where stated) of a calibration read from ``files`` (its tables): the ``# kVp:`` line of
    any of them; two tables that state different voltages are refused."""
    said = [(kvp, where) for f in files for has, kvp, where in [stated_kvp(f)] if has]
    if len({kvp for kvp, _ in said}) > 1:
        (a, wa), (b, wb) = said[0], next(s for s in said if s[0] != said[0][0])
        raise CalibrationError(f"the calibration's tables state different tube voltages: {listed_kvp(a)} ({wa}) and "
                               f"{listed_kvp(b)} ({wb}); state the one the curve was measured at, in one of them")
    if said:
        return said[0]
    return None, "not stated (no '# kVp:' line in its tables)"


def listed_kvp(kvp: Sequence[float] | None) -> str:
    """Tube voltages as said: "120 kVp", "80/120 kVp", or "not stated" (None)."""
    return "not stated" if kvp is None else "/".join(f"{v:g}" for v in kvp) + " kVp"


def kvp_comparison(acquisition: dict | None, kvp: Sequence[float] | None, stated_in: str = "") -> dict[str, Any]:
    """The CT's tube voltage (``acquisition["KVP"]``) against the calibration's (``kvp``): {"ct_kvp",
    "calibration_kvp" (a list, or None where not stated), "calibration_kvp_stated_in", "match" (True, False, or None
    where either is unknown)}."""
    ct = (acquisition or {}).get("KVP")
    each = list((acquisition or {}).get("KVP_values") or ([] if ct is None else [ct]))   # slices that differ: each
    match = None
    if each and kvp is not None:
        match = all(any(abs(float(c) - v) <= KVP_MATCH_TOLERANCE_KV for v in kvp) for c in each)
    return {"ct_kvp": ct, "calibration_kvp": None if kvp is None else list(kvp),
            "calibration_kvp_stated_in": stated_in, "match": match,
            **({"ct_kvp_values": each} if len(each) > 1 else {})}


def _ct_listed(cmp: dict) -> str:
    """The CT's tube voltage(s) of a comparison: "80", or "80/120" where its slices differ."""
    return "/".join(f"{v:g}" for v in cmp.get("ct_kvp_values") or [cmp["ct_kvp"]])


def kvp_mismatch_text(cmp: dict | None) -> str:
    """What a check's verdict says beside PASS or FAIL where the CT's tube voltage is not the calibration's ("" where
    it is, or either is unknown): "CT at 80 kVp, HU calibration stated for 120 kVp"."""
    if not cmp or cmp.get("match") is not False:
        return ""
    return f"CT at {_ct_listed(cmp)} kVp, HU calibration stated for {listed_kvp(cmp['calibration_kvp'])}"


def kvp_warning(cmp: dict, where: str, name: str, key: str) -> str:
    """The warning of a CT whose tube voltage is not the calibration's (``cmp``: :func:`kvp_comparison`, match
    False): both values and what to do; it starts with :func:`kvp_mismatch_text`."""
    ct = _ct_listed(cmp)
    return (f"{kvp_mismatch_text(cmp)}: the CT ({where}) was acquired at {ct} kVp and the HU calibration {name} "
            f"states it was measured at {listed_kvp(cmp['calibration_kvp'])} ({cmp.get('calibration_kvp_stated_in')}). "
            f"Bone's CT number depends on the tube voltage (it rises as the voltage falls), so this curve gives the "
            f"scan's bone the wrong density and the ranges through bone are off; give the clinic's curve for this "
            f"scanner at {ct} kVp as {key} (its table stating '# kVp: {ct}'), or add {ct} to the curve's '# kVp:' "
            f"line if the clinic validated it at that voltage")


def warn_kvp_mismatch(ct: Any, kvp: Sequence[float] | None, stated_in: str, where: str, name: str,
                      key: str) -> dict[str, Any]:
    """:func:`kvp_comparison` of ``ct``'s acquisition and a calibration's tube voltages, warned of (a
    :class:`~mcproton.McprotonWarning`, :func:`kvp_warning`) where they differ; returned."""
    cmp = kvp_comparison(getattr(ct, "acquisition", None), kvp, stated_in)
    if cmp["match"] is False:
        warn(kvp_warning(cmp, where, name, key), McprotonWarning)
    return cmp


def kvp_not_stated_note(cmp: dict | None, name: str, key: str) -> str:
    """``mcproton check``'s note of a CT acquired below :data:`LOW_KVP_BELOW_KV` read with a calibration that states
    no tube voltage ("" otherwise): the pairing a generic curve gets most wrong, said once in the check's notes
    (``mcproton run`` says nothing of it: a calibration without a stated kVp is the common case)."""
    if not cmp or cmp.get("calibration_kvp") is not None or cmp.get("ct_kvp") is None \
            or cmp["ct_kvp"] >= LOW_KVP_BELOW_KV:
        return ""
    return (f"the CT was acquired at {cmp['ct_kvp']:g} kVp (a low tube voltage, as for a child) and the HU calibration "
            f"{name} states no tube voltage, so the check cannot tell whether it is this protocol's curve (one "
            f"measured at 120 kVp gives such a scan's bone too much density); give the clinic's curve for this "
            f"protocol as {key}, with a '# kVp: {cmp['ct_kvp']:g}' line in its table, and it is compared")

"""``mcproton check``'s scan of a patient folder leaves out mcproton's own temporary files and folders (review 2a of
2026-12-07, R6).

A CT series writer killed with SIGKILL (``mcproton phantom``, ``mcproton demo``, ``write_ct_series`` into
``patient/ct``) leaves its unfinished series in a hidden ``.mcp-<tag>-*.tmp/`` folder beside ``ct/`` (or inside an
existing ``ct/``).  ``mcproton run`` never reads it (the CT reader skips hidden entries and does not recurse), but
the check's folder walk read every folder, hidden ones included, and counted its partial slices as CT files (661 of
a 631-slice phantom).  They are now skipped, and the pairing notes name them.
"""
from __future__ import annotations

import numpy as np

from mcproton._check.inputs import _scan, discover, walk_files
from mcproton._io.atomic import TEMP_PREFIX, name_tag
from mcproton.dicom import write_ct_series


def test_the_check_s_scan_skips_an_unfinished_series_folder_and_names_it(tmp_path):
    patient = tmp_path / "Q"
    write_ct_series(np.zeros((5, 4, 4)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), patient / "ct")
    left = patient / f"{TEMP_PREFIX}{name_tag('ct')}-abc123.tmp"   # another series, cut short
    write_ct_series(np.zeros((3, 4, 4)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), left)
    (patient / f"{TEMP_PREFIX}{name_tag('rtdose.dcm')}-xyz789.tmp").write_bytes(b"DICM half")   # a file's too
    assert len(discover(patient)["CT"]) == 5
    notes: list[str] = []
    found, _, not_dicom = _scan(patient, notes=notes)
    assert sorted(p.name for p in found["CT"]) == [f"CT_{k:04d}.dcm" for k in range(5)]
    assert not not_dicom, not_dicom
    said = [n for n in notes if "unfinished temporary" in n]
    assert len(said) == 2 and any(left.name in n and "temporary folder of mcproton" in n for n in said), notes
    assert all("not an input: remove it" in n for n in said), said
    assert [p.name for p in walk_files(patient)] == [f"CT_{k:04d}.dcm" for k in range(5)]

"""The sum of a plan's one-beam runs is the run of the plan, dataset by dataset (audit 26 interact, F4).

``plan.beams = [2]`` runs beam 2 of the plan on its stream, so the three one-beam runs of a 3-beam plan, loaded and
summed (``sum_results``), are the 3-beam run.  Before, only ``dose`` (and the RT Dose written from it) was: the
stored ``dose_to_water`` was float32 (a sum of float32 parts is not the float32 of the sum, by 1e-7), the run's
``uncertainty`` and ``let_d`` outside the body outline were of the dose as computed while the parts' doses there are
0 (the sum's: 0), and a saved sum lost ``body_mask`` and ``dose_raw``.  Now the body outline zeroes LET_d and the
uncertainty with the dose, ``dose_to_water`` is stored as float64, and a sum keeps its parts' common outline.

What the sum is claimed to be (README "Output (HDF5)"): bitwise the run in ``dose``, ``dose_to_water``, ``body_mask``,
``density``, ``material_index``, in ``dose_raw`` inside the outline, and in ``uncertainty`` and ``let_d`` outside it
(0); inside, the uncertainty and LET_d are recomputed from the parts' float32 ones (equal to float32 rounding), and
``dose_raw`` outside is the sum of the parts' float32 ones (the same).  Its RT Dose is the run's, pixel for pixel.

A 16^3 CT of 5 mm voxels (water block in air: the automatic outline leaves the air out, where the beams enter), a
3-beam plan of one spot a beam, 3000 primaries a beam, on the CPU, one thread."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 3-beam run (HDF5 and RT Dose) and the three one-beam runs (HDF5) of one config."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from dicom_factories import PHANTOM_PATIENT, make_plan, save

    from mcproton.cli import main
    from mcproton.dicom import write_ct_series

    tmp = tmp_path_factory.mktemp("beams")
    hu = np.full((16, 16, 16), -1000.0)
    hu[3:13, 4:12, 4:12] = 0.0   # water, 40-50 mm across; air around it
    write_ct_series(hu, (5.0, 5.0, 5.0), (-37.5, -37.5, -37.5), tmp / "ct")
    frame = pydicom.dcmread(sorted((tmp / "ct").glob("*.dcm"))[0]).FrameOfReferenceUID
    save(make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0} for g in (0.0, 90.0, 270.0)], frame_of_reference_uid=frame, n_fractions=5,
                   **PHANTOM_PATIENT), tmp / "RP.dcm")
    cfg = tmp / "run.toml"
    cfg.write_text('[run]\nprimaries = 3000\nbatch_size = 300\nseed = 11\nbackend = "cpu"\nthreads = 1\n'
                   '[phantom]\ntype = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                   '[output]\nplot = false\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(cfg), "--out", str(tmp / "all.h5"), "--rtdose", str(tmp / "all.dcm"), "--quiet"]) == 0
        for b in (1, 2, 3):
            assert main(["run", str(cfg), "--out", str(tmp / f"b{b}.h5"), "--set", f"plan.beams=[{b}]",
                         "--quiet"]) == 0
    return tmp


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}


def test_the_sum_of_the_beam_runs_is_the_run_of_the_plan_in_every_dataset(runs, tmp_path):
    from mcproton import DoseResult, McprotonRuntimeWarning, sum_results

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # loading: the runs' own warnings
        parts = [DoseResult.load(runs / f"b{b}.h5") for b in (1, 2, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)   # one plan, one outline, independent streams
        total = sum_results(parts)
    total.save(tmp_path / "sum.h5")
    run, summed = _datasets(runs / "all.h5"), _datasets(tmp_path / "sum.h5")
    body = run["body_mask"].astype(bool)
    assert body.any() and not body.all()                           # air outside the outline
    assert (run["dose_raw"][~body] > 0).any()                      # where the beams deposit energy in air
    assert run["dose_to_water"].dtype == np.float64
    assert set(summed) == set(run)                                 # body_mask and dose_raw kept (before: lost)
    for k in ("dose", "dose_to_water", "body_mask", "density", "material_index"):
        np.testing.assert_array_equal(summed[k], run[k], err_msg=k)
        assert summed[k].dtype == run[k].dtype, k
    np.testing.assert_array_equal(summed["dose_raw"][body], run["dose_raw"][body])
    np.testing.assert_allclose(summed["dose_raw"][~body], run["dose_raw"][~body], rtol=1e-6)
    for k in ("uncertainty", "let_d"):   # 0 outside the outline in both (before: the run's of dose_raw there)
        assert not run[k][~body].any() and not summed[k][~body].any(), k
        np.testing.assert_allclose(summed[k], run[k], rtol=1e-6, atol=0, err_msg=k)
    with h5py.File(tmp_path / "sum.h5") as s, h5py.File(runs / "all.h5") as r:
        assert s["body_mask"].attrs["outline"] == r["body_mask"].attrs["outline"]
        assert s["provenance"].attrs["body_outline"] == r["provenance"].attrs["body_outline"]
        assert (s.attrs["fractions"], s.attrs["fractions_planned"]) == (r.attrs["fractions"], 5)


def test_the_rt_dose_of_the_sum_is_the_run_s(runs, tmp_path):
    """A sum of the beams of one plan (equal fractions) still works, and its RT Dose is the 3-beam run's: the same
    pixels, scaling, summation type, fractions and plan reference."""
    from mcproton import DoseResult, sum_results, write_result_rtdose

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = sum_results([DoseResult.load(runs / f"b{b}.h5") for b in (1, 2, 3)])
        write_result_rtdose(total, tmp_path / "sum.dcm")
    a, b = pydicom.dcmread(tmp_path / "sum.dcm"), pydicom.dcmread(runs / "all.dcm")
    assert a.PixelData == b.PixelData
    for tag in ("DoseGridScaling", "DoseSummationType", "DoseType", "DoseUnits", "DoseComment", "ImagePositionPatient",
                "FrameOfReferenceUID", "StudyInstanceUID", "GridFrameOffsetVector"):
        assert a.get(tag) == b.get(tag), tag
    assert a.DoseSummationType == "PLAN"
    ref = a.ReferencedRTPlanSequence[0]
    assert ref.ReferencedSOPInstanceUID == b.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID


def test_a_sum_keeps_the_outline_its_parts_share_and_says_when_they_differ():
    """In memory (apply_body_outline): the sum's body_outline, body_mask and dose_raw (inside the mask the summed
    dose rounded to float32); parts of different outlines: summed with a warning, no outline kept, each part's
    named in provenance["body_outline"]."""
    from mcproton import McprotonRuntimeWarning, RunSettings, box_phantom, simulate, sum_results
    from mcproton.body import BodyOutline, apply_body_outline
    from mcproton.source import Beam

    g = box_phantom("water", (40.0, 40.0, 40.0), (4.0, 4.0, 4.0))
    g.origin_mm = (-18.0, -18.0, -18.0)
    s = RunSettings(primaries=300, batches=3, backend="cpu", threads=1, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [simulate(g, Beam.pencil(70.0, total_protons=1e9), s, beam_index=i, log=None) for i in range(3)]
    mask = np.zeros(g.shape_zyx, bool)
    mask[:, :, :5] = True   # the beam (along z, x = 0) half outside it
    raw = sum(p.dose_gy_zyx for p in parts)
    for p in parts:
        apply_body_outline(p, BodyOutline(mask, "test outline", "auto"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        total = sum_results(parts)
    assert total.body_outline.kind == "auto" and np.array_equal(total.body_outline.mask, mask)
    assert total.provenance["body_outline"] == "test outline"
    assert np.array_equal(total.extra_datasets["body_mask"][0], mask.astype(np.uint8))
    np.testing.assert_array_equal(total.dose_raw_gy_zyx[mask], total.dose_gy_zyx[mask].astype(np.float32))
    np.testing.assert_allclose(total.dose_raw_gy_zyx[~mask], raw[~mask], rtol=1e-6)
    assert (total.dose_raw_gy_zyx[~mask] > 0).any() and not total.dose_gy_zyx[~mask].any()
    other = np.array(mask)
    other[:, :, 4] = False
    apply_body_outline(parts[2], BodyOutline(other, "another outline", "auto"))
    with pytest.warns(McprotonRuntimeWarning, match=r"body outlines differ.*result 1: test outline; result 2: test "
                                                    r"outline; result 3: another outline"):
        mixed = sum_results(parts)
    assert mixed.provenance["body_outline"].startswith("differ: ")
    assert getattr(mixed, "body_outline", None) is None and not getattr(mixed, "extra_datasets", None)

"""Reading the wrong kind of mcproton file says what the file is and what to do (audit 26 h5schema, F5).  Before: a
checkpoint given as a result was "not an mcproton dose file ... give a file written by mcproton" (it is one), a
truncated file raised h5py's raw OSError, the phantom reader called a dose file "written by another version of
mcproton" and a checkpoint a KeyError, and the DVH reader returned {} for a checkpoint.  The files are an ``mcproton
run`` stopped by its time limit (its output and the checkpoint kept for --resume), a phantom file, and a truncated
copy."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from mcproton import DoseResult, box_phantom
from mcproton._io.hdf5 import DoseFileError
from mcproton._io.rtstruct import read_dvh_hdf5
from mcproton.cli import main
from mcproton.phantoms import read_phantom_hdf5, write_phantom_hdf5

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run"))
from run_helpers import write_cfg  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kinds")
    cfg = write_cfg(tmp / "run.toml", 2_000_000, time_limit_s=0.05)   # a batch (20,000 primaries) is longer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(cfg), "--out", str(tmp / "w.h5"), "--quiet"]) == 0
    assert (tmp / "w.ckpt.h5").is_file(), "the time-limited run keeps its checkpoint"
    data = (tmp / "w.h5").read_bytes()
    (tmp / "trunc.h5").write_bytes(data[: len(data) // 2])   # an interrupted copy
    write_phantom_hdf5(box_phantom("water", (20.0, 20.0, 20.0), (5.0, 5.0, 5.0)), tmp / "phantom.h5")
    return {k: tmp / f"{k}.h5" for k in ("w", "w.ckpt", "trunc", "phantom")}


def test_a_checkpoint_is_named_as_one_by_every_reader(files):
    ck = files["w.ckpt"]
    what = (rf"{ck} is the checkpoint of an mcproton run \(its --out: w\.h5, w\.hdf5 or w, in the same folder\).*not "
            r"a result; run the same mcproton run command with --resume")
    with pytest.raises(DoseFileError, match=what):
        DoseResult.load(ck)
    with pytest.raises(DoseFileError, match=what):
        read_dvh_hdf5(ck)
    with pytest.raises(ValueError, match=what):
        read_phantom_hdf5(ck)


def test_a_truncated_file_is_a_dose_file_error_saying_so(files):
    for read in (DoseResult.load, read_dvh_hdf5, read_phantom_hdf5):
        with pytest.raises(DoseFileError, match=r"trunc\.h5 \([0-9,]+ bytes\) is an HDF5 file that cannot be read: "
                                                r"truncated or damaged.*copy it again"):
            read(files["trunc"])


def test_a_dose_file_and_a_phantom_file_are_named_and_pointed_to_their_reader(files):
    with pytest.raises(ValueError, match=r"w\.h5 is an mcproton dose file \(format_version 'mcproton-dose/1'\), not "
                                         r"a phantom file: read it with mcproton\.DoseResult\.load"):
        read_phantom_hdf5(files["w"])
    with pytest.raises(DoseFileError, match=r"phantom\.h5 is an mcproton phantom file .*not a dose file: read it "
                                            r"with mcproton\.phantoms\.read_phantom_hdf5"):
        DoseResult.load(files["phantom"])
    with pytest.raises(DoseFileError, match="is an mcproton phantom file"):
        read_dvh_hdf5(files["phantom"])
    # and the right readers still read them
    assert read_dvh_hdf5(files["w"]) == {}   # a water box's run: no structures
    assert read_phantom_hdf5(files["phantom"]).shape_zyx == (4, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert DoseResult.load(files["w"]).primaries > 0

"""A checkpoint is written without a second copy of its sums in memory (audit 25 memory: it was built whole in a
BytesIO, 48 bytes per voxel of every beam's sums, the peak of a plan's run), its sums come back bitwise, and a write
that fails part-way (the file size limit: EFBIG, as a full disk gives ENOSPC) leaves the earlier checkpoint as it
was, with no temporary file and no crash of the HDF5 library (which never writes to the file itself)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(r"""
    import json, os, resource, signal, sys
    import numpy as np
    from mcproton._run import checkpoint as ck
    from mcproton.run import Accumulator

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    folder, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(1)
    states = []
    for b in range(2):   # two beams, every voxel with dose: whole arrays in the file
        acc = Accumulator(n)
        for k in acc.sums:
            acc.sums[k][:] = rng.integers(1, 2**40, n)
        acc.sum_x[:], acc.sum_x2[:] = rng.random(n), rng.random(n)
        acc.batches, acc.primaries = 4, 40
        states.append(ck.BeamState(acc, next_history=40))
    states[0].compact()   # a finished beam: its sums kept as the checkpoint stores them
    fp = {"n_beams": "2"}
    path = os.path.join(folder, "x.ckpt.h5")
    base = rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    ck.save_checkpoint(path, fp, states)
    extra = hwm() - base
    size = os.path.getsize(path)
    back = ck.load_checkpoint(path, fp, n)
    same = all(np.array_equal(back[1].acc.sums[k], states[1].acc.sums[k]) for k in states[1].acc.sums) and \
        np.array_equal(back[1].acc.sum_x2, states[1].acc.sum_x2) and \
        np.array_equal(back[0].acc.sum_x, np.asarray(states[0].stored["sum_x"]))
    del back
    before = open(path, "rb").read()
    states[1].acc.batches = 5
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 3, resource.RLIM_INFINITY))
    try:
        ck.save_checkpoint(path, fp, states)
        failed = ""
    except OSError as e:
        failed = f"{type(e).__name__}: {e}"
    kept = open(path, "rb").read() == before
    left = [p for p in os.listdir(folder) if p.endswith(".tmp")]
    print(json.dumps({"extra": extra, "size": size, "same": bool(same), "failed": failed, "kept": kept,
                      "left": left}))
""")


def test_checkpoint_needs_no_second_copy_of_its_sums_and_a_failed_write_keeps_the_last(tmp_path):
    n = 1 << 21   # 2 M voxels: 96 MB of sums per beam, 192 MB in the file
    p = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(n)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["size"] > 2 * 48 * n and got["same"]
    # before (the file built in memory first): the whole file's size more (192 MB, 100 %); now its metadata and
    # buffers: 12.9 MB (6 %) in every run here, serial or 4 at once, but 31 MB (15 %) once in a clean-clone CI under
    # pytest-xdist (2026-12-07, not reproduced: 24 runs here gave 12.9 MB).  The bound, a quarter of the file, keeps
    # the second copy it tests for 4 x beyond it and that outlier 1.6 x within it
    assert got["extra"] < 0.25 * got["size"], got
    assert got["failed"] and got["kept"] and not got["left"], got

"""A slab_ct run with phantom.ct_dir can be resumed (the long-runs audit, 2026-12-05, F3): its ct_dir, written by the
interrupted run, used to be refused as "not empty", so the advised ``--resume`` always failed."""
from __future__ import annotations

from make_bad_input_table import SLAB_CT

from mcproton.cli import main


def test_slab_ct_run_with_ct_dir_resumes_and_other_folders_are_still_refused(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text(SLAB_CT.replace("@EXTRA", 'ct_dir = "slab_ct"').replace("primaries = 1000", "primaries = 4000"))
    out = tmp_path / "o.h5"
    argv = ["run", str(cfg), "--out", str(out), "--quiet", "--set", "run.batch_size=500"]
    # stopped early (as by a signal or the time limit): the checkpoint is kept and the message advises --resume
    assert main(argv + ["--set", "run.time_limit_s=1e-9"]) == 0
    err = capsys.readouterr().err
    assert "--resume" in err and (tmp_path / "o.ckpt.h5").exists() and any((tmp_path / "slab_ct").iterdir())
    assert main(argv + ["--resume", "--set", "run.time_limit_s=1000"]) == 0
    cap = capsys.readouterr()
    assert "already holds this slab phantom's CT" in cap.err and '"primaries": 4000' in cap.out
    assert not (tmp_path / "o.ckpt.h5").exists()
    # --check-config reads it the same way, writing nothing
    assert main(["run", str(cfg), "--check-config"]) == 0
    capsys.readouterr()
    # another phantom (a thinner slab) in that folder is still refused, and nothing there is touched
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "slab_ct").iterdir())
    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace("thickness_mm = 100.0", "thickness_mm = 80.0"))
    assert main(["run", str(other), "--out", str(tmp_path / "p.h5"), "--quiet"]) == 2
    assert "does not hold this phantom's slab CT" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "slab_ct").iterdir()) == before

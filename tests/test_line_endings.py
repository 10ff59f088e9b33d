"""A checkout with Git for Windows' defaults (core.autocrlf=true) has the same bytes as one on Linux: the build's
hashes (physics_files_sha256, code_sha256: mcproton/_build.py) are of the files' bytes, and such a clone's `pip
install .` recorded other builds than the same commit on Linux, so that sum_results, --resume and check
--skip-checked refused bitwise-identical doses as "another physics" (the portability audit 27, F10).  .gitattributes
keeps text files LF on checkout and data unconverted."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=120).stdout


@pytest.fixture(scope="module")
def tracked() -> list[tuple[str, str, str, str]]:
    """(index eol, work-tree eol, attributes, path) of every tracked file (``git ls-files --eol``)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist or an installed copy): nothing is checked out")
    rows = []
    for line in _git("ls-files", "--eol").splitlines():
        info, path = line.split("\t", 1)
        index, work, attr = info.split(None, 2)
        rows.append((index, work, attr.strip(), path))
    return rows


def test_every_tracked_file_is_checked_out_as_stored(tracked):
    """Each file is data (never converted: -text) or text checked out with LF (eol=lf), whatever core.autocrlf."""
    loose = [f"{path} ({attr})" for _, _, attr, path in tracked if "-text" not in attr and "eol=lf" not in attr]
    assert not loose, f"files a Windows checkout may convert to CRLF (.gitattributes): {loose[:20]}"


def test_the_hashed_data_is_never_converted(tracked):
    """The physics data (mcproton/data), the phantoms' and the regression references are -text: their bytes as
    committed, the CSVs that hold CRLF (or both) included."""
    data = [(attr, path) for _, _, attr, path in tracked
            if path.startswith(("mcproton/data/", "phantoms/data/", "tests/regression/", "tests/data/"))]
    assert data and all("-text" in attr for attr, _ in data), [p for a, p in data if "-text" not in a][:20]


def test_a_checkout_with_autocrlf_has_no_crlf_that_the_repository_does_not(tracked, tmp_path):
    """A clone of HEAD with core.autocrlf=true (Git for Windows' default): no file has CRLF in the work tree where
    the repository stores LF.  Before .gitattributes, 586 files did."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", "-c", "core.autocrlf=true", str(ROOT), str(clone)], check=True,
                   capture_output=True, timeout=300)
    converted = [line.split("\t", 1)[1] for line in _git("ls-files", "--eol", cwd=clone).splitlines()
                 if line.startswith("i/lf") and line.split()[1] in ("w/crlf", "w/mixed")]
    assert not converted, f"{len(converted)} files converted to CRLF on a Windows-style checkout: {converted[:10]}"


def test_gitattributes_names_the_test_that_checks_it():
    """The test that .gitattributes' comment names is there and checks it (review c of audit 27, R5: it named
    tests/test_repo_layout.py, which does not look at attributes)."""
    import re

    attributes = ROOT / ".gitattributes"
    if not attributes.is_file():
        pytest.skip("no .gitattributes here (an sdist or an installed copy)")
    named = re.findall(r"tests/[\w/]+\.py", attributes.read_text(encoding="utf-8"))
    assert named, "the comment of .gitattributes names no test"
    for path in named:
        assert (ROOT / path).is_file(), path
        assert "ls-files\", \"--eol" in (ROOT / path).read_text(encoding="utf-8"), f"{path} does not check attributes"

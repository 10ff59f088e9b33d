"""Helpers that make slow tests cheaper without changing what they test, importable by name from any test file
(``from speedups import ...``): a ``from conftest import`` finds whichever conftest.py was imported first under
that name (tests/run/conftest.py in the full suite), not tests/conftest.py."""
from __future__ import annotations

def volumes_at_1mm_prelude(keys, path) -> str:
    """Lines that give a fresh interpreter (a demo or a phantom command run as a script) the label volumes at 1 mm
    of the phantoms ``keys`` ((age_years, sex, region), as mcproton.phantoms.coverage._volumes_at_reference takes
    them), computed once in this process (that function, lru-cached) and pickled to ``path``; any other key is
    computed as before.  A phantom coarser than 2 mm warns of the labels whose volume its voxels change by more than
    25 % (tests/phantoms/test_phantom_coverage.py), for which it makes the same phantom at 1 mm: 2-7 s on 2 cores in
    each fresh interpreter.  The same values, so the same warning."""
    import pickle

    from mcproton.phantoms import coverage

    path.write_bytes(pickle.dumps({key: coverage._volumes_at_reference(*key) for key in keys}))
    return ("import pickle\nimport mcproton.phantoms.coverage as _cov\n\n"
            f"_vols, _at_1mm = pickle.loads(open({str(path)!r}, 'rb').read()), _cov._volumes_at_reference\n"
            "_cov._volumes_at_reference = lambda *key: _vols[key] if key in _vols else _at_1mm(*key)\n")


#: a white 1 x 1 PNG, base64: the image of every figure of a report drawn with :func:`report_figures_blank`
BLANK_PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC"


def blank_report_figures(mp, keep=()):
    """What :func:`report_figures_blank` does, with the MonkeyPatch ``mp`` (e.g. ``monkeypatch.context()``, for a
    part of a test): every figure of a check's report a blank 1 x 1 PNG, except those named in ``keep``, built and
    encoded as before (their names, and the others', from the report's own figure_builders)."""
    from mcproton._check import report

    names_of, png = report.figure_builders, report._png

    def blank_builders(res, names=None):
        return {name: (build if name in keep else (lambda: None)) for name, build in names_of(res, names).items()}

    mp.setattr(report, "figure_builders", blank_builders)
    mp.setattr(report, "_png", lambda fig, glyphs=None: BLANK_PNG_BASE64 if fig is None else png(fig, glyphs))

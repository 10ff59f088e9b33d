"""CSV tables as users write them (a beam model's table, commissioning measurements): ``#`` comment lines, the
header on the first other line, ',' as the delimiter; what a spreadsheet's export gets wrong is named."""
from __future__ import annotations

import csv
import io
from pathlib import Path


def read_csv_table(path: str | Path, error: type[Exception], label: str | None = None
                   ) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of the CSV ``path`` (stripped text, keyed by the stripped header names) and the line number of each.
    ``error`` is raised, naming ``label`` (default: the path), for a file that cannot be read or has no data rows,
    a header separated by ';' (a locale with decimal commas) or by tabs, a header that repeats a name (a dictionary
    row keeps the last of two: x read from y's column), or a row with more values than the header."""
    p = Path(path)
    label = label or str(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label}: cannot be read ({exc})") from exc
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if len(numbered) < 2:
        raise error(f"{label}: no data rows (need a header line and at least one row)")
    header = numbered[0][1]
    if ";" in header and "," not in header:
        raise error(f"{label}: the columns are separated by ';' (line {numbered[0][0]}); the delimiter must be ',' "
                    "with '.' as the decimal point (export the table as CSV with comma separators)")
    if "\t" in header and "," not in header:
        raise error(f"{label}: the columns are separated by tabs (line {numbered[0][0]}); the delimiter must be ',' "
                    "with '.' as the decimal point (export the table as CSV with comma separators)")
    names = [h.strip() for h in next(csv.reader([header]))]
    for k, h in enumerate(names):
        if h in names[:k]:
            raise error(f"{label}: the header (line {numbered[0][0]}) names {h!r} twice (columns "
                        f"{names.index(h) + 1} and {k + 1}); each column needs its own name, as a name says which "
                        "column is read: rename one (e.g. sigma_x_mm and sigma_y_mm)")
    reader = csv.DictReader(io.StringIO("\n".join(ln for _, ln in numbered)))
    rows = []
    for (lineno, _), r in zip(numbered[1:], reader):
        if None in r:
            raise error(f"{label}: line {lineno} has more values than the header has columns "
                        f"({len(reader.fieldnames or [])}); the delimiter must be ',' (and no ',' as decimal point)")
        rows.append({(k or "").strip(): (v or "").strip() for k, v in r.items()})
    return rows, [lineno for lineno, _ in numbered[1:]]

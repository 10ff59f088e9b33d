"""CSV tables as users write them (a beam model's table, commissioning measurements, a HU calibration's composition
table): ``#`` comment lines, the header on the first other line, ',' as the delimiter, UTF-8; what a spreadsheet's
export gets wrong is named."""
from __future__ import annotations

import csv
from pathlib import Path

from .text_file import TABLE_ADVICE, decode_utf8


def read_csv_table(path: str | Path, error: type[Exception], label: str | None = None
                   ) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of the CSV ``path`` (stripped text, keyed by the stripped header names) and the line number of each.
    ``error`` is raised, naming ``label`` (default: the path), for a file that cannot be read, is not UTF-8 (naming
    the line and the byte; a '#' comment line may hold any bytes: it is not read) or is UTF-16, or has no data rows,
    a header separated by ';' (a locale with decimal commas) or by tabs, a header that repeats a name (a dictionary
    row keeps the last of two: x read from y's column), or a row with more or fewer values than the header has
    columns (an empty value is written as nothing between two commas: a row that leaves out its last columns would
    let one decimal comma move the values after it one column over, unseen)."""
    p = Path(path)
    label = label or str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"{label}: cannot be read ({exc})") from exc
    text = decode_utf8(raw, label, error, advice=TABLE_ADVICE, comments="line")
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if len(numbered) < 2:
        raise error(f"{label}: no data rows (need a header line and at least one row)")
    head_line, header = numbered[0]
    if ";" in header and "," not in header:
        raise error(f"{label}: the columns are separated by ';' (line {head_line}); the delimiter must be ',' "
                    "with '.' as the decimal point (export the table as CSV with comma separators)")
    if "\t" in header and "," not in header:
        raise error(f"{label}: the columns are separated by tabs (line {head_line}); the delimiter must be ',' "
                    "with '.' as the decimal point (export the table as CSV with comma separators)")
    names = [h.strip() for h in next(csv.reader([header]))]
    for k, h in enumerate(names):
        if h in names[:k]:
            raise error(f"{label}: the header (line {head_line}) names {h!r} twice (columns "
                        f"{names.index(h) + 1} and {k + 1}); each column needs its own name, as a name says which "
                        "column is read: rename one (e.g. sigma_x_mm and sigma_y_mm)")
    rows = []
    for lineno, ln in numbered[1:]:
        values = next(csv.reader([ln]))
        if len(values) > len(names):
            raise error(f"{label}: line {lineno} has more values than the header has columns "
                        f"({len(names)}); the delimiter must be ',' (and no ',' as decimal point)")
        if len(values) < len(names):
            raise error(f"{label}: line {lineno} has {len(values)} values, fewer than the header (line {head_line}) "
                        f"has columns ({len(names)}; {', '.join(repr(n) for n in names[len(values):][:3])}"
                        f"{', ...' if len(names) - len(values) > 3 else ''} missing); every row gives every column, "
                        "an empty one as nothing between two commas (a trailing ',' for the last): with ',' as the "
                        "delimiter, a decimal comma (0,5) in a short row moves the values after it one column over")
        rows.append({k: v.strip() for k, v in zip(names, values)})
    return rows, [lineno for lineno, _ in numbered[1:]]

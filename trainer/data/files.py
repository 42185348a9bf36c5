"""The user's own files: a CSV table of numbers, or an .npz archive of arrays."""

from __future__ import annotations

import csv
import logging
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np

from trainer.data.base import Source, resolve_task
from trainer.runtime.errors import DataError

log = logging.getLogger(__name__)


def readable(path: str | None, example: str) -> Path:
    """`path` as an existing file, or a DataError that says how to give one."""
    if not path:
        raise DataError(f"data.path is not set; give the file, e.g. {example}")
    file = Path(path).expanduser()
    if not file.exists():
        raise DataError(f"data.path={path}: no such file (looked in {file.resolve().parent})")
    if not file.is_file():
        raise DataError(f"data.path={path} is not a file")
    return file


DELIMITERS = ",;\t|"  # what data.delimiter=auto looks for


def _find_bad_cell(file: Path, delimiter: str, columns: list[str], skip: int) -> str:
    """Where the CSV first stops being a table of finite numbers: line, column, value."""
    with file.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        for _ in range(skip):
            next(reader)
        for row in reader:
            if not row:
                continue
            where = f"{file}, line {reader.line_num}"
            if len(row) != len(columns):
                return f"{where} has {len(row)} cells but the header has {len(columns)} columns"
            for name, cell in zip(columns, row, strict=True):
                try:
                    value = float(cell)
                except ValueError:
                    other = [d for d in DELIMITERS if d in cell and d != delimiter]
                    hint = (f" (the cells seem to be separated by {other[0]!r}, not {delimiter!r}: "
                            f"set data.delimiter='{other[0]}')" if other else "")
                    return f"{where}, column {name!r}: {cell!r} is not a number{hint}"
                if not math.isfinite(value):
                    return f"{where}, column {name!r}: {cell.strip()} is not a finite number"
    return f"{file}: not a table of numbers"


def _numbers(row: list[str]) -> bool:
    """Whether every cell of `row` reads as a number (so the row is data, not a header)."""
    try:
        return bool([float(c) for c in row])
    except ValueError:
        return False


def _layout(file: Path, delimiter: str, header: str | bool) -> tuple[str, list[str] | None]:
    """(delimiter, header cells or None) of the CSV: `auto` sniffs the delimiter among `DELIMITERS`
    and reads a first row of numbers as data (a file without a header row), saying so in the log."""
    with file.open(newline="", encoding="utf-8-sig") as f:
        sample = f.read(64 * 1024)
    if delimiter == "auto":
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
        except csv.Error:  # one column, or nothing to tell by: the usual comma
            delimiter = ","
    first = next(csv.reader(sample.splitlines(), delimiter=delimiter), None)
    if header == "auto":
        header = not _numbers(first or [])
        if not header:
            log.info("%s has no header row (its first row is numbers): reading it as data, columns "
                     "numbered 0..%d; set data.header=true if it is a header", file, len(first) - 1)
    return delimiter, ([c.strip() for c in first] if header and first else None)


def load_csv(path: str | None = None, target: str | int | None = None, task: str = "auto",
             delimiter: str = "auto", header: str | bool = "auto") -> Source:
    """A CSV table of numbers, with a header row or without (`header`: auto|true|false); `target`
    names the label column (a header name, or a column number without a header; default: the last)."""
    file = readable(path, "data=csv data.path=table.csv data.target=label")
    try:
        delimiter, columns = _layout(file, delimiter, header)
        skip = 1 if columns is not None else 0
        with warnings.catch_warnings():  # an empty table gets our own message below
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(file, delimiter=delimiter, skiprows=skip, ndmin=2, comments=None,
                                quotechar='"', encoding="utf-8-sig", dtype=np.float64)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"data.path={path}: cannot read the file ({exc})") from exc
    except ValueError as exc:
        numbered = columns or [str(i) for i in range(len(_first_row(file, delimiter)))]
        raise DataError(f"{_find_bad_cell(file, delimiter, numbered, skip)}; the table must hold only "
                        "numbers (encode categories as numbers first)") from exc
    if columns is None:
        columns = [str(i) for i in range(values.shape[1])] if values.size else []
    if not columns or values.size == 0:
        raise DataError(f"{file} has no data rows; it needs one row per sample (after its header row)")
    if values.shape[1] != len(columns):
        raise DataError(f"{_find_bad_cell(file, delimiter, columns, skip)}; every row needs one cell per "
                        "column")
    if target is None:
        t = len(columns) - 1
    elif str(target) in columns:
        t = columns.index(str(target))
    else:
        raise DataError(f"data.target={target!r} is not a column of {file}; its columns are {columns}")
    if len(columns) < 2:
        raise DataError(f"{file} has only the target column {columns[t]!r}; it needs feature columns too")
    if not np.isfinite(values).all():
        raise DataError(f"{_find_bad_cell(file, delimiter, columns, skip)}; remove those rows or fill "
                        "them in")
    y, task = resolve_task(values[:, t], task, str(file), name=f"column {columns[t]!r}", text=True)
    return Source(x=np.delete(values, t, axis=1).astype(np.float32), y=y, task=task)


def _first_row(file: Path, delimiter: str) -> list[str]:
    with file.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f, delimiter=delimiter), [])


def load_npz(path: str | None = None, task: str = "auto") -> Source:
    """Arrays `x` and `y` (and optionally `x_val`/`y_val`, `x_test`/`y_test`) saved with numpy.savez."""
    file = readable(path, "data=npz data.path=arrays.npz")
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{file} holds a single array; save x and y together with "
                            "numpy.savez(path, x=x, y=y)")
        with loaded as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"data.path={path}: cannot read it as an .npz archive of numeric arrays "
                        f"(save one with numpy.savez(path, x=x, y=y)): {exc}") from exc
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{file} needs arrays named 'x' and 'y' (saved with numpy.savez(path, x=x, y=y)); "
                        f"it has {sorted(arrays)}")
    for name, a in arrays.items():
        if a.dtype.kind not in "iubf":
            raise DataError(f"{file}: array {name!r} has dtype {a.dtype}; it must be numeric")
    y, task = resolve_task(arrays["y"], task, str(file))
    parts = {"x": arrays["x"], "y": y}
    for split in ("_val", "_test"):
        if "x" + split in arrays:
            parts["x" + split] = arrays["x" + split]
        if "y" + split in arrays:
            parts["y" + split], _ = resolve_task(arrays["y" + split], task, str(file), "y" + split)
    for name in [n for n in parts if n.startswith("x")]:
        x = parts[name]
        if x.ndim == 0:
            raise DataError(f"{file}: {name} is a single number; it must hold one row per sample")
        parts[name] = (x if x.ndim == 2 else x.reshape(len(x), -1)).astype(np.float32)  # images: flatten
    return Source(**parts, task=task)

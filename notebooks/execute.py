"""Run a notebook top to bottom and save it with its outputs, as the committed notebooks were made:

    python notebooks/execute.py notebooks/tour.ipynb            # the real run, saved in place
    python notebooks/execute.py NOTEBOOK --small --out FILE --cwd DIR   # what the tests run

`--small` sets DIGITS_ZOO_NOTEBOOK_BUDGET=small, which the notebook reads to run every cell on a few
batches. The kernel works in `--cwd` (default: the notebook's folder), where the runs' `outputs/`
go. A cell that fails ends the run with one line naming the cell and its error, and nothing is saved.
Needs nbclient and ipykernel (the `notebook` and `dev` extras).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BUDGET_VARIABLE = "DIGITS_ZOO_NOTEBOOK_BUDGET"


def execute(notebook: Path, out: Path, cwd: Path, small: bool = False, timeout: int = 1800) -> None:
    """Run every cell of `notebook` in a fresh kernel and write the notebook with its outputs to `out`."""
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(notebook, as_version=4)
    os.environ[BUDGET_VARIABLE] = "small" if small else "full"  # the kernel inherits this process's environment
    NotebookClient(book, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    partial = out.with_name(f".{out.name}.partial")
    nbformat.write(book, partial)
    partial.replace(out)  # whole or not at all: a failed run keeps the earlier file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a notebook and save it with its outputs.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, help="where to save it (default: in place)")
    parser.add_argument("--cwd", type=Path, help="the kernel's working folder (default: the notebook's)")
    parser.add_argument("--small", action="store_true", help=f"{BUDGET_VARIABLE}=small: every cell on a few batches")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take (default 1800)")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        print(f"error: no such notebook: {args.notebook}", file=sys.stderr)
        return 2
    try:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError
    except ImportError as missing:
        print(f"error: {missing.name} is not installed; pip install -e \".[notebook]\"", file=sys.stderr)
        return 1
    try:
        execute(args.notebook, args.out or args.notebook, args.cwd or args.notebook.parent, args.small, args.timeout)
    except CellExecutionError as failed:
        print(f"error: {args.notebook}: a cell failed with {failed.ename}: {failed.evalue}", file=sys.stderr)
        return 1
    except CellTimeoutError:
        print(f"error: {args.notebook}: a cell ran longer than --timeout {args.timeout} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

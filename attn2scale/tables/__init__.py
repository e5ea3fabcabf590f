"""The reproduction tables: the papers' numbers beside ours, cell by cell
(``tools/reproduce_table.py``, ``attn2scale table``), and the built-in mini benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from .paper import Cell, Table, TableError, get_table, paper_tables
from .report import markdown, table_rows, write_outputs
from .runner import MissingInput, RunOptions, main_process, run_cells


def reproduce(names: List[str], opts: RunOptions) -> Dict[str, dict]:
    """Each named table (``all``: every one): results, Markdown and files ``OUT/<table>.md|csv|json``.
    Returns, per table, its text, rows and paths."""
    if names == ["all"]:
        names = list(paper_tables())
    tables = [get_table(n) for n in names]  # an unknown name fails before any work
    done: Dict[str, dict] = {}
    results: Dict[str, dict] = {}
    for table in tables:
        todo = [c for c in table.cells if c.config and c.config not in results]
        results.update(run_cells(todo, opts))
        rows = table_rows(table, results)
        text = markdown(table, rows)
        paths = write_outputs(Path(opts.out), table.name, text, rows) if main_process() else {}
        done[table.name] = {"text": text, "rows": rows, "paths": paths}
    return done


__all__ = ["Cell", "MissingInput", "RunOptions", "Table", "TableError", "get_table", "main_process", "paper_tables",
           "reproduce"]

"""The tables of both papers as data: which cells there are, the published number of each,
the metric it is, and the config (``attn2scale/configs``) that reproduces it.

The numbers live in ``paper_tables.yaml`` beside this module (facts, shipped with the
package); the merge grid's rows and columns are named once, here, and
``tools/make_configs.py`` writes the configs with the same names.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PAPER_FILE = Path(__file__).with_name("paper_tables.yaml")

# Columns of the merge tables: key -> (input pyramid, extra supervision, the paper's label).
SCALE_COLUMNS: Dict[str, Tuple[Tuple[float, ...], bool, str]] = {
    "s2": ((1.0, 0.5), False, "{1,.5}"),
    "s2_esupv": ((1.0, 0.5), True, "{1,.5}+E"),
    "s3": ((1.0, 0.75, 0.5), False, "{1,.75,.5}"),
    "s3_esupv": ((1.0, 0.75, 0.5), True, "{1,.75,.5}+E"),
}
# Rows of the merge tables: merge mode -> the paper's label.
MERGE_ROWS: Dict[str, str] = {"max": "max-pooling", "avg": "average-pooling", "attention": "attention"}
# What a cell's number is: a score of attn2scale.engine.metrics (percent), one class's IoU
# ("class_iou:NAME"), or, for the test server, the archive to submit.
METRICS = {"miou": "mIoU", "pixel_acc": "pixel accuracy", "archive": "submission archive"}


class TableError(ValueError):
    """An unknown table or a malformed table file, named."""


@dataclass(frozen=True)
class Cell:
    """One published number and how this project reproduces it."""

    table: str
    id: str  # unique in the table; the config's name under the table's config folder (+ ":metric")
    label: str
    metric: str
    paper: Optional[float]
    config: Optional[str]  # packaged config name; None: not reproduced (``note`` says why)
    crf: bool = False
    note: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    cells: Tuple[Cell, ...]

    @property
    def configs(self) -> List[str]:
        """The configs the table needs, once each, in table order."""
        return list(dict.fromkeys(c.config for c in self.cells if c.config))


def metric_label(metric: str) -> str:
    if metric.startswith("class_iou:"):
        return f"{metric.split(':', 1)[1]} IoU"
    return METRICS[metric]


def grid_cells(table: str, configs: str, metric: str, grid: Dict[str, List[Optional[float]]]) -> List[Cell]:
    """The 3 x 4 merge grid as cells ``<merge>_<column>``."""
    cells = []
    for merge, values in grid.items():
        if merge not in MERGE_ROWS or len(values) != len(SCALE_COLUMNS):
            raise TableError(f"{PAPER_FILE}: {table}: grid row {merge!r} must be one of {list(MERGE_ROWS)} "
                             f"with {len(SCALE_COLUMNS)} values, got {values!r}")
        for column, value in zip(SCALE_COLUMNS, values):
            cells.append(Cell(table, f"{merge}_{column}", f"{MERGE_ROWS[merge]} {SCALE_COLUMNS[column][2]}", metric,
                              value, f"{configs}/{merge}_{column}"))
    return cells


def _table(name: str, spec: dict) -> Table:
    known = {"title", "configs", "metric", "metrics", "cells", "grid", "crf", "not_reproduced", "notes"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise TableError(f"{PAPER_FILE}: {name}: unknown key {unknown[0]!r}")
    configs = spec["configs"]
    metrics = spec.get("metrics") or [spec["metric"]]
    crf, notes = set(spec.get("crf", ())), spec.get("notes", {})
    cells: List[Cell] = []
    for key, value in spec.get("cells", {}).items():
        base_label = key
        if isinstance(value, dict):  # {paper: number(s), label: the paper's name for the row}
            base_label, value = value["label"], value["paper"]
        values = value if isinstance(value, list) else [value]
        if len(values) != len(metrics):
            raise TableError(f"{PAPER_FILE}: {name}.{key}: {len(values)} values for the metrics {metrics}")
        for metric, v in zip(metrics, values):
            cid = key if len(metrics) == 1 else f"{key}:{metric}"
            label = base_label if len(metrics) == 1 else f"{base_label} ({metric_label(metric)})"
            cells.append(Cell(name, cid, label, metric, v, f"{configs}/{key}", key in crf, notes.get(key, "")))
    cells += grid_cells(name, configs, metrics[0], spec.get("grid", {}))
    for key, nr in spec.get("not_reproduced", {}).items():
        cells.append(Cell(name, key, nr["label"], metrics[0], nr["paper"], None, note=nr["why"]))
    return Table(name, spec["title"], tuple(cells))


@functools.lru_cache(maxsize=None)
def paper_tables() -> Dict[str, Table]:
    """Every table of both papers, by name, in the papers' order."""
    import yaml

    data = yaml.safe_load(PAPER_FILE.read_text(encoding="utf-8"))
    return {name: _table(name, spec) for name, spec in data.items()}


def get_table(name: str) -> Table:
    tables = paper_tables()
    if name not in tables:
        raise TableError(f"unknown table {name!r}; the tables are: {', '.join(tables)} (or 'all')")
    return tables[name]

"""A table's rows ``cell | paper | ours | Δ`` as Markdown, CSV and JSON; the CSV and JSON also
record where each number came from (config, checkpoint file, its sha256, its origin)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional

from ..fileio import write_text_atomic
from .paper import Table, metric_label
from .runner import cell_value, code_version


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table_rows(table: Table, results: Dict[str, dict]) -> List[dict]:
    """One row per cell: the paper's number, ours (or why there is none), Δ and provenance."""
    rows = []
    for cell in table.cells:
        res = results.get(cell.config) if cell.config else None
        ours: Optional[float] = None
        status = "ok"
        if cell.config is None:
            status = "not reproduced"
        elif res is None or "missing" in res:
            status = "missing"
        else:
            ours = cell_value(cell, res)
        rows.append({
            "table": table.name, "cell": cell.id, "label": cell.label, "metric": cell.metric,
            "paper": cell.paper, "ours": ours,
            "delta": None if ours is None or cell.paper is None else ours - cell.paper,
            "status": status, "config": cell.config, "note": cell.note,
            "missing": res.get("missing") if res else None,
            "archive": (res or {}).get("archive"),
            "checkpoint": (res or {}).get("checkpoint"),
            "images": (res or {}).get("images"),
            "code_version": (res or {}).get("code_version"),
        })
    return rows


def _ours_text(row: dict) -> str:
    if row["status"] == "not reproduced":
        return "not reproduced"
    if row["status"] == "missing":
        return "missing (see below)"
    if row["metric"] == "archive":
        return f"`{row['archive']['file']}`" if row.get("archive") else "—"
    return _fmt(row["ours"])


def markdown(table: Table, rows: List[dict], *, heading: Optional[str] = None, baseline: Optional[float] = None) -> str:
    """The table as Markdown; ``baseline`` adds a column ``vs baseline`` (the mini benchmark,
    whose paper column is empty)."""
    metric = {metric_label(c.metric) for c in table.cells}
    lines = [heading or f"### {table.name}: {table.title}", ""]
    head = "| cell | paper | ours | Δ |" + (" vs baseline |" if baseline is not None else "")
    lines += [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        delta = "" if r["delta"] is None else f"{r['delta']:+.2f}"
        line = f"| {r['label']} | {_fmt(r['paper'])} | {_ours_text(r)} | {delta} |"
        if baseline is not None:
            line += " — |" if r["ours"] is None else f" {r['ours'] - baseline:+.2f} |"
        lines.append(line)
    notes = [f"- {r['label']}: {r['note']}" for r in rows if r["note"]]
    missing = [f"- {r['missing']}" for r in rows if r["missing"]]
    if notes:
        lines += ["", "Notes:"] + notes
    if missing:
        lines += ["", "Missing inputs (each says which file is expected where and the command that makes it):"]
        lines += list(dict.fromkeys(missing))
    lines += ["", f"Numbers in percent ({', '.join(sorted(metric))}); code {code_version()}."]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("table", "cell", "label", "metric", "paper", "ours", "delta", "status", "config", "checkpoint_file",
              "checkpoint_sha256", "checkpoint_source", "archive", "images", "code_version", "note", "missing")


def to_csv(rows: List[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        ck = r.get("checkpoint") or {}
        w.writerow({**{k: r.get(k) for k in CSV_FIELDS if k in r},
                    "paper": "" if r["paper"] is None else f"{r['paper']:.2f}",
                    "ours": "" if r["ours"] is None else f"{r['ours']:.4f}",
                    "delta": "" if r["delta"] is None else f"{r['delta']:+.4f}",
                    "checkpoint_file": ck.get("file", ""), "checkpoint_sha256": ck.get("sha256", ""),
                    "checkpoint_source": ck.get("source", ""),
                    "archive": (r.get("archive") or {}).get("file", "")})
    return buf.getvalue()


def write_outputs(folder: Path, name: str, text: str, rows: List[dict]) -> Dict[str, Path]:
    """``FOLDER/NAME.md``, ``.csv`` and ``.json``, each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{name}.{ext}" for ext in ("md", "csv", "json")}
    write_text_atomic(paths["md"], text)
    write_text_atomic(paths["csv"], to_csv(rows))
    write_text_atomic(paths["json"], json.dumps({"code_version": code_version(), "rows": rows}, indent=1) + "\n")
    return paths

"""What every preparation shares: checking the source layout, running jobs in
worker processes with a progress bar, skipping outputs already written, and
the closing check of the lists against the dataset's facts."""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from ...fileio import symlink_atomic
from ..io import DataError, png_complete, read_list, read_names, write_list
from ..registry import DatasetInfo


class PrepareError(DataError):
    """The raw distribution is not what the preparation expects."""


def require(path: Path, what: str, flag: str = "--src") -> Path:
    """``path`` must exist; the error says which folder or file of ``flag`` is missing."""
    if not path.exists():
        raise PrepareError(f"{flag}: expected {what} at {path}, not found")
    return path


def read_ids(path: Path, what: str, flag: str = "--src") -> List[str]:
    """Image ids of a split file: one id per line (VOC ImageSets), or DeepLab list lines
    (the id is the image's file stem)."""
    require(path, what, flag)
    return read_names(path, what, allow_empty=True)


def lists_from_dir(lists_dir: Optional[str], split: str) -> Optional[List[str]]:
    """Ids of ``split`` from a folder of the authors' lists (SPLIT.txt or SPLIT_id.txt), or None."""
    if lists_dir is None:
        return None
    d = Path(lists_dir)
    for name in (f"{split}.txt", f"{split}_id.txt"):
        if (d / name).is_file():
            return read_ids(d / name, f"the {split} list", "--lists")
    raise PrepareError(f"--lists: expected {d / (split + '.txt')} or {d / (split + '_id.txt')}, not found")


def link_dir(src: Path, dst: Path) -> str:
    """Make ``dst`` show ``src``'s files: nothing when they are the same folder or ``dst``
    is already a real folder, else a symbolic link."""
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        return f"{dst}: same folder as the source"
    if dst.exists() and not dst.is_symlink():
        return f"{dst}: existing folder kept"
    symlink_atomic(src.resolve(), dst)
    return f"{dst} -> {src.resolve()}"


@dataclass
class Report:
    """What a preparation did: counts per list, files written and found done, notes."""

    dataset: str
    lists: Dict[str, int] = field(default_factory=dict)
    written: int = 0
    done_before: int = 0
    notes: List[str] = field(default_factory=list)
    differences: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        out = [f"{self.dataset}: {self.written} label files written, {self.done_before} already done"]
        out += [f"  list {k}: {v} images" for k, v in self.lists.items()]
        out += [f"  note: {n}" for n in self.notes]
        if self.differences:
            out.append("  COUNT DIFFERENCES against the dataset's known sizes:")
            out += [f"    {d}" for d in self.differences]
        else:
            out.append("  counts equal the known split sizes")
        return out


def run_jobs(fn: Callable, jobs: Sequence, workers: int, desc: str) -> List:
    """``fn(job)`` for every job, in ``workers`` processes (0 or 1: in this one), with a
    progress bar. The first failure stops the run and is raised here."""
    from tqdm import tqdm

    results = []
    if workers <= 1 or len(jobs) <= 1:
        for job in tqdm(jobs, desc=desc, unit="img", disable=None):
            results.append(fn(job))
        return results
    ctx = mp.get_context("spawn" if os.name != "posix" else "fork")
    with ctx.Pool(workers) as pool:
        for res in tqdm(pool.imap_unordered(fn, jobs, chunksize=8), total=len(jobs), desc=desc, unit="img",
                        disable=None):
            results.append(res)
    return results


def write_split_lists(info: DatasetInfo, out: Path, lines_by_split: Dict[str, List[str]], report: Report,
                      absent_ok: Sequence[str] = ()) -> None:
    """Write ROOT/list/SPLIT.txt for each split, then compare with the known sizes (a split in
    ``absent_ok`` that was not written is no difference: the report's notes say why)."""
    (out / "list").mkdir(parents=True, exist_ok=True)
    for split, lines in lines_by_split.items():
        write_list(info.list_path(out, split), lines)
        report.lists[split] = len(lines)
    for split, expected in info.splits.items():
        got = report.lists.get(split)
        if got is None and split in absent_ok:
            continue
        if got is None:
            report.differences.append(f"{split}: not written (expected {expected} images)")
        elif expected is not None and got != expected:
            report.differences.append(f"{split}: {got} images, the authors' list has {expected} ({got - expected:+d})")


def verify_lists(info: DatasetInfo, out: Path, report: Report) -> None:
    """Every file of every written list exists under the root (through the dataset's own reader)."""
    for split in report.lists:
        entries = read_list(info.list_path(out, split), need_labels=split not in info.unlabelled)
        for e in entries:
            for rel in (e.image, e.label):
                if rel is not None and not (out / rel.lstrip("/")).is_file():
                    raise PrepareError(f"{out / rel.lstrip('/')}: listed at {e.where} but not found after preparation")


def pending(jobs: Iterable, out_of: Callable) -> tuple:
    """Split jobs into (to do, number already done). Temporary files a killed run left
    beside the outputs are removed first."""
    jobs = list(jobs)
    for folder in {out_of(job).parent for job in jobs}:
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink()
    todo, done = [], 0
    for job in jobs:
        if png_complete(out_of(job)):
            done += 1
        else:
            todo.append(job)
    return todo, done

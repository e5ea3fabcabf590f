"""The built-in mini reproduction: the merge table on the procedural dataset
(:mod:`attn2scale.data.synthetic`) with a slim LargeFOV, trained and evaluated on the CPU
through the same configs (``attn2scale/configs/mini``), engine and table code as the real
tables. Not the paper's numbers: a check that the method works, runnable anywhere.

Steps: generate the dataset; train ``mini/pretrain`` (the shared start of every cell, as the
paper's cells share one ImageNet-pretrained VGG-16); train and evaluate each cell from it;
write the table, the attention figures and the attention-by-object-size measurement.
Everything lives under ``OUT`` (default ``results/mini``); a rerun reuses what is done and
resumes what was interrupted; a different seed, mode or code version starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..fileio import write_text_atomic
from .paper import MERGE_ROWS, SCALE_COLUMNS, Cell, Table
from .report import markdown, table_rows, write_outputs
from .runner import RunOptions, code_version, run_cells, run_state, train_cell

TABLE_NAME = "mini"


@dataclass(frozen=True)
class MiniMode:
    """How much of the mini benchmark runs: images, iterations and cells."""

    name: str
    train_images: int
    val_images: int
    pretrain_iters: Optional[int]  # None: the config's
    cell_iters: Optional[int]
    cells: Optional[Tuple[str, ...]]  # None: the whole grid


FULL = MiniMode("full", 600, 200, None, None, None)
# --quick (CI): three cells that still show every kind of merge path, on fewer images and steps.
QUICK = MiniMode("quick", 300, 80, 800, 300, ("baseline", "max_s2", "attention_s3_esupv"))
FIGURE_IMAGES = 4
SIZE_BINS = ((0.0, 0.2, "small (< 20 % of the side)"), (0.2, 0.5, "medium (20-50 %)"),
             (0.5, 1.01, "large (> 50 %)"))


def mini_table(mode: MiniMode) -> Table:
    """The merge table's layout (baseline + 3 merges x 4 columns) for the mini configs."""
    cells = [Cell(TABLE_NAME, "baseline", "LargeFOV (single scale)", "miou", None, "mini/baseline")]
    for merge, merge_label in MERGE_ROWS.items():
        for column, (_, _, col_label) in SCALE_COLUMNS.items():
            cells.append(Cell(TABLE_NAME, f"{merge}_{column}", f"{merge_label} {col_label}", "miou", None,
                              f"mini/{merge}_{column}"))
    if mode.cells is not None:
        cells = [c for c in cells if c.id in mode.cells]
    return Table(TABLE_NAME, f"mini benchmark ({mode.name}): procedural dataset, slim LargeFOV, CPU", tuple(cells))


def _stamp(out: Path, mode: MiniMode, seed: int, force: bool, log) -> None:
    """Start afresh (keeping only the generated data) when the seed, mode, code or mini
    configs changed."""
    stamp = {"mode": dataclasses.asdict(mode), "seed": seed, "code_version": code_version(),
             "mini_sources": _mini_sources_hash()}
    stamp = json.loads(json.dumps(stamp))  # as it reads back (tuples become lists)
    path = out / "mini_run.json"
    try:
        old = json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        old = {"damaged": str(path)}
    if force or (old is not None and old != stamp):
        for sub in ("runs", "cells", "figures"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
        if old is not None:
            why = "--force" if force else "the seed, mode, code or mini configs changed"
            log(f"mini: starting afresh in {out} ({why}; the generated images are kept)")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(stamp) + "\n")


def _mini_sources_hash() -> str:
    """This module and the mini configs, which decide what the mini runs compute."""
    from ..engine.config import CONFIG_DIR

    h = hashlib.sha256(Path(__file__).read_bytes())
    for p in sorted((CONFIG_DIR / "mini").glob("*.yaml")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _pretrain(out: Path, common: List[str], mode: MiniMode, opts: RunOptions) -> Path:
    from ..engine.config import load_config
    from ..engine.inference import weights_file

    over = list(common) + ([f"solver.max_iter={mode.pretrain_iters}"] if mode.pretrain_iters else [])
    cfg = load_config("mini/pretrain", over)
    run = Path(opts.runs) / cfg.name
    if run_state(cfg, run)[0] != "finished":
        train_cell(cfg, opts)  # a run of another config is refused there
    return weights_file(run).resolve()


def run_mini(out: Path = Path("results/mini"), *, seed: int = 0, quick: bool = False, force: bool = False,
             progress: bool = True, log: Callable[[str], None] = print) -> Dict[str, object]:
    """Run the mini benchmark; returns the table text, the output paths and the measurements."""
    from ..data.synthetic import FORMAT, generate

    t0 = time.perf_counter()
    mode = QUICK if quick else FULL
    out = Path(out).resolve()
    _stamp(out, mode, seed, force, log)
    data = generate(out / f"data_v{FORMAT}_seed{seed}_{mode.train_images}_{mode.val_images}", seed=seed,
                    train=mode.train_images, val=mode.val_images)
    common = [f"data.root={data}", f"train.seed={seed}"]
    opts = RunOptions(out=out, runs=out / "runs", overrides=common, train=True, progress=progress, log=log)
    pretrained = _pretrain(out, common, mode, opts)
    opts.overrides = common + [f"init.weights={pretrained}"] + (
        [f"solver.max_iter={mode.cell_iters}"] if mode.cell_iters else [])
    table = mini_table(mode)
    results = run_cells(list(table.cells), opts)
    rows = table_rows(table, results)
    base = next((r["ours"] for r in rows if r["cell"] == "baseline"), None)
    chance = chance_miou(data, "val")
    figures, by_size = attention_outputs(table, out, opts)
    text = mini_markdown(table, rows, base, chance, by_size, mode, seed, time.perf_counter() - t0)
    paths = write_outputs(out, "table", text, rows)
    write_text_atomic(out / "attention_by_size.json", json.dumps(by_size, indent=1) + "\n")
    return {"text": text, "rows": rows, "paths": paths, "figures": figures, "chance_miou": chance,
            "attention_by_size": by_size, "seconds": time.perf_counter() - t0}


def chance_miou(root: Path, split: str) -> float:
    """mIoU (percent) of the best constant answer, all background, on ``split``: the level a
    net that learned nothing reaches (a uniform random answer scores less)."""
    from ..data import SegDataset
    from ..engine.metrics import ConfusionMatrix

    ds = SegDataset(root, split, "mini")
    cm = ConfusionMatrix(ds.info.num_labels, ds.info.ignore_label)
    for i in range(len(ds)):
        lab = ds.load_label(i)
        cm.update(lab * 0, lab, where=ds.entries[i].name)
    return 100 * cm.scores()["miou"]


def mini_markdown(table: Table, rows: List[dict], base: Optional[float], chance: float, by_size: dict,
                  mode: MiniMode, seed: int, seconds: float) -> str:
    head = (f"### Mini benchmark ({mode.name}, seed {seed}) — NOT the paper's numbers\n\n"
            f"Procedural {mode.train_images}/{mode.val_images}-image dataset (97 x 97, 4 shape classes), "
            "slim LargeFOV (width / 16), trained on the CPU from one shared pretraining; validation mIoU in "
            f"percent. Chance (all background): {chance:.2f}.")
    text = markdown(table, rows, heading=head, baseline=base)
    if by_size:
        lines = ["", f"Mean attention weight per scale by object size ({by_size['config']}, "
                     f"{by_size['objects']} validation objects):", "",
                 "| object size | objects | " + " | ".join(f"scale {s:g}" for s in by_size["scales"]) + " |",
                 "|---|---|" + "---|" * len(by_size["scales"])]
        for b in by_size["bins"]:
            lines.append(f"| {b['bin']} | {b['objects']} | " + " | ".join(
                "—" if w is None else f"{w:.3f}" for w in b["mean_weight"]) + " |")
        text += "\n".join(lines) + "\n"
    return text + f"\nWall time {seconds:.0f} s.\n"


def _figure_indices(ds, k: int) -> List[int]:
    """Validation images with the largest and the smallest foreground (half each)."""
    import numpy as np

    frac = [float((ds.load_label(i) > 0).mean()) for i in range(len(ds))]
    order = [i for i in np.argsort(frac) if frac[i] > 0]
    return sorted(set(order[-(k - k // 2):] + order[: k // 2]))


def attention_outputs(table: Table, out: Path, opts: RunOptions) -> Tuple[List[Path], dict]:
    """Figures of the attention cell with the most scales, and its mean attention weight per
    scale over validation objects binned by size (each connected region of a class)."""
    from ..engine.inference import weights_file
    from ..viz.attention import MatplotlibUnavailable

    cands = [c for c in table.cells if c.config and c.config.startswith("mini/attention")]
    if not cands:
        return [], {}
    cell = max(cands, key=lambda c: (len(SCALE_COLUMNS[c.id.split("_", 1)[1]][0]), c.id))
    from .runner import load_cell_config

    cfg = load_cell_config(cell, opts)
    model, ds = _load_for_figures(cfg, weights_file(Path(opts.runs) / cfg.name))
    try:
        figures = _figures(model, ds, cfg, out / "figures")
    except MatplotlibUnavailable as exc:
        opts.log(f"mini: no figures: {exc}")
        figures = []
    return figures, attention_by_size(model, ds, cfg.name)


def _load_for_figures(cfg, weights: Path):
    import torch

    from ..data import SegDataset, get_dataset_info
    from ..engine.builders import test_transform
    from ..engine.evaluate import prepare_model

    info = get_dataset_info(cfg.data.dataset)
    model, _ = prepare_model(cfg, weights, torch.device("cpu"))
    return model, SegDataset(cfg.data.root, cfg.data.val_split, info, test_transform(cfg))


def _figures(model, ds, cfg, folder: Path) -> List[Path]:
    from ..data import pad_collate
    from ..engine.evaluate import image_rgb
    from ..engine.inference import attention_arrays
    from ..viz.attention import attention_figure

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in _figure_indices(ds, FIGURE_IMAGES):
        batch = pad_collate([ds[i]], ds.info.ignore_label)
        label, arrays = attention_arrays(model, batch)
        path = folder / f"{ds.entries[i].name}_attention.png"
        attention_figure(path, image_rgb(batch, 0, ds.info), label, ds.info.palette(), arrays, model.scales,
                         title=f"{cfg.name}: {ds.entries[i].name}")
        paths.append(path)
    return paths


def attention_by_size(model, ds, config: str, bins: Sequence[tuple] = SIZE_BINS) -> dict:
    """Mean attention weight per scale over the pixels of each ground-truth object, averaged
    per size bin (object size: the larger side of its bounding box over the image side)."""
    import numpy as np
    from scipy import ndimage

    from ..data import pad_collate
    from ..engine.inference import attention_arrays

    per_bin: Dict[int, List[np.ndarray]] = {k: [] for k in range(len(bins))}
    for i in range(len(ds)):
        item = ds[i]
        _, arrays = attention_arrays(model, pad_collate([item], ds.info.ignore_label))
        h, w = item["size"].tolist()
        lab = item["label"][:h, :w].numpy()
        for c in range(1, ds.info.num_labels):
            regions, _ = ndimage.label(lab == c)
            for r, sl in enumerate(ndimage.find_objects(regions), start=1):
                size = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) / max(h, w)
                k = next(j for j, (lo, hi, _) in enumerate(bins) if lo <= size < hi)
                per_bin[k].append(arrays["attention"][:, regions == r].mean(1))
    scales = [float(s) for s in model.scales]
    out_bins = [{"bin": name, "objects": len(per_bin[k]),
                 "mean_weight": [float(x) for x in np.mean(per_bin[k], 0)] if per_bin[k] else [None] * len(scales)}
                for k, (_, _, name) in enumerate(bins)]
    return {"config": config, "scales": scales, "objects": sum(len(v) for v in per_bin.values()), "bins": out_bins}

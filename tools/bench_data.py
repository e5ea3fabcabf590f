"""Data loading throughput: images/s of the training loader (Caffe transform, crop 321,
mirror, optional random scaling) for several worker counts, on a prepared dataset.

    python tools/bench_data.py [--root ../shared/data/voc2012_sample] [--split train_aug]
                               [--workers 0,1,2] [--images 300] [--markdown docs/bench_data.md]

Every image is decoded from disk each time (no cache), as in training. The
default root is the real VOC sample beside the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(root, split, dataset, workers, images, batch, scale_range):
    from attn2scale.data import SegDataset, SegTransform, build_loader, get_dataset_info

    info = get_dataset_info(dataset)
    ds = SegDataset(root, split, info, SegTransform.for_dataset(info, train=True, scale_range=scale_range))
    loader = iter(build_loader(ds, batch, train=True, seed=0, workers=workers, pin_memory=False))
    next(loader)  # start the workers and warm the file cache
    n, t0 = 0, time.perf_counter()
    while n < images:
        n += next(loader)["image"].shape[0]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "voc2012_sample"))
    p.add_argument("--split", default="train_aug")
    p.add_argument("--dataset", default="voc12")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    p.add_argument("--images", type=int, default=300, help="images timed per setting")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"bench_data: dataset root {args.root} not found (prepare one with attn2scale prepare-data)",
              file=sys.stderr)
        return 2
    rows = []
    for w in (int(x) for x in args.workers.split(",")):
        for scaling in (None, (0.6, 1.4)):
            rate = measure(args.root, args.split, args.dataset, w, args.images, args.batch, scaling)
            rows.append((w, "0.6-1.4" if scaling else "none", rate))
            print(f"workers {w}  random scaling {rows[-1][1]:7s}  {rate:7.1f} images/s", flush=True)
    table = ["| workers | random scaling | images/s |", "|---|---|---|"]
    table += [f"| {w} | {s} | {r:.1f} |" for w, s, r in rows]
    head = (f"Training loader at crop 321 (mirror), batch {args.batch}, {args.images} images per row, "
            f"`{args.dataset}` `{args.split}` at `{os.path.relpath(args.root, REPO)}` (relative to the repository), "
            f"{os.cpu_count()} CPUs.\n\n"
            "Command: `python tools/bench_data.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`")
    if args.markdown:
        from attn2scale.fileio import write_text_atomic

        write_text_atomic(args.markdown, "# Data loading throughput\n\n" + head + "\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation speed and the memory the fused upsample-argmax saves, same run.

    python tools/bench_eval.py [--images 3] [--markdown docs/bench_eval.md]

1. Images/s of DeepLab's test protocol (pad to 513, model, zoom 8 + argmax, crop) for the
   full-size attention model (3 scales, 21 classes), with the labels taken by the fused
   ``ops.upsample_argmax`` and by ``F.interpolate(align_corners=True).argmax(1)``.
2. Peak memory and time of the label step alone (fused vs interpolate + argmax) for the
   datasets' shapes: VOC 21 classes at 513, COCO 81 at 641, ADE20K 150 at 513. Each is
   measured in a fresh process: the growth of the peak resident set over the inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = (("VOC 2012", 21, 513), ("COCO subset", 81, 641), ("ADE20K", 150, 513))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _RssSampler:
    """The highest resident set seen by a thread polling /proc/self/statm every 0.5 ms."""

    def __enter__(self):
        import threading

        self.peak, self.stop = _rss_mib(), threading.Event()

        def poll():
            while not self.stop.is_set():
                self.peak = max(self.peak, _rss_mib())
                time.sleep(0.0005)

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, _rss_mib())


def label_step(mode: str, classes: int, size: int) -> dict:
    """Run in a child process: one label step on an N=1 score map of the test grid."""
    import torch
    import torch.nn.functional as F

    from attn2scale import ops

    grid = (size - 1) // 8 + 1
    scores = torch.randn(1, classes, grid, grid)
    torch.set_num_threads(1)
    before = _rss_mib()
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        if mode == "fused":
            labels = ops.upsample_argmax(scores, (size, size))
        else:
            labels = F.interpolate(scores, size=(size, size), mode="bilinear", align_corners=True).argmax(1)
        dt = time.perf_counter() - t0
    return {"peak_growth_mib": max(0.0, rss.peak - before), "seconds": dt, "shape": list(labels.shape)}


def protocol_rate(images: int, fused: bool) -> float:
    import torch
    import torch.nn.functional as F

    from attn2scale.engine.inference import labels_from_scores, multiscale_scores
    from attn2scale.models import build_model

    torch.manual_seed(0)
    model = build_model("attention_to_scale", num_classes=21).eval()
    x = torch.randn(1, 3, 513, 513)
    sizes = torch.tensor([[500, 375]])
    with torch.no_grad():
        multiscale_scores(model, x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(images):
            scores = multiscale_scores(model, x)
            if fused:
                labels_from_scores(scores, sizes, x.shape)
            else:
                F.interpolate(scores, size=(513, 513), mode="bilinear", align_corners=True).argmax(1)[:, :500, :375]
    return images / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--markdown")
    p.add_argument("--child", nargs=3, metavar=("MODE", "CLASSES", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(label_step(args.child[0], int(args.child[1]), int(args.child[2]))))
        return 0
    rows = ["| labels by | images/s (attention model, 513, 1 scale) |", "|---|---|"]
    for fused in (True, False):
        rate = protocol_rate(args.images, fused)
        rows.append(f"| {'fused upsample_argmax' if fused else 'interpolate + argmax'} | {rate:.3f} |")
        print(rows[-1], flush=True)
    rows += ["", "| dataset shape | label step | peak memory growth (MiB) | time (ms) |", "|---|---|---|---|"]
    for name, classes, size in CASES:
        for mode in ("fused", "interpolate"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(classes), str(size)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rows.append(f"| {name}: {classes} x {size} x {size} | "
                        f"{'fused upsample_argmax' if mode == 'fused' else 'interpolate + argmax'} | "
                        f"{r['peak_growth_mib']:.1f} | {1000 * r['seconds']:.1f} |")
            print(rows[-1], flush=True)
    head = (f"Full-size `attention_to_scale` (VGG-16, scales 1/0.75/0.5, 21 classes), batch 1, "
            f"{args.images} images timed, {os.cpu_count()} CPUs. Label step: one thread, each case in a fresh "
            "process; memory = the highest resident set seen during the step (sampled every 0.5 ms) minus the "
            "resident set before it (output labels included: int64, 2 MiB at 513). The interpolated map alone is "
            "C x H x W x 4 bytes (VOC 21 MiB, COCO 127 MiB, ADE20K 150 MiB).\n\nCommand: `python tools/bench_eval.py "
            + " ".join(sys.argv[1:] if argv is None else argv) + "`")
    if args.markdown:
        from attn2scale.fileio import write_text_atomic

        write_text_atomic(args.markdown, "# Evaluation speed and memory\n\n" + head + "\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

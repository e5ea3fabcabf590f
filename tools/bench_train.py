"""Seconds per training iteration of the full-size attention model (3 scales, attention,
extra supervision, 21 classes) at 321 x 321, through the engine's loss and Caffe SGD,
with the fused ops and with the pure-PyTorch reference ops, in the same run.

    python tools/bench_train.py [--batch 1] [--iters 3] [--threads N] [--markdown docs/bench_train.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def seconds_per_iteration(fused: bool, batch: int, iters: int) -> float:
    import torch

    from attn2scale import ops
    from attn2scale.engine.losses import segmentation_loss
    from attn2scale.engine.solver import CaffeSGD
    from attn2scale.models import build_model

    torch.manual_seed(0)
    model = build_model("attention_to_scale", num_classes=21).train()
    opt = CaffeSGD(model.caffe_param_groups(), momentum=0.9, weight_decay=0.0005, rate=0.001)
    image = torch.randn(batch, 3, 321, 321)
    label = torch.randint(0, 21, (batch, 321, 321))
    times = []
    with ops.use_reference(not fused):
        for k in range(iters + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            total, _ = segmentation_loss(model(image), label)
            total.backward()
            opt.step()
            if k:
                times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=3, help="timed iterations per setting (median reported)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args(argv)
    import torch

    from attn2scale import ops

    if args.threads:
        torch.set_num_threads(args.threads)
    if not ops.extension_available():
        print("bench_train: the compiled extension is not built; both rows would be the reference", file=sys.stderr)
        return 2
    fused = seconds_per_iteration(True, args.batch, args.iters)
    ref = seconds_per_iteration(False, args.batch, args.iters)
    table = ["| ops | s / iteration | vs reference |", "|---|---|---|",
             f"| fused (attn2scale._C) | {fused:.3f} | {fused / ref:.2f}x |",
             f"| pure-PyTorch reference | {ref:.3f} | 1.00x |"]
    head = (f"Full-size `attention_to_scale` (VGG-16 LargeFOV share-net, scales 1/0.75/0.5, attention, E-Supv, "
            f"21 classes), one training iteration (forward, 4 losses, backward, Caffe SGD step) at 321 x 321, "
            f"batch {args.batch}, median of {args.iters}, {torch.get_num_threads()} threads on {os.cpu_count()} CPUs.\n\n"
            "Command: `python tools/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`")
    print("\n".join(table))
    if args.markdown:
        from attn2scale.fileio import write_text_atomic

        write_text_atomic(args.markdown, "# Training iteration time\n\n" + head + "\n\n" + "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Microbenchmark of the fused score-map ops against stock PyTorch.

For each case three implementations are timed:

* **eager**    - what a user would write with stock PyTorch:
  ``F.interpolate(mode="bilinear", align_corners=True)`` per scale, then
  ``torch.softmax(logits, 1)`` and a weighted sum (attention),
  ``torch.stack(...).max(0)`` (max) or ``torch.stack(...).mean(0)`` (avg) -
  the stack copies the S resized maps into one tensor, a cost the eager
  max/avg baselines carry; ``F.interpolate(...).argmax(1)`` for the labels.
* **compiled** - ``torch.compile(eager_function, dynamic=False)`` (inductor);
  the first call (compilation) is timed separately as "compile s".
* **fused**    - ``attn2scale.ops.scale_merge`` / ``upsample_argmax`` / ``interp``.

Before timing, every case is run once per implementation and compared with
eager (``kernel_bench.checks``: outputs and gradients ``allclose``, labels
equal up to near-ties). A row failing a check is INVALID: its target verdicts
read INVALID and the run exits with status 1.

Ratios are given against eager, compiled and the faster of the two; the
minimal-traffic floor of a row is its traffic moved at the copy bandwidth
measured in the same run. Timing, memory and reporting are described in the
modules of ``tools/kernel_bench/`` and in the report this writes.

Usage::

    python tools/bench_kernels.py [--quick] [--device cpu|cuda] [--json out.json]
                                  [--markdown docs/benchmarks.md] [--threads N]
"""

from __future__ import annotations

import sys
from pathlib import Path

_TOOLS = Path(__file__).resolve().parent
if str(_TOOLS) not in sys.path:  # loaded by path (the tests) rather than run as a script
    sys.path.insert(0, str(_TOOLS))
try:
    import attn2scale  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(_TOOLS.parent))

from kernel_bench.cases import Case, build_cases, make_callable, prepare_args, traffic_bytes  # noqa: E402,F401
from kernel_bench import checks  # noqa: E402,F401
from kernel_bench.checks import compare  # noqa: E402,F401
from kernel_bench.report import to_markdown  # noqa: E402,F401
from kernel_bench.runner import exit_status, parse_args  # noqa: E402,F401
from kernel_bench.runner import main as _main  # noqa: E402
from kernel_bench.targets import evaluate_targets  # noqa: E402,F401


def main(argv=None, log=print, case_hook=None) -> dict:
    """Run the benchmark and return its report (``case_hook``: see ``kernel_bench.runner.main``)."""
    return _main(argv, log=log, description=__doc__.split("\n\n")[0], case_hook=case_hook)


def cli(argv=None, log=print, case_hook=None) -> int:
    """The command line: the exit status is 1 when a row is INVALID."""
    return exit_status(main(argv, log=log, case_hook=case_hook))


if __name__ == "__main__":
    sys.exit(cli())

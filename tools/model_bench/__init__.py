"""The pieces of ``tools/bench_model.py`` (end-to-end model benchmark).

* ``workloads`` - the full-size share-net, its training step and the test
  protocol's inference, in four configurations (fused / reference ops,
  eager / ``torch.compile``).
* ``checks``    - fused vs reference: losses, outputs, gradients, labels.
* ``profiling`` - peak memory and custom-op calls of one step; the share of
  the step spent in the resize / merge / label ops.
* ``report``    - the verdicts (PASS / MISS / INVALID) and docs/bench_model.md.

Timing and machine description come from ``tools/kernel_bench``.
"""

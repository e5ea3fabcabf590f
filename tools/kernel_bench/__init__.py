"""The pieces of ``tools/bench_kernels.py``, in small modules.

* ``cases``   - the stock-PyTorch baselines, the fused calls, the case list.
* ``checks``  - the correctness check run before timing (tolerances, ties).
* ``timing``  - interleaved wall-clock timing, copy bandwidth.
* ``memory``  - peak extra memory of one call (profiler allocator events).
* ``machine`` - CPU / GPU / torch description, load average.
* ``targets`` - the issue's targets: PASS / MISS / UNTESTED / INVALID.
* ``report``  - console rows and the markdown report.
* ``runner``  - the command line, the run, the exit status.

Helpers meant for other benchmarks (``tools/bench_model.py``): with
``tools/`` on ``sys.path`` (it is, for a script run from there),

    from kernel_bench.machine import machine_info, loadavg, busy_note
    from kernel_bench.timing import sync, stats, time_interleaved, copy_bandwidth
    from kernel_bench.memory import measure_memory
    from kernel_bench.report import md_table, machine_lines, write_outputs

``time_interleaved({"a": f, "b": g}, device, warmup, repeats, min_sample_s)``
times zero-argument callables in turns and returns, per name, the median, the
quartiles and the minimum in seconds; ``measure_memory(f, device)`` returns
``peak_extra_bytes`` and ``largest_alloc_bytes`` of one call;
``machine_info(device)`` a dict that ``machine_lines`` turns into markdown.
"""

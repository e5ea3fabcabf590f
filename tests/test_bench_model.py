"""tools/bench_model.py: tiny in-process runs (widths / 16, 49 px training, 65 px inference,
one thread, no torch.compile), and the ``ops.use_reference()`` switch it relies on.

Checks the report's structure, that the two paths really ran different code (the
profiler's count of ``attn2scale::`` calls), that the reference's materialised label map
shows in its peak memory, and that a wrong op on the fused path, or a path switch that
does not switch, makes the run INVALID with exit status 1.
"""

import contextlib
import importlib.util
import json
import sys

import pytest
import torch

from conftest import REPO

from attn2scale import ops

pytestmark = pytest.mark.skipif(not ops.extension_available(), reason="needs the compiled extension")

TINY = ["--quick", "--no-compile", "--repeats", "1", "--breakdown-runs", "1", "--threads", "1",
        "--train-size", "49", "--infer-size", "65"]


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_model", REPO / "tools" / "bench_model.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_model")
    report = bench.main(TINY + ["--json", str(d / "r.json"), "--markdown", str(d / "r.md")], log=lambda *a: None)
    return report, json.loads((d / "r.json").read_text()), (d / "r.md").read_text()


def _row(report, workload, path):
    return next(r for r in report["rows"] if (r["workload"], r["path"], r["mode"]) == (workload, path, "eager"))


def test_tiny_run_structure_and_checks(tiny_report):
    report, data, md = tiny_report
    assert bench.exit_status(report) == 0 and report["invalid"] == []
    assert {(r["workload"], r["path"], r["mode"]) for r in data["rows"]} == {
        (w, p, "eager") for w in ("train", "infer") for p in ("fused", "reference")}
    assert set(data["checks"]) == {"train eager", "infer eager"}
    assert all(c["ok"] for c in data["checks"].values())
    # E-Supv: the fused map's loss and one per scale (3 scales), the same on both paths
    chk = data["checks"]["train eager"]
    assert len(chk["loss_fused"]) == 4
    assert torch.allclose(torch.tensor(chk["loss_fused"]), torch.tensor(chk["loss_reference"]), rtol=1e-4)
    claims = {(v["workload"], v["claim"]) for v in data["verdicts"]}
    assert claims == {(w, c) for w in ("train", "infer") for c in ("fused never slower", "fused uses less peak memory")}
    assert {v["verdict"] for v in data["verdicts"]} <= {"PASS", "MISS"}
    for r in data["rows"]:
        assert r["time"]["median_s"] > 0 and r["time"]["repeats"] == 1
    for section in ("## Machine", "## Summary", "## Results", "## Correctness", "## Verdicts",
                    "## Where the step goes (eager, profiled)"):
        assert section in md
    assert "tools/bench_model.py --quick" in md


def test_paths_run_different_ops(tiny_report):
    report = tiny_report[0]
    for w in ("train", "infer"):
        assert _row(report, w, "fused")["memory"]["attn2scale_op_calls"] > 0
        assert _row(report, w, "reference")["memory"]["attn2scale_op_calls"] == 0
    by = {(b["workload"], b["path"]): b for b in report["breakdown"]}
    for w in ("train", "infer"):
        fused, ref = by[(w, "fused")]["ops"], by[(w, "reference")]["ops"]
        # the same model code calls the same ops on both paths: one merge, one label step at inference
        assert {n: v["calls"] for n, v in fused.items()} == {n: v["calls"] for n, v in ref.items()}
        assert fused["scale_merge"]["calls"] == 1
        assert fused["upsample_argmax"]["calls"] == (1 if w == "infer" else 0)
    # training backpropagates through the merge: its backward was found and timed
    assert by[("train", "reference")]["ops"]["scale_merge"]["bwd_ms"] > 0
    assert by[("train", "fused")]["ops"]["scale_merge"]["bwd_ms"] > 0


def test_reference_label_map_shows_in_peak_memory(tiny_report):
    report = tiny_report[0]
    s = report["sizes"]
    # the reference resizes the scores to the full grid (float32) before its argmax; the fused op does not
    full_map = s["infer_batch"] * s["classes"] * s["infer_size"] ** 2 * 4
    saved = (_row(report, "infer", "reference")["memory"]["peak_extra_bytes"]
             - _row(report, "infer", "fused")["memory"]["peak_extra_bytes"])
    assert saved >= full_map


@contextlib.contextmanager
def _patched(name, wrong):
    saved = getattr(ops, name)
    setattr(ops, name, wrong(saved))
    try:
        yield
    finally:
        setattr(ops, name, saved)


def test_wrong_merge_on_fused_path_is_invalid():
    def off_by_one_percent(merge):
        def run(*a, **k):
            out = merge(*a, **k)
            return (out[0] * 1.01, out[1]) if isinstance(out, tuple) else out * 1.01
        return run

    contexts = {"fused": lambda: _patched("scale_merge", off_by_one_percent)}
    logs = []
    report = bench.main(TINY + ["--workloads", "train"], log=logs.append, contexts=contexts)
    assert not report["checks"]["train eager"]["ok"]
    assert bench.exit_status(report) == 1
    assert {v["verdict"] for v in report["verdicts"]} == {"INVALID"}
    assert any("INVALID" in line for line in logs)


def test_wrong_labels_on_fused_path_is_invalid():
    def shifted(argmax):
        return lambda scores, size, *a, **k: (argmax(scores, size) + 1) % scores.shape[1]

    contexts = {"fused": lambda: _patched("upsample_argmax", shifted)}
    report = bench.main(TINY + ["--workloads", "infer"], log=lambda *a: None, contexts=contexts)
    chk = report["checks"]["infer eager"]
    assert not chk["ok"] and chk["label_mismatches_not_ties"] > 0
    assert bench.cli(TINY + ["--workloads", "infer"], log=lambda *a: None, contexts=contexts) == 1


def test_a_path_switch_that_does_not_switch_is_invalid():
    report = bench.main(TINY + ["--workloads", "infer"], log=lambda *a: None,
                        contexts={"reference": contextlib.nullcontext})
    assert report["checks"]["infer eager"]["ok"]  # the same kernels agree with themselves ...
    assert any("reference eager ran" in p for p in report["invalid"])  # ... but nothing was compared
    assert bench.exit_status(report) == 1


# --------------------------------------------------------------------------
# The switch: attn2scale.ops.use_reference().


def _custom_op_calls(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("attn2scale::"))


def test_use_reference_runs_the_reference_and_nests():
    x = torch.randn(2, 3, 7, 9)
    assert not ops.reference_forced()
    assert _custom_op_calls(lambda: ops.interp(x, (13, 17))) == 1
    with ops.use_reference():
        assert ops.reference_forced()
        assert _custom_op_calls(lambda: ops.interp(x, (13, 17))) == 0
        assert torch.equal(ops.interp(x, (13, 17)), ops.reference.interp(x, (13, 17)))
        with ops.use_reference(False):
            assert _custom_op_calls(lambda: ops.upsample_argmax(x, (13, 17))) == 1
        assert ops.reference_forced()
    assert not ops.reference_forced()
    with pytest.raises(RuntimeError), ops.use_reference():
        raise RuntimeError("the setting is restored on errors too")
    assert not ops.reference_forced()


def test_use_reference_recompiles_under_torch_compile():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return gm.forward

    torch._dynamo.reset()
    fn = torch.compile(lambda t: ops.interp(t, (9, 9)) * 2, backend=backend)
    x = torch.randn(1, 2, 5, 5)
    fn(x)
    with ops.use_reference():
        fn(x)
    fn(x)  # cached: no third graph
    torch._dynamo.reset()
    assert len(graphs) == 2
    assert any("attn2scale" in t for t in graphs[0])
    assert not any("attn2scale" in t for t in graphs[1])


def test_bad_options_are_named(capsys):
    for argv, flag in ((["--repeats", "0"], "--repeats"), (["--batch", "-1"], "--batch"),
                       (["--workloads", "train,eval"], "--workloads")):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert flag in capsys.readouterr().err

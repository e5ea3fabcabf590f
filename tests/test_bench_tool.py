"""tools/bench_kernels.py: a tiny in-process run (small shapes, 1 repeat, no torch.compile).

Checks the report covers every case and pass, that the fused ops agree with the
stock-PyTorch baselines, that the memory measurement sees the N x C x H x W map
of the eager upsample+argmax (and the fused one does not allocate it), that
the correctness check can fail, that a row failing it is INVALID and makes the
run exit with status 1, and that the label tie tolerance is the documented one.
"""

import importlib.util
import json
import pytest
import sys

import torch

from conftest import REPO

from attn2scale import ops


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", REPO / "tools" / "bench_kernels.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


def _expected_rows():
    return {(c.name, p) for c in bench.build_cases(tiny=False) for p in c.passes}


def test_case_list_matches_the_brief():
    full = bench.build_cases(tiny=False)
    by_name = {c.name: c for c in full}
    assert set(by_name) == {c.name for c in bench.build_cases(tiny=True)}
    assert by_name["merge_attention_c21"].shapes == {"N": 10, "C": 21, "scales": [41, 31, 21], "out": [41, 41]}
    assert by_name["merge_attention_c81"].shapes == {"N": 3, "C": 81, "scales": [41, 31, 21], "out": [41, 41]}
    for mode in ("max", "avg"):
        assert by_name[f"merge_{mode}_c21"].passes == ("fwd", "fwd+bwd")
    argmax = {(c.shapes["C"], c.shapes["in"][0], c.shapes["out"][0]) for c in full if c.op == "upsample_argmax"}
    assert argmax == {(21, 65, 513), (81, 81, 641), (150, 64, 512)}
    assert by_name["interp_train"].passes == ("fwd", "fwd+bwd")
    assert by_name["interp_infer"].passes == ("fwd",)


def test_tiny_run_reports_every_case_and_fused_matches_baseline(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    report = bench.main(
        ["--tiny", "--no-compile", "--repeats", "1", "--warmup", "0", "--min-sample-ms", "0",
         "--json", str(out_json), "--markdown", str(out_md)],
        log=lambda *a: None,
    )
    data = json.loads(out_json.read_text())
    assert data["rows"] == json.loads(json.dumps(report["rows"]))
    assert {(r["case"], r["pass"]) for r in data["rows"]} == _expected_rows()
    for key in ("cpu_model", "logical_cores", "torch_version", "torch_threads"):
        assert data["machine"][key]
    assert data["machine"]["torch_version"] == torch.__version__
    assert "--tiny" in data["command"] and data["date"]

    assert data["invalid"] == [] and bench.exit_status(report) == 0
    assert data["copy_bandwidth"]["gbps"] > 0
    for r in data["rows"]:
        where = f"{r['case']} {r['pass']}"
        check = r["correct"]["fused"]
        assert check["ok"] and r["valid"], (where, check)
        assert r["compiled"] is None and r["fused_over_compiled"] is None, where
        # without a compiled run the faster baseline is eager
        assert r["best_baseline"] == "eager" and r["fused_over_best"] == r["fused_over_eager"], where
        floor = r["traffic_bytes"] / (data["copy_bandwidth"]["gbps"] * 1e9)
        assert abs(r["fused_over_floor"] - r["fused"]["median_s"] / floor) <= 1e-9 * r["fused_over_floor"], where
        for impl in ("eager", "fused"):
            assert r[impl]["median_s"] > 0, where
            assert r[impl]["memory"]["peak_extra_bytes"] > 0, where
        if r["op"] == "upsample_argmax":
            assert check["labels_equal"] and check["n_label_mismatch"] == 0, (where, check)
            n, h, w = r["shapes"]["N"], *r["shapes"]["out"]
            full = r["full_map_bytes"]
            assert full == n * r["shapes"]["C"] * h * w * 4
            # eager materialises the resized N x C x H x W float map; fused only writes the labels
            assert r["eager"]["memory"]["largest_alloc_bytes"] >= full, where
            if ops.extension_available():
                fused_mem = r["fused"]["memory"]
                assert n * h * w * 8 <= fused_mem["largest_alloc_bytes"] < full, (where, fused_mem)
        else:
            assert check["max_abs_diff"] < 1e-5, (where, check)
            expect = ["out"] if r["pass"] == "fwd" else ["out", "grad0"]
            assert check["compared"][: len(expect)] == expect, where
            if r["op"] == "scale_merge[attention]" and r["pass"] == "fwd+bwd":
                assert len(check["compared"]) == 1 + 3 + 1, where  # out, three score maps, logits

    speed = {(t["case"], t["pass"]) for t in data["targets"] if "floor" not in t["target"]}
    assert speed == {
        ("merge_attention_c21", "fwd+bwd"), ("merge_attention_c81", "fwd+bwd"),
        ("merge_max_c21", "fwd+bwd"), ("merge_avg_c21", "fwd+bwd"),
        ("upsample_argmax_c21", "fwd"), ("upsample_argmax_c81", "fwd"), ("upsample_argmax_c150", "fwd"),
    }
    floors = [(t["case"], t["pass"]) for t in data["targets"] if "floor" in t["target"]]
    assert sorted(floors) == sorted(_expected_rows())  # every row has its floor target
    assert {t["verdict"] for t in data["targets"]} <= {"PASS", "MISS", "UNTESTED"}

    md = out_md.read_text()
    assert "| case | shape | op | pass | eager ms | compiled ms | fused ms |" in md
    assert data["machine"]["cpu_model"] in md and "## Targets" in md
    for name, _ in _expected_rows():
        assert f"| {name} |" in md


def test_correctness_check_can_fail():
    case = next(c for c in bench.build_cases(tiny=True) if c.name == "merge_attention_c21")
    args, grad_out = bench.prepare_args(case, torch.device("cpu"), "fwd+bwd")
    call = bench.make_callable(case, case.eager, args, "fwd+bwd", grad_out)
    ref = call()
    assert bench.compare(case, args, ref, ref, "fwd+bwd")["ok"]
    bad_grad = ref[:2] + (ref[2] * 1.01,) + ref[3:]
    assert not bench.compare(case, args, ref, bad_grad, "fwd+bwd")["ok"]

    am = next(c for c in bench.build_cases(tiny=True) if c.name == "upsample_argmax_c21")
    args, _ = bench.prepare_args(am, torch.device("cpu"), "fwd")
    (labels,) = bench.make_callable(am, am.eager, args, "fwd", None)()
    wrong = labels.clone()
    wrong[0, 0, 0] = (wrong[0, 0, 0] + 1) % am.shapes["C"]
    res = bench.compare(am, args, (labels,), (wrong,), "fwd")
    assert not res["ok"] and res["n_label_mismatch"] == 1


def _break_attention_c21(case):
    # a deliberately wrong fused implementation: 0.1 % off, far outside the tolerance
    if case.name == "merge_attention_c21":
        good = case.fused
        case.fused = lambda *args: good(*args) * 1.001
    return case


def test_wrong_fused_result_makes_the_row_invalid_and_the_run_fail(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    logged = []
    status = bench.cli(
        ["--tiny", "--no-compile", "--repeats", "1", "--warmup", "0", "--min-sample-ms", "0",
         "--cases", "merge_attention_c21,merge_avg_c21", "--json", str(out_json), "--markdown", str(out_md)],
        log=lambda *a: logged.append(" ".join(map(str, a))), case_hook=_break_attention_c21,
    )
    assert status == 1
    data = json.loads(out_json.read_text())
    rows = {(r["case"], r["pass"]): r for r in data["rows"]}
    for p in ("fwd", "fwd+bwd"):
        bad, good = rows[("merge_attention_c21", p)], rows[("merge_avg_c21", p)]
        assert not bad["valid"] and not bad["correct"]["fused"]["ok"], p
        assert bad["invalid_reason"] == "fused differs from eager"
        assert good["valid"], p
    for t in data["targets"]:
        assert (t["verdict"] == "INVALID") == (t["case"] == "merge_attention_c21"), t
    assert data["invalid"] == ["merge_attention_c21 fwd (fused differs from eager)",
                               "merge_attention_c21 fwd+bwd (fused differs from eager)"]
    md = out_md.read_text()
    assert md.count("| **INVALID** |") == 3  # fwd floor, fwd+bwd merge and floor targets
    assert any("INVALID" in line and line.startswith("merge_attention_c21") for line in logged)


def test_label_tie_tolerance_is_the_documented_one():
    """A label differing from eager's passes only within TIE_TOL * (1 + |score|), as the report says."""
    am = next(c for c in bench.build_cases(tiny=True) if c.name == "upsample_argmax_c21")
    tol = bench.checks.TIE_TOL
    assert tol == 1e-5 and "at most 1e-5·(1 + |eager's score|)" in bench.checks.describe_tolerances()
    ref = torch.zeros(1, 4, 4, dtype=torch.int64)  # eager picks class 0 everywhere
    got = ref.clone()
    got[0, 2, 1] = 1
    for factor, ok in ((0.5, True), (2.0, False)):
        x = torch.full((1, 2, 4, 4), 3.0)
        x[:, 1] = 3.0 - factor * tol * (1 + 3.0)  # class 1 just inside / outside the tie band
        # same size in and out: the resize the check applies is the identity
        res = bench.compare(am, (x,), (ref,), (got,), "fwd")
        assert res["ok"] is ok and res["n_label_mismatch"] == 1, (factor, res)


def test_bench_convert_builtin_largefov_prototxt_matches_the_model():
    """tools/bench_convert.py falls back to its own LargeFOV text: it must be the official topology."""
    from attn2scale.caffe import CaffeNet
    from attn2scale.caffe.reader import parse_net_text

    spec = importlib.util.spec_from_file_location("bench_convert", REPO / "tools" / "bench_convert.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = CaffeNet(parse_net_text(mod._LARGEFOV_PROTOTXT), "TEST", device="meta")
    assert net.blob_shapes["fc8_voc12"] == (1, 21, 41, 41) and net.blob_shapes["pool5a"] == (1, 512, 41, 41)
    assert sum(p.numel() for p in net.parameters()) == 20_505_429  # = deeplab_largefov's count


def _load_threads():
    spec = importlib.util.spec_from_file_location("bench_threads", REPO / "tools" / "bench_threads.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_thread_scaling_tool_reports_every_pass(tmp_path):
    """tools/bench_threads.py: one row per pass of each chosen case, times at both
    thread counts, the speedup their ratio (per round, median), a verdict only
    for the 2-thread target, and the JSON written whole."""
    threads = _load_threads()
    out = tmp_path / "t.json"
    saved = torch.get_num_threads()
    rows = threads.main(["--tiny", "--threads", "2", "--rounds", "1", "--min-sample-ms", "1",
                         "--cases", "merge_max_c21,upsample_argmax_c21", "--json", str(out),
                         "--markdown", str(tmp_path / "t.md")], log=lambda *a: None)
    torch.set_num_threads(1)  # a thread count main() did not end on, to see it restore the caller's
    threads.main(["--tiny", "--threads", "2", "--rounds", "1", "--min-sample-ms", "1", "--cases", "interp_train"],
                 log=lambda *a: None)
    restored = torch.get_num_threads()
    torch.set_num_threads(saved)
    assert restored == 1
    assert [(r["case"], r["pass"]) for r in rows] == [
        ("merge_max_c21", "fwd"), ("merge_max_c21", "fwd+bwd"), ("upsample_argmax_c21", "fwd")]
    for r in rows:
        assert r["one_ms"] > 0 and r["many_ms"] > 0
        # one round: one ratio, the 1-thread time over the N-thread time
        assert r["speedup"] == r["speedup_min"] == r["speedup_max"]
        assert abs(r["speedup"] - r["one_ms"] / r["many_ms"]) <= 1e-9 * r["speedup"]
        assert r["verdict"] == ("PASS" if r["speedup"] >= threads.TARGET_SPEEDUP_2 else "MISS")
    assert json.loads(out.read_text())["rows"] == rows
    table = [ln for ln in (tmp_path / "t.md").read_text().splitlines() if ln.startswith("| merge") or ln.startswith("| upsample")]
    assert len(table) == 3 and table[0].startswith("| merge_max_c21 | fwd |")
    with pytest.raises(SystemExit, match="--threads must be >= 2"):
        threads.main(["--tiny", "--threads", "1"], log=lambda *a: None)
    with pytest.raises(SystemExit, match="--rounds must be >= 1"):
        threads.main(["--tiny", "--rounds", "0"], log=lambda *a: None)
    with ops.use_reference(), pytest.raises(SystemExit, match="nothing fused to time"):
        threads.main(["--tiny"], log=lambda *a: None)

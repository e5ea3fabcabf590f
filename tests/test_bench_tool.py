"""tools/bench_kernels.py: a tiny in-process run (small shapes, 1 repeat, no torch.compile).

Checks the report covers every case and pass, that the fused ops agree with the
stock-PyTorch baselines, that the memory measurement sees the N x C x H x W map
of the eager upsample+argmax (and the fused one does not allocate it), and that
the correctness check can fail.
"""

import importlib.util
import json
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

    for r in data["rows"]:
        where = f"{r['case']} {r['pass']}"
        check = r["correct"]["fused"]
        assert check["ok"], (where, check)
        assert r["compiled"] is None and r["fused_over_compiled"] is None, where
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

    verdicts = {(t["case"], t["pass"]): t["verdict"] for t in data["targets"]}
    assert set(verdicts) == {
        ("merge_attention_c21", "fwd+bwd"), ("merge_attention_c81", "fwd+bwd"),
        ("merge_max_c21", "fwd+bwd"), ("merge_avg_c21", "fwd+bwd"),
        ("upsample_argmax_c21", "fwd"), ("upsample_argmax_c81", "fwd"), ("upsample_argmax_c150", "fwd"),
    }
    assert set(verdicts.values()) <= {"PASS", "MISS", "UNTESTED"}

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

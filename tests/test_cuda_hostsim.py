"""The CUDA kernels, run on the host.

No GPU is available to this project, so the CUDA code needs evidence beyond
compiling. tests/hostsim/hostsim.cpp compiles csrc/cuda/launchers.inl and
kernels.cuh unchanged as host code (A2S_HOST_SIM) and runs every launch over
its grid sequentially; grid-stride loops with no shared memory, warp
intrinsics or atomics make that exact. Here those kernels must reproduce the
CPU kernels bit for bit (same per-element math, same summation order) on the
parity shapes, with the launch grid both as built and capped to 3 blocks so
that every grid-stride loop wraps around.
"""

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from attn2scale import ops

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "csrc").glob("*.h")) + sorted((REPO / "csrc" / "cuda").glob("*.[ch]*")) + [
    REPO / "tests" / "hostsim" / "hostsim.cpp"
]
DT = {torch.float32: 0, torch.float64: 1}
MODES = ops.MERGE_MODES  # name -> the code the C entry points take (held against C++ in test_ops_merge_modes.py)

pytestmark = pytest.mark.skipif(not ops.extension_available(), reason="compiled extension (CPU kernels) not built")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the host simulation")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:16]
    so = tmp_path_factory.mktemp("hostsim") / f"hostsim_{digest}.so"
    # -ffp-contract=off: like nvcc --fmad=false and the CPU build, no fused multiply-add.
    cmd = [cxx, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", f"-I{REPO / 'csrc'}",
           str(REPO / "tests" / "hostsim" / "hostsim.cpp"), "-o", str(so)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(so))
    for name in ("interp_forward", "interp_backward", "scale_merge_forward", "scale_merge_backward", "upsample_argmax"):
        getattr(lib, f"a2s_sim_{name}").restype = ctypes.c_char_p
    return lib


@pytest.fixture(params=[None, 3], ids=["grid-as-built", "grid-3-blocks"])
def grid(sim, request):
    sim.a2s_sim_set_max_blocks(request.param or (1 << 16))
    yield sim
    sim.a2s_sim_set_max_blocks(1 << 16)


def ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None and t.numel() else None


def i64(v):
    return ctypes.c_int64(int(v))


def check(err):
    assert err is None, err.decode()


def rand(*shape, dtype, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


INTERP_CASES = [
    # (N, C, H, W, Ho, Wo, pad_beg, pad_end)
    (2, 3, 9, 9, 17, 17, 0, 0),
    (1, 4, 21, 21, 41, 41, 0, 0),
    (1, 2, 31, 31, 41, 41, 0, 0),
    (1, 2, 41, 41, 321, 321, 0, 0),
    (1, 2, 321, 321, 41, 41, 0, 0),
    (2, 1, 11, 6, 7, 4, 0, 0),
    (1, 3, 8, 8, 9, 9, -1, -2),
    (1, 3, 9, 9, 4, 4, -2, 0),
    (1, 2, 7, 5, 7, 5, 0, 0),
    (1, 2, 5, 6, 1, 1, 0, 0),
    (1, 2, 1, 1, 3, 4, 0, 0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", INTERP_CASES, ids=lambda c: "x".join(map(str, c)))
def test_interp_kernels_match_cpu(grid, case, dtype):
    n, c, h, w, ho, wo, pb, pe = case
    x = rand(n, c, h, w, dtype=dtype, seed=h * 100 + ho)
    he, we = h + pb + pe, w + pb + pe
    y = torch.empty(n, c, ho, wo, dtype=dtype)
    check(grid.a2s_sim_interp_forward(DT[dtype], ptr(x), ptr(y), i64(n * c), h, w, -pb, he, we, ho, wo))
    assert torch.equal(y, torch.ops.attn2scale.interp(x, [ho, wo], pb, pe))
    g = rand(n, c, ho, wo, dtype=dtype, seed=7)
    gx = torch.full_like(x, float("nan"))  # every element must be written
    check(grid.a2s_sim_interp_backward(DT[dtype], ptr(g), ptr(gx), i64(n * c), h, w, -pb, he, we, ho, wo))
    assert torch.equal(gx, torch.ops.attn2scale.interp_backward(g, [n, c, h, w], pb, pe))


MERGE_SHAPES = [
    # (N, C, per-scale sizes, target)
    (2, 5, [(13, 13), (10, 10), (7, 7)], (13, 13)),
    (1, 7, [(41, 41), (31, 31), (21, 21)], (41, 41)),
    (2, 3, [(9, 11), (5, 6)], (9, 11)),
    (1, 4, [(6, 5), (9, 8), (3, 3), (4, 4)], (8, 7)),
    (1, 2, [(5, 5)], (5, 5)),
]


def run_sim_merge(sim, scores, size, mode, logits, gate, grad, avg_weight):
    dtype = scores[0].dtype
    n, c = scores[0].shape[:2]
    s = len(scores)
    H, W = size
    hs = (ctypes.c_int * s)(*[p.shape[2] for p in scores])
    ws = (ctypes.c_int * s)(*[p.shape[3] for p in scores])
    ps = (ctypes.c_void_p * s)(*[p.data_ptr() for p in scores])
    out = torch.full((n, c, H, W), float("nan"), dtype=dtype)
    if mode == "attention":
        aux = torch.empty(n, s, H, W, dtype=dtype)
    elif mode == "max":
        aux = torch.empty(n, c, H, W, dtype=torch.uint8)
    else:
        aux = None
    args = (DT[dtype], MODES[mode], s, i64(n), i64(c), H, W, hs, ws, ps, ptr(gate), ctypes.c_double(avg_weight))
    check(sim.a2s_sim_scale_merge_forward(*args, ptr(logits), ptr(out), ptr(aux)))
    g_scores = [torch.full_like(p, float("nan")) for p in scores]
    gs = (ctypes.c_void_p * s)(*[t.data_ptr() for t in g_scores])
    g_logits = torch.empty(n, s, H, W, dtype=dtype) if mode == "attention" else None
    g_gate = torch.empty_like(gate) if gate is not None else None
    check(sim.a2s_sim_scale_merge_backward(*args, ptr(grad), ptr(aux), gs, ptr(g_logits), ptr(g_gate)))
    return out, aux, g_scores, g_logits, g_gate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_gate", [False, True], ids=["nogate", "gate"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("shape", MERGE_SHAPES, ids=lambda s: f"N{s[0]}C{s[1]}S{len(s[2])}")
def test_scale_merge_kernels_match_cpu(grid, shape, mode, with_gate, dtype):
    n, c, sizes, size = shape
    scores = [rand(n, c, h, w, dtype=dtype, seed=10 + i) for i, (h, w) in enumerate(sizes)]
    logits = rand(n, len(sizes), *size, dtype=dtype, seed=3) if mode == "attention" else None
    gate = torch.rand(n, c, *size, generator=torch.Generator().manual_seed(4), dtype=dtype) if with_gate else None
    grad = rand(n, c, *size, dtype=dtype, seed=5)
    avg_weight = 0.33333 if mode == "avg" else 1.0 / len(sizes)
    out, aux, g_scores, g_logits, g_gate = run_sim_merge(grid, scores, size, mode, logits, gate, grad, avg_weight)

    ref_out, ref_aux = torch.ops.attn2scale.scale_merge(
        scores, list(size), mode, logits, gate, avg_weight if mode == "avg" else None
    )
    assert torch.equal(out, ref_out)
    if aux is not None:
        assert torch.equal(aux, ref_aux)
    ref_gs, ref_gl, ref_gg = torch.ops.attn2scale.scale_merge_backward(
        grad, scores, mode, ref_aux, gate, avg_weight if mode == "avg" else None
    )
    for a, b in zip(g_scores, ref_gs):
        assert torch.equal(a, b)
    if g_logits is not None:
        assert torch.equal(g_logits, ref_gl)
    if g_gate is not None:
        assert torch.equal(g_gate, ref_gg)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "case", [(1, 21, 9, 9, 65, 65), (2, 7, 17, 13, 129, 97), (1, 5, 8, 8, 8, 8), (1, 3, 6, 5, 1, 1)],
    ids=lambda c: "x".join(map(str, c)),
)
def test_upsample_argmax_kernel_matches_cpu(grid, case, dtype):
    n, c, h, w, H, W = case
    x = rand(n, c, h, w, dtype=dtype, seed=c + H)
    x[0, 1, 0, 0] = x[0, 0, 0, 0]  # a tie: the lower class must win on both
    labels = torch.empty(n, H, W, dtype=torch.int64)
    score = torch.empty(n, H, W, dtype=dtype)
    check(grid.a2s_sim_upsample_argmax(DT[dtype], ptr(x), i64(n), i64(c), h, w, H, W, ptr(labels), ptr(score)))
    ref_labels, ref_score = torch.ops.attn2scale.upsample_argmax(x, [H, W], True)
    assert torch.equal(labels, ref_labels)
    assert torch.equal(score, ref_score)


def test_simulation_refuses_half(sim):
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float16)
    y = torch.empty(1, 1, 3, 3, dtype=torch.float16)
    err = sim.a2s_sim_interp_forward(2, ptr(x), ptr(y), i64(1), 2, 2, 0, 2, 2, 3, 3)
    assert err is not None and b"float32 and float64" in err


@pytest.mark.parametrize("code", [len(MODES), -1, 255], ids=lambda c: f"code{c}")
def test_simulation_refuses_unknown_mode_code(sim, code):
    """dispatch_mode on an unknown code: an error naming it, and no kernel
    runs (the outputs keep their sentinels). Before the table it ran the
    attention kernels on weights nobody had computed."""
    n, c, H, W = 1, 2, 5, 5
    scores = [rand(n, c, 5, 5, dtype=torch.float32, seed=1), rand(n, c, 3, 3, dtype=torch.float32, seed=2)]
    hs, ws = (ctypes.c_int * 2)(5, 3), (ctypes.c_int * 2)(5, 3)
    ps = (ctypes.c_void_p * 2)(*[p.data_ptr() for p in scores])
    logits = rand(n, 2, H, W, dtype=torch.float32, seed=3)
    out = torch.full((n, c, H, W), float("nan"))
    aux = torch.full((n, 2, H, W), 0.5)  # room for any mode's aux, so nothing but the check can stop a kernel
    args = (0, code, 2, i64(n), i64(c), H, W, hs, ws, ps, None, ctypes.c_double(0.5))
    want = f"scale_merge: unknown merge mode code {code}; the codes are 0..{len(MODES) - 1} for 'avg', 'max' or 'attention'"
    err = sim.a2s_sim_scale_merge_forward(*args, ptr(logits), ptr(out), ptr(aux))
    assert err is not None and err.decode() == want
    assert out.isnan().all() and (aux == 0.5).all()
    g_scores = [torch.full_like(p, float("nan")) for p in scores]
    gs = (ctypes.c_void_p * 2)(*[t.data_ptr() for t in g_scores])
    g_logits = torch.full((n, 2, H, W), float("nan"))
    grad = torch.ones(n, c, H, W)
    err = sim.a2s_sim_scale_merge_backward(*args, ptr(grad), ptr(aux), gs, ptr(g_logits), None)
    assert err is not None and err.decode() == want
    assert all(t.isnan().all() for t in g_scores) and g_logits.isnan().all()

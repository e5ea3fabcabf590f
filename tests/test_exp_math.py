"""csrc/exp_math.h: the softmax's exp, against numpy.

The kernels use this exp (not expf/exp) so that CPU and CUDA attention
weights agree bit for bit: it uses only IEEE +, -, *, conversions and exact powers of two.
Stated accuracy, over the range softmax uses (x <= 0, down to float/double
underflow) and beyond:
* float:  within 1 ulp of exp(x) everywhere, and the correctly rounded value
  almost everywhere (exhaustively, when this header was written: all but 1
  of the 1.12e9 floats in [-104, 0] equal expl rounded to float; glibc's
  expf differs from that on 97052 of them); checked here on 2.6 million
  samples against numpy's float64 exp rounded to float32.
* double: within 1 ulp of exp(x) (numpy longdouble exp as the reference).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

SHIM = r"""
#include "exp_math.h"
extern "C" void exp_f(const float* x, float* y, long n) { for (long i = 0; i < n; ++i) y[i] = a2s::exp_portable(x[i]); }
extern "C" void exp_d(const double* x, double* y, long n) { for (long i = 0; i < n; ++i) y[i] = a2s::exp_portable(x[i]); }
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    import ctypes

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    d = tmp_path_factory.mktemp("expmath")
    (d / "shim.cpp").write_text(SHIM)
    # -ffp-contract=off as in setup.py / CMakeLists.txt (and nvcc --fmad=false)
    subprocess.run([cxx, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC", f"-I{REPO / 'csrc'}",
                    str(d / "shim.cpp"), "-o", str(d / "shim.so")], check=True)
    return ctypes.CDLL(str(d / "shim.so"))


def run(lib, x):
    import ctypes

    y = np.empty_like(x)
    fn = lib.exp_f if x.dtype == np.float32 else lib.exp_d
    fn(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p), ctypes.c_long(x.size))
    return y


def ulp_diff_f32(a, b):
    """Distance in representable floats (both finite and >= 0 here)."""
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def float_samples():
    rng = np.random.default_rng(0)
    parts = [
        rng.uniform(-104.0, 0.0, 2_000_000),           # the softmax range, to float underflow
        -np.exp(rng.uniform(np.log(1e-12), 0, 300_000)),  # tiny differences from the max
        rng.uniform(0.0, 88.7, 300_000),                # positive arguments, to just below overflow
        [0.0, -0.0, -87.33, -87.34, -103.27, -103.28, -103.97, -104.0, 88.72, -1e-30],
    ]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(np.float32)


def test_float_exp_is_correctly_rounded(lib):
    x = float_samples()
    got = run(lib, x)
    want = np.exp(x.astype(np.float64)).astype(np.float32)  # float64 exp, rounded once to float
    assert np.isfinite(got).all() and (got >= 0).all()
    assert ulp_diff_f32(got, want).max() <= 1
    # numpy's float64 exp can itself round a float midpoint case the other way
    # (probability ~1e-9 per sample), so allow a handful, not a fraction.
    assert int((got != want).sum()) <= 2


def test_float_exp_special_values(lib):
    x = np.array([np.nan, np.inf, -np.inf, 89.0, 100.0, -200.0, 0.0], dtype=np.float32)
    got = run(lib, x)
    assert np.isnan(got[0])
    assert got[1] == np.inf and got[3] == np.inf and got[4] == np.inf
    assert got[2] == 0.0 and got[5] == 0.0 and got[6] == 1.0


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs an 80-bit (or wider) longdouble reference")
def test_double_exp_within_one_ulp(lib):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-708.0, 0.0, 500_000), rng.uniform(0.0, 709.0, 100_000),
                        -np.exp(rng.uniform(np.log(1e-15), 0, 100_000))])
    got = run(lib, x)
    want = np.exp(x.astype(np.longdouble))
    ulp = np.spacing(want.astype(np.float64)).astype(np.longdouble)
    err = np.abs(got.astype(np.longdouble) - want) / ulp
    assert float(err.max()) <= 1.0, float(err.max())
    assert run(lib, np.array([0.0, -np.inf, np.inf, 710.0, -746.0]))[[0, 1, 2, 3, 4]].tolist() == [1.0, 0.0, np.inf, np.inf, 0.0]


def softmax_weights_scalar(lib, logits):
    """softmax_scales (scale_merge_math.h) per pixel, in float32 numpy with the
    shim's scalar exp: running max over the scales, exp of the difference, the
    sum in scale order, one division."""
    x = logits.astype(np.float32)
    m = x[:, 0].copy()
    for s in range(1, x.shape[1]):
        v = x[:, s]
        m = np.where(v > m, v, m)  # m = v > m ? v : m, NaN included
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, as in the kernel
        e = np.stack([run(lib, (x[:, s] - m).astype(np.float32)) for s in range(x.shape[1])], 1)
    total = np.zeros_like(m)
    for s in range(x.shape[1]):
        total = (total + e[:, s]).astype(np.float32)
    return (e / total[:, None]).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cpu_softmax_weights_bitwise(lib, dtype):
    """The CPU kernels' softmax runs exp_portable as separate vectorised loops
    (clamp, core, NaN); its weights must be bitwise the scalar exp's, for
    ordinary logits, far-apart ones (exp underflow), infinities and NaN."""
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("attn2scale.ops")
    if not ops.extension_available():
        pytest.skip("needs the compiled extension (attn2scale._C)")
    rng = np.random.default_rng(3)
    n, S, H, W = 3, 4, 37, 29  # H * W = 1073: several 256-pixel blocks and a ragged last one
    logits = rng.normal(0, 3, (n, S, H, W)).astype(np.float32)
    special = [150, -150, np.inf, -np.inf, np.nan, 1e30, -1e30, -103.9, -104.1, 88.9, 89.1, 0.0]
    for s in range(S):  # each special value in one scale at a time, the others ordinary
        logits[0, s, s, : len(special)] = special
    logits[0, :, 20, :8] = [[0, 150, -150, np.inf, -np.inf, np.nan, 1e30, -1e30]] * S  # and in every scale
    logits[1, 2, 5, :] = -200.0  # exp underflows to 0 (the clamp at -104)
    logits[1, 0, 6, :] = -103.95  # next to the clamp from both sides of the max
    logits[1, 1, 6, :] = 0.1
    logits[2, 1, 7, 3] = np.nan
    tdt = getattr(torch, dtype)
    t = torch.from_numpy(logits).to(tdt)
    scores = [torch.zeros(n, 1, H, W, dtype=tdt) for _ in range(S)]
    _, w = torch.ops.attn2scale.scale_merge(scores, [H, W], "attention", t, None, None)
    flat = t.float().numpy().transpose(0, 2, 3, 1).reshape(-1, S)  # what the kernel loads, as float
    want = softmax_weights_scalar(lib, flat).reshape(n, H, W, S).transpose(0, 3, 1, 2)
    want = torch.from_numpy(np.ascontiguousarray(want)).to(tdt)  # one rounding to the storage type
    got = w.contiguous()
    assert torch.equal(torch.isnan(got.float()), torch.isnan(want.float()))
    same = (got.float() == want.float()) | torch.isnan(want.float())
    assert bool(same.all()), f"{int((~same).sum())} of {same.numel()} weights differ"

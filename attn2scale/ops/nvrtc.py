"""The CUDA kernels compiled at run time with NVRTC (through cupy).

A pip install without a CUDA toolkit builds attn2scale._C with CPU kernels
only, so a GPU user would get the pure-PyTorch reference ops. With cupy
installed (``pip install -e .[cupy]``) this module assembles
csrc/cuda/kernels.cuh and the project headers it includes into one source,
compiles it with NVRTC (``--fmad=false``, as the nvcc build) and registers
the five ops for torch's CUDA dispatch key. The kernels run on torch's
current stream, directly on the tensors' memory (their device pointers; no
copies). Launch geometry comes from csrc/cuda/grid.h and the launch sequence
mirrors csrc/cuda/launchers.inl, so results equal the nvcc build's.

It needs the source tree (an editable install or a checkout), since the
kernels are compiled from csrc/. :func:`select` decides whether to use it.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from functools import lru_cache
from pathlib import Path

import torch

from .reference import MERGE_MODES

CSRC = Path(__file__).resolve().parents[2] / "csrc"
ENTRY = "cuda/kernels.cuh"
HALF_TYPES = "cuda/num_cuda.h"  # Num<__half>, Num<__nv_bfloat16>; needs cuda_fp16.h
INSTALL_HINT = "pip install -e .[cupy] (cupy-cuda13x, matching torch's CUDA 13)"
# --fmad=false: round as the nvcc build and the CPU. -default-device: NVRTC
# refuses host functions; the headers' few host helpers (dispatch_mode,
# blocks_for, launcher declarations) are then device code nobody calls.
OPTIONS = ("--std=c++17", "--fmad=false", "-default-device")

# NVRTC has no C/C++ library headers; these are the names the kernels use.
PRELUDE = """// Assembled by attn2scale/ops/nvrtc.py. NVRTC has no standard headers;
// nvcc (the test that compiles this source) has them.
#if defined(__CUDACC_RTC__)
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
namespace std {
template <typename T, T v>
struct integral_constant { static constexpr T value = v; };
}
#else
#include <math.h>
#include <cstdint>
#include <type_traits>
#endif
"""
PRELUDE_PROVIDES = {"cstdint", "type_traits", "math.h"}  # math.h: NVRTC has the math functions built in
TOOLKIT_HEADERS = {"cuda_fp16.h", "cuda_bf16.h"}
_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')

DTYPES = {torch.float32: "float", torch.float64: "double", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}


def assemble_source(with_half: bool = True, root: Path = CSRC) -> str:
    """kernels.cuh with every project header inlined once, in include order."""
    seen, out = set(), [PRELUDE]

    def visit(path: Path):
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        if rel in seen:  # #pragma once
            return
        seen.add(rel)
        out.append(f"// ---- csrc/{rel}")
        host_only = False  # inside `#if !defined(__CUDACC_RTC__)`: NVRTC's preprocessor drops it, keep as is
        for line in path.read_text().splitlines():
            m = _INCLUDE.match(line)
            if line.startswith("#if !defined(__CUDACC_RTC__)"):
                host_only = True
            elif host_only and line.startswith("#endif"):
                host_only = False
            if host_only:
                out.append(line)
            elif m and m.group(1) == '"':
                visit(path.parent / m.group(2))
            elif m and m.group(2) in PRELUDE_PROVIDES:
                out.append(f"// {line.strip()} (prelude)")
            elif m and m.group(2) not in TOOLKIT_HEADERS:
                raise ValueError(f"csrc/{rel} includes <{m.group(2)}>, which NVRTC does not provide")
            elif line.strip() != "#pragma once":
                out.append(line)

    if with_half:
        visit(root / HALF_TYPES)
    visit(root / ENTRY)
    return "\n".join(out) + "\n"


def kernel_names(type_name: str) -> list:
    """The template instances one dtype needs (NVRTC name expressions)."""
    k = "a2s::kern::"
    names = [f"{k}{n}<{type_name}>" for n in ("interp_forward", "interp_backward", "softmax_scales_kernel",
                                               "upsample_argmax_kernel")]
    for mode in MERGE_MODES.values():  # the MergeMode codes (held against C++ in tests/test_ops_merge_modes.py)
        names += [f"{k}{n}<{type_name}, {mode}>" for n in ("merge_forward", "merge_backward_scores",
                                                           "merge_backward_pixels")]
    return names


@lru_cache(maxsize=None)
def launch_geometry(root: Path = CSRC) -> tuple:
    """(threads per block, block cap) as csrc/cuda/grid.h defines them."""
    text = (root / "cuda" / "grid.h").read_text()
    threads = re.search(r"constexpr int kThreads = (\d+);", text)
    cap = re.search(r"constexpr int64_t kMaxBlocks = (\d+);", text)
    if not threads or not cap:
        raise RuntimeError("csrc/cuda/grid.h: kThreads / kMaxBlocks not found; update attn2scale/ops/nvrtc.py")
    return int(threads.group(1)), int(cap.group(1))


def blocks_for(n: int) -> int:
    """csrc/cuda/grid.h's blocks_for(n)."""
    threads, cap = launch_geometry()
    return max(1, min(cap, (n + threads - 1) // threads))


def max_scales(root: Path = CSRC) -> int:
    m = re.search(r"constexpr int kMaxScales = (\d+);", (root / "macros.h").read_text())
    return int(m.group(1))


def toolkit_include_dirs() -> list:
    """Directories holding cuda_fp16.h: torch's nvidia pip wheels or CUDA_HOME."""
    cands = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include")]
    for base in sys.path:
        cands += sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "include")))
        cands += sorted(glob.glob(os.path.join(base, "nvidia", "cuda_runtime", "include")))
    return [d for d in dict.fromkeys(cands) if os.path.exists(os.path.join(d, "cuda_fp16.h"))]


def compile_options(type_name: str, include_dirs=None) -> tuple:
    """NVRTC options for one dtype: OPTIONS, then -I for every toolkit include
    folder (default :func:`toolkit_include_dirs`), in that order. All of them,
    not just the first: the first folder holding cuda_fp16.h need not hold every
    header it includes (CUDA_HOME and the pip wheels may be different releases),
    and NVRTC searches the -I folders in order."""
    dirs = toolkit_include_dirs() if include_dirs is None else list(include_dirs)
    if type_name in ("__half", "__nv_bfloat16") and not dirs:
        raise RuntimeError(f"attn2scale: NVRTC kernels for {type_name} need cuda_fp16.h (CUDA_HOME or nvidia pip headers)")
    return OPTIONS + tuple(f"-I{d}" for d in dirs)


def select(compiled_cuda: bool, gpu=None, have_cupy=None) -> tuple:
    """(use the NVRTC kernels?, why not). gpu and have_cupy are callables
    (default torch.cuda.is_available, cupy_importable), asked only when needed:
    importing cupy costs time, and only GPU users without nvcc-built kernels
    need it. ATTN2SCALE_NVRTC=0 turns the path off."""
    if compiled_cuda:
        return False, "the extension has CUDA kernels"
    if os.environ.get("ATTN2SCALE_NVRTC", "1") == "0":
        return False, "ATTN2SCALE_NVRTC=0"
    if not (gpu or torch.cuda.is_available)():
        return False, "no GPU"
    if not (have_cupy or cupy_importable)():
        return False, f"the extension has no CUDA kernels and cupy is not installed; for runtime-compiled kernels: {INSTALL_HINT}"
    if not (CSRC / ENTRY).exists():
        return False, f"the kernel sources ({CSRC / ENTRY}) are not installed; use an editable install"
    return True, ""


def cupy_importable() -> bool:
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a cupy that cannot find its CUDA libraries
        return False
    return True


def require_cupy():
    """cupy, or an ImportError that names the extra to install."""
    try:
        import cupy
    except Exception as exc:
        raise ImportError(f"attn2scale: runtime-compiled CUDA kernels need cupy: {INSTALL_HINT} ({exc})") from exc
    return cupy


@lru_cache(maxsize=None)
def module(type_name: str):
    """The compiled kernels of one dtype (compiled on first use, cached by cupy on disk)."""
    cupy = require_cupy()
    half = type_name in ("__half", "__nv_bfloat16")
    return cupy.RawModule(code=assemble_source(with_half=half), options=compile_options(type_name),
                          name_expressions=kernel_names(type_name))

"""The runtime-compiled (cupy NVRTC) CUDA path, as far as it runs without a GPU.

Running the kernels needs a GPU (tests/test_cuda_device.py). Here: the source
string handed to NVRTC is complete (every project header inlined once, no
project #include left) and compiles, both with the real NVRTC library that
torch's CUDA wheels ship and with nvcc; every toolkit include folder reaches
NVRTC; the launch geometry and argument structs agree with the C++ side; the
path is chosen only when it should be, on the first CUDA tensor rather than
at import, and a missing cupy gives a message naming the extra. (The ops'
argument checks: tests/test_nvrtc_checks.py.)
"""

import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from attn2scale.ops import MERGE_MODES, nvrtc

REPO = Path(__file__).resolve().parents[1]
TYPES = ["float", "double", "__half", "__nv_bfloat16"]


def test_source_inlines_every_project_header_once():
    src = nvrtc.assemble_source(with_half=True)
    assert not re.search(r'#\s*include\s*"', src), "a project #include is left"
    assert "#pragma once" not in src
    inlined = re.findall(r"^// ---- csrc/(\S+)$", src, re.M)
    assert len(inlined) == len(set(inlined))
    # Independently of the assembler: the quoted includes of the inlined files
    # (resolved by hand) are all inlined, and these headers must be there.
    for rel in inlined:
        base = (REPO / "csrc" / rel).parent
        for inc in re.findall(r'#include "([^"]+)"', (REPO / "csrc" / rel).read_text()):
            assert (base / inc).resolve().relative_to((REPO / "csrc").resolve()).as_posix() in inlined
    assert {"macros.h", "exp_math.h", "interp_math.h", "scale_merge_math.h", "cuda/grid.h", "cuda/launch.h",
            "cuda/kernels.cuh", "cuda/num_cuda.h"} <= set(inlined)
    # each header's text appears exactly once
    body = (REPO / "csrc" / "exp_math.h").read_text()
    assert src.count("A2S_INLINE double exp_portable(double x)") == 1 and "exp_portable" in body
    assert "cuda/num_cuda.h" not in re.findall(r"^// ---- csrc/(\S+)$", nvrtc.assemble_source(with_half=False), re.M)


def test_kernel_names_exist_in_source():
    src = nvrtc.assemble_source()
    for t in TYPES:
        for name in nvrtc.kernel_names(t):
            base = name.split("<")[0].split("::")[-1]
            assert re.search(rf"A2S_KERNEL void {base}\(", src), name


def test_kernel_names_cover_every_merge_mode():
    """One instance of each merge kernel per MergeMode code of the Python table."""
    names = " ".join(nvrtc.kernel_names("float"))
    for kernel in ("merge_forward", "merge_backward_scores", "merge_backward_pixels"):
        codes = [int(m) for m in re.findall(rf"a2s::kern::{kernel}<float, (\d+)>", names)]
        assert codes == list(MERGE_MODES.values()), kernel


def _fake_toolkit(tmp_path, monkeypatch):
    """CUDA_HOME and two nvidia pip wheel folders, each with cuda_fp16.h, plus one
    without it; returns the folders toolkit_include_dirs should find, in order."""
    cuda_home, site = tmp_path / "cuda", tmp_path / "site"
    found = [cuda_home / "include", site / "nvidia" / "cu13" / "include", site / "nvidia" / "cuda_runtime" / "include"]
    for d in found:
        d.mkdir(parents=True)
        (d / "cuda_fp16.h").write_text("")
    (site / "nvidia" / "cu12" / "include").mkdir(parents=True)  # no cuda_fp16.h: not a toolkit folder
    monkeypatch.setenv("CUDA_HOME", str(cuda_home))
    monkeypatch.setattr(sys, "path", [str(site)])
    return [str(d) for d in found]


def test_compile_options_pass_every_include_dir_in_order(tmp_path, monkeypatch):
    dirs = _fake_toolkit(tmp_path, monkeypatch)
    assert nvrtc.toolkit_include_dirs() == dirs
    for t in TYPES:
        assert nvrtc.compile_options(t) == nvrtc.OPTIONS + tuple(f"-I{d}" for d in dirs), t
    assert nvrtc.compile_options("float", []) == nvrtc.OPTIONS
    for t in ("__half", "__nv_bfloat16"):
        with pytest.raises(RuntimeError, match=f"NVRTC kernels for {t} need cuda_fp16.h"):
            nvrtc.compile_options(t, [])


def test_module_compiles_with_compile_options(tmp_path, monkeypatch):
    """nvrtc.module hands cupy's RawModule every include folder (a stand-in cupy records the call)."""
    dirs = _fake_toolkit(tmp_path, monkeypatch)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=lambda **kw: kw))
    nvrtc.module.cache_clear()
    try:
        got = nvrtc.module("__half")
    finally:
        nvrtc.module.cache_clear()
    assert got["options"] == nvrtc.OPTIONS + tuple(f"-I{d}" for d in dirs)
    assert got["name_expressions"] == nvrtc.kernel_names("__half")


def _libnvrtc():
    for base in sys.path:
        for lib in sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "lib", "libnvrtc.so.*"))):
            builtins = glob.glob(os.path.join(os.path.dirname(lib), "libnvrtc-builtins.so.*"))
            if builtins:
                ctypes.CDLL(sorted(builtins)[0], mode=ctypes.RTLD_GLOBAL)
                return ctypes.CDLL(lib)
    pytest.skip("no libnvrtc (torch's nvidia pip wheels) on this machine")


@pytest.mark.parametrize("type_name", TYPES)
def test_source_compiles_with_nvrtc(type_name):
    """What cupy.RawModule does, through libnvrtc directly (no GPU needed to compile)."""
    lib = _libnvrtc()
    half = type_name.startswith("__")
    if half and not nvrtc.toolkit_include_dirs():
        pytest.skip("no cuda_fp16.h")
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), nvrtc.assemble_source(with_half=half).encode(), b"a2s.cu", 0,
                                  None, None) == 0
    names = nvrtc.kernel_names(type_name)
    for n in names:
        assert lib.nvrtcAddNameExpression(prog, n.encode()) == 0
    opts = [o.encode() for o in nvrtc.compile_options(type_name)]
    opts.append(b"-arch=compute_80")
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode()
    for n in names:
        lowered = ctypes.c_char_p()
        assert lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(lowered)) == 0 and lowered.value, n
    lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_source_compiles_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not os.path.exists(nvcc):
        pytest.skip("no nvcc")
    # Taking each instance's address instantiates it, as NVRTC's name expressions do.
    inst = ", ".join(f"(const void*)&{n}" for t in TYPES for n in nvrtc.kernel_names(t))
    cu = tmp_path / "a2s_nvrtc.cu"
    cu.write_text(nvrtc.assemble_source() + f"\nconst void* a2s_instances[] = {{{inst}}};\n")
    r = subprocess.run([nvcc, "-std=c++17", "--fmad=false", "-arch=sm_80", "-c", str(cu), "-o", str(tmp_path / "k.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


CPP_LAYOUT = r"""
#include <cstddef>
#include <cstdio>
#include "cuda/grid.h"
#include "cuda/launch.h"
using namespace a2s;
int main() {
  const long long ns[] = {0, 1, 255, 256, 257, 1000000, 256LL * 65536, 256LL * 65536 + 1, 1LL << 40};
  for (long long n : ns) std::printf("%llu ", (unsigned long long)blocks_for(n));
  std::printf("\n%d %zu %zu %zu %zu\n", kThreads, sizeof(cuda::InterpArgs), offsetof(cuda::InterpArgs, off),
              offsetof(cuda::InterpArgs, Wo), sizeof(cuda::MergeArgs));
  std::printf("%zu %zu %zu %zu %zu %zu\n", offsetof(cuda::MergeArgs, N), offsetof(cuda::MergeArgs, h),
              offsetof(cuda::MergeArgs, w), offsetof(cuda::MergeArgs, P), offsetof(cuda::MergeArgs, gate),
              offsetof(cuda::MergeArgs, avg_weight));
}
"""


def test_launch_geometry_and_arg_structs_match_cpp(tmp_path):
    pytest.importorskip("attn2scale.ops._nvrtc_ops")
    from attn2scale.ops import _nvrtc_ops

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "l.cpp").write_text(CPP_LAYOUT)
    subprocess.run([cxx, "-std=c++17", "-DA2S_HOST_SIM", f"-I{REPO / 'csrc'}", str(tmp_path / "l.cpp"), "-o",
                    str(tmp_path / "l")], check=True)
    lines = subprocess.run([str(tmp_path / "l")], check=True, capture_output=True, text=True).stdout.split("\n")
    ns = [0, 1, 255, 256, 257, 1000000, 256 * 65536, 256 * 65536 + 1, 1 << 40]
    assert [nvrtc.blocks_for(n) for n in ns] == [int(v) for v in lines[0].split()]
    threads, isz, ioff, iwo, msz = (int(v) for v in lines[1].split())
    assert nvrtc.launch_geometry()[0] == threads
    d = _nvrtc_ops.INTERP_ARGS
    assert (d.itemsize, d.fields["off"][1], d.fields["Wo"][1]) == (isz, ioff, iwo)
    m = _nvrtc_ops.merge_args_dtype(nvrtc.max_scales())
    assert m.itemsize == msz
    assert [m.fields[k][1] for k in ("N", "h", "w", "P", "gate", "avg_weight")] == [int(v) for v in lines[2].split()]


def test_selection(monkeypatch):
    yes, no = (lambda: True), (lambda: False)
    assert nvrtc.select(True, yes, yes) == (False, "the extension has CUDA kernels")
    assert nvrtc.select(False, no, yes) == (False, "no GPU")
    use, why = nvrtc.select(False, yes, no)
    assert not use and "pip install -e .[cupy]" in why
    assert nvrtc.select(False, yes, yes) == (True, "")
    monkeypatch.setenv("ATTN2SCALE_NVRTC", "0")
    assert nvrtc.select(False, yes, yes) == (False, "ATTN2SCALE_NVRTC=0")


def test_missing_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert not nvrtc.cupy_importable()
    with pytest.raises(ImportError, match=re.escape("pip install -e .[cupy]")):
        nvrtc.require_cupy()


# A CPU-only extension on a pretended GPU (torch.cuda.is_available counts its
# calls), with a stand-in cupy or none: what is decided at import, at the
# first CUDA tensor, and after. _use_fused reads only a tensor's device.
WIRING = """
import json, sys, types, warnings, torch
asked = []
torch.cuda.is_available = lambda: asked.append(1) or True
sys.modules["cupy"] = types.ModuleType("cupy") if {fake_cupy} else None
from attn2scale.ops import api
has = lambda: torch._C._dispatch_has_kernel_for_dispatch_key("attn2scale::scale_merge", "CUDA")
at_import = dict(asked=len(asked), decided=api._nvrtc_decided, has_kernel=has(),
                 nvrtc_loaded="attn2scale.ops.nvrtc" in sys.modules)
cuda_tensor = types.SimpleNamespace(device=torch.device("cuda", 0))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fused = api._use_fused(cuda_tensor)
    first = dict(fused=fused, asked=len(asked), has_kernel=has(), why=api._nvrtc_why,
                 warnings=[str(w.message) for w in caught])
    again = dict(fused=api._use_fused(cuda_tensor), active=api.nvrtc_kernels_active(), asked=len(asked))
print(json.dumps(dict(at_import=at_import, first=first, again=again, compiled=api.cuda_kernels_available())))
"""


def _run(code):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ATTN2SCALE_NVRTC", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _needs_cpu_only_extension():
    from attn2scale import ops

    if not ops.extension_available() or ops.cuda_kernels_available():
        pytest.skip("needs the CPU-only extension")


@pytest.mark.parametrize("fake_cupy", [True, False], ids=["cupy", "no-cupy"])
def test_gpu_without_cuda_kernels_selects_nvrtc(fake_cupy):
    """A (pretended) GPU and a CPU-only extension: nothing is decided at import
    (no torch.cuda.is_available call); the first CUDA tensor gets NVRTC CUDA
    kernels when cupy imports, else the reference with a warning naming the
    extra to install; the decision is made once."""
    _needs_cpu_only_extension()
    r = _run(WIRING.format(fake_cupy=fake_cupy))
    assert r["compiled"] is False
    assert r["at_import"] == dict(asked=0, decided=False, has_kernel=False, nvrtc_loaded=False)
    first, again = r["first"], r["again"]
    assert first["asked"] == 1 and again["asked"] == 1
    if fake_cupy:
        assert (first["fused"], first["has_kernel"], first["why"], first["warnings"]) == (True, True, "", [])
        assert again == dict(fused=True, active=True, asked=1)
    else:
        assert (first["fused"], first["has_kernel"]) == (False, False) and "pip install -e .[cupy]" in first["why"]
        assert len(first["warnings"]) == 1 and "pip install -e .[cupy]" in first["warnings"][0]
        assert again == dict(fused=False, active=False, asked=1)


def test_nvrtc_selection_mark_is_assume_constant_result():
    """api marks _select_nvrtc as torch.compiler.assume_constant_result does
    (without importing torch._dynamo); a torch that marks differently fails here."""
    import torch

    from attn2scale.ops import api

    def probe():
        return True

    marks = dict(vars(torch.compiler.assume_constant_result(probe)))
    assert marks and all(getattr(api._select_nvrtc, k, None) == v for k, v in marks.items()), marks


COMPILED_FIRST_DECISION = """
import json, sys, torch
from attn2scale.ops import api, nvrtc
select, calls = nvrtc.select, []

def pretend_gpu_and_cupy(compiled_cuda):
    calls.append(compiled_cuda)
    return select(compiled_cuda, gpu=lambda: True, have_cupy=lambda: True)

nvrtc.select = pretend_gpu_and_cupy
imported_dynamo = "torch._dynamo" in sys.modules
fn = torch.compile(lambda x: x + 1 if api.nvrtc_kernels_active() else x - 1, fullgraph=True, backend="eager")
out = fn(torch.zeros(2)).tolist()
has = torch._C._dispatch_has_kernel_for_dispatch_key("attn2scale::scale_merge", "CUDA")
print(json.dumps(dict(imported_dynamo=imported_dynamo, out=out, calls=len(calls), has_kernel=has,
                      active=api.nvrtc_kernels_active(), calls_after=len(calls))))
"""


def test_first_decision_inside_torch_compile():
    """The first decision may happen while torch.compile traces (fullgraph):
    dynamo runs it as plain Python, once, instead of failing on the cupy import
    and the op registration. Importing the ops does not import torch._dynamo."""
    _needs_cpu_only_extension()
    r = _run(COMPILED_FIRST_DECISION)
    assert r == dict(imported_dynamo=False, out=[1.0, 1.0], calls=1, has_kernel=True, active=True, calls_after=1)

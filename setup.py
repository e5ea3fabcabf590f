"""Build attn2scale and its fused kernels (attn2scale._C).

CPU kernels are always built. CUDA kernels are built when torch is a CUDA
build and a CUDA toolkit is found, or when FORCE_CUDA=1; FORCE_CPU=1 skips
them. TORCH_CUDA_ARCH_LIST picks the architectures (default "8.0;9.0", since
there may be no GPU to detect) and MAX_JOBS the parallel compile jobs.
"""

import glob
import os
import sys

from setuptools import find_packages, setup

# torch.utils.cpp_extension reads CUDA_HOME when imported; prefer the
# standard toolkit location over guessing from PATH.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def _log(msg):
    print(f"[attn2scale setup] {msg}", file=sys.stderr)


def _want_cuda():
    if os.environ.get("FORCE_CPU", "0") == "1":
        return False, "FORCE_CPU=1"
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True, "FORCE_CUDA=1"
    if torch.version.cuda is None:
        return False, "torch is a CPU-only build"
    if CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    return True, f"torch {torch.__version__} is a CUDA {torch.version.cuda} build and CUDA_HOME={CUDA_HOME}"


def _nvidia_pip_includes():
    """Include dirs of the CUDA math libraries shipped as `nvidia` pip packages.

    A slim toolkit (nvcc and the runtime only) lacks cusparse.h, cublas_v2.h,
    ...; torch's CUDA headers include them, and the pip wheels torch depends
    on carry them under site-packages/nvidia/.
    """
    dirs = []
    for base in sys.path:
        root = os.path.join(base, "nvidia")
        if not os.path.isdir(root):
            continue
        for inc in sorted(glob.glob(os.path.join(root, "*", "include")) + glob.glob(os.path.join(root, "*", "*", "include"))):
            if inc not in dirs:
                dirs.append(inc)
    return dirs


def _extensions():
    sources = ["csrc/python_module.cpp", "csrc/ops.cpp", "csrc/op_common.cpp", "csrc/autograd.cpp"]
    sources += sorted(glob.glob("csrc/cpu/*.cpp"))
    # -ffp-contract=off: no fused multiply-add on the host either (as nvcc
    # --fmad=false), so the shared math headers round the same on both
    # devices, exp_math.h's exp included (FMA-capable targets such as aarch64
    # would otherwise contract a*b+c).
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"]
    link = ["-fopenmp"]
    use_cuda, why = _want_cuda()
    _log(f"CUDA kernels: {'yes' if use_cuda else 'no'} ({why})")
    if not use_cuda:
        return [CppExtension("attn2scale._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)]
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    _log(f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
    if not os.path.exists(os.path.join(CUDA_HOME, "include", "cusparse.h")):
        # After the toolkit's own headers (-idirafter), so they only fill gaps.
        extra = _nvidia_pip_includes()
        cxx += [f for d in extra for f in ("-idirafter", d)]
        _log(f"toolkit lacks cusparse.h; pip CUDA headers searched after it: {extra}")
    # --fmad=false keeps a*b+c unfused so the CUDA kernels round exactly as
    # the CPU kernels (and Caffe's CPU build) do; the kernels are memory bound.
    nvcc = ["-O3", "--fmad=false", "-lineinfo"]
    return [
        CUDAExtension(
            "attn2scale._C",
            sources,
            define_macros=[("A2S_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
        )
    ]


_log(f"MAX_JOBS={os.environ.get('MAX_JOBS', '(ninja default)')}")

setup(
    name="attn2scale",
    version="0.1.0",
    description="Attention to Scale (Chen et al., CVPR 2016) in PyTorch, Caffe-faithful, with fused CPU/CUDA kernels",
    packages=find_packages(include=["attn2scale", "attn2scale.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.14.1", "numpy", "protobuf>=4.21,<8", "safetensors>=0.4", "h5py",
        "Pillow", "scipy", "tqdm", "PyYAML",
    ],
    extras_require={"coco": ["pycocotools>=2.0"], "tensorboard": ["tensorboard"], "crf": ["pydensecrf2"],
                    "viz": ["matplotlib"],
                    # runtime-compiled CUDA kernels (NVRTC) when this build has none;
                    # CUDA 13 wheels to match torch's cu130 build (attn2scale/ops/nvrtc.py)
                    "cupy": ["cupy-cuda13x>=14"]},
    package_data={"attn2scale": ["configs/*/*.yaml", "tables/*.yaml"]},
    entry_points={"console_scripts": ["attn2scale=attn2scale.__main__:main"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)

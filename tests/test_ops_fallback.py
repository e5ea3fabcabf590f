"""Without the compiled extension the package runs the reference ops and warns once."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    sys.modules["attn2scale._C"] = None  # makes `from attn2scale import _C` raise ImportError
    import torch
    from attn2scale import ops
    assert not ops.extension_available() and not ops.cuda_kernels_available()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y = ops.interp(x, zoom_factor=2)
        ops.interp(x, zoom_factor=2)
    msgs = [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]
    assert len(msgs) == 1 and "reference" in msgs[0] and "failed to load" in msgs[0], msgs
    assert torch.equal(y, ops.reference.interp(x, (9, 9)))
    s = [torch.randn(1, 3, 9, 9, dtype=torch.float64, requires_grad=True),
         torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)]
    lg = torch.randn(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    out, weights = ops.scale_merge(s, mode="attention", logits=lg, return_aux=True)
    assert torch.autograd.gradcheck(lambda a, b, l: ops.scale_merge([a, b], mode="attention", logits=l), (*s, lg))
    assert torch.allclose(weights, lg.softmax(1))
    labels = ops.upsample_argmax(out, (17, 17))
    assert labels.shape == (1, 17, 17) and labels.dtype == torch.int64
    print("FALLBACK-OK")
    """
)


def test_reference_fallback_without_extension():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "FALLBACK-OK" in r.stdout

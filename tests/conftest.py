"""Shared test helpers: where ../shared is, and seeded RNG."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The reference material beside the repo (A2S_SHARED overrides)."""
    return Path(os.environ.get("A2S_SHARED", REPO.parent / "shared"))


def skip_without_shared(reason: str) -> None:
    """Skip for want of ../shared, or fail where it must be there (CI sets A2S_REQUIRE_SHARED=1)."""
    if os.environ.get("A2S_REQUIRE_SHARED") == "1":
        pytest.fail(f"{reason}; A2S_REQUIRE_SHARED=1 forbids skipping for it")
    pytest.skip(reason)


def require_shared(*parts: str) -> Path:
    """Path under ../shared, or skip the test with the reason when it is absent."""
    p = shared_dir().joinpath(*parts)
    if not p.exists():
        skip_without_shared(f"reference material not found: {p} (it lives in ../shared beside the repo; "
                            "set A2S_SHARED)")
    return p


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def close(ours: torch.Tensor, ref, what: str, rtol: float = 1e-5, atol_rel: float = 1e-5) -> float:
    """Assert ``|ours - ref| <= atol_rel * max|ref| + rtol * |ref|`` elementwise (ref: tensor or
    array, e.g. a real-Caffe blob); return the worst error relative to max|ref|."""
    ref = torch.as_tensor(ref).to(torch.float32)
    ours = ours.detach().to(torch.float32)
    assert tuple(ours.shape) == tuple(ref.shape), f"{what}: shape {tuple(ours.shape)} vs Caffe {tuple(ref.shape)}"
    err = (ours - ref).abs()
    scale = ref.abs().max().clamp_min(1e-30)
    worst = (err.max() / scale).item()
    assert bool((err <= atol_rel * scale + rtol * ref.abs()).all()), (
        f"{what}: max error {err.max().item():.3g} = {worst:.3g} of max|ref|")
    return worst


def assert_grads_reach_trainable(model) -> None:
    """Every trainable parameter received a non-zero gradient."""
    for name, p in model.named_parameters():
        if p.requires_grad:  # frozen BatchNorm parameters are excluded
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"


def assert_compiles_like_eager(model, x: torch.Tensor) -> None:
    """torch.compile(fullgraph=True) of the model in eval equals eager on x."""
    model.eval()
    with torch.no_grad():
        ref = model(x)["fusion"]
        got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)["fusion"]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def splice_tokens(data, text: str, tokens) -> str:
    """Fuzzing: 1-3 spans of ``text`` (up to 12 characters) replaced by tokens drawn from ``tokens``
    (``data`` is hypothesis' ``st.data()``)."""
    from hypothesis import strategies as st

    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = min(len(text), i + data.draw(st.integers(0, 12)))
        text = text[:i] + data.draw(st.sampled_from(tokens)) + " " + text[j:]
    return text

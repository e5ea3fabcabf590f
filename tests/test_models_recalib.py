"""The follow-up model (location attention + recalibrating branch): wiring,
ablation switches, gradients and compile."""

import pytest
import torch

from conftest import assert_compiles_like_eager, assert_grads_reach_trainable
from attn2scale.models import RecalibAttentionNet, build_model
from attn2scale.ops import reference as R


def small(**kw):
    torch.manual_seed(0)
    return build_model("recalib_attention", num_classes=5, width_div=16, **kw)


@pytest.mark.parametrize("multi_stage, sizes, shrink", [(True, [25, 13], [4, 8]), (False, [13, 7], [8, 16])])
def test_sizes_and_label_shrink(multi_stage, sizes, shrink):
    out = small(multi_stage=multi_stage).eval()(torch.randn(2, 3, 97, 97))
    assert [s.shape[-1] for s in out["scores"]] == sizes
    assert out["fusion"].shape == (2, 5, sizes[0], sizes[0])
    assert out["label_shrink"] == shrink
    # labels shrunk by those factors with Caffe's Interp land on the same grids
    assert [(97 - 1) // f + 1 for f in shrink] == sizes


def test_gate_variant_is_attention_times_sigmoid_gate():
    out = small().eval()(torch.randn(1, 3, 97, 97))
    w, gate = out["attention"], out["recalibration"]
    assert torch.all((gate > 0) & (gate < 1))
    size = out["fusion"].shape[-2:]
    expect = sum(w[:, s : s + 1] * R.interp(p, size) for s, p in enumerate(out["scores"])) * gate
    torch.testing.assert_close(out["fusion"], expect, rtol=1e-5, atol=1e-6)


def test_bias_variant_and_ablations():
    out = small(recalibration="bias").eval()(torch.randn(1, 3, 97, 97))
    size = out["fusion"].shape[-2:]
    merged = sum(out["attention"][:, s : s + 1] * R.interp(p, size) for s, p in enumerate(out["scores"]))
    torch.testing.assert_close(out["fusion"], merged + out["recalibration"], rtol=1e-5, atol=1e-6)

    out = small(location_attention=False, recalibration=None).eval()(torch.randn(1, 3, 97, 97))
    assert out["attention"] is None and out["recalibration"] is None
    mean = sum(R.interp(p, size) for p in out["scores"]) / 2
    torch.testing.assert_close(out["fusion"], mean, rtol=1e-5, atol=1e-6)

    same = small(dilations=(12, 12))
    assert [c.dilation for c in same.streams] == [(12, 12), (12, 12)]
    with pytest.raises(ValueError, match="need as many dilations"):
        RecalibAttentionNet(width_div=16, dilations=(2,))
    with pytest.raises(ValueError, match="recalibration must be"):
        RecalibAttentionNet(width_div=16, recalibration="scale")


@pytest.mark.parametrize("backbone", ["vgg16", "resnet34_d8", "resnet34_d8_psp"])
def test_gradients_reach_every_parameter_and_compile(backbone):
    model = small(backbone=backbone).train()
    out = model(torch.randn(2, 3, 65, 65))
    loss = out["fusion"].square().mean() + sum(s.square().mean() for s in out["supervised"])
    loss.backward()
    assert_grads_reach_trainable(model)
    assert_compiles_like_eager(model, torch.randn(1, 3, 65, 65))


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        small(backbone="resnet50")

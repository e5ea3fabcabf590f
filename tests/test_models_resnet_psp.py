"""ResNet34-dilated8 + PSP: sizes, BatchNorm handling, the share-net around it."""

import pytest
import torch

from conftest import assert_compiles_like_eager, assert_grads_reach_trainable
from attn2scale.models import MultiScaleNet, PSPHead, ResNet34D8, build_model


@pytest.mark.parametrize("psp", [True, False])
def test_output_stride_8(psp):
    net = ResNet34D8(num_classes=11, width_div=8, psp=psp).eval()
    with torch.no_grad():
        for n, expect in ((97, 13), (513, 65), (321, 41), (64, 9)):
            feats, scores = net(torch.zeros(1, 3, n, n))
            assert scores.shape == (1, 11, expect, expect)
            assert feats.shape[1] == net.fc7_channels


def test_parameter_counts_full_width():
    # The ResNet-34 trunk has 21.28M parameters; the 150-class 1x1 classifier
    # on its 512 channels adds 512*150+150.
    plain = build_model("resnet34_d8_psp", num_classes=150, psp=False)
    trunk = sum(p.numel() for n, p in plain.named_parameters() if not n.startswith("classifier"))
    assert trunk == 21_284_672
    assert sum(p.numel() for p in plain.classifier.parameters()) == 512 * 150 + 150
    with_psp = build_model("resnet34_d8_psp", num_classes=150)
    # PSP: 4 x (1x1 512->128 + BN) + 3x3 (512+4*128 -> 512) + BN.
    psp = 4 * (512 * 128 + 2 * 128) + 1024 * 512 * 9 + 2 * 512
    assert sum(p.numel() for p in with_psp.psp.parameters()) == psp


def test_frozen_batchnorm_stays_fixed_in_training():
    torch.manual_seed(0)
    net = ResNet34D8(num_classes=5, width_div=16, bn="frozen").train()
    bn = net.layer1[0].bn1
    before = bn.running_mean.clone()
    out = net(torch.randn(2, 3, 65, 65) * 3 + 1)[1]
    out.square().mean().backward()
    assert torch.equal(bn.running_mean, before) and not bn.training
    assert bn.weight.grad is None and not bn.weight.requires_grad
    assert net.conv1.weight.grad is not None and net.classifier.weight.grad.abs().sum() > 0
    trained = ResNet34D8(num_classes=5, width_div=16, bn="train").train()
    trained(torch.randn(2, 3, 65, 65) * 3 + 1)
    assert not torch.equal(trained.layer1[0].bn1.running_mean, torch.zeros_like(before))
    synced = ResNet34D8(num_classes=5, width_div=16, bn="sync")
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    with pytest.raises(ValueError, match="bn must be"):
        ResNet34D8(bn="group")


@pytest.mark.parametrize("merge", ["attention", "max", "avg"])
def test_attention_to_scale_on_resnet(merge):
    torch.manual_seed(2)
    model = build_model("resnet34_d8_psp", num_classes=6, width_div=16, scales=(1.0, 0.5), merge=merge)
    assert isinstance(model, MultiScaleNet) and isinstance(model.backbone.psp, PSPHead)
    out = model.train()(torch.randn(2, 3, 97, 97))
    assert out["fusion"].shape == (2, 6, 13, 13)
    assert [s.shape[-1] for s in out["supervised"]] == [13, 7] and out["label_shrink"] == [8, 16]
    out["fusion"].sum().backward()
    assert_grads_reach_trainable(model)
    assert_compiles_like_eager(model, torch.randn(1, 3, 65, 65))

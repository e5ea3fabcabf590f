"""The built-in procedural dataset (groundwork of the mini reproduction) and the MSRA filler."""

import numpy as np
import pytest
import torch
from PIL import Image

from attn2scale.data import SegDataset
from attn2scale.data.synthetic import SIZE, generate, sample
from attn2scale.engine.trainer import msra_fill
from attn2scale.models import build_model


def test_generation_is_deterministic_and_read_by_the_dataset(tmp_path):
    root = generate(tmp_path / "mini", seed=3, train=12, val=4)
    img, lab = sample(3, 5)
    assert np.array_equal(np.asarray(Image.open(root / "images" / "train_00005.png")), img)
    assert np.array_equal(np.asarray(Image.open(root / "labels" / "train_00005.png")), lab)
    assert not np.array_equal(sample(4, 5)[0], img)  # another seed, another image
    ds = SegDataset(root, "val", "mini")
    assert len(ds) == 4 and ds[0]["image"].shape == (3, SIZE, SIZE)
    assert len(SegDataset(root, "train", "mini")) == 12
    with pytest.raises(ValueError, match="other settings"):
        generate(root, seed=4, train=12, val=4)


def test_objects_span_the_scales_and_every_class():
    sizes, classes = [], set()
    for i in range(200):
        _, lab = sample(0, i)
        for c in range(1, 5):
            m = lab == c
            if m.any():
                ys, xs = np.nonzero(m)
                sizes.append(max(np.ptp(ys), np.ptp(xs)) + 1)
                classes.add(c)
    sizes = np.array(sizes) / SIZE
    assert classes == {1, 2, 3, 4}
    assert sizes.min() < 0.08 and sizes.max() > 0.8  # about 5 % to 90 % of the image side


def test_msra_filler_variances():
    torch.manual_seed(0)
    model = build_model("deeplab_largefov", num_classes=5, width_div=4)
    msra_fill(model)
    conv = model.conv3_1
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert model.fc8.weight.std().item() == pytest.approx(0.01, rel=0.1) and model.fc8.bias.abs().sum() == 0

"""The multi-scale model's blob sizes equal Caffe's, stage by stage and scale
by scale, at the authors' train (321) and test (513) crops.

The Caffe sizes come from propagating the authors' own prototxts
(``test_interp_sizes_configs.Net``: Caffe's convolution, ceil pooling and
Interp rules); channel counts are compared too, at full width.
"""

import pytest
import torch

import test_interp_sizes_configs as cfg
from attn2scale.models import build_model

NETS = {
    "attention47": ("voc10_part", "vgg128_noup_pool3_20M_largewin_attention47", "voc10_part", 7),
    "attention30": ("voc10_part", "vgg128_noup_pool3_20M_largewin_attention30", "voc10_part", 7),
}


@pytest.mark.parametrize("phase", ["train", "test"])
@pytest.mark.parametrize("net", list(NETS))
def test_blob_sizes_equal_caffe(net, phase):
    dataset, net_id, exp, classes = NETS[net]
    caffe = cfg._load(cfg.require_shared(*cfg.CONFIGS, dataset, net_id, f"{phase}.prototxt")).blobs
    crop = caffe["data"][1]
    merge = "attention" if net == "attention47" else "max"
    model = build_model("attention_to_scale", num_classes=classes, merge=merge).eval()
    blobs = {}
    with torch.no_grad():
        model(torch.zeros(1, 3, crop, crop), blobs=blobs)
    compared = 0
    for name, t in blobs.items():
        cname = {"fusion": "fc8_fusion"}.get(name, name)
        if cname.startswith("fc8") and cname != "fc8_fusion":
            cname = cname.replace("fc8", f"fc8_{exp}", 1)
        if cname not in caffe:
            continue
        assert tuple(t.shape[1:]) == tuple(caffe[cname]), f"{net}/{phase} {cname}: ours {tuple(t.shape[1:])}, Caffe {caffe[cname]}"
        compared += 1
    # 3 towers x 21 layers, the pyramid, the fusion (and the attention head)
    assert compared >= 3 * 21 + 2 + 1

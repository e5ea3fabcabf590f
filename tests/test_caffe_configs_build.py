"""Every prototxt of ../shared/caffe/configs parses and builds, with Caffe's sizes.

Net prototxts (train* -> TRAIN, test*/deploy* -> TEST; the authors' V2 configs
and the official DeepLab v1 V1 configs) are read with the project's reader,
placeholders substituted as the DeepLab scripts did, and built by
:class:`CaffeNet` on the meta device: every layer's own Caffe checks run
(Eltwise / Concat / SpatialProduct / loss inputs must agree), and every blob's
shape is propagated. Those shapes are compared with the independent, test-local
propagator of ``test_interp_sizes_configs`` blob for blob, and hand-derived sizes
(321 -> 41/31/21, 513 -> 65/49/33 -> 513, 641 -> 81) are asserted. Solvers parse
as SolverParameter with the README's hyper-parameters.

DenseCRF (the CRF post-processing) is commented out in every config; the builder
names it as unsupported, and ``skip_types=("DenseCRF",)`` drops it together with
the layers that consume its output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from attn2scale.caffe import CaffeFormatError, CaffeNet, read_net_prototxt, read_solver_prototxt
from attn2scale.caffe.reader import placeholders
from conftest import require_shared, shared_dir, skip_without_shared
from test_interp_sizes_configs import NUM_LABELS, _load, sed_placeholders

ROOT = ("caffe", "configs")


def _files(pattern: str) -> List[Path]:
    root = shared_dir().joinpath(*ROOT)
    if not root.is_dir():
        return []
    return sorted(root.glob(pattern))


NETS = [p for p in _files("*/*/*/*.prototxt") + _files("deeplab_v1_official/*/*.prototxt")
        if not p.name.startswith("solver")]
SOLVERS = [p for p in _files("*/*/*/solver*.prototxt") + _files("deeplab_v1_official/*/solver*.prototxt")]
AUTHORS = [p for p in NETS if "authors" in p.parts]


def _rel(p: Path) -> str:
    return str(p.relative_to(shared_dir().joinpath(*ROOT)))


def _params(paths):
    return [pytest.param(p, id=_rel(p)) for p in paths] or [pytest.param(None, id="configs-absent")]


_SED: Dict[str, List[str]] = {}


def values_for(path: Path) -> Dict[str, str]:
    """Placeholder values: NUM_LABELS per dataset, names for EXP / NET_ID, paths for the rest."""
    if "names" not in _SED:
        _SED["names"] = sed_placeholders(require_shared(*ROOT, "authors", "sub.sed"))
    official = "deeplab_v1_official" in path.parts
    dataset = "voc12" if official else path.parent.parent.name
    values = {n: f"/placeholder/{n.lower()}" for n in _SED["names"]}
    values.update(NUM_LABELS=str(NUM_LABELS[dataset]), EXP=dataset, NET_ID=path.parent.name)
    values.update(NUM_LABELS1="1", NUM_LABELS_UNION="1", BATCH_SIZE="1", TRAIN_STEP="1", BG_BIAS="0", FG_BIAS="0")
    return values


def phase_of(path: Path) -> str:
    return "TRAIN" if path.name.startswith("train") else "TEST"


_BUILT: Dict[Path, CaffeNet] = {}


def build(path: Path) -> CaffeNet:
    if path not in _BUILT:
        net_param = read_net_prototxt(path, values_for(path))
        _BUILT[path] = CaffeNet(net_param, phase_of(path), device="meta", source=_rel(path))
    return _BUILT[path]


def test_config_inventory():
    """The counts README.md quotes: 111 nets (the authors' 103, DeepLab v1's 8) and 95 solvers."""
    require_shared(*ROOT)
    assert (len(NETS), len(AUTHORS), len(SOLVERS)) == (111, 103, 95)


@pytest.mark.parametrize("path", _params(NETS))
def test_every_config_builds_with_caffe_checks(path):
    if path is None:
        skip_without_shared(f"no configs under {shared_dir().joinpath(*ROOT)} (../shared is absent)")
    text = path.read_text()
    assert placeholders(text) == [] or set(placeholders(text)) <= set(values_for(path))
    net = build(path)
    types = set(net.types.values())
    assert "Interp" in types and "Convolution" in types
    assert not net.skipped
    # Parameters only exist on the meta device: nothing was allocated.
    assert all(p.device.type == "meta" for p in net.parameters())
    # Score maps: NUM_LABELS channels at the data size / 8 (+1), as DeepLab's alignment rule gives.
    data = net.blob_shapes["data"]
    assert data[2] in (321, 513, 641) and data[2] == data[3]
    exp, n_labels = values_for(path)["EXP"], int(values_for(path)["NUM_LABELS"])
    if not path.name.startswith("deploy"):  # the authors' deploy files hard-code their classifier instead
        assert net.blob_shapes[f"fc8_{exp}"][1] == n_labels
    if phase_of(path) == "TEST":
        assert net.blob_shapes["fc8_interp"][2:] == data[2:] or any(
            net.blob_shapes[t][2:] == data[2:] for n in net.order if net.types[n] == "Interp" for t in net.tops[n])


@pytest.mark.parametrize("path", _params(AUTHORS))
def test_builder_shapes_equal_the_independent_propagator(path):
    if path is None:
        skip_without_shared(f"no configs under {shared_dir().joinpath(*ROOT)} (../shared is absent)")
    net = build(path)
    other = _load(path)
    compared = 0
    for blob, shape in other.blobs.items():
        if shape is None or blob not in net.blob_shapes:
            continue
        ours = net.blob_shapes[blob]
        assert (ours[1], ours[2], ours[3]) == tuple(shape), f"{blob}: builder {ours} vs propagator {shape}"
        compared += 1
    assert compared >= 15


@pytest.mark.parametrize("rel,sizes", [
    ("authors/voc10_part/vgg128_noup_pool3_20M_largewin_attention47/train.prototxt",
     {"data": 321, "shrink_data05": 161, "shrink_data075": 241, "fc8_voc10_part": 41, "fc8_voc10_part_res075": 31,
      "fc8_voc10_part_res05": 21, "fc8_fusion": 41, "label_shrink8": 41, "label_shrink16": 21}),
    ("authors/voc10_part/vgg128_noup_pool3_20M_largewin_attention47/test.prototxt",
     {"data": 513, "fc8_voc10_part": 65, "fc8_voc10_part_res075": 49, "fc8_voc10_part_res05": 33,
      "fc8_interp": 513}),
    ("authors/coco/vgg128_noup_pool3_20M_largewin_attention12/test.prototxt",
     {"data": 641, "fc8_coco": 81, "fc8_interp": 641}),
    ("deeplab_v1_official/DeepLab-LargeFOV/train.prototxt", {"data": 321, "pool5a": 41, "fc8_voc12": 41}),
    ("deeplab_v1_official/DeepLab-LargeFOV/test.prototxt", {"data": 513, "pool5a": 65, "fc8_voc12": 65}),
])
def test_known_sizes(rel, sizes):
    path = require_shared(*ROOT, *rel.split("/"))
    net = build(path)
    got = {b: net.blob_shapes[b][2:] for b in sizes}
    assert got == {b: (s, s) for b, s in sizes.items()}


def test_attention47_shares_one_tower_and_fuses_its_merge():
    path = require_shared(*ROOT, "authors", "voc10_part", "vgg128_noup_pool3_20M_largewin_attention47", "train.prototxt")
    net = build(path)
    # Three towers, one set of VGG weights: conv1_1 of every scale is the same Parameter.
    assert net.layer("conv1_1_res05").weight is net.layer("conv1_1").weight
    assert net.layer("fc8_voc10_part_res075").weight is net.layer("fc8_voc10_part").weight
    (merge,) = net.fused_merges()
    assert merge.mode == "attention" and len(merge.scores) == 3
    assert sum(net.loss_weights.values()) == 4.0  # fusion + three extra-supervision losses


def test_malformed_dense_crf_is_refused_by_name_and_can_be_dropped():
    """The configs keep their DenseCRF layers commented out; one wired wrongly (the image where
    data_dim belongs) is refused naming the layer and bottom, or dropped with the layers that
    consume its output."""
    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
    layer { name: "fc8" type: "Convolution" bottom: "data" top: "fc8" convolution_param { num_output: 4 kernel_size: 1 } }
    layer { name: "crf" type: "DenseCRF" bottom: "fc8" bottom: "data" top: "crf_inf" }
    layer { name: "crf_argmax" type: "ArgMax" bottom: "crf_inf" top: "crf_label" }
    layer { name: "argmax" type: "ArgMax" bottom: "fc8" top: "label" }
    """
    from attn2scale.caffe.reader import parse_net_text

    net_param = parse_net_text(text, source="crf.prototxt")
    with pytest.raises(CaffeFormatError, match=r"crf.prototxt: layer 'crf' \(DenseCRF\): bottom 1 \(data_dim\) must hold "
                                               r"\(height, width\) per image.*got \(1, 3, 9, 9\)"):
        CaffeNet(net_param, "TEST", source="crf.prototxt")
    net = CaffeNet(net_param, "TEST", skip_types=("DenseCRF",))
    assert net.skipped == ["crf", "crf_argmax"] and net.order == ["data", "fc8", "argmax"]


@pytest.mark.parametrize("path", _params(SOLVERS))
def test_every_solver_parses(path):
    if path is None:
        skip_without_shared(f"no configs under {shared_dir().joinpath(*ROOT)} (../shared is absent)")
    s = read_solver_prototxt(path, values_for(path))
    assert s.lr_policy == "step" and s.gamma == pytest.approx(0.1)
    assert s.momentum == pytest.approx(0.9) and s.weight_decay == pytest.approx(0.0005)
    assert s.base_lr == pytest.approx(0.001)
    assert 0 < s.stepsize <= s.max_iter and s.iter_size >= 1
    if path.parent.name == "vgg128_noup_pool3_20M_largewin_attention47" and path.name == "solver.prototxt":
        # The final Person-Part model: batch 3 x iter_size 10, 6000 iterations, step 2000.
        assert (s.max_iter, s.stepsize, s.iter_size) == (6000, 2000, 10)

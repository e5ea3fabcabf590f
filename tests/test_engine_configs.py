"""Every table cell has a config; the authors' cells equal their Caffe solver and train
prototxt as read by the project's Caffe reader; every model's lr/decay multipliers equal
those of the authors' train prototxts."""

import subprocess
import sys
from collections import Counter

import pytest
import torch

from attn2scale.caffe import CaffeNet, read_net_prototxt, read_solver_prototxt
from attn2scale.caffe.reader import filter_phase
from attn2scale.engine.config import ConfigError, list_configs, load_config
from attn2scale.engine.solver import SolverConfig
from attn2scale.engine.builders import build_model_for
from attn2scale.models import build_model

from conftest import REPO, require_shared

VALUES = {"NUM_LABELS": 21, "NUM_LABELS1": 21, "NET_ID": "net", "DATA_ROOT": "/d", "EXP": "e", "TRAIN_SET": "t",
          "TEST_SET": "v", "FEATURE_DIR": "/f"}
PAPER_GRIDS = ("person_part", "voc12_val_imagenet", "voc12_val_coco", "coco_subset")


def test_configs_are_generated_and_cover_every_grid_cell():
    assert subprocess.run([sys.executable, str(REPO / "tools" / "make_configs.py"), "--check"]).returncode == 0
    cells = Counter()
    for name in list_configs():
        cfg = load_config(name)
        assert cfg.name == name
        cells[cfg.cell.table if cfg.cell else None] += 1
    for table in PAPER_GRIDS:
        assert cells[table] == 13, table  # baseline + 3 merges x 4 columns
    assert cells["voc12_test"] == 7 and cells["recalib_voc12"] == 8 and cells["recalib_ade20k"] == 5
    assert cells["mini"] == 13 and cells[None] == 1  # the mini grid, and its shared pretraining


def _authors_facts(cfg):
    """What the authors' train prototxt and solver say: scales, merge, losses, batch; solver."""
    root = require_shared("caffe", "configs", "authors", cfg.authors.exp, cfg.authors.net_id)
    layers = filter_phase(read_net_prototxt(root / "train.prototxt", VALUES, strict="unquoted"), "TRAIN")
    types = Counter(lp.type for lp in layers)
    pyramid = sorted({lp.name for lp in layers if lp.name.startswith("shrink_data")})
    scales = [1.0] + sorted(({"shrink_data05": 0.5, "shrink_data075": 0.75}[n] for n in pyramid), reverse=True)
    ops = [lp.eltwise_param.operation for lp in layers if lp.type == "Eltwise"]
    merge = ("attention" if types["SpatialProduct"] else "max" if 2 in ops else "avg" if types["Power"] else None)
    batch = [lp for lp in layers if lp.type == "ImageSegData"][0].image_data_param.batch_size
    solver = SolverConfig.from_caffe(read_solver_prototxt(root / cfg.authors.solver, VALUES))
    return scales, merge, types["SoftmaxWithLoss"], batch, solver


def test_authors_cells_equal_their_caffe_configs():
    checked = 0
    for name in list_configs():
        cfg = load_config(name)
        if cfg.authors is None:
            continue
        scales, merge, n_losses, batch, solver = _authors_facts(cfg)
        opts = cfg.model.options
        if cfg.model.name == "deeplab_largefov":
            assert scales == [1.0] and merge is None and n_losses == 1, name
        else:
            assert opts["scales"] == scales and opts["merge"] == merge, name
            assert n_losses == (1 + len(scales) if opts["extra_supervision"] else 1), name
        assert cfg.data.batch_size == batch, name
        ours = cfg.solver
        for key in ("base_lr", "lr_policy", "gamma", "stepsize", "max_iter", "momentum", "weight_decay", "iter_size"):
            assert getattr(ours, key) == pytest.approx(getattr(solver, key), rel=1e-6), (name, key)
        checked += 1
    assert checked >= 40


def test_every_config_builds_its_model():
    for name in list_configs():
        cfg = load_config(name)
        with torch.device("meta"):
            model = build_model_for(cfg)
        groups = model.caffe_param_groups()
        assert {id(g["params"][0]) for g in groups} == {id(p) for p in model.parameters() if p.requires_grad}, name


def test_multipliers_equal_the_authors_train_prototxts():
    """For every cell with an authors' config: the model's (lr_mult, decay_mult) of every
    parameter equal those Caffe assigns from their train prototxt (shared towers once)."""
    checked = 0
    for name in list_configs():
        cfg = load_config(name)
        if cfg.authors is None or cfg.authors.exp != {"voc12": "voc12", "person_part": "voc10_part",
                                                      "coco_subset": "coco"}[cfg.data.dataset]:
            continue
        path = require_shared("caffe", "configs", "authors", cfg.authors.exp, cfg.authors.net_id, "train.prototxt")
        exp = cfg.authors.exp
        net = CaffeNet.from_prototxt(path, "TRAIN", values=dict(VALUES, NUM_LABELS=7, EXP=exp), strict="unquoted",
                                     device="meta")
        theirs = {g["name"].replace(f"_{exp}", ""): (g["lr_mult"], g["decay_mult"]) for g in net.caffe_param_groups()}
        with torch.device("meta"):
            model = build_model_for(cfg)
        ours = {g["name"].replace("backbone.", "").replace("attention.", ""): (g["lr_mult"], g["decay_mult"])
                for g in model.caffe_param_groups()}
        assert ours == theirs, name
        checked += 1
    assert checked >= 40


def test_follow_up_and_resnet_multipliers():
    with torch.device("meta"):
        recalib = build_model("recalib_attention", num_classes=21, width_div=16)
        resnet = build_model("resnet34_d8_psp", num_classes=150, width_div=16, bn="train")
    g = {x["name"]: (x["lr_mult"], x["decay_mult"]) for x in recalib.caffe_param_groups()}
    assert g["backbone.conv1_1.weight"] == (1.0, 1.0) and g["streams.0.weight"] == (10.0, 1.0)
    assert g["classifier.bias"] == (20.0, 0.0) and g["recalib.2.weight"] == (10.0, 1.0)
    g = {x["name"]: (x["lr_mult"], x["decay_mult"]) for x in resnet.caffe_param_groups()}
    assert g["conv1.weight"] == (1.0, 1.0) and g["bn1.weight"] == (1.0, 0.0) and g["classifier.weight"] == (10.0, 1.0)
    frozen = build_model("resnet34_d8_psp", num_classes=150, width_div=16)  # BatchNorm frozen: not trained
    assert not any(".bn" in x["name"] or x["name"].startswith("bn") for x in frozen.caffe_param_groups())


@pytest.mark.parametrize("override,message", [
    ("solver.base_lrr=0.1", "unknown key 'solver.base_lrr'"),
    ("solver.max_iter=many", "solver.max_iter must be int, got 'many'"),
    ("data.batch_size=true", "data.batch_size must be int, got True"),
    ("solver.lr_policy=cosine", "lr_policy must be one of"),
    ("model=3", "model must be a mapping"),
    ("nonsense", "--set expects KEY=VALUE"),
    ("train.checkpoint_every=0", "checkpoint_every must be >= 1"),
    ("data.batch_size=0", "batch_size must be >= 1"),
    ("data.workers=-1", "workers must be >= 1|workers must be >= 0"),
    ("data.dataset=voc13", "dataset must be one of voc12"),
    ("train.device=gpu", "device must be 'auto', 'cpu' or 'cuda'"),
    ("train.amp=fp8", "amp must be null, 'bf16' or 'fp16'"),
    ("solver.momentum=-0.9", "momentum must be >= 0"),
    ("solver.stepvalue=[10,10]", "stepvalue must strictly increase"),
    ("model.width_div=0", "width_div must be >= 1"),
])
def test_bad_config_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config("person_part/attention_s3_esupv", [override])


def test_base_files_and_missing_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("name: b\nmodel: {name: deeplab_largefov}\n")
    (tmp_path / "cfg.yaml").write_text("_base_: base.yaml\nname: c\nsolver: {base_lr: 1e-3}\n")
    with pytest.raises(ConfigError, match="cfg.yaml: missing key 'solver.lr_policy'"):  # no silent solver defaults
        load_config(tmp_path / "cfg.yaml")
    full = "solver: {base_lr: 1e-3, lr_policy: fixed, max_iter: 5, momentum: 0.9, weight_decay: 0, iter_size: 1}\n"
    (tmp_path / "cfg.yaml").write_text("_base_: base.yaml\nname: c\n" + full)
    with pytest.raises(ConfigError, match="cfg.yaml: missing key 'data'"):
        load_config(tmp_path / "cfg.yaml")
    (tmp_path / "bad_base.yaml").write_text("_base_: 3\n")
    with pytest.raises(ConfigError, match="_base_ must be a file name"):
        load_config(tmp_path / "bad_base.yaml")
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="_base_ loop"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/config")


def test_yaml_exponent_floats_are_floats():
    assert load_config("person_part/attention_s3_esupv", ["solver.base_lr=1e-3"]).solver.base_lr == 0.001


def test_model_options_that_do_not_apply_are_refused():
    cfg = load_config("recalib_ade20k/psp", ["model.options.merge=avg"])
    with pytest.raises(ConfigError, match="only apply to the share-net"):
        build_model_for(cfg)

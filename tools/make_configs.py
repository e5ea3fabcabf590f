"""Write attn2scale/configs/: one training config per table cell of both papers.

    python tools/make_configs.py [--check]

The cell list below is the one source: each Attention-to-Scale cell names the
authors' own Caffe config it reproduces (``../shared/caffe/configs/authors``:
``${EXP}/${NET_ID}``), and its batch, iter_size and solver are those of that
config (``tests/test_engine_configs.py`` reads them back with the Caffe reader
and compares). Cells the authors published no config for (VOC max-pooling, the
COCO-initialised VOC grid except the final model, the follow-up paper) take
the settings of their neighbours, stated in ``description``. ``--check`` exits
1 when the files differ from what this script writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "attn2scale" / "configs"

sys.path.insert(0, str(REPO))
from attn2scale.tables.paper import MERGE_ROWS as MERGES  # noqa: E402  (the one list of rows and columns)
from attn2scale.tables.paper import SCALE_COLUMNS  # noqa: E402

COLUMNS = {k: (list(scales), esupv, label) for k, (scales, esupv, label) in SCALE_COLUMNS.items()}
INIT = {
    "imagenet": dict(weights="weights/deeplab_v1_largefov_init_vgg16.safetensors",
                     source="deeplab_v1_largefov_init_vgg16"),
    "coco": dict(weights="weights/deeplab_v1_largefov_init_vgg16_coco.safetensors",
                 source="deeplab_v1_largefov_init_vgg16_coco"),
}
# (batch, iter_size) of each authors' net id (read off their train.prototxt and solver.prototxt)
AUTHORS = {
    "person_part": ("voc10_part", "largewin4", {
        "max": ("attention11", "attention29", "attention20", "attention30"),
        "avg": ("attention15_2", "attention27_2", "attention19_2", "attention28_2"),
        "attention": ("attention53", "attention56", "attention54", "attention47")}),
    "voc12_val_imagenet": ("voc12", "largewin3", {
        "max": (None, None, None, None),
        "avg": ("attention5_2", "attention9_2", "attention7_2", "attention11_2"),
        "attention": ("attention1", "attention2", "attention3", "attention4")}),
    "voc12_val_coco": ("voc12", None, {
        "max": (None, None, None, None), "avg": (None, None, None, None),
        "attention": (None, None, None, "coco_attention13_2")}),
    "coco_subset": ("coco", "largewin", {
        "max": ("attention2", "attention6", "attention4", "attention8"),
        "avg": ("attention1", "attention5", "attention3", "attention7"),
        "attention": ("attention9", "attention11", "attention10", "attention12")}),
}
BATCH = {  # authors' (batch, iter_size); every product is 30
    ("voc10_part", "largewin4"): (10, 3), ("voc10_part", "attention11"): (5, 6),
    ("voc10_part", "attention20"): (15, 2), ("voc10_part", "attention29"): (15, 2),
    ("voc10_part", "attention30"): (15, 2), ("voc12", "largewin3"): (15, 2), ("coco", "largewin"): (15, 2),
}
# Authors' nets whose fc8 trains at lr_mult 1/2 instead of 10/20 (their average-merge nets on
# Person-Part and COCO).
FC8_LR_1 = {("voc10_part", n) for n in ("attention15_2", "attention19_2", "attention27_2", "attention28_2")} | \
    {("coco", n) for n in ("attention1", "attention3", "attention5", "attention7")}
# The authors' Person-Part max {1,.5} net (attention11) ran a short schedule.
SCHEDULE = {("voc10_part", "attention11"): (400, 1200)}
DATA = {
    "person_part": dict(dataset="person_part", root="data/person_part", train_split="train", val_split="val"),
    "voc12": dict(dataset="voc12", root="data/voc12", train_split="train_aug", val_split="val"),
    "coco_subset": dict(dataset="coco_subset", root="data/coco", train_split="train_small", val_split="val_small"),
    "ade20k": dict(dataset="ade20k", root="data/ade20k", train_split="train", val_split="val"),
}
TABLE_DATA = {"person_part": "person_part", "voc12_val_imagenet": "voc12", "voc12_val_coco": "voc12",
              "coco_subset": "coco_subset"}


def solver(stepsize=2000, max_iter=6000, iter_size=3, policy="step", base_lr=0.001):
    s = dict(base_lr=base_lr, lr_policy=policy, gamma=0.1, stepsize=stepsize, power=0.9, max_iter=max_iter,
             momentum=0.9, weight_decay=0.0005, iter_size=iter_size)
    if policy == "poly":
        s.pop("gamma"), s.pop("stepsize")
    return s


def caffe_cell(table, row, column, net_id, model, *, init="imagenet", split=None, description="", exp=None,
               solver_file="solver.prototxt", max_iter=None, scale_range=None):
    exp = exp or AUTHORS[table][0]
    batch, iter_size = BATCH.get((exp, net_id), (3, 10) if model["options"].get("merge") == "attention" else (10, 3))
    stepsize, iters = SCHEDULE.get((exp, net_id), (2000, max_iter or 6000))
    data = dict(DATA[TABLE_DATA.get(table, "voc12")], batch_size=batch)
    if split:
        data["train_split"] = split
    if scale_range:
        data["scale_range"] = scale_range
    full_id = f"vgg128_noup_pool3_20M_{net_id}" if net_id and net_id.startswith("largewin") else \
        (f"vgg128_noup_pool3_20M_largewin_{net_id}" if net_id else None)
    cfg = dict(name=f"{table}/{row}_{column}" if column else f"{table}/{row}", description=description,
               cell=dict(table=table, row=row, column=column), model=model, init=dict(INIT[init]), data=data,
               solver=solver(stepsize, iters, iter_size), train=dict(seed=0, checkpoint_every=1000))
    if full_id:
        cfg["authors"] = dict(exp=exp, net_id=full_id, solver=solver_file)
    if (exp, net_id) in FC8_LR_1:
        cfg["model"] = dict(model, options=dict(model["options"], fc8_lr_scale=1.0))
    cfg["init"]["expect_missing"] = ["fc8", "backbone.fc8", "attention"]
    return cfg


def share_net(merge, column):
    scales, esupv, _ = COLUMNS[column]
    return dict(name="attention_to_scale", options=dict(scales=scales, merge=merge, extra_supervision=esupv))


LARGEFOV = dict(name="deeplab_largefov", options={})


def a2s_cells():
    for table, (exp, base_id, rows) in AUTHORS.items():
        init = "coco" if table == "voc12_val_coco" else "imagenet"
        base_desc = "DeepLab-LargeFOV without pool5a" + ("" if base_id else "; no authors' config: "
                                                          "the ImageNet baseline's settings, COCO init")
        yield caffe_cell(table, "baseline", "", base_id or "largewin3", LARGEFOV, init=init, exp=exp,
                         description=base_desc)
        for merge, ids in rows.items():
            for column, net_id in zip(COLUMNS, ids):
                desc = f"{MERGES[merge]} over {COLUMNS[column][2]}"
                if net_id is None:
                    desc += "; no authors' config: the settings of this table's other " + \
                            ("attention" if merge == "attention" else "pooling") + " cells"
                yield caffe_cell(table, merge, column, net_id, share_net(merge, column), init=init, exp=exp,
                                 description=desc)


def test_cells():
    """VOC 2012 test server: trained on trainval_aug (the authors' solver2: 8000 iterations)."""
    rows = [
        ("largefov", None, LARGEFOV, "imagenet", None),
        ("avg", "attention11_2", share_net("avg", "s3_esupv"), "imagenet", None),
        ("max", None, share_net("max", "s3_esupv"), "imagenet", None),
        ("attention", "attention4", share_net("attention", "s3_esupv"), "imagenet", None),
        ("largefov_coco_crf", None, LARGEFOV, "coco", None),
        ("attention_coco_crf", "coco_attention13_2", share_net("attention", "s3_esupv"), "coco", None),
        ("attention_plus_coco_crf", "coco_attention13_2", share_net("attention", "s3_esupv"), "coco", [0.6, 1.4]),
    ]
    for row, net_id, model, init, scaling in rows:
        desc = "trained on train_aug + val for the test server" + (", evaluated with DenseCRF" if "crf" in row else "")
        if scaling:
            desc += ", random input scaling 0.6-1.4 (Attention+)"
        yield caffe_cell("voc12_test", row, "", net_id, model, init=init, split="trainval_aug", exp="voc12",
                         solver_file="solver2.prototxt", max_iter=8000, description=desc, scale_range=scaling)


def recalib_cells():
    """The follow-up paper: 2 scales, poly (power 0.9), decoder at 10x. Its batch and iterations are
    not published: ours are the Attention-to-Scale ones (30 images x 6000 iterations) for VOC and
    16 x 40000 for ADE20K."""
    vgg = {"baseline": LARGEFOV, "max": share_net("max", "s2_esupv"), "avg": share_net("avg", "s2_esupv"),
           "attention": share_net("attention", "s2_esupv"),
           "multi_stage": dict(name="recalib_attention", options=dict(dilations=[12, 12], recalibration=None)),
           "diverse_dilations": dict(name="recalib_attention", options=dict(recalibration=None)),
           "recalib": dict(name="recalib_attention", options={}),
           "recalib_bias": dict(name="recalib_attention", options=dict(recalibration="bias"))}
    for row, model in vgg.items():
        yield dict(name=f"recalib_voc12/{row}", description="follow-up paper, VOC 2012 (VGG-16 LargeFOV base)",
                   cell=dict(table="recalib_voc12", row=row, column=""), model=model,
                   init=dict(INIT["imagenet"], expect_missing=["fc8", "backbone.fc8", "attention", "streams",
                                                               "classifier", "recalib"]),
                   data=dict(DATA["voc12"], batch_size=10), solver=solver(iter_size=3, policy="poly"),
                   train=dict(seed=0, checkpoint_every=1000))
    res = {"resnet34_d8": dict(name="resnet34_d8_psp", options=dict(psp=False)),
           "attention": dict(name="resnet34_d8_psp", options=dict(psp=False, scales=[1.0, 0.5])),
           "psp": dict(name="resnet34_d8_psp", options=dict(psp=True)),
           "recalib": dict(name="recalib_attention", options=dict(backbone="resnet34_d8")),
           "recalib_psp": dict(name="recalib_attention", options=dict(backbone="resnet34_d8_psp"))}
    for row, model in res.items():
        yield dict(name=f"recalib_ade20k/{row}", description="follow-up paper, ADE20K (ResNet34-dilated8 base)",
                   cell=dict(table="recalib_ade20k", row=row, column=""), model=model,
                   init=dict(weights="weights/resnet34_imagenet.safetensors", source="resnet34_imagenet",
                             expect_missing=["classifier", "psp", "backbone.classifier", "backbone.psp", "attention",
                                             "streams", "recalib"]),
                   data=dict(DATA["ade20k"], batch_size=8), solver=solver(iter_size=2, policy="poly", base_lr=0.01,
                                                                          max_iter=40000),
                   train=dict(seed=0, checkpoint_every=2000))


# The built-in mini reproduction (tools/reproduce_table.py --mini): a slim LargeFOV (width / 16,
# no dropout: 64-channel fc6/fc7 train poorly with it) on the procedural 97 x 97 dataset. Every
# cell starts from one shared pretraining of the trunk (mini/pretrain, Caffe's MSRA filler),
# as the paper's cells all start from one ImageNet-pretrained VGG-16; fc8 and the attention
# head start fresh. The runner sets data.root and init.weights.
MINI_SLIM = dict(width_div=16)
# The paths are those of a default full run (results/mini); the runner sets its own.
MINI_DATA = dict(dataset="mini", root="results/mini/data_v2_seed0_600_200", train_split="train", val_split="val",
                 batch_size=8, workers=0)


def mini_cells():
    yield dict(name="mini/pretrain", description="mini: the shared pretraining (single scale, from MSRA fillers)",
               model=dict(name="deeplab_largefov", **MINI_SLIM, options=dict(dropout=0.0)),
               init=dict(filler="msra"), data=MINI_DATA,
               solver=dict(solver(policy="poly", base_lr=0.03, max_iter=1500, iter_size=1)),
               train=dict(seed=0, checkpoint_every=250))
    init = dict(weights="results/mini/runs/mini/pretrain/checkpoints/iter_001500.safetensors", source="mini/pretrain",
                expect_missing=["fc8", "backbone.fc8", "attention"])
    cells = [("baseline", "", dict(name="deeplab_largefov", **MINI_SLIM, options=dict(dropout=0.0)))]
    for merge in MERGES:
        for column in COLUMNS:
            net = share_net(merge, column)
            cells.append((merge, column, dict(net, **MINI_SLIM, options=dict(net["options"], dropout=0.0,
                                                                                att_dropout=0.0))))
    for row, column, model in cells:
        yield dict(name=f"mini/{row}_{column}" if column else f"mini/{row}",
                   description="mini: " + (f"{MERGES[row]} over {COLUMNS[column][2]}" if column else "single scale"),
                   cell=dict(table="mini", row=row, column=column), model=model, init=init, data=MINI_DATA,
                   solver=solver(policy="poly", base_lr=0.003, max_iter=600, iter_size=1),
                   train=dict(seed=0, checkpoint_every=200))


def all_cells():
    yield from mini_cells()
    yield from a2s_cells()
    yield from test_cells()
    yield from recalib_cells()


def render(cfg) -> str:
    import yaml

    head = "# Generated by tools/make_configs.py from its cell list; edit there, not here.\n"
    return head + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    stale = []
    names = set()
    for cfg in all_cells():
        path = OUT / f"{cfg['name']}.yaml"
        names.add(path)
        text = render(cfg)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    extra = sorted(str(p.relative_to(REPO)) for p in OUT.rglob("*.yaml")
                   if p not in names and not p.relative_to(OUT).parts[0].startswith("_"))
    if args.check and (stale or extra):
        print("configs out of date: " + ", ".join(stale + extra), file=sys.stderr)
        return 1
    print(f"{len(names)} configs {'up to date' if args.check else 'written'} under {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

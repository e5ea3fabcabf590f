"""Every real table end to end on tiny fake dataset roots and tiny fake checkpoints: the cells'
configs resolve, each checkpoint is found (a finished run, or converted weights named in a
manifest), evaluation runs, and the table, CSV and JSON are written; so a real run can fail
only for want of data or weights. Also: missing inputs, the cache and its invalidation."""

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from attn2scale.cli.table import main as table_main
from attn2scale.data import get_dataset_info
from attn2scale.engine.builders import build_model_for
from attn2scale.engine.checkpoint import save_checkpoint
from attn2scale.tables import RunOptions, get_table, paper_tables, reproduce
from attn2scale.tables import runner as runner_mod

SLIM = ["model.width_div=16", "data.test_crop=65"]  # slim nets, images padded to 65 instead of 513
SPLITS = {"voc12": ("val", "test"), "person_part": ("val",), "coco_subset": ("val_small",), "ade20k": ("val",)}
ROOTS = {"voc12": "data/voc12", "person_part": "data/person_part", "coco_subset": "data/coco", "ade20k": "data/ade20k"}


def make_root(base, dataset, seed=0):
    """Two small images per split; labels with every kind of value the dataset stores (and
    255). Returns {split: {name: label array as training ids}}."""
    info = get_dataset_info(dataset)
    root = base / ROOTS[dataset]
    rng = np.random.default_rng(seed)
    truth = {}
    for split in SPLITS[dataset]:
        (root / info.image_dir).mkdir(parents=True, exist_ok=True)
        (root / info.label_dir).mkdir(parents=True, exist_ok=True)
        (root / "list").mkdir(exist_ok=True)
        lines, truth[split] = [], {}
        for k in range(2):
            name = f"{split}_{k}"
            h, w = 33 + 8 * k, 41
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / info.image_dir / f"{name}{info.image_ext}", quality=95)
            line = f"/{info.image_dir}/{name}{info.image_ext}"
            if split not in info.unlabelled:
                stored_max = info.num_labels if info.label_lut is not None else info.num_labels - 1
                raw = rng.integers(0, stored_max + 1, (h, w)).astype(np.uint8)
                raw[0, :5] = 255 if info.label_lut is None else 0
                Image.fromarray(raw, mode="L").save(root / info.label_dir / f"{name}.png")
                truth[split][name] = info.lut()[raw].astype(np.int64) % 256  # -1 never occurs here
                truth[split][name][truth[split][name] == 255] = 255
                line += f" /{info.label_dir}/{name}.png"
            lines.append(line)
        (root / "list" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return truth


def fake_run(cfg, runs):
    """A finished training run of ``cfg`` with random weights."""
    torch.manual_seed(0)
    model = build_model_for(cfg)
    save_checkpoint(runs / cfg.name, cfg.solver.max_iter, model, {}, cfg.to_dict(), {})


def independent_miou(pred_dir, truth, num_labels):
    """mIoU (percent) from the written prediction PNGs, counted here with numpy."""
    inter, union = np.zeros(num_labels), np.zeros(num_labels)
    for name, lab in truth.items():
        pred = np.asarray(Image.open(pred_dir / f"{name}.png")).astype(np.int64)
        valid = lab != 255
        for c in range(num_labels):
            p, t = (pred == c) & valid, (lab == c) & valid
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    present = union > 0
    return 100 * float((inter[present] / union[present]).mean())


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' data roots (data/voc12, ...) are relative
    return tmp_path


@pytest.mark.parametrize("name", list(paper_tables()))
def test_table_end_to_end_on_fake_roots(world, name):
    table = get_table(name)
    opts = RunOptions(out=world / "results", runs=world / "runs", weights=world / "weights", overrides=SLIM,
                      progress=False, log=lambda m: None)
    truths = {}
    for cfg_name in table.configs:
        cfg = runner_mod.load_cell_config(next(c for c in table.cells if c.config == cfg_name), opts)
        if cfg.data.dataset not in truths:
            truths[cfg.data.dataset] = make_root(world, cfg.data.dataset)
        fake_run(cfg, opts.runs)
    if any(c.crf for c in table.cells):
        pytest.importorskip("pydensecrf.densecrf", reason="the [crf] extra (pydensecrf2) is not installed")
    done = reproduce([name], opts)[name]
    rows = done["rows"]
    assert [r["cell"] for r in rows] == [c.id for c in table.cells]
    for r in rows:
        if r["config"] is None:
            assert r["status"] == "not reproduced" and r["note"]
            continue
        assert r["status"] == "ok", r
        assert r["checkpoint"]["source"] == "trained by attn2scale" and len(r["checkpoint"]["sha256"]) == 64
        if r["metric"] == "archive":
            with tarfile.open(r["archive"]["file"]) as tar:
                members = sorted(tar.getnames())
            assert members == [f"results/VOC2012/Segmentation/comp6_test_cls/test_{k}.png" for k in range(2)]
        else:
            assert 0 <= r["ours"] <= 100
    for ext in ("md", "csv", "json"):
        assert done["paths"][ext].is_file()
    md = done["paths"]["md"].read_text()
    assert md.count("\n| ") == len(rows) + 1 and table.title in md
    first = next((r for r in rows if r["metric"] == "miou"), None)
    if first is not None:
        cfg = runner_mod.load_cell_config(next(c for c in table.cells if c.id == first["cell"]), opts)
        info = get_dataset_info(cfg.data.dataset)
        pred = world / "results" / "cells" / cfg.name / "eval" / "pred"
        expect = independent_miou(pred, truths[cfg.data.dataset][cfg.data.val_split], info.num_labels)
        assert first["ours"] == pytest.approx(expect, abs=1e-9)
    saved = json.loads(done["paths"]["json"].read_text())
    assert [r["cell"] for r in saved["rows"]] == [c.id for c in table.cells]


def _opts(world, **kw):
    return RunOptions(out=world / "results", runs=world / "runs", weights=world / "weights",
                      overrides=["model.width_div=64", "data.test_crop=65"], progress=False, log=lambda m: None, **kw)


BASELINE = next(c for c in get_table("person_part").cells if c.id == "baseline")


def test_missing_inputs_say_which_file_and_the_command(world):
    opts = _opts(world)
    with pytest.raises(runner_mod.MissingInput, match=r"data/person_part/list/val\.txt not found.*"
                                                      r"attn2scale prepare-data person_part"):
        runner_mod.evaluate_cell(BASELINE, opts)
    make_root(world, "person_part")
    with pytest.raises(runner_mod.MissingInput, match=r"person_part/baseline: no checkpoint; expected a finished "
                                                      r"training run in .*runs/person_part/baseline \(attn2scale "
                                                      r"train --config person_part/baseline"):
        runner_mod.evaluate_cell(BASELINE, opts)
    (world / "weights").mkdir()
    entry = {"id": "pp_base", "file": "train_iter_6000.caffemodel", "cell": "person_part/baseline",
             "published_at": None, "convert": "python tools/convert_caffe.py weights/train_iter_6000.caffemodel ..."}
    (world / "weights" / "manifest.json").write_text(json.dumps({"models": [entry]}))
    with pytest.raises(runner_mod.MissingInput, match=r"or the converted Caffe model .*weights/pp_base\.safetensors "
                                                      r".*python tools/convert_caffe\.py"):
        runner_mod.evaluate_cell(BASELINE, opts)
    cfg = runner_mod.load_cell_config(BASELINE, opts)
    save_checkpoint(opts.runs / cfg.name, 5, build_model_for(cfg), {}, cfg.to_dict(), {})
    with pytest.raises(runner_mod.MissingInput, match=r"stopped at iteration 5 of 6000.*--resume"):
        runner_mod.evaluate_cell(BASELINE, opts)


def test_converted_weights_from_the_manifest_are_used_with_their_provenance(world):
    from safetensors.torch import save_file

    make_root(world, "person_part")
    opts = _opts(world)
    cfg = runner_mod.load_cell_config(BASELINE, opts)
    (world / "weights").mkdir()
    entry = {"id": "pp_base", "file": "train_iter_6000.caffemodel", "cell": "person_part/baseline", "convert": "x"}
    (world / "weights" / "manifest.json").write_text(json.dumps({"models": [entry]}))
    save_file({k: v.contiguous() for k, v in build_model_for(cfg).state_dict().items()},
              str(world / "weights" / "pp_base.safetensors"))
    (world / "weights" / "pp_base.json").write_text(json.dumps({"source_sha256": "ab" * 32}))
    res = runner_mod.evaluate_cell(BASELINE, opts)
    assert res["checkpoint"]["source"] == "converted from Caffe (train_iter_6000.caffemodel)"
    assert res["checkpoint"]["caffemodel_sha256"] == "ab" * 32 and res["images"] == 2


def test_cache_reuse_invalidation_and_resume(world, monkeypatch):
    make_root(world, "person_part")
    opts = _opts(world)
    fake_run(runner_mod.load_cell_config(BASELINE, opts), opts.runs)
    first = runner_mod.evaluate_cell(BASELINE, opts)
    assert first["predicted_now"] == 2
    real_evaluate = __import__("attn2scale.engine.evaluate", fromlist=["evaluate"]).evaluate
    calls = []

    def counting(*a, **k):
        calls.append(1)
        return real_evaluate(*a, **k)

    monkeypatch.setattr("attn2scale.engine.evaluate.evaluate", counting)
    assert runner_mod.evaluate_cell(BASELINE, opts) == first and not calls  # cached
    result = world / "results" / "cells" / "person_part" / "baseline" / "result.json"
    result.unlink()  # interrupted after the predictions: they are reused
    resumed = runner_mod.evaluate_cell(BASELINE, opts)
    assert len(calls) == 1 and resumed["predicted_now"] == 0 and resumed["scores"] == first["scores"]
    opts.overrides = [*opts.overrides, "data.workers=1"]  # another config: recomputed from scratch
    other = runner_mod.evaluate_cell(BASELINE, opts)
    assert len(calls) == 2 and other["predicted_now"] == 2 and other["key"] != first["key"]
    monkeypatch.setattr(runner_mod, "code_version", lambda: "0.0.0+other")  # another code version
    again = runner_mod.evaluate_cell(BASELINE, opts)
    assert len(calls) == 3 and again["predicted_now"] == 2 and again["code_version"] == "0.0.0+other"
    opts.force = True
    runner_mod.evaluate_cell(BASELINE, opts)
    assert len(calls) == 4
    opts.force = False
    torch.manual_seed(1)  # other weights in the same run folder: recomputed
    cfg = runner_mod.load_cell_config(BASELINE, opts)
    save_checkpoint(opts.runs / cfg.name, cfg.solver.max_iter, build_model_for(cfg), {}, cfg.to_dict(), {})
    assert runner_mod.evaluate_cell(BASELINE, opts)["checkpoint"]["sha256"] != again["checkpoint"]["sha256"]
    assert len(calls) == 5
    lst = world / "data" / "person_part" / "list" / "val.txt"  # the data changed: recomputed
    lst.write_text(lst.read_text().splitlines()[0] + "\n")
    assert runner_mod.evaluate_cell(BASELINE, opts)["images"] == 1 and len(calls) == 6


def test_cli_errors_and_missing_exit_status(world, capsys):
    assert table_main(["--table", "person-part"]) == 1
    assert "person_part, voc12_val_imagenet" in capsys.readouterr().err
    assert table_main(["--quick", "--table", "person_part"]) == 2
    assert table_main([]) == 2
    capsys.readouterr()
    assert table_main(["--table", "person_part", "--no-progress", "--set", "model.width_div=64"]) == 3
    out = capsys.readouterr().out
    assert out.count("missing (see below)") == 13 and "attn2scale prepare-data person_part" in out
    assert (world / "results" / "person_part.csv").is_file()


def test_test_crop_override_and_mini_flags():
    from attn2scale.engine.builders import test_transform
    from attn2scale.engine.config import load_config

    assert test_transform(load_config("coco_subset/baseline")).crop_size == 641  # the dataset's
    assert test_transform(load_config("coco_subset/baseline", ["data.test_crop=65"])).crop_size == 65
    assert table_main(["--mini", "--set", "model.width_div=2"]) == 2


def test_train_refuses_a_run_of_another_config_and_missing_init(world):
    make_root(world, "person_part")
    (world / "data" / "person_part" / "list" / "train.txt").write_text(
        (world / "data" / "person_part" / "list" / "val.txt").read_text())
    opts = _opts(world, train=True)
    cfg = runner_mod.load_cell_config(BASELINE, opts)
    with pytest.raises(runner_mod.MissingInput, match=r"training needs the init weights .*"
                                                      r"deeplab_v1_largefov_init_vgg16\.safetensors"):
        runner_mod.evaluate_cell(BASELINE, opts)
    other = cfg.to_dict()
    other["solver"]["base_lr"] = 0.5
    save_checkpoint(opts.runs / cfg.name, 3, build_model_for(cfg), {}, other, {})
    with pytest.raises(runner_mod.MissingInput, match=r"trained with another config \(solver.base_lr"):
        runner_mod.evaluate_cell(BASELINE, opts)


def test_a_crf_cell_without_the_extra_is_missing_before_any_work(world, monkeypatch):
    from attn2scale.engine import crf

    def unavailable():
        raise crf.CRFUnavailable(crf.INSTALL_HINT)

    monkeypatch.setattr(crf, "require_pydensecrf", unavailable)
    make_root(world, "voc12")
    cell = next(c for c in get_table("voc12_test").cells if c.crf)
    opts = _opts(world)
    fake_run(runner_mod.load_cell_config(cell, opts), opts.runs)
    with pytest.raises(runner_mod.MissingInput, match=r"scored with DenseCRF: .*pip install -e \.\[crf\]"):
        runner_mod.evaluate_cell(cell, opts)
    assert not (world / "results" / "cells" / cell.config).exists()  # nothing evaluated or cleared

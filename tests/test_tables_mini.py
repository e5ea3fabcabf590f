"""The built-in mini reproduction, --quick (as CI runs it): the table, CSV/JSON, figures and
the attention-by-size measurement are written, and training moved every cell far above the
level of a net that learned nothing."""

import json

import numpy as np
import pytest
from PIL import Image

from attn2scale.data.synthetic import FORMAT
from attn2scale.tables.mini import QUICK, run_mini


def all_background_miou(root, split):
    """mIoU (percent) of predicting background everywhere, counted here from the label PNGs:
    background IoU = its pixel share; every other present class scores 0."""
    names = [line.split()[1] for line in (root / "list" / f"{split}.txt").read_text().splitlines()]
    labels = np.concatenate([np.asarray(Image.open(root / n.lstrip("/"))).ravel() for n in names])
    present = np.unique(labels[labels != 255])
    return 100 * float((labels == 0).mean()) / len(present)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini_quick")
    return out, run_mini(out, quick=True, progress=False, log=lambda m: None)


def test_quick_mini_writes_the_table_and_learns(quick_run):
    out, res = quick_run
    root = out / f"data_v{FORMAT}_seed0_{QUICK.train_images}_{QUICK.val_images}"
    chance = all_background_miou(root, "val")
    assert res["chance_miou"] == pytest.approx(chance, abs=1e-6)
    assert 10 < chance < 25  # about a fifth of the background share
    rows = res["rows"]
    assert [r["cell"] for r in rows] == list(QUICK.cells)
    for r in rows:
        assert r["status"] == "ok" and r["paper"] is None
        assert r["ours"] > chance + 30, (r["cell"], r["ours"], chance)  # far above learning nothing
        assert r["checkpoint"]["source"] == "trained by attn2scale"
    md = res["paths"]["md"].read_text()
    assert "NOT the paper's numbers" in md and md.count("\n| ") == len(rows) + 1 + 1 + 3
    assert json.loads(res["paths"]["json"].read_text())["rows"][0]["cell"] == "baseline"
    assert res["paths"]["csv"].read_text().splitlines()[0].startswith("table,cell,label,metric,paper,ours")


def test_quick_mini_attention_figures_and_weights(quick_run):
    out, res = quick_run
    assert len(res["figures"]) == 4 and all(p.is_file() and p.stat().st_size > 10_000 for p in res["figures"])
    by_size = res["attention_by_size"]
    assert by_size["config"] == "mini/attention_s3_esupv" and by_size["scales"] == [1.0, 0.75, 0.5]
    assert sum(b["objects"] for b in by_size["bins"]) == by_size["objects"] > 100
    for b in by_size["bins"]:
        assert b["objects"] > 10 and sum(b["mean_weight"]) == pytest.approx(1.0, abs=1e-5)  # softmax over scales
    saved = json.loads((out / "attention_by_size.json").read_text())
    assert saved == by_size


def test_rerun_reuses_everything(quick_run, monkeypatch):
    out, res = quick_run

    def refuse(*a, **k):
        raise AssertionError("a rerun must not train or evaluate again")

    monkeypatch.setattr("attn2scale.engine.trainer.Trainer.run", refuse)
    monkeypatch.setattr("attn2scale.engine.evaluate.evaluate", refuse)
    again = run_mini(out, quick=True, progress=False, log=lambda m: None)
    assert [r["ours"] for r in again["rows"]] == [r["ours"] for r in res["rows"]]

"""Training through the CLI on the real VOC sample: the loss falls, a resume equals the
uninterrupted run bit for bit, torchrun with 2 processes equals 1, checkpoints survive a
crash mid-write, bad input stops with the key, file or iteration named."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import attn2scale.engine.checkpoint as ckpt
from attn2scale.cli.train import main as train_main
from attn2scale.engine.losses import segmentation_loss
from attn2scale.models import build_model

from conftest import REPO, require_shared

FORK = ("caffe", "golden", "authors_fork")


def write_config(tmp_path, name="cfg", base="voc12_val_imagenet/attention_s3_esupv", **sections):
    """A slim config on the VOC sample (crop 97) from a packaged cell (3-scale attention + E-Supv)."""
    import yaml

    root = require_shared("data", "voc2012_sample")
    cfg = {
        "_base_": str(REPO / "attn2scale" / "configs" / f"{base}.yaml"),
        "name": name, "model": {"width_div": 16}, "init": {"weights": None},
        "data": {"root": str(root), "batch_size": 1, "crop_size": 97, "workers": 0},
        "solver": {"iter_size": 2, "max_iter": 4, "base_lr": 0.01}, "train": {"checkpoint_every": 2},
    }
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def weights(run, it):
    return load_file(str(run / "checkpoints" / f"iter_{it:06d}.safetensors"))


def log_losses(run):
    lines = (run / "log.csv").read_text().splitlines()
    col = lines[0].split(",").index("loss")
    return [float(l.split(",")[col]) for l in lines[1:]]


def test_loss_falls_on_the_real_voc_sample(tmp_path, capsys):
    cfg = write_config(tmp_path, base="voc12_val_imagenet/baseline", solver={
        "iter_size": 1, "max_iter": 30, "lr_policy": "fixed"}, data={"batch_size": 2}, train={"checkpoint_every": 100})
    run = tmp_path / "run"
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress"]) == 0
    losses = log_losses(run)
    assert len(losses) == 30 and abs(losses[0] - np.log(21)) < 0.05  # chance at the start
    assert np.mean(losses[-10:]) < np.mean(losses[:3]) - 0.3, losses
    assert "iteration 30" in capsys.readouterr().out
    assert (run / "checkpoints" / "iter_000030.json").is_file() and (run / "config.yaml").is_file()


def test_resume_equals_the_uninterrupted_run_bitwise(tmp_path):
    cfg = write_config(tmp_path)
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_main(["--config", str(cfg), "--out", str(full), "--no-progress"]) == 0
    assert train_main(["--config", str(cfg), "--out", str(part), "--no-progress", "--set", "solver.max_iter=2"]) == 0
    assert train_main(["--config", str(cfg), "--out", str(part), "--no-progress", "--resume"]) == 0
    a, b = weights(full, 4), weights(part, 4)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = load_file(str(full / "checkpoints" / "iter_000004.solver.safetensors"))
    sb = load_file(str(part / "checkpoints" / "iter_000004.solver.safetensors"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert log_losses(full) == log_losses(part)


def test_torchrun_two_processes_equal_one(tmp_path):
    """gloo on CPU, 2 processes x iter_size 1 each = 1 process x iter_size 2."""
    cfg = write_config(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_main(["--config", str(cfg), "--out", str(one), "--no-progress"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(29500 + os.getpid() % 1000), "-m", "attn2scale", "train",
                           "--config", str(cfg), "--out", str(two), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = weights(one, 4), weights(two, 4)
    for k in a:
        scale = a[k].abs().max().clamp_min(1e-30)
        assert ((a[k] - b[k]).abs().max() / scale).item() <= 1e-6, k
    assert np.allclose(log_losses(one), log_losses(two), rtol=1e-6)
    record = json.loads((two / "checkpoints" / "iter_000004.json").read_text())
    assert record["world_size"] == 2 and record["stream_position"] == 4 * 2


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = write_config(tmp_path)
    run = tmp_path / "run"
    real = ckpt._save_tensors
    calls = []

    def failing(tensors, path, meta):
        calls.append(path)
        if "iter_000004" in path.name:  # the second checkpoint dies half-way
            real(tensors, path, meta)
            raise OSError("disk full (simulated)")
        real(tensors, path, meta)

    monkeypatch.setattr(ckpt, "_save_tensors", failing)
    with pytest.raises(OSError, match="simulated"):
        train_main(["--config", str(cfg), "--out", str(run), "--no-progress"])
    folder = run / "checkpoints"
    assert (folder / "latest").read_text().strip() == "iter_000002.json"
    assert not (folder / "iter_000004.json").exists() and not list(folder.glob(".*.tmp"))
    record, w, _ = ckpt.load_checkpoint(folder / "iter_000002.json")
    assert record["iteration"] == 2 and len(w) > 0
    monkeypatch.setattr(ckpt, "_save_tensors", real)
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress", "--resume"]) == 0
    full = tmp_path / "full"
    assert train_main(["--config", str(cfg), "--out", str(full), "--no-progress"]) == 0
    assert all(torch.equal(weights(run, 4)[k], weights(full, 4)[k]) for k in weights(full, 4))


def test_engine_losses_equal_real_caffe(tmp_path):
    """The four losses of the authors' attention47 / max30 / avg28_2 train nets (real Caffe),
    through the engine's objective on the model with the golden weights."""
    from test_models_golden import make_model  # the golden weights loaded into the hand-written model

    image, label = np.load(require_shared(*FORK, "attention47", "train", "data.npy")), \
        np.load(require_shared(*FORK, "attention47", "train", "label.npy"))
    for case in ("attention47", "max30", "avg28_2"):
        model = make_model(case)
        out = model(torch.from_numpy(image))
        total, parts = segmentation_loss(out, torch.from_numpy(label).long())
        ref = json.loads((require_shared(*FORK, case, "train", "losses.json")).read_text())
        names = ["loss", "loss_res1", "loss_res075", "loss_res05"]
        for name, value in zip(names, parts):
            assert abs(value.item() - ref[name]) <= 1e-5 * abs(ref[name]), (case, name, value.item(), ref[name])
        assert abs(total.item() - sum(ref[n] for n in names)) <= 1e-5 * sum(ref.values())


@pytest.mark.parametrize("sections,message", [
    ({"data": {"root": "/no/such/root"}}, "dataset root of 'voc12' not found"),
    ({"init": {"weights": "/no/such/init.safetensors", "source": "deeplab_v1_largefov_init_vgg16"}},
     "init.weights /no/such/init.safetensors not found. It is DeepLab-LargeFOV init.*convert_caffe.py"),
    ({"solver": {"base_lr": 1.0e+30}}, "iteration 0: the loss is not finite|iteration 1: the loss is not finite"),
    ({"model": {"options": {"scales": [1.0, 0.3]}}}, "unsupported scales"),
])
def test_bad_input_stops_with_a_named_cause(tmp_path, capsys, sections, message):
    cfg = write_config(tmp_path, **sections)
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    import re

    assert re.search(message, capsys.readouterr().err)


def test_init_file_that_does_not_fit(tmp_path, capsys):
    from safetensors.torch import save_file

    bad = tmp_path / "init.safetensors"
    save_file({"conv1_1.weight": torch.zeros(7, 3, 3, 3)}, str(bad))
    cfg = write_config(tmp_path, init={"weights": str(bad)})
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "conv1_1.weight has shape (7, 3, 3, 3), the model's backbone.conv1_1.weight (4, 3, 3, 3)" in \
        capsys.readouterr().err
    model = build_model("attention_to_scale", num_classes=21, width_div=16)
    save_file({k.replace("backbone.", ""): v for k, v in model.state_dict().items() if "conv1" in k}, str(bad))
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "lacks" in capsys.readouterr().err


def test_poly_resume_must_keep_max_iter_and_fresh_runs_keep_out(tmp_path, capsys):
    cfg = write_config(tmp_path, solver={"lr_policy": "poly", "power": 0.9})
    run = tmp_path / "run"
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress", "--set", "solver.max_iter=2"]) == 0
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress", "--resume"]) == 1
    assert "solver.max_iter: 2 in the checkpoint, 4 now (it sets the poly learning rate)" in capsys.readouterr().err
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress"]) == 1
    assert "holds checkpoints of an earlier run: pass --resume" in capsys.readouterr().err


def test_resume_from_another_config_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path)
    run = tmp_path / "run"
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress", "--set", "solver.max_iter=2"]) == 0
    rc = train_main(["--config", str(cfg), "--out", str(run), "--no-progress", "--resume",
                     "--set", "solver.base_lr=0.5"])
    assert rc == 1 and "solver.base_lr: 0.01 in the checkpoint, 0.5 now" in capsys.readouterr().err
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "empty"), "--resume", "--no-progress"]) == 1
    assert "holds no checkpoint" in capsys.readouterr().err


def test_bf16_autocast_and_channels_last_train(tmp_path):
    cfg = write_config(tmp_path)
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    assert train_main(["--config", str(cfg), "--out", str(plain), "--no-progress", "--set", "solver.max_iter=2"]) == 0
    assert train_main(["--config", str(cfg), "--out", str(mixed), "--no-progress", "--set", "solver.max_iter=2",
                       "--set", "train.amp=bf16", "--set", "train.channels_last=true"]) == 0
    a, b = log_losses(plain), log_losses(mixed)
    assert a != b and np.allclose(a, b, rtol=0.02)  # bf16 rounding, same computation


def test_periodic_validation_through_the_evaluation_code(tmp_path):
    cfg = write_config(tmp_path, train={"val_every": 2})
    run = tmp_path / "run"
    assert train_main(["--config", str(cfg), "--out", str(run), "--no-progress"]) == 0
    rows = (run / "val.csv").read_text().splitlines()
    assert rows[0] == "iteration,miou,pixel_acc,mean_acc,fwiou" and [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    scores = json.loads((run / "val" / "iter_000004" / "scores.json").read_text())
    assert float(rows[2].split(",")[1]) == pytest.approx(scores["miou"], abs=1e-6)
    assert (run / "val" / "iter_000004" / "pred" / "2008_000700.png").is_file()  # the sample's val image

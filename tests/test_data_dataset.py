"""The list dataset and its loaders on the real VOC sample and on files made here."""

import numpy as np
import pytest
import torch

from attn2scale.data import SegDataset, SegTransform, StreamSampler, build_loader, get_dataset_info, pad_collate
from attn2scale.data.io import write_label_png

from conftest import require_shared


def voc_sample():
    return require_shared("data", "voc2012_sample")


def test_voc_sample_labels_decode_like_the_palette():
    """Label indices read by the dataset, coloured with the VOC palette, equal the PNG's
    colours as OpenCV decodes them (an independent decoder of the same file)."""
    cv2 = pytest.importorskip("cv2")
    root = voc_sample()
    info = get_dataset_info("voc12")
    ds = SegDataset(root, "train_aug", info)
    assert len(ds) == 21
    classes = set()
    for i in range(len(ds)):
        _, label, e = ds.load(i)
        bgr = cv2.imread(str(root / e.label.lstrip("/")), cv2.IMREAD_COLOR)
        assert np.array_equal(info.palette()[label], bgr[..., ::-1]), e.label
        classes |= set(np.unique(label).tolist())
    assert 255 in classes and len(classes - {0, 255}) >= 8


def test_eval_item_crops_back_to_the_original():
    root = voc_sample()
    ds = SegDataset(root, "val", "voc12")
    image, label, _ = ds.load(0)
    item = ds[0]
    h, w = item["size"].tolist()
    assert (h, w) == label.shape and item["image"].shape == (3, 513, 513)
    assert torch.equal(item["label"][:h, :w], torch.from_numpy(label).to(torch.int64))


def test_unlabelled_split_gives_images_only(tmp_path):
    root = voc_sample()
    (tmp_path / "list").mkdir()
    (tmp_path / "JPEGImages").symlink_to(root / "JPEGImages")
    (tmp_path / "list" / "test.txt").write_text("/JPEGImages/2008_000652.jpg\n/JPEGImages/2008_000700.jpg\n")
    ds = SegDataset(tmp_path, "test", "voc12")
    batch = pad_collate([ds[0], ds[1]])
    assert "label" not in batch and batch["image"].shape == (2, 3, 513, 513) and batch["name"] == ["2008_000652",
                                                                                                    "2008_000700"]


def test_ade20k_label_mapping(tmp_path):
    """Stored 0 -> 255 (ignored), k -> k - 1."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "list").mkdir()
    raw = (np.arange(151 * 2) % 151).astype(np.uint8).reshape(2, 151)
    Image.fromarray(np.zeros((2, 151, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    write_label_png(tmp_path / "annotations" / "a.png", raw)
    (tmp_path / "list" / "val.txt").write_text("/images/a.jpg /annotations/a.png\n")
    _, label, _ = SegDataset(tmp_path, "val", "ade20k").load(0)
    expect = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    assert np.array_equal(label, expect)


# ---- samplers and loaders -------------------------------------------------------


def test_stream_is_shuffled_per_pass_and_shared_out_by_rank():
    n = 7
    one = StreamSampler(n, seed=3)
    stream = [x for _, x in zip(range(5 * n), iter(one))]
    idx = [i for i, _ in stream]
    for p in range(4):
        assert sorted(idx[p * n : (p + 1) * n]) == list(range(n))  # each pass is a permutation
    assert idx[:n] != idx[n : 2 * n]  # reshuffled
    assert len({s for _, s in stream}) == len(stream)  # one random stream per position
    world, b = 3, 2  # rank r reads blocks r, r + 3, ... of 2 positions
    ranks = [[x for _, x in zip(range(10), iter(StreamSampler(n, seed=3, batch_size=b, rank=r, world=world)))]
             for r in range(world)]
    blocks = [ranks[m % world][(m // world) * b : (m // world + 1) * b] for m in range(15)]
    assert [x for blk in blocks for x in blk] == stream[:30]
    resumed = [x for _, x in zip(range(5), iter(StreamSampler(n, seed=3, batch_size=2, start=12)))]
    assert resumed == stream[12:17]
    with pytest.raises(ValueError, match="multiple of batch_size"):
        StreamSampler(n, seed=3, batch_size=2, start=11)
    assert [i for i, _ in zip(range(n), iter(StreamSampler(n, seed=3, shuffle=False)))] == list(range(n))


def _batches(loader, k):
    it = iter(loader)
    return [next(it) for _ in range(k)]


def test_loader_is_deterministic_for_any_worker_count():
    root = voc_sample()
    info = get_dataset_info("voc12")
    ds = SegDataset(root, "train_aug", info, SegTransform.for_dataset(info, train=True, crop_size=65,
                                                                      scale_range=(0.6, 1.4)))
    a = _batches(build_loader(ds, 2, train=True, seed=5, workers=0), 3)
    b = _batches(build_loader(ds, 2, train=True, seed=5, workers=2), 3)
    c = _batches(build_loader(ds, 2, train=True, seed=6, workers=0), 3)
    for x, y in zip(a, b):
        assert x["name"] == y["name"] and torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_two_ranks_read_the_single_process_micro_batches():
    """Two ranks, each with half the micro-batches of a step, read exactly the micro-batches
    (samples, augmentations and grouping) that one process reads."""
    root = voc_sample()
    info = get_dataset_info("voc12")
    ds = SegDataset(root, "train_aug", info, SegTransform.for_dataset(info, train=True, crop_size=49))
    single = _batches(build_loader(ds, 2, train=True, seed=1, workers=0), 8)
    r0 = _batches(build_loader(ds, 2, train=True, seed=1, workers=0, rank=0, world=2), 4)
    r1 = _batches(build_loader(ds, 2, train=True, seed=1, workers=2, rank=1, world=2), 4)
    for k in range(4):
        for s, r in ((single[2 * k], r0[k]), (single[2 * k + 1], r1[k])):
            assert s["name"] == r["name"]
            assert torch.equal(s["image"], r["image"]) and torch.equal(s["label"], r["label"])


def test_eval_loader_shards_cover_every_image_once():
    root = voc_sample()
    ds = SegDataset(root, "train_aug", "voc12")
    names = [n for r in range(3) for b in build_loader(ds, 4, train=False, workers=0, rank=r, world=3)
             for n in b["name"]]
    assert sorted(names) == sorted(e.name for e in ds.entries)


def test_torchrun_without_a_process_group_is_refused(monkeypatch):
    ds = SegDataset(voc_sample(), "val", "voc12")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2 .* init_process_group"):
        build_loader(ds, 1, train=False, workers=0)
    assert len(build_loader(ds, 1, train=False, workers=0, rank=1, world=2)) == 0  # given explicitly: fine


def test_loader_benchmark_runs(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    md = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_data.py"), "--root", str(voc_sample()),
                           "--workers", "0", "--images", "20", "--batch", "2", "--markdown", str(md)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [l for l in md.read_text().splitlines() if l.startswith("| 0 |")]
    assert len(rows) == 2 and all(float(r.split("|")[3]) > 0 for r in rows)

"""Bad dataset input: each case raises an error naming the file (and the list line)."""

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from attn2scale.cli.prepare_data import main as prepare_main
from attn2scale.data import DataError, SegDataset
from attn2scale.data.io import write_label_png


@pytest.fixture
def root(tmp_path):
    """A 2-image VOC-style root: good.jpg/good.png and other.jpg/other.png."""
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClassAug").mkdir()
    (tmp_path / "list").mkdir()
    for name in ("good", "other"):
        Image.fromarray(np.full((5, 7, 3), 100, np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        write_label_png(tmp_path / "SegmentationClassAug" / f"{name}.png", np.zeros((5, 7), np.uint8))
    return tmp_path


def write_list(root, *lines):
    (root / "list" / "train_aug.txt").write_text("".join(line + "\n" for line in lines))


GOOD = "/JPEGImages/good.jpg /SegmentationClassAug/good.png"
OTHER = "/JPEGImages/other.jpg /SegmentationClassAug/other.png"


def test_missing_image_named_with_its_list_line(root):
    write_list(root, GOOD, "/JPEGImages/nope.jpg /SegmentationClassAug/good.png")
    with pytest.raises(DataError, match=r"nope\.jpg: image not found \(listed at .*train_aug\.txt:2\)"):
        SegDataset(root, "train_aug", "voc12")


def test_missing_label_named(root):
    write_list(root, GOOD, "/JPEGImages/other.jpg /SegmentationClassAug/nope.png")
    with pytest.raises(DataError, match=r"nope\.png: label not found \(listed at .*train_aug\.txt:2\)"):
        SegDataset(root, "train_aug", "voc12")


def test_unreadable_image_named(root):
    (root / "JPEGImages" / "other.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    write_list(root, GOOD, OTHER)
    ds = SegDataset(root, "train_aug", "voc12")
    with pytest.raises(DataError, match=r"other\.jpg: cannot decode the image \(listed at .*train_aug\.txt:2\)"):
        ds[1]


def test_label_size_differs_from_image(root):
    write_label_png(root / "SegmentationClassAug" / "other.png", np.zeros((6, 7), np.uint8))
    write_list(root, GOOD, OTHER)
    with pytest.raises(DataError, match=r"other\.png: label size 7x6 \(WxH\) differs from its image .*other\.jpg 7x5 "
                                        r"\(listed at .*:2\)"):
        SegDataset(root, "train_aug", "voc12")[1]


def test_label_values_outside_the_classes(root):
    lab = np.zeros((5, 7), np.uint8)
    lab[0, :3] = [21, 30, 254]
    write_label_png(root / "SegmentationClassAug" / "other.png", lab)
    write_list(root, GOOD, OTHER)
    with pytest.raises(DataError, match=r"other\.png: label values \[21, 30, 254\] are outside \[0, 21\) and the "
                                        r"ignore label \(listed at .*:2\); 3 pixels"):
        SegDataset(root, "train_aug", "voc12")[1]


def test_rgb_label_refused(root):
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(root / "SegmentationClassAug" / "other.png")
    write_list(root, GOOD, OTHER)
    with pytest.raises(DataError, match=r"other\.png: label image has mode 'RGB'"):
        SegDataset(root, "train_aug", "voc12")[1]


@pytest.mark.parametrize("line", ["/JPEGImages/a.jpg /b.png /c.png", "/JPEGImages/good.jpg"])
def test_malformed_list_line(root, line):
    write_list(root, GOOD, line)
    with pytest.raises(DataError, match=r"train_aug\.txt:2: "):
        SegDataset(root, "train_aug", "voc12")


def test_missing_root_and_list(tmp_path):
    with pytest.raises(DataError, match="dataset root of 'voc12' not found"):
        SegDataset(tmp_path / "nope", "val", "voc12")
    with pytest.raises(DataError, match=r"list[/\\]val\.txt: list file not found"):
        SegDataset(tmp_path, "val", "voc12")


def test_mat_without_the_expected_field(tmp_path, capsys):
    """An SBD cls/*.mat without GTcls, and a PASCAL-Part .mat without anno."""
    voc = tmp_path / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(voc / "JPEGImages" / "x.jpg")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("")
    sbd = tmp_path / "sbd"
    (sbd / "cls").mkdir(parents=True)
    scipy.io.savemat(sbd / "cls" / "x.mat", {"GTinst": {"Segmentation": np.zeros((4, 4), np.uint8)}})
    (sbd / "train.txt").write_text("x\n")
    (sbd / "val.txt").write_text("")
    rc = prepare_main(["voc12", "--src", str(voc), "--sbd", str(sbd), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert rc == 1 and "x.mat: the file has no field 'GTcls' (has ['GTinst'])" in capsys.readouterr().err

    v10 = tmp_path / "VOC2010"
    (v10 / "ImageSets" / "Main").mkdir(parents=True)
    (v10 / "Annotations_Part").mkdir()
    (v10 / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(v10 / "JPEGImages" / "y.jpg")
    scipy.io.savemat(v10 / "Annotations_Part" / "y.mat", {"annotation": 1})
    (v10 / "ImageSets" / "Main" / "train.txt").write_text("y\n")
    (v10 / "ImageSets" / "Main" / "val.txt").write_text("")
    rc = prepare_main(["person_part", "--src", str(v10), "--out", str(tmp_path / "p"), "--workers", "1"])
    assert rc == 1 and "y.mat: the file has no field 'anno'" in capsys.readouterr().err


def test_coco_json_without_the_listed_image(tmp_path, capsys):
    src = tmp_path / "coco"
    (src / "annotations").mkdir(parents=True)
    (src / "train2014").mkdir()
    (src / "val2014").mkdir()
    from attn2scale.data.registry import COCO_CATEGORIES

    cats = [{"id": i, "name": n} for i, n in COCO_CATEGORIES]
    for folder in ("train2014", "val2014"):
        (src / "annotations" / f"instances_{folder}.json").write_text(
            json.dumps({"images": [], "annotations": [], "categories": cats}))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train_small.txt").write_text("/JPEGImages/COCO_train2014_000000000009.jpg /S/x.png\n")
    (lists / "val_small.txt").write_text("")
    rc = prepare_main(["coco_subset", "--src", str(src), "--lists", str(lists), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "instances_train2014.json: the listed image 'COCO_train2014_000000000009' is not in the JSON" in err


def test_coco_json_with_other_categories(tmp_path, capsys):
    src = tmp_path / "coco"
    (src / "annotations").mkdir(parents=True)
    (src / "train2014").mkdir()
    (src / "annotations" / "instances_train2014.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "aeroplane"}]}))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train_small.txt").write_text("")
    rc = prepare_main(["coco_subset", "--src", str(src), "--lists", str(lists), "--out", str(tmp_path / "o")])
    assert rc == 1 and "1 categories, expected the 80 of COCO" in capsys.readouterr().err


@pytest.mark.parametrize("dataset,extra,expected", [
    ("voc12", ["--sbd", "SBD"], "expected the VOC2012 JPEGImages folder at"),
    ("voc12", [], "voc12 needs --sbd"),
    ("person_part", [], "expected the VOC2010 JPEGImages folder at"),
    ("coco_subset", ["--lists", "L"], "expected the COCO 2014 annotations instances_train2014.json at"),
    ("coco_subset", [], "coco_subset needs --lists"),
    ("ade20k", [], "expected the ADEChallengeData2016 images/training folder at"),
])
def test_wrong_src_names_what_is_missing(tmp_path, capsys, dataset, extra, expected):
    if "--lists" in extra:
        (tmp_path / "L").mkdir()
        (tmp_path / "L" / "train_small.txt").write_text("")
        extra = ["--lists", str(tmp_path / "L")]
    rc = prepare_main([dataset, "--src", str(tmp_path / "raw"), "--out", str(tmp_path / "o")] + extra)
    assert rc == 1 and expected in capsys.readouterr().err

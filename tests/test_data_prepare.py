"""prepare-data on the real samples of ../shared/data laid out as the public downloads are.

Produced labels are checked against the official VOC labels where they exist
and against decodings written here otherwise."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from attn2scale.cli.prepare_data import main as prepare_main
from attn2scale.data import SegDataset
from attn2scale.data.io import write_label_png
from attn2scale.data.prepare import PREPARERS
from attn2scale.data.prepare.matfile import load_mat
from attn2scale.data.registry import DATASETS

from conftest import require_shared


def official_labels():
    root = require_shared("data", "voc2012_sample")
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((root / "SegmentationClassAug").glob("*.png"))}


def read_png(path):
    return np.asarray(Image.open(path))


def test_one_preparer_per_dataset():
    assert set(PREPARERS) == {n for n, info in DATASETS.items() if not info.synthetic}


def write_sbd_mat(path, seg, v73=False):
    if v73:  # MATLAB v7.3 layout: HDF5 group per struct, arrays stored transposed
        import h5py

        with h5py.File(path, "w") as f:
            d = f.create_group("GTcls").create_dataset("Segmentation", data=seg.T)
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
    else:
        scipy.io.savemat(path, {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": 1}})


@pytest.fixture
def voc_raw(tmp_path):
    """VOC2012 + SBD as distributed, made from the sample: images whose official label has
    255 borders are VOC-annotated (SegmentationClass), the others SBD-only (cls/*.mat)."""
    sample = require_shared("data", "voc2012_sample")
    labels = official_labels()
    val = (sample / "list" / "val_id.txt").read_text().split()
    voc_ids = sorted(n for n, l in labels.items() if (l == 255).any())
    sbd_only = sorted(set(labels) - set(voc_ids))
    assert len(voc_ids) >= 3 and len(sbd_only) >= 3 and set(val) <= set(voc_ids)
    voc = tmp_path / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "JPEGImages").symlink_to(sample / "JPEGImages")
    for n in voc_ids:
        shutil.copy(sample / "SegmentationClassAug" / f"{n}.png", voc / "SegmentationClass")
    sets = voc / "ImageSets" / "Segmentation"
    sets.joinpath("train.txt").write_text("".join(f"{n}\n" for n in voc_ids if n not in val))
    sets.joinpath("val.txt").write_text("".join(f"{n}\n" for n in val))
    sets.joinpath("test.txt").write_text("2008_000652\n2011_003066\n")
    sbd = tmp_path / "sbd"
    (sbd / "cls").mkdir(parents=True)
    # SBD also annotates a VOC image (without borders): VOC's own label must win; and the VOC val
    # image is in SBD train: it must stay out of train_aug.
    in_sbd = sbd_only + voc_ids[:2] + val
    for k, n in enumerate(in_sbd):
        write_sbd_mat(sbd / "cls" / f"{n}.mat", np.where(labels[n] == 255, 0, labels[n]).astype(np.uint8), v73=k == 1)
    sbd.joinpath("train.txt").write_text("".join(f"{n}\n" for n in in_sbd[::2]))
    sbd.joinpath("val.txt").write_text("".join(f"{n}\n" for n in in_sbd[1::2]))
    return voc, sbd, labels, val


def test_voc12_labels_equal_the_official_ones(voc_raw, tmp_path, capsys):
    voc, sbd, labels, val = voc_raw
    out = tmp_path / "root"
    args = ["voc12", "--src", str(voc), "--sbd", str(sbd), "--out", str(out), "--workers", "2"]
    assert prepare_main(args) == 3  # prepared; the sample's lists are smaller than the authors' (exit status 3)
    printed = capsys.readouterr().out
    for n, ref in labels.items():
        got = read_png(out / "SegmentationClassAug" / f"{n}.png")
        assert np.array_equal(got, ref), f"{n}: {int((got != ref).sum())} pixels differ from the official label"
    assert Image.open(out / "SegmentationClassAug" / f"{val[0]}.png").mode == "P"
    lists = {s: (out / "list" / f"{s}.txt").read_text().splitlines() for s in ("train_aug", "val", "trainval_aug")}
    assert lists["val"] == [f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png" for n in val]
    assert [l.split()[0][12:-4] for l in lists["train_aug"]] == sorted(set(labels) - set(val))
    assert sorted(lists["trainval_aug"]) == sorted(lists["train_aug"] + lists["val"])
    assert (out / "list" / "test.txt").read_text().split() == ["/JPEGImages/2008_000652.jpg", "/JPEGImages/2011_003066.jpg"]
    assert "train_aug: 21 images, the authors' list has 10582 (-10561)" in printed
    # the dataset reads the result, and the sample's own lists name the same files
    ds = SegDataset(out, "train_aug", "voc12")
    assert len(ds) == 21 and ds.load(3)[1].shape == labels[ds.entries[3].name].shape
    # a rerun resumes: nothing is redone, removed outputs are remade, no temporary file is left
    assert prepare_main(args) == 3
    assert "0 label files written, 22 already done" in capsys.readouterr().out
    # removed outputs, an output a crash left empty and a killed run's temporary file
    names = list(labels)
    for n in names[:3]:
        (out / "SegmentationClassAug" / f"{n}.png").unlink()
    (out / "SegmentationClassAug" / f"{names[3]}.png").write_bytes(b"")
    (out / "SegmentationClassAug" / f".{names[4]}.png.x1y2.tmp").write_bytes(b"\x89PNG")
    assert prepare_main(args) == 3
    assert "4 label files written, 18 already done" in capsys.readouterr().out
    assert not list(out.rglob(".*.tmp"))
    for n in names[:5]:
        assert np.array_equal(read_png(out / "SegmentationClassAug" / f"{n}.png"), labels[n])


def test_voc12_without_the_test_download(voc_raw, tmp_path, capsys):
    voc, sbd, labels, val = voc_raw
    (voc / "ImageSets" / "Segmentation" / "test.txt").unlink()
    prepare_main(["voc12", "--src", str(voc), "--sbd", str(sbd), "--out", str(tmp_path / "o"), "--workers", "1"])
    printed = capsys.readouterr().out
    assert "test list not written" in printed and "VOC2012 test download" in printed
    assert "test: not written" not in printed and not (tmp_path / "o" / "list" / "test.txt").exists()


def test_v73_mat_reads_like_v5(tmp_path):
    seg = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_sbd_mat(tmp_path / "a.mat", seg)
    write_sbd_mat(tmp_path / "b.mat", seg, v73=True)
    a, b = load_mat(tmp_path / "a.mat"), load_mat(tmp_path / "b.mat")
    assert np.array_equal(a["GTcls"]["Segmentation"], seg) and np.array_equal(b["GTcls"]["Segmentation"], seg)


def _part_annotation(h, w):
    """Two objects (a person with head + left upper arm overlapping, a dog), as plain data."""
    head, arm = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    head[:2], arm[1:, :2] = 1, 1
    return [("person", [("head", head), ("luarm", arm)]), ("dog", [("head", np.ones((h, w), np.uint8))])]


def write_parts_v5(path, objects):
    dt = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    objs = np.zeros((1, len(objects)), dt)
    for k, (cls, parts) in enumerate(objects):
        p = np.zeros((1, len(parts)), [("part_name", "O"), ("mask", "O")])
        for j, (name, m) in enumerate(parts):
            p[0, j] = (name, m)
        objs[0, k] = (cls, 15 if cls == "person" else 12, np.ones_like(parts[0][1]), p)
    scipy.io.savemat(path, {"anno": {"imname": "x", "objects": objs}})


def write_parts_v73(path, objects):
    """MATLAB's v7.3 layout: a struct array is one group whose fields hold references."""
    import h5py

    def char(g, name, text):
        d = g.create_dataset(name, data=np.array([[ord(c)] for c in text], np.uint16))
        d.attrs["MATLAB_class"] = np.bytes_("char")
        return d.ref

    def array(g, name, a, cls="uint8"):
        d = g.create_dataset(name, data=np.asarray(a).T)
        d.attrs["MATLAB_class"] = np.bytes_(cls)
        return d.ref

    def struct_array(group, fields):
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, refs in fields.items():
            group.create_dataset(name, data=np.array(refs, dtype=h5py.ref_dtype).reshape(-1, 1))

    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        anno = f.create_group("anno")
        anno.attrs["MATLAB_class"] = np.bytes_("struct")
        char(anno, "imname", "x")
        e = anno.create_dataset("note", data=np.array([0, 0], np.uint64))  # an empty char array
        e.attrs["MATLAB_class"], e.attrs["MATLAB_empty"] = np.bytes_("char"), np.uint8(1)
        fields = {"class": [], "class_ind": [], "mask": [], "parts": []}
        for k, (cls, parts) in enumerate(objects):
            fields["class"].append(char(refs, f"c{k}", cls))
            fields["class_ind"].append(array(refs, f"i{k}", [[15.0 if cls == "person" else 12.0]], "double"))
            fields["mask"].append(array(refs, f"m{k}", np.ones_like(parts[0][1]), "logical"))
            pg = refs.create_group(f"p{k}")
            struct_array(pg, {"part_name": [char(refs, f"n{k}{j}", n) for j, (n, _) in enumerate(parts)],
                              "mask": [array(refs, f"pm{k}{j}", m, "logical") for j, (_, m) in enumerate(parts)]})
            fields["parts"].append(pg.ref)
        struct_array(anno.create_group("objects"), fields)


def test_v73_struct_arrays_read_like_v5(tmp_path):
    """A PASCAL-Part annotation in MATLAB v7.3 gives the same label as in v5."""
    from attn2scale.data.prepare.person_part import person_part_label

    objects = _part_annotation(4, 5)
    write_parts_v5(tmp_path / "a.mat", objects)
    write_parts_v73(tmp_path / "b.mat", objects)
    la, na = person_part_label(tmp_path / "a.mat")
    lb, nb = person_part_label(tmp_path / "b.mat")
    expect = np.zeros((4, 5), np.uint8)
    expect[:2] = 1
    expect[1:, :2] = 3  # painted after the head
    assert na == nb == 2 and np.array_equal(la, expect) and np.array_equal(lb, expect)
    assert load_mat(tmp_path / "b.mat")["anno"]["note"] == ""


# ---- PASCAL-Person-Part ---------------------------------------------------------------

# Written here independently of the library: the 6-part grouping of PASCAL-Person-Part.
HEAD = {"head", "hair", "nose", "mouth"} | {s + p for s in "lr" for p in ("eye", "ear", "ebrow")}
GROUPS = [HEAD, {"torso", "neck"}, {"luarm", "ruarm"}, {"llarm", "rlarm", "lhand", "rhand"}, {"luleg", "ruleg"},
          {"llleg", "rlleg", "lfoot", "rfoot"}]


def decode_person_parts(mat_path):
    """Raw scipy structures (no simplification), painted in file order."""
    anno = scipy.io.loadmat(mat_path)["anno"][0, 0]
    objects = anno["objects"][0]
    label = np.zeros(objects[0]["mask"].shape, np.uint8)
    n = 0
    for obj in objects:
        if obj["class"][0] != "person":
            continue
        parts = obj["parts"]
        for part in (parts[0] if parts.size else []):
            name = part["part_name"][0]
            label[part["mask"] > 0] = [k for k, g in enumerate(GROUPS, 1) if name in g][0]
            n += 1
    return label, n


def test_person_part_labels(tmp_path, capsys):
    sample = require_shared("data", "pascal_part_sample")
    ids = sorted(p.stem for p in sample.glob("*.mat"))
    voc = tmp_path / "VOC2010"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    parts = tmp_path / "Annotations_Part"
    parts.mkdir()
    for n in ids:
        (voc / "JPEGImages" / f"{n}.jpg").symlink_to(sample / f"{n}.jpg")
        (parts / f"{n}.mat").symlink_to(sample / f"{n}.mat")
    train, val = ids[:10], ids[10:]
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(train) + "\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n".join(val) + "\n")
    out = tmp_path / "root"
    assert prepare_main(["person_part", "--src", str(voc), "--parts", str(parts), "--out", str(out),
                         "--workers", "2"]) == 3
    expected = {n: decode_person_parts(sample / f"{n}.mat") for n in ids}
    with_parts = [n for n in ids if expected[n][1]]
    assert len(with_parts) == 8
    listed = [l.split()[0][12:-4] for l in (out / "list" / "trainval.txt").read_text().splitlines()]
    assert listed == with_parts
    assert [l.split()[0][12:-4] for l in (out / "list" / "train.txt").read_text().splitlines()] == \
        [n for n in train if n in with_parts]
    for n in with_parts:
        got = read_png(out / "SegmentationPart" / f"{n}.png")
        assert np.array_equal(got, expected[n][0]), n
        assert set(np.unique(got)) <= set(range(7))
    # Cross-check with the official VOC labels of the same photos: part pixels lie on persons.
    voc_labels = official_labels()
    fractions, on, total = [], 0, 0
    for n in with_parts:
        sel = read_png(out / "SegmentationPart" / f"{n}.png") > 0
        ok = np.isin(voc_labels[n][sel], (15, 255))
        fractions.append(ok.mean())
        on, total = on + ok.sum(), total + sel.sum()
    assert np.median(fractions) > 0.97 and on / total > 0.85, fractions
    assert len(SegDataset(out, "val", "person_part")) == len([n for n in val if n in with_parts])
    # a rerun reads nothing again: images with parts are done, those without are remembered
    assert prepare_main(["person_part", "--src", str(voc), "--parts", str(parts), "--out", str(out),
                         "--workers", "1"]) == 3
    assert "0 label files written, 8 already done" in capsys.readouterr().out


# ---- COCO --------------------------------------------------------------------------------


def polygon_labels(data, image):
    """PIL polygon fill, largest instance first: an independent rasteriser."""
    from PIL import ImageDraw

    canvas = Image.new("L", (image["width"], image["height"]), 0)
    draw = ImageDraw.Draw(canvas)
    anns = sorted((a for a in data["annotations"] if a["image_id"] == image["id"]), key=lambda a: -a["area"])
    for a in anns:
        for poly in a["segmentation"]:
            draw.polygon([tuple(p) for p in np.asarray(poly).reshape(-1, 2)], fill=a["category_id"])
    return np.asarray(canvas)


def test_coco_format_polygons(tmp_path):
    from attn2scale.data.prepare.coco import category_labels, rasterize

    sample = require_shared("data", "coco_format_sample")
    ann_file = sample / "annotations.json"
    data = json.loads(ann_file.read_text())
    names = [Path(im["file_name"]).stem for im in data["images"]]
    labels = category_labels(data["categories"], ann_file)  # "_background_" is 0, VOC classes keep their ids
    assert labels == {i: i for i in range(21)}
    out = tmp_path / "root"
    written, done = rasterize(ann_file, sample, names, out, labels=labels, workers=1)
    assert (written, done) == (3, 0)
    official = official_labels()
    for im in data["images"]:
        n = Path(im["file_name"]).stem
        got = read_png(out / "SegmentationClass" / f"{n}.png")
        assert (out / "JPEGImages" / f"{n}.jpg").resolve() == (sample / im["file_name"]).resolve()
        assert (got == polygon_labels(data, im)).mean() > 0.99
        ref, valid = official[n], official[n] != 255
        assert (got[valid] == ref[valid]).mean() > 0.97, n  # the polygons trace VOC's own masks


def fake_coco_2014(tmp_path):
    """The sample as a COCO 2014 distribution: COCO category ids and names, COCO file names."""
    from attn2scale.data.registry import COCO_CATEGORIES

    sample = require_shared("data", "coco_format_sample")
    data = json.loads((sample / "annotations.json").read_text())
    voc_to_coco = {15: 1, 5: 44, 6: 6, 7: 3, 9: 62, 18: 63}  # person, bottle, bus, car, chair, sofa
    src = tmp_path / "coco"
    (src / "annotations").mkdir(parents=True)
    split_of = {0: "train2014", 1: "train2014", 2: "val2014"}
    names = {}
    for folder in ("train2014", "val2014"):
        (src / folder).mkdir()
        sub = dict(data, categories=[{"id": i, "name": n, "supercategory": ""} for i, n in COCO_CATEGORIES])
        sub["images"] = []
        for im in data["images"]:
            if split_of[im["id"]] == folder:
                name = f"COCO_{folder}_{im['id'] + 3:012d}"
                names[name] = Path(im["file_name"]).stem
                (src / folder / f"{name}.jpg").symlink_to(sample / im["file_name"])
                sub["images"].append(dict(im, file_name=f"{name}.jpg"))
        ids = {im["id"] for im in sub["images"]}
        sub["annotations"] = [dict(a, category_id=voc_to_coco[a["category_id"]]) for a in data["annotations"]
                              if a["image_id"] in ids]
        (src / "annotations" / f"instances_{folder}.json").write_text(json.dumps(sub))
    lists = tmp_path / "lists"
    lists.mkdir()
    for split, folder in (("train_small", "train2014"), ("val_small", "val2014")):
        (lists / f"{split}.txt").write_text("".join(f"/JPEGImages/{n}.jpg /SegmentationClass/{n}.png\n"
                                                    for n in sorted(names) if folder in n))
    return src, lists, names


def test_coco_subset_through_the_cli(tmp_path):
    src, lists, names = fake_coco_2014(tmp_path)
    out = tmp_path / "root"
    assert prepare_main(["coco_subset", "--src", str(src), "--lists", str(lists), "--out", str(out),
                         "--workers", "1"]) == 3
    # COCO label = rank of the category id among COCO's 80: person 1, car 3, bus 6, bottle 40, chair 57, couch 58
    voc_to_label = np.zeros(256, np.uint8)
    voc_to_label[[15, 7, 6, 5, 9, 18]] = [1, 3, 6, 40, 57, 58]
    sample = require_shared("data", "coco_format_sample")
    data = json.loads((sample / "annotations.json").read_text())
    by_name = {Path(im["file_name"]).stem: im for im in data["images"]}
    for name, voc_name in names.items():
        got = read_png(out / "SegmentationClass" / f"{name}.png")
        expect = voc_to_label[polygon_labels(data, by_name[voc_name])]
        assert (got == expect).mean() > 0.99, name
    ds = SegDataset(out, "train_small", "coco_subset")
    assert len(ds) == 2 and ds.transform.crop_size == 641


# ---- ADE20K -------------------------------------------------------------------------------


def fake_ade(tmp_path, bad_value=None):
    src = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for folder, n in (("training", 2), ("validation", 1)):
        (src / "images" / folder).mkdir(parents=True)
        (src / "annotations" / folder).mkdir(parents=True)
        for k in range(n):
            name = f"ADE_{folder[:5]}_{k:08d}"
            Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(src / "images" / folder / f"{name}.jpg")
            lab = rng.integers(0, 151, (6, 8), dtype=np.uint8)
            if bad_value is not None:
                lab[0, 0] = bad_value
            write_label_png(src / "annotations" / folder / f"{name}.png", lab)
    return src


def test_ade20k_lists_and_links(tmp_path, capsys):
    src = fake_ade(tmp_path)
    out = tmp_path / "root"
    assert prepare_main(["ade20k", "--src", str(src), "--out", str(out), "--workers", "1"]) == 3
    assert (out / "list" / "val.txt").read_text() == \
        "/images/validation/ADE_valid_00000000.jpg /annotations/validation/ADE_valid_00000000.png\n"
    assert (out / "images").resolve() == (src / "images").resolve()
    ds = SegDataset(out, "train", "ade20k")
    raw = read_png(src / "annotations" / "training" / "ADE_train_00000001.png")
    _, lab, _ = ds.load(1)
    assert np.array_equal(lab, np.where(raw == 0, 255, raw.astype(int) - 1))
    assert "train: 2 images, the authors' list has 20210" in capsys.readouterr().out


def test_ade20k_bad_label_value_is_named(tmp_path, capsys):
    src = fake_ade(tmp_path, bad_value=151)
    assert prepare_main(["ade20k", "--src", str(src), "--out", str(tmp_path / "root"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "ADE_train_00000000.png: label values [151] are outside [0, 150)" in err


def test_coco_overlap_rule_and_crowds(tmp_path):
    """The smallest instance wins an overlap whatever the annotation order; a crowd RLE
    region gets its category. Expected maps are drawn by hand."""
    from attn2scale.data.prepare.coco import category_labels, rasterize

    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "im.jpg")
    square = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]  # noqa: E731
    crowd = np.zeros((10, 12), np.uint8)
    crowd[7:9, 0:3] = 1
    counts, run, val = [], 0, 0  # column-major uncompressed RLE, starting with zeros
    for v in crowd.T.reshape(-1):
        if v != val:
            counts.append(run)
            run, val = 0, v
        run += 1
    counts.append(run)
    data = {
        "images": [{"id": 1, "file_name": "im.jpg", "height": 10, "width": 12}],
        "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}, {"id": 2, "name": "c"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 9, "segmentation": square(2, 2, 5, 5), "area": 9.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 5, "segmentation": square(0, 0, 8, 6), "area": 48.0, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": {"size": [10, 12], "counts": counts},
             "area": 6.0, "iscrowd": 1},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    labels = category_labels(data["categories"], tmp_path / "ann.json")
    assert labels == {2: 1, 5: 2, 9: 3}  # sorted by id
    rasterize(tmp_path / "ann.json", tmp_path, ["im"], tmp_path / "out", workers=1)
    got = read_png(tmp_path / "out" / "SegmentationClass" / "im.png")
    expect = np.zeros((10, 12), np.uint8)
    expect[0:6, 0:8] = 2   # pycocotools fills pixel centres inside [x0, x1) x [y0, y1)
    expect[2:5, 2:5] = 3
    expect[7:9, 0:3] = 1
    assert np.array_equal(got, expect), got

"""Facts about the datasets of both papers: classes, label values, splits and
their sizes, folder layout, crop sizes. The one list of datasets: preparation,
the dataset class, the command line and the tests all read it from here."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

# DeepLab's ImageSegData means (B, G, R), the values of every authors' prototxt.
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
IGNORE_LABEL = 255

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
PERSON_PART_CLASSES = ("background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs")
# The 80 COCO categories in COCO's category-id order, with their ids (1..90, with gaps).
COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
COCO_CLASSES = ("background",) + tuple(name for _, name in COCO_CATEGORIES)
# SceneParsing (ADEChallengeData2016) objectInfo150 order: the first name of each row.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier",
    "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


@functools.lru_cache(maxsize=None)
def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC devkit colour map (``n`` x 3 uint8): bits of the index
    spread over R, G, B from the most significant bit down; 255 -> (224, 224, 192)."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for bit in range(7, -1, -1):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << bit
            c >>= 3
        out[i] = rgb
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset's facts.

    ``splits``: list name -> number of images the authors' list has (``None``
    unknown); ``unlabelled``: splits without labels (test servers).
    ``image_dir``/``label_dir``: folders under the dataset root, as the lists
    name them. ``label_lut``: (raw value, training id) pairs for label files
    whose stored values are not the training ids (ADE20K stores 0 = other);
    every raw value not listed is an error. ``train_crop``/``test_crop``: the
    ImageSegData crop sizes of the authors' prototxts. ``authors_exp``: the
    dataset's folder in the authors' configs (``${EXP}``), None when the
    authors' repository has no configs for it.
    """

    name: str
    classes: Tuple[str, ...]
    splits: Mapping[str, Optional[int]]
    image_dir: str
    label_dir: str
    unlabelled: Tuple[str, ...] = ()
    image_ext: str = ".jpg"
    label_ext: str = ".png"
    ignore_label: int = IGNORE_LABEL
    label_lut: Optional[Tuple[Tuple[int, int], ...]] = None
    train_crop: int = 321
    test_crop: int = 513
    mean_bgr: Tuple[float, float, float] = CAFFE_MEAN_BGR
    input_scale: float = 1.0  # Caffe's transform_param.scale (after the mean); 1 for every real dataset
    authors_exp: Optional[str] = None
    synthetic: bool = False  # generated in code (no download, no prepare-data)
    description: str = ""
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.classes)

    def lut(self) -> np.ndarray:
        """A 256-entry int16 table raw value -> training id (-1: not allowed)."""
        table = np.full(256, -1, np.int16)
        if self.label_lut is None:
            table[: self.num_labels] = np.arange(self.num_labels)
            table[self.ignore_label] = self.ignore_label
        else:
            for raw, train_id in self.label_lut:
                table[raw] = train_id
        return table

    def palette(self) -> np.ndarray:
        return voc_palette()

    def list_path(self, root, split: str):
        """Where prepared lists live: ROOT/list/SPLIT.txt."""
        from pathlib import Path

        return Path(root) / "list" / f"{split}.txt"


DATASETS: Dict[str, DatasetInfo] = {}


def _add(info: DatasetInfo) -> None:
    DATASETS[info.name] = info


_add(DatasetInfo(
    name="voc12", classes=VOC_CLASSES, authors_exp="voc12",
    splits={"train_aug": 10582, "val": 1449, "trainval_aug": 12031, "test": 1456}, unlabelled=("test",),
    image_dir="JPEGImages", label_dir="SegmentationClassAug",
    description="PASCAL VOC 2012 with the SBD augmentation (DeepLab's SegmentationClassAug)",
))
_add(DatasetInfo(
    name="person_part", classes=PERSON_PART_CLASSES, authors_exp="voc10_part",
    splits={"train": 1716, "val": 1817, "trainval": 3533},
    image_dir="JPEGImages", label_dir="SegmentationPart",
    description="PASCAL-Person-Part: PASCAL-Part person parts merged into 6 parts (VOC 2010 images)",
))
_add(DatasetInfo(
    name="coco_subset", classes=COCO_CLASSES, authors_exp="coco", test_crop=641,
    splits={"train_small": 10000, "val_small": 1500},
    image_dir="JPEGImages", label_dir="SegmentationClass",
    description="The authors' MS-COCO 2014 subset: background + the 80 categories",
))
_add(DatasetInfo(
    name="ade20k", classes=ADE20K_CLASSES,
    splits={"train": 20210, "val": 2000},
    image_dir="images", label_dir="annotations",
    # stored 0 ("other") is ignored; 1..150 are the classes.
    label_lut=((0, IGNORE_LABEL),) + tuple((k, k - 1) for k in range(1, 151)),
    description="ADE20K SceneParsing (ADEChallengeData2016): 150 classes, stored 0 ignored",
))

_add(DatasetInfo(
    name="mini", classes=("background", "disc", "square", "triangle", "ring"),
    splits={"train": None, "val": None}, image_dir="images", label_dir="labels", image_ext=".png",
    train_crop=97, test_crop=97, synthetic=True,
    # Networks trained from scratch need inputs near unit scale; the real datasets' networks
    # start from ImageNet weights made for raw 0-255 pixels (scale 1).
    input_scale=1 / 64,
    description="the built-in procedural multi-scale dataset of the mini reproduction (attn2scale.data.synthetic)",
))

assert len(COCO_CATEGORIES) == 80 and len(ADE20K_CLASSES) == 150 and len(PERSON_PART_CLASSES) == 7


def get_dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]

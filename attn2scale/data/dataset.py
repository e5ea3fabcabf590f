"""One list-driven segmentation dataset (DeepLab's list format) for every dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import DataError, ListEntry, check_same_size, map_labels, read_image_bgr, read_label_raw, read_list, under_root
from .registry import DatasetInfo, get_dataset_info
from .transforms import SegTransform


class SegDataset(Dataset):
    """Images (and labels) named by a DeepLab list, relative to ``root``.

    Args:
        root: the dataset root (what the authors' scripts call ``${DATA_ROOT}``).
        split: a split name (reads ``ROOT/list/SPLIT.txt``) or a list file path.
        info: the dataset's facts (a :class:`DatasetInfo` or its name).
        transform: the Caffe transform (default: the authors' test setting).
        seed: with the index, seeds a sample's random draws when the sampler
            gives none (see :class:`attn2scale.data.loader.StreamSampler`).
        check_files: check at construction that every listed file exists, so
            that a missing file stops the run before it starts.

    An item is a dict: ``image`` (3 x h x w float32, BGR minus the mean),
    ``label`` (h x w int64, 255 = ignore; absent for unlabelled splits),
    ``size`` (the image's height and width before padding), ``name``, ``index``.
    Keys may be an index or ``(index, sample_seed)``.
    """

    def __init__(self, root: Union[str, Path], split: str, info: Union[DatasetInfo, str],
                 transform: Optional[SegTransform] = None, *, seed: int = 0, check_files: bool = True):
        self.info = get_dataset_info(info) if isinstance(info, str) else info
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset root of {self.info.name!r} not found")
        list_file = Path(split)
        if list_file.suffix != ".txt":
            list_file = self.info.list_path(self.root, split)
            self.split = split
        else:
            self.split = list_file.stem
        self.labelled = self.split not in self.info.unlabelled
        self.entries = read_list(list_file, need_labels=self.labelled)
        self.transform = transform or SegTransform.for_dataset(self.info, train=False)
        self.seed = int(seed)
        self._lut = self.info.lut()
        if check_files:
            self._check_files()

    def _check_files(self) -> None:
        for e in self.entries:
            for rel, what in ((e.image, "image"), (e.label, "label")):
                if rel is not None and (self.labelled or what == "image"):
                    p = under_root(self.root, rel)
                    if not p.is_file():
                        raise DataError(f"{p}: {what} not found (listed at {e.where})")

    def __len__(self) -> int:
        return len(self.entries)

    def load_label(self, index: int) -> np.ndarray:
        """The training-id label (uint8) of entry ``index``, its values checked."""
        e = self.entries[index]
        lab_path = under_root(self.root, e.label)
        return map_labels(read_label_raw(lab_path, e.where), self._lut, lab_path, self.info.num_labels, e.where)

    def load(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray], ListEntry]:
        """The raw BGR image and training-id label (uint8) of entry ``index``, checked."""
        e = self.entries[index]
        img_path = under_root(self.root, e.image)
        image = read_image_bgr(img_path, e.where)
        label = None
        if self.labelled:
            label = self.load_label(index)
            check_same_size(image, label, img_path, under_root(self.root, e.label), e.where)
        return image, label, e

    def __getitem__(self, key):
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        image, label, e = self.load(index)
        rng = np.random.default_rng(sample_seed if sample_seed is not None else [self.seed, index])
        img, lab, size = self.transform(image, label, rng)
        item = {"image": img, "size": torch.tensor(size, dtype=torch.int64), "name": e.name, "index": index}
        if lab is not None:
            item["label"] = lab
        return item


def file_item(path: Union[str, Path], transform: SegTransform) -> dict:
    """An image file outside any list as a dataset item (no label), for prediction."""
    path = Path(path)
    image, _, size = transform(read_image_bgr(path), None)
    return {"image": image, "size": torch.tensor(size, dtype=torch.int64), "name": path.stem, "index": 0}

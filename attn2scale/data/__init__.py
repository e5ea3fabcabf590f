"""Datasets as the authors used them: facts, DeepLab lists, Caffe's ImageSegData
transforms, extra-supervision labels, loaders, and preparation of the public
downloads (``attn2scale.data.prepare``)."""

from .dataset import SegDataset
from .io import DataError, ListEntry, read_list
from .labels import shrink_labels, supervision_labels
from .loader import ShardSampler, StreamSampler, build_loader, pad_collate
from .registry import DATASETS, DatasetInfo, get_dataset_info, voc_palette
from .transforms import SegTransform, caffe_data_params

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "ListEntry",
    "SegDataset",
    "SegTransform",
    "ShardSampler",
    "StreamSampler",
    "build_loader",
    "caffe_data_params",
    "get_dataset_info",
    "pad_collate",
    "read_list",
    "shrink_labels",
    "supervision_labels",
    "voc_palette",
]

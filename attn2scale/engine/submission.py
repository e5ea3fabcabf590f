"""The PASCAL VOC 2012 evaluation server's submission layout and archive."""

from __future__ import annotations

import tarfile
from pathlib import Path

from ..fileio import atomic_path

# The server's folder for segmentation results (competition 6: trained on own data).
VOC_SERVER_DIR = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"


def write_server_archive(pred_dir: Path, archive: Path) -> int:
    """Pack every label PNG of ``pred_dir`` (palette PNGs named by image id) into ``archive``
    (.tgz) under ``results/VOC2012/Segmentation/comp6_test_cls/``; returns the count."""
    pngs = sorted(Path(pred_dir).glob("*.png"))
    if not pngs:
        raise ValueError(f"{pred_dir}: no predictions to archive")
    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for png in pngs:
                tar.add(png, arcname=str(VOC_SERVER_DIR / png.name))
    return len(pngs)

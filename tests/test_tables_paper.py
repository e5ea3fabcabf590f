"""The published numbers shipped in the package equal ../shared/PAPER_TABLES.md, parsed here
with the test's own reading of that file; every reproduced cell names a packaged config that
says it is that cell."""

import re

import pytest

from attn2scale.engine.config import list_configs, load_config
from attn2scale.tables import TableError, get_table, paper_tables

from conftest import require_shared

MERGE_LABELS = {"max-pooling": "max", "average-pooling": "avg", "attention": "attention"}
COLUMNS = ["s2", "s2_esupv", "s3", "s3_esupv"]
SECTIONS = {  # heading start -> table
    "PASCAL-Person-Part, validation": "person_part",
    "PASCAL VOC 2012, validation (1449": "voc12_val_imagenet",
    "PASCAL VOC 2012, validation, MS-COCO": "voc12_val_coco",
    "PASCAL VOC 2012, test": "voc12_test",
    "MS-COCO 2014 subset": "coco_subset",
    "PASCAL VOC 2012 validation (VGG-16": "recalib_voc12",
    "ADE20K validation": "recalib_ade20k",
}
VOC_TEST = {  # the names the paper prints -> cell
    "DeepLab-LargeFOV": "largefov", "DeepLab-MSc-LargeFOV": "msc_largefov",
    "DeepLab-LargeFOV-AveragePooling": "avg", "-MaxPooling": "max", "-Attention": "attention",
    "DeepLab-CRF-COCO-LargeFOV": "largefov_coco_crf", "DeepLab-MSc-CRF-COCO-LargeFOV": "msc_coco_largefov_crf",
    "DeepLab-CRF-COCO-LargeFOV-Attention": "attention_coco_crf", "-Attention+": "attention_plus_coco_crf",
    "DeepLab-CRF-Attention-DT": "attention_dt",
}
RECALIB_VOC = {"baseline DeepLab-LargeFOV": "baseline", "merged with max-pooling": "max",
               "merged with average-pooling": "avg", "attention-to-scale": "attention",
               "location attention + recalibration": "recalib"}
RECALIB_ADE = {"ResNet34-dilated8": "resnet34_d8", "+ attention-to-scale (1x, 0.5x)": "attention", "+ PSP": "psp",
               "+ location attention + recalibration (1x, 0.5x)": "recalib", "+ both + PSP": "recalib_psp"}


def _sections(text):
    out = {}
    for block in text.split("\n### ")[1:]:
        head, _, body = block.partition("\n")
        name = next((t for k, t in SECTIONS.items() if head.startswith(k)), None)
        if name:
            out[name] = body
    return out


def _grid(body):
    cells = {}
    for line in body.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts and parts[0] in MERGE_LABELS and len(parts) == 5:
            for col, v in zip(COLUMNS, parts[1:]):
                cells[f"{MERGE_LABELS[parts[0]]}_{col}"] = float(v)
    return cells


def _table_rows(body, names):
    cells = {}
    for line in body.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts and parts[0] in names:
            cells[names[parts[0]]] = [float(v) for v in parts[1:]]
    return cells


def parse_shared(text):
    """{table: {cell id: number}} read off PAPER_TABLES.md."""
    sec = _sections(text)
    expect = {}
    for name in ("person_part", "voc12_val_imagenet", "voc12_val_coco", "coco_subset"):
        body = sec[name]
        merge_part, _, person_part = body.partition("Person-class IoU")
        cells = _grid(merge_part)
        cells["baseline"] = float(re.search(r"Baseline (?:DeepLab-LargeFOV )?(\d+\.\d+)", body).group(1))
        msc = re.search(r"DeepLab-MSc-LargeFOV (\d+\.\d+)", body)
        if msc:
            cells["msc_largefov"] = float(msc.group(1))
        expect[name] = cells
        if person_part:
            person = _grid(person_part)
            person["baseline"] = float(re.search(r"\(baseline (\d+\.\d+)\)", person_part).group(1))
            expect["coco_person"] = person
    test = {}
    for label, number in re.findall(r"(-?[A-Za-z][\w-]*\+?)(?: \([^)]*\))? ([\d]+\.\d)\b", sec["voc12_test"]):
        if label in VOC_TEST:
            test[VOC_TEST[label]] = float(number)
    expect["voc12_test"] = test
    expect["recalib_voc12"] = {k: v[0] for k, v in _table_rows(sec["recalib_voc12"], RECALIB_VOC).items()}
    ablation = re.search(r"multi-stage features ([\d.]+); \+ diverse dilations ([\d.]+)", sec["recalib_voc12"])
    expect["recalib_voc12"].update(multi_stage=float(ablation.group(1)), diverse_dilations=float(ablation.group(2)))
    ade = {}
    for key, (miou, acc) in _table_rows(sec["recalib_ade20k"], RECALIB_ADE).items():
        ade[f"{key}:miou"], ade[f"{key}:pixel_acc"] = miou, acc
    expect["recalib_ade20k"] = ade
    return expect


def test_package_numbers_equal_the_shared_paper_tables():
    expect = parse_shared(require_shared("PAPER_TABLES.md").read_text())
    ours = {name: {c.id: c.paper for c in t.cells if c.paper is not None} for name, t in paper_tables().items()}
    assert set(ours) == set(expect)
    for name in expect:
        assert ours[name] == expect[name], name
    # every number of the file: 3 merge tables with an MSc row, 2 without, test server, follow-up VOC, ADE20K
    assert sum(len(v) for v in expect.values()) == 14 * 3 + 13 * 2 + 10 + 7 + 10


def test_every_reproduced_cell_names_a_config_of_that_cell():
    names = set(list_configs())
    for table in paper_tables().values():
        for cell in table.cells:
            if cell.config is None:
                assert cell.note, f"{table.name}.{cell.id}: not reproduced without a reason"
                continue
            assert cell.config in names, cell.config
            cfg = load_config(cell.config)
            row_col = cell.id.split(":")[0]
            assert cfg.cell is not None and cfg.cell.table == cell.config.split("/")[0]
            assert (f"{cfg.cell.row}_{cfg.cell.column}" if cfg.cell.column else cfg.cell.row) == row_col
    # every packaged cell config of a paper table is used by a table
    used = {c.config for t in paper_tables().values() for c in t.cells}
    cell_configs = {n for n in names if load_config(n).cell is not None and not n.startswith("mini/")}
    assert cell_configs <= used, sorted(cell_configs - used)


def test_unknown_table_lists_the_valid_ones():
    with pytest.raises(TableError, match="person_part, voc12_val_imagenet.*recalib_ade20k"):
        get_table("person-part")

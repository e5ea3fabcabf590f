"""weights/manifest.json: schema, convert lines, and agreement with weights/README.md."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import REPO, require_shared

WEIGHTS = REPO / "weights"
MANIFEST = WEIGHTS / "manifest.json"
README = WEIGHTS / "README.md"

# key -> allowed types (None means JSON null is allowed)
REQUIRED = {
    "id": (str,),
    "file": (str,),
    "what": (str,),
    "format": (str,),
    "prototxt": (str, type(None)),
    "num_labels": (int,),
    "trained_on": (str,),
    "paper_row": (str, type(None)),
    "published_at": (str, type(None)),
    "sha256": (str, type(None)),
    "convert": (str,),
}
OPTIONAL = {"note": (str,), "md5": (str,), "sha1": (str,), "cell": (str,)}
HEX_LEN = {"sha256": 64, "sha1": 40, "md5": 32}
FORMATS = {"V1", "V2", "unknown"}
MODELS = {"deeplab_largefov", "attention_to_scale", "builder"}


def _models():
    data = json.loads(MANIFEST.read_text())
    assert data.get("version") == 1
    models = data.get("models")
    assert isinstance(models, list) and models
    return models


MODEL_LIST = _models()


def test_ids_unique_and_snake_case():
    ids = [m["id"] for m in MODEL_LIST]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for i in ids:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", i), i


@pytest.mark.parametrize("entry", MODEL_LIST, ids=lambda m: m.get("id", "?"))
def test_entry_schema(entry):
    missing = set(REQUIRED) - set(entry)
    assert not missing, f"missing keys {sorted(missing)}"
    unknown = set(entry) - set(REQUIRED) - set(OPTIONAL)
    assert not unknown, f"unexpected keys {sorted(unknown)}"
    for key, types in {**REQUIRED, **OPTIONAL}.items():
        if key in entry:
            value = entry[key]
            assert isinstance(value, types) and not isinstance(value, bool), f"{key}={value!r}"
            if isinstance(value, str):
                assert value.strip(), f"{key} is empty"
    assert entry["file"].endswith(".caffemodel"), entry["file"]
    assert "/" not in entry["file"], entry["file"]
    assert entry["format"] in FORMATS, entry["format"]
    assert entry["num_labels"] > 0
    assert "\n" not in entry["what"]
    for key, n in HEX_LEN.items():
        if entry.get(key) is not None:
            assert re.fullmatch(rf"[0-9a-f]{{{n}}}", entry[key]), f"{key} is not {n} lowercase hex digits"


@pytest.mark.parametrize("entry", MODEL_LIST, ids=lambda m: m.get("id", "?"))
def test_convert_line(entry):
    line = entry["convert"]
    prefix = f"python tools/convert_caffe.py weights/{entry['file']}"
    assert line == prefix or line.startswith(prefix + " "), line
    argv = shlex.split(line)[2:]
    out = [argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--out"]
    assert out == [f"weights/{entry['id']}.safetensors"], line
    models = [argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--model"]
    assert len(models) == 1 and models[0] in MODELS, line
    if "--num-labels" in argv:
        assert int(argv[argv.index("--num-labels") + 1]) == entry["num_labels"], line
    prototxt_args = [argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--prototxt"]
    if entry["prototxt"] is not None:
        # the manifest's prototxt is the one the command reads
        assert prototxt_args == [f"../shared/caffe/configs/{entry['prototxt']}"], line
    else:
        assert not any(p.startswith("../shared/") for p in prototxt_args), line
    if models[0] == "attention_to_scale":
        assert "--scales" in argv and "--merge" in argv, line
    else:
        assert "--scales" not in argv and "--merge" not in argv, line
    if "--pool5a" in argv:
        assert models[0] == "deeplab_largefov", line


def test_file_names_end_in_caffemodel():
    assert all(m["file"].endswith(".caffemodel") for m in MODEL_LIST)


def test_prototxts_exist_under_shared():
    configs = require_shared("caffe", "configs")  # skips, saying why, when ../shared is absent
    missing = [(m["id"], m["prototxt"]) for m in MODEL_LIST
               if m["prototxt"] is not None and not (configs / m["prototxt"]).is_file()]
    assert not missing, missing


def _readme_rows():
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2:
            m = re.fullmatch(r"`([a-z0-9_]+)`", cells[0])
            if m:
                rows[m.group(1)] = cells
    return rows


def test_readme_table_lists_exactly_the_manifest():
    rows = _readme_rows()
    assert sorted(rows) == sorted(m["id"] for m in MODEL_LIST)
    for m in MODEL_LIST:
        cells = rows[m["id"]]
        assert cells[1] == f"`{m['file']}`", (m["id"], cells[1])
        assert cells[2] == m["trained_on"], (m["id"], cells[2])
        assert cells[3] == (m["paper_row"] or "—"), (m["id"], cells[3])
        assert (cells[4] == "no") == (m["published_at"] is None), (m["id"], cells[4])


def test_trainval_models_say_so_in_convert():
    # the converter records --split in the sidecar; a trainval model must carry it
    for m in MODEL_LIST:
        if "trainval" in m["trained_on"].lower():
            assert re.search(r"--split \S*trainval", m["convert"]), m["id"]


@pytest.mark.parametrize("entry", _models(), ids=lambda e: e["id"])
def test_convert_line_parses_and_its_prototxt_builds(entry):
    """Each convert line is accepted by the converter's own argument parser; its
    prototxt (when it lives in ../shared) reads with the line's placeholder values,
    and a builder target builds (on the meta device: no weights needed)."""
    from attn2scale.caffe import CaffeNet, read_net_prototxt
    from attn2scale.cli.convert import _values, build_parser

    argv = shlex.split(entry["convert"])[2:]
    args = build_parser().parse_args(argv)
    assert args.caffemodel == f"weights/{entry['file']}" and args.out == f"weights/{entry['id']}.safetensors"
    if "init" in entry["id"]:
        assert args.allow_missing  # ImageNet init files have no classifier for the target's classes
    if entry["prototxt"] is None:
        return
    path = require_shared("caffe", "configs", *entry["prototxt"].split("/"))
    values = _values(args.values)
    if args.num_labels is not None:
        values.setdefault("NUM_LABELS", str(args.num_labels))
    net_param = read_net_prototxt(path, values, strict="unquoted")
    if args.model == "builder":
        net = CaffeNet(net_param, args.phase, device="meta")
        assert f"fc8_{values['EXP']}" in net.order  # the layer the release's caffemodel names
    elif args.model == "deeplab_largefov":
        assert ("pool5a" in [lp.name for lp in net_param.layer]) == bool(args.pool5a)


@pytest.mark.parametrize("entry", [m for m in MODEL_LIST if "cell" in m], ids=lambda m: m["id"])
def test_cell_entries_convert_to_their_cells_model(entry):
    """tools/reproduce_table.py evaluates weights/<id>.safetensors as the named cell: the convert
    line must build that cell's model (name, labels, pyramid)."""
    from attn2scale.data import get_dataset_info
    from attn2scale.engine.config import load_config

    cfg = load_config(entry["cell"])
    argv = entry["convert"].split()
    arg = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    assert arg["--model"] == cfg.model.name
    assert int(arg["--num-labels"]) == get_dataset_info(cfg.data.dataset).num_labels
    assert [float(x) for x in arg["--scales"].split(",")] == cfg.model.options["scales"]
    assert arg["--out"] == f"weights/{entry['id']}.safetensors"

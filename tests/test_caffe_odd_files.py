"""Odd prototxts: placeholders in comments, and other forks' unknown fields.

``${NAME}`` in a ``#`` comment needs no value under ``strict=True``; one in code or
in a quoted string still does. ``lenient=True`` drops unknown fields inside a data
layer's transform_param / *_data_param / input_param with one warning listing each
(``file:line layer 'NAME' (TYPE): path``), and refuses any other unknown field. The
reference for every lenient read is the same text written without the unknown
fields, parsed strictly: the two must be equal message for message.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn2scale.caffe import CaffeFormatError, schema
from attn2scale.caffe.reader import (
    DATA_LAYER_TYPES,
    LenientReadWarning,
    parse_net_text,
    placeholders,
    read_net_prototxt,
    read_text,
    substitute,
)
from attn2scale.caffe.upgrade import upgrade_net, v1_type_name
from conftest import require_shared, splice_tokens


def _lenient(text: str, source: str = "odd.prototxt"):
    """``(net, [warning messages])`` of a lenient read; no other warning may be raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = parse_net_text(text, source=source, lenient=True)
    assert all(w.category is LenientReadWarning for w in caught), [str(w.message) for w in caught]
    return net, [str(w.message) for w in caught]


def _protobuf_skipping(text: str):
    """Protobuf's own reading with every unknown field skipped, upgraded: an independent reference."""
    net = schema.NetParameter()
    text_format.Parse(text, net, allow_unknown_field=True, allow_unknown_extension=True)
    return upgrade_net(net)


def _listed(message: str):
    """The field lines of a lenient warning (each indented under the header)."""
    return [line.strip() for line in message.splitlines()[1:]]


# --------------------------------------------------------------------------
# Placeholders in comments
# --------------------------------------------------------------------------

def test_placeholder_only_in_a_comment_needs_no_value():
    text = 'name: "n"  # built by ${EXP}\nlayer { name: "a" type: "ReLU" }  # ${NET_ID}\n'
    assert substitute(text, {}, strict=True) == text          # left as it is
    net = parse_net_text(text, strict=True)
    assert net.name == "n" and [(l.name, l.type) for l in net.layer] == [("a", "ReLU")]


def test_placeholder_in_code_or_string_still_needs_a_value():
    code = 'layer { name: "a" type: "Convolution"  # ${IN_COMMENT}\n convolution_param { num_output: ${N} } }'
    with pytest.raises(CaffeFormatError, match=r"placeholders without a value: \$\{N\} \("):
        parse_net_text(code, strict=True)
    quoted = 'name: "${NET_ID}"  # ${EXP}\n'
    with pytest.raises(CaffeFormatError, match=r"placeholders without a value: \$\{NET_ID\} \("):
        parse_net_text(quoted, strict=True)
    # "unquoted" keeps its meaning: a quoted placeholder stays literal.
    assert parse_net_text(quoted, strict="unquoted").name == "${NET_ID}"


def test_hash_inside_a_string_is_not_a_comment():
    with pytest.raises(CaffeFormatError, match=r"without a value: \$\{X\} \("):
        substitute('name: "a#${X}"\n', {}, strict=True)
    text = "name: 'a#b'  # ${Y}\n"
    assert substitute(text, {}, strict=True) == text
    assert parse_net_text(text).name == "a#b"


def test_valued_placeholders_are_replaced_in_comments_too():
    # As sed did: a value replaces every occurrence; only those without one are left.
    assert substitute("# ${A} ${B}\nname: \"${A}\"\n", {"A": "x"}) == '# x ${B}\nname: "x"\n'


def test_real_config_with_a_commented_out_layer_naming_a_new_placeholder():
    path = require_shared("caffe", "configs", "deeplab_v1_official", "DeepLab-LargeFOV", "test.prototxt")
    text = read_text(path)
    values = {n: ("21" if n == "NUM_LABELS" else f"/v/{n}") for n in placeholders(text)}
    odd = text + '#layers {\n#  name: "save"  # ${SAVE_DIR}/"quoted"\n#  source: "${SAVE_LIST}"\n#}\n'
    assert set(placeholders(odd)) - set(values) == {"SAVE_DIR", "SAVE_LIST"}
    assert parse_net_text(odd, values=values, strict=True) == read_net_prototxt(path, values, strict=True)


# --------------------------------------------------------------------------
# Lenient reading: dropped fields
# --------------------------------------------------------------------------

ODD_V2 = '''name: "odd"
layer {
  name: "data"
  type: "ImageSegData"
  top: "data"  top: "label"
  image_data_param {
    source: "list.txt"  # a "quoted" comment with a } brace
    fork_option: 7
    batch_size: 2
    fork_block {
      inner: "with } and # inside"   # } in a comment
      deeper { x: [1, 2] }
    }
    fork_list: [0.5, -1e-3, inf];
    fork_string: "a" 'b',
  }
  transform_param { mirror: true fork_mean_mode: PER_PIXEL crop_size: 321 }
}
layer {
  name: "in"
  type: "Input"
  top: "extra"
  input_param { shape { dim: 1 dim: 3 fork_dim_name: "N" } shape { dim: 2 } fork_flag: true }
}
layer {
  name: "dummy" type: "DummyData" top: "z"
  dummy_data_param { shape { dim: 4 } data_filler { type: "constant" value: 1 fork_seed: 3 } }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 }
}
'''

CLEAN_V2 = '''name: "odd"
layer {
  name: "data"
  type: "ImageSegData"
  top: "data"  top: "label"
  image_data_param {
    source: "list.txt"
    batch_size: 2
  }
  transform_param { mirror: true crop_size: 321 }
}
layer {
  name: "in"
  type: "Input"
  top: "extra"
  input_param { shape { dim: 1 dim: 3 } shape { dim: 2 } }
}
layer {
  name: "dummy" type: "DummyData" top: "z"
  dummy_data_param { shape { dim: 4 } data_filler { type: "constant" value: 1 } }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 }
}
'''


def test_lenient_drops_exactly_the_data_layer_fields_v2():
    net, messages = _lenient(ODD_V2)
    assert net == parse_net_text(CLEAN_V2) == _protobuf_skipping(ODD_V2)
    assert len(messages) == 1
    assert messages[0].startswith("odd.prototxt: lenient reading dropped 8 unknown field(s)")
    assert _listed(messages[0]) == [
        "odd.prototxt:8 layer 'data' (ImageSegData): image_data_param.fork_option",
        "odd.prototxt:10 layer 'data' (ImageSegData): image_data_param.fork_block",
        "odd.prototxt:14 layer 'data' (ImageSegData): image_data_param.fork_list",
        "odd.prototxt:15 layer 'data' (ImageSegData): image_data_param.fork_string",
        "odd.prototxt:17 layer 'data' (ImageSegData): transform_param.fork_mean_mode",
        "odd.prototxt:23 layer 'in' (Input): input_param.shape[0].fork_dim_name",
        "odd.prototxt:23 layer 'in' (Input): input_param.fork_flag",
        "odd.prototxt:27 layer 'dummy' (DummyData): dummy_data_param.data_filler[0].fork_seed",
    ]
    # The values that remain are the file's, not defaults.
    data = net.layer[0]
    assert (data.image_data_param.source, data.image_data_param.batch_size) == ("list.txt", 2)
    assert data.transform_param.crop_size == 321 and data.transform_param.mirror is True
    assert [list(s.dim) for s in net.layer[1].input_param.shape] == [[1, 3], [2]]
    assert net.layer[2].dummy_data_param.data_filler[0].value == 1.0


ODD_V1 = '''name: "odd_v1"
layers {
  name: "data" type: IMAGE_DATA top: "data" top: "label"
  image_data_param { source: "l.txt" batch_size: 1 fork_resize_mode: WARP }
  transform_param { fork_jitter { sigma: 0.1 } crop_size: 5 }
}
layers {
  name: "db" type: DATA top: "d2"
  data_param { source: "lmdb" fork_threads: 4 backend: LMDB }
}
layers { name: "relu" type: RELU bottom: "data" top: "data" }
'''

CLEAN_V1 = '''name: "odd_v1"
layers {
  name: "data" type: IMAGE_DATA top: "data" top: "label"
  image_data_param { source: "l.txt" batch_size: 1 }
  transform_param { crop_size: 5 }
}
layers {
  name: "db" type: DATA top: "d2"
  data_param { source: "lmdb" backend: LMDB }
}
layers { name: "relu" type: RELU bottom: "data" top: "data" }
'''


def test_lenient_drops_exactly_the_data_layer_fields_v1():
    net, messages = _lenient(ODD_V1, source="v1.prototxt")
    assert net == parse_net_text(CLEAN_V1) == _protobuf_skipping(ODD_V1)
    assert [l.type for l in net.layer] == ["ImageData", "Data", "ReLU"]
    assert len(messages) == 1 and _listed(messages[0]) == [
        "v1.prototxt:4 layer 'data' (ImageData): image_data_param.fork_resize_mode",
        "v1.prototxt:5 layer 'data' (ImageData): transform_param.fork_jitter",
        "v1.prototxt:9 layer 'db' (Data): data_param.fork_threads",
    ]


def test_lenient_file_without_unknown_fields_warns_nothing(tmp_path):
    p = tmp_path / "clean.prototxt"
    p.write_text(CLEAN_V2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_net_prototxt(p, lenient=True) == read_net_prototxt(p)


def test_read_net_prototxt_lenient_names_the_path(tmp_path):
    p = tmp_path / "fork.prototxt"
    p.write_text(ODD_V1)
    with pytest.warns(LenientReadWarning) as record:
        net = read_net_prototxt(p, lenient=True)
    assert net == parse_net_text(CLEAN_V1)
    assert len(record) == 1 and _listed(str(record[0].message))[0] == (
        f"{p}:4 layer 'data' (ImageData): image_data_param.fork_resize_mode")


def test_lenient_real_config_with_injected_fields():
    path = require_shared("caffe", "configs", "authors", "voc12", "vgg128_noup_pool3_20M_largewin", "train.prototxt")
    text = read_text(path)
    values = {n: ("21" if n == "NUM_LABELS" else f"/v/{n}") for n in placeholders(text)}
    odd = text.replace("  image_data_param {\n", "  image_data_param {\n    fork_cache: true\n", 1)
    odd = odd.replace("    label_type: PIXEL\n", "    label_type: PIXEL\n    fork_aug { angle: 10 }\n", 1)
    assert odd.count("fork_") == 2
    with pytest.warns(LenientReadWarning) as record:
        net = parse_net_text(odd, source="inj.prototxt", values=values, lenient=True)
    assert net == read_net_prototxt(path, values)
    fields = [re.sub(r"^inj\.prototxt:\d+ ", "", line) for line in _listed(str(record[0].message))]
    assert fields == ["layer 'data' (ImageSegData): image_data_param.fork_cache",
                      "layer 'data' (ImageSegData): image_data_param.fork_aug"]


# --------------------------------------------------------------------------
# Lenient reading: refused fields
# --------------------------------------------------------------------------

def _refused(text: str, match: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is dropped when the file is refused
        with pytest.raises(CaffeFormatError, match=match) as info:
            parse_net_text(text, source="r.prototxt", lenient=True)
    return str(info.value)


def test_lenient_refuses_unknown_field_of_a_convolution():
    text = ODD_V2.replace("num_output: 8 kernel_size: 3", "num_output: 8 fork_winograd: true kernel_size: 3")
    msg = _refused(text, r"r\.prototxt:31:\d+ layer 'conv1' \(Convolution\): convolution_param\.fork_winograd")
    assert "fork_option" not in msg   # only the refused fields are listed


def test_lenient_refuses_unknown_field_in_a_data_layer_body():
    text = ODD_V2.replace('  type: "Input"\n', '  type: "Input"\n  fork_device: 1\n')
    _refused(text, r"r\.prototxt:22:3 layer 'in' \(Input\): fork_device$")


def test_lenient_refuses_unknown_field_in_another_param_of_a_data_layer():
    text = ODD_V2.replace('top: "data"  top: "label"', 'top: "data"  top: "label" loss_param { fork_x: 1 }')
    _refused(text, r"r\.prototxt:5:\d+ layer 'data' \(ImageSegData\): loss_param\.fork_x")
    text = ODD_V1.replace('type: RELU bottom: "data"', 'type: RELU relu_param { fork_cap: 6 } bottom: "data"')
    _refused(text, r"r\.prototxt:11:\d+ layer 'relu' \(ReLU\): relu_param\.fork_cap")


def test_lenient_refuses_unknown_field_outside_layers():
    _refused('name: "n"\nfork_global: 3\nlayer { name: "a" type: "ReLU" }', r"r\.prototxt:2:1 net: fork_global")


def test_v1_value_39_with_bottoms_is_a_deconvolution_not_data():
    text = ('layers { name: "up" type: DECONVOLUTION bottom: "x" top: "y"\n'
            '  convolution_param { num_output: 2 kernel_size: 4 } transform_param { fork: 1 } }')
    _refused(text, r"r\.prototxt:2:\d+ layer 'up' \(Deconvolution\): transform_param\.fork")


def test_lenient_does_not_hide_a_syntax_error_and_keeps_its_line():
    text = ODD_V2.replace("convolution_param { num_output: 8", "convolution_param { num_output: eight")
    with pytest.raises(CaffeFormatError, match=r"r\.prototxt: not a valid net prototxt: 31:\d+ .*eight"):
        parse_net_text(text, source="r.prototxt", lenient=True)


# --------------------------------------------------------------------------
# Default (strict) reading and the data-layer list
# --------------------------------------------------------------------------

def test_strict_unknown_field_names_file_line_field_and_layer(tmp_path):
    p = tmp_path / "s.prototxt"
    p.write_text(ODD_V2)
    with pytest.raises(CaffeFormatError) as info:
        read_net_prototxt(p)
    assert re.fullmatch(
        rf"{re.escape(str(p))}: not a valid net prototxt: 8:5 : .*no field named \"fork_option\".* "
        r"\(layer 'data' \(ImageSegData\): image_data_param\.fork_option\)", str(info.value))
    with pytest.raises(CaffeFormatError, match=r"r\.prototxt: not a valid net prototxt: 2:1 : .*fork_global\"\.?$"):
        parse_net_text('name: "n"\nfork_global: 3\n', source="r.prototxt")


def test_data_layer_types():
    assert DATA_LAYER_TYPES == ("Input", "Data", "ImageData", "ImageSegData", "HDF5Data", "MemoryData",
                                "WindowData", "DummyData")
    enum = schema.V1LayerParameter.LayerType
    v1 = {v1_type_name(enum.Name(n)) for n in (enum.Value(k) for k in (
        "DATA", "IMAGE_DATA", "IMAGE_SEG_DATA", "HDF5_DATA", "MEMORY_DATA", "WINDOW_DATA", "DUMMY_DATA"))}
    assert v1 == set(DATA_LAYER_TYPES) - {"Input"}


_TOKENS = ["{", "}", "<", ">", "[", "]", ":", ",", ";", '"', "'", "#", "\n", "fork_x", "fork_y: 1", "fork_z {",
           "[ext.field]", "-", "1", "inf", '"s}"', "name", "type", "shape", "dim", "image_data_param",
           "transform_param", "convolution_param", "layer", "layers", '"Data"', "DATA", "IMAGE_DATA"]


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzz_lenient_reading(data):
    """Spliced tokens: a lenient read gives CaffeFormatError, or exactly what protobuf gives skipping unknown fields."""
    text = splice_tokens(data, ODD_V2, _TOKENS)
    try:
        net, _ = _lenient(text, source="fuzz.prototxt")
    except CaffeFormatError as exc:
        assert "fuzz.prototxt" in str(exc)
        return
    assert net == _protobuf_skipping(text)


def test_convert_cli_lenient_reads_another_forks_data_layer(tmp_path, capsys):
    """``convert --lenient``: a data layer's unknown transform field is dropped (and recorded), the
    conversion equals the one of the same file without that field; without --lenient it is refused."""
    import json

    from attn2scale.cli.convert import main
    from test_caffe_convert import write_caffemodel

    body = ('layer { name: "data" type: "ImageSegData" top: "data" top: "label" '
            'image_data_param { source: "l.txt" batch_size: 1 } transform_param { crop_size: 9 %s} }\n'
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 2 kernel_size: 1 } }\n')
    odd, plain = tmp_path / "odd.prototxt", tmp_path / "plain.prototxt"
    odd.write_text(body % "fancy_jitter: 0.3 ")
    plain.write_text(body % "")
    rng = np.random.default_rng(0)
    model = write_caffemodel(tmp_path / "m.caffemodel", {"conv": [rng.normal(size=(2, 3, 1, 1)), rng.normal(size=2)]})
    assert main([str(model), "--prototxt", str(odd), "--out", str(tmp_path / "a.safetensors")]) == 1
    assert "fancy_jitter" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"odd.prototxt:1 layer 'data' \(ImageSegData\): transform_param.fancy_jitter"):
        assert main([str(model), "--prototxt", str(odd), "--lenient", "--out", str(tmp_path / "a.safetensors")]) == 0
    assert main([str(model), "--prototxt", str(plain), "--out", str(tmp_path / "b.safetensors")]) == 0
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "a.json").read_text())["prototxt"]["lenient"] is True

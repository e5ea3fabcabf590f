"""Bad Caffe files give a clear error naming the file (and layer), never a crash.

Truncated, bit-flipped, empty and foreign caffemodels; blobs whose shape does not
fit their data; malformed prototxt text; and hypothesis fuzzing of both readers
(thousands of cases, bounded time). The only exception the reader and builder
may raise on bad input is :class:`CaffeFormatError` (a ValueError).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn2scale.caffe import CaffeFormatError, CaffeNet, load_caffemodel_blobs, read_caffemodel, schema
from attn2scale.caffe.blobs import blob_to_array
from attn2scale.caffe.reader import parse_caffemodel_bytes, parse_net_text, read_net_prototxt
from conftest import splice_tokens
from test_caffe_convert import TINY


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    """The TINY net with its weights in one V2 caffemodel: topology and blobs, as Caffe saves them."""
    net = parse_net_text(TINY)
    g = np.random.default_rng(0)
    for lp in net.layer:
        if lp.type == "Convolution":
            c_out = lp.convolution_param.num_output
            c_in = 3 if lp.name == "conv1" else 4
            k = lp.convolution_param.kernel_size[0]
            for a in (g.normal(size=(c_out, c_in, k, k)), g.normal(size=c_out)):
                b = lp.blobs.add()
                b.shape.dim.extend(a.shape)
                b.data.extend(a.astype(np.float32).reshape(-1).tolist())
    return net.SerializeToString()


def _load_into_tiny(data: bytes) -> None:
    """What a user does with a file: read its weights into the TINY net, and build the
    net the file itself describes (on the meta device, then loading its own weights)."""
    from attn2scale.caffe.blobs import caffemodel_blobs

    net_param = parse_caffemodel_bytes(data, source="fuzz.caffemodel")
    blobs = caffemodel_blobs(net_param, source="fuzz.caffemodel")
    CaffeNet(parse_net_text(TINY), "TEST").load_blobs(blobs, source="fuzz.caffemodel")
    own = CaffeNet(parse_caffemodel_bytes(data, source="fuzz.caffemodel", keep_blobs=False), "TEST", device="meta",
                   source="fuzz.caffemodel")
    own.load_blobs(blobs, source="fuzz.caffemodel")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.caffemodel"
    p.write_bytes(b"")
    with pytest.raises(CaffeFormatError, match=r"empty.caffemodel: empty file, not a caffemodel"):
        load_caffemodel_blobs(p)
    with pytest.raises(CaffeFormatError, match=r"empty.caffemodel: empty file"):
        read_caffemodel(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaffeFormatError, match=r"nope.caffemodel: cannot read"):
        load_caffemodel_blobs(tmp_path / "nope.caffemodel")
    with pytest.raises(CaffeFormatError, match=r"cannot read"):
        read_net_prototxt(tmp_path)


def test_every_truncation_is_reported(tiny_bytes):
    """Every cut gives a named error, except a cut between whole layers after the last one
    with weights: that prefix is itself a complete, smaller net (here: without its Interp)."""
    loaded = []
    for n in range(len(tiny_bytes)):
        try:
            _load_into_tiny(tiny_bytes[:n])
            loaded.append(n)
        except CaffeFormatError as exc:
            assert "fuzz.caffemodel" in str(exc)
    full = schema.NetParameter.FromString(tiny_bytes)
    last = full.layer[-1]
    assert last.type == "Interp" and not last.blobs
    body = len(last.SerializeToString())
    varint = lambda v: 1 if v < 128 else 1 + varint(v >> 7)  # noqa: E731
    header = varint((100 << 3) | 2) + varint(body)  # NetParameter.layer is field 100, length-delimited
    assert loaded == [len(tiny_bytes) - header - body]
    _load_into_tiny(tiny_bytes)


def test_truncated_real_caffemodel(tmp_path):
    from conftest import require_shared

    src = require_shared("caffe", "golden", "largefov_slim", "largefov_slim.caffemodel").read_bytes()
    p = tmp_path / "cut.caffemodel"
    p.write_bytes(src[: len(src) // 2])
    with pytest.raises(CaffeFormatError, match=r"cut.caffemodel: not a valid binary caffemodel \(\d+ bytes; truncated"):
        load_caffemodel_blobs(p)


def test_text_file_given_as_caffemodel_and_binary_as_prototxt(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text(TINY)
    with pytest.raises(CaffeFormatError, match=r"net.prototxt: not a valid binary caffemodel"):
        load_caffemodel_blobs(p)
    b = tmp_path / "w.caffemodel"
    b.write_bytes(b"\x0a\x03abc\x8a\x06\xff\xfe\x00")
    with pytest.raises(CaffeFormatError, match=r"w.caffemodel: not a text prototxt"):
        read_net_prototxt(b)


def test_blob_shape_and_data_disagree():
    blob = schema.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 5)
    with pytest.raises(CaffeFormatError, match=r"layer 'x' blob 0: shape \(2, 3\) needs 6 values, the file holds 5"):
        blob_to_array(blob, where="layer 'x' blob 0")


def test_huge_claimed_shape_is_refused_before_allocating():
    blob = schema.BlobProto()
    blob.shape.dim.extend([1 << 20, 1 << 20, 1 << 20])
    blob.data.extend([1.0])
    with pytest.raises(CaffeFormatError, match=r"claims more than"):
        blob_to_array(blob, where="b")
    neg = schema.BlobProto()
    neg.shape.dim.extend([-1, 4])
    with pytest.raises(CaffeFormatError, match=r"negative dimension"):
        blob_to_array(neg, where="b")


def test_float_and_double_data_and_legacy_dims():
    b = schema.BlobProto(num=1, channels=1, height=2, width=2)
    b.double_data.extend([1.0, 2.0, 3.0, 4.0])
    a = blob_to_array(b)
    assert a.dtype == np.float64 and a.shape == (1, 1, 2, 2)
    both = schema.BlobProto()
    both.data.extend([1.0])
    both.double_data.extend([1.0])
    with pytest.raises(CaffeFormatError, match="both float data and double_data"):
        blob_to_array(both)


@pytest.mark.parametrize("text,match", [
    ('layer { name: "a" type: "Convolution" bottom: "nothing" top: "b" convolution_param { num_output: 2 kernel_size: 1 } }',
     r"bad.prototxt: layer 'a' \(Convolution\): bottom blob\(s\) \['nothing'\] are produced by no earlier layer"),
    ('layer { name: "a" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "e" convolution_param { num_output: 0 kernel_size: 1 } }',
     r"layer 'c' \(Convolution\): num_output must be positive"),
    ('layer { name: "a" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "e" convolution_param { num_output: 2000000000 kernel_size: 3 } }',
     r"layer 'c' \(Convolution\): parameter 'weight' would have shape \(2000000000, 3, 3, 3\), more than"),
    ('layer { name: "a" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
     'layer { name: "c" type: "Frobnicate" bottom: "d" top: "e" }',
     r"layer 'c': type 'Frobnicate' is not supported; supported types: Accuracy, ArgMax"),
    ('layer { name: "a" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
     'layer { name: "p" type: "Pooling" bottom: "d" top: "e" pooling_param { pool: MAX kernel_size: 9 } }',
     r"layer 'p' \(Pooling\): kernel 9 is larger than the padded height 4"),
    ('layer { name: "a" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
     'layer { name: "a2" type: "Input" top: "f" input_param { shape { dim: 1 dim: 3 dim: 5 dim: 5 } } }\n'
     'layer { name: "s" type: "Eltwise" bottom: "d" bottom: "f" top: "e" }',
     r"layer 's' \(Eltwise\): bottom 1 has shape \(1, 3, 5, 5\), bottom 0 has \(1, 3, 4, 4\)"),
    ('layer { name: "a" type: "Data" top: "d" top: "l" }',
     r"layer 'a' \(Data\): its top shapes are not fixed by the prototxt; pass input_shapes="),
])
def test_bad_nets_name_the_file_and_layer(tmp_path, text, match):
    p = tmp_path / "bad.prototxt"
    p.write_text(text)
    with pytest.raises(CaffeFormatError, match=match):
        CaffeNet.from_prototxt(p, "TEST", device="meta")


def test_malformed_text_names_file_and_line(tmp_path):
    p = tmp_path / "broken.prototxt"
    p.write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bogus_field: 3\n}\n')
    with pytest.raises(CaffeFormatError, match=r"broken.prototxt: not a valid net prototxt: 5:\d+ : .*bogus_field"):
        read_net_prototxt(p)
    p.write_text('layer { name: "a" ')
    with pytest.raises(CaffeFormatError, match=r"broken.prototxt: not a valid net prototxt"):
        read_net_prototxt(p)


def test_unsubstituted_placeholders_are_listed(tmp_path):
    p = tmp_path / "ph.prototxt"
    p.write_text('name: "${NET_ID}"\nlayer { name: "fc8_${EXP}" type: "ReLU" }\n')
    with pytest.raises(CaffeFormatError, match=r"ph.prototxt: placeholders without a value: \$\{EXP\}, \$\{NET_ID\}"):
        read_net_prototxt(p)
    net = read_net_prototxt(p, {"NET_ID": "n", "EXP": "voc12"})
    assert net.name == "n" and net.layer[0].name == "fc8_voc12"


def test_mixed_v1_and_v2_layers_refused():
    with pytest.raises(CaffeFormatError, match="mixes V1 'layers' and V2 'layer'"):
        parse_net_text('layers { name: "a" type: RELU }\nlayer { name: "b" type: "ReLU" }', source="mixed.prototxt")


def test_include_and_exclude_together_refused():
    text = 'layer { name: "a" type: "Input" top: "d" input_param { shape { dim: 1 } } include { phase: TEST } exclude { phase: TRAIN } }'
    with pytest.raises(CaffeFormatError, match="ie.prototxt: layer 'a' has both include and exclude"):
        CaffeNet(parse_net_text(text), "TEST", device="meta", source="ie.prototxt")


# --------------------------------------------------------------------------
# Fuzzing
# --------------------------------------------------------------------------

FUZZ = settings(max_examples=2500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@FUZZ
@given(data=st.data())
def test_fuzz_caffemodel_mutations(tiny_bytes, data):
    """Flip bits, overwrite, insert and delete bytes: CaffeFormatError or a load, nothing else."""
    buf = bytearray(tiny_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and buf:
            del buf[i: i + data.draw(st.integers(1, 8))]
    try:
        _load_into_tiny(bytes(buf))
    except CaffeFormatError as exc:
        assert "fuzz.caffemodel" in str(exc)


@settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=256))
def test_fuzz_random_bytes_as_caffemodel(data):
    try:
        _load_into_tiny(data)
    except CaffeFormatError as exc:
        assert "fuzz.caffemodel" in str(exc)


_TOKENS = ["{", "}", ":", '"', "layer", "layers", "name", "type", "bottom", "top", "num_output", "kernel_size",
           "pad", "stride", "-1", "0", "7", "99999999999", "1e40", '"Convolution"', '"Pooling"', '"Interp"',
           '"Eltwise"', '"Slice"', "pooling_param", "convolution_param", "interp_param", "zoom_factor",
           "shrink_factor", "slice_point", "input_param", "shape", "dim", "MAX", "AVE", "CONVOLUTION", "#", "\n"]


@settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzz_prototxt_edits(data):
    """Splice tokens into a valid net: parse and build on meta give a net or CaffeFormatError."""
    text = splice_tokens(data, TINY, _TOKENS)
    try:
        net = CaffeNet(parse_net_text(text, source="fuzz.prototxt"), "TEST", device="meta", source="fuzz.prototxt")
    except CaffeFormatError as exc:
        assert "fuzz.prototxt" in str(exc)
        return
    assert net.order

"""The Caffe protobuf schema built at import time (attn2scale.caffe.schema)."""

import glob
import os
import re
from pathlib import Path

import pytest
from conftest import require_shared
from google.protobuf import descriptor_pool, text_format

from attn2scale.caffe import schema


def _num(message, field):
    return schema.field_number(message, field)


@pytest.mark.parametrize("message,field,number", [
    # BVLC master
    ("NetParameter", "layer", 100),
    ("NetParameter", "layers", 2),
    ("NetParameter", "input_dim", 4),
    ("BlobProto", "shape", 7),
    ("BlobProto", "double_data", 8),
    ("BlobProto", "num", 1),
    ("BlobShape", "dim", 1),
    ("ConvolutionParameter", "dilation", 18),
    ("ConvolutionParameter", "axis", 16),
    ("LayerParameter", "convolution_param", 106),
    ("LayerParameter", "tile_param", 138),
    ("LayerParameter", "batch_norm_param", 139),
    ("LayerParameter", "scale_param", 142),
    ("LayerParameter", "clip_param", 148),
    ("PoolingParameter", "round_mode", 13),
    ("SolverParameter", "iter_size", 36),
    ("V1LayerParameter", "layer", 1),
    ("V1LayerParameter", "blobs_lr", 7),
    # DeepLab v2 / the authors' fork
    ("LayerParameter", "interp_param", 143),
    ("ConvolutionParameter", "hole", 17),
    ("ConvolutionParameter", "hole_w", 19),
    ("InterpParameter", "shrink_factor", 4),
    ("InterpParameter", "pad_end", 6),
    ("SegAccuracyParameter", "reset", 3),
    ("ImageDataParameter", "ignore_label", 15),
    ("ImageDataParameter", "label_type", 16),
    ("MatWriteParameter", "period", 4),
    ("DenseCRFParameter", "output_probability", 7),
    # DeepLab v1 (V1 layers)
    ("ImageDataParameter", "has_label", 13),
    ("V1LayerParameter", "seg_accuracy_param", 42),
    ("V1LayerParameter", "interp_param", 43),
    ("V1LayerParameter", "softmaxloss_param", 44),
    ("V1LayerParameter", "mat_write_param", 46),
    ("V1LayerParameter", "dense_crf_param", 48),
    ("V1LayerParameter", "strict_dim", 1003),
])
def test_real_field_numbers(message, field, number):
    assert _num(message, field) == number


def test_enum_numbers():
    v1 = schema.V1LayerParameter
    assert v1.CONVOLUTION == 4 and v1.POOLING == 17 and v1.DECONVOLUTION == 39
    assert (v1.IMAGE_SEG_DATA, v1.SEG_ACCURACY, v1.INTERP, v1.MAT_WRITE, v1.DENSE_CRF) == (39, 40, 41, 43, 45)
    assert schema.enum_value("PoolingParameter.PoolMethod", "AVE") == 1
    assert schema.enum_value("caffe.ImageDataParameter.LabelType", "PIXEL") == 2
    assert schema.enum_name("LossParameter.NormalizationMode", 1) == "VALID"
    assert schema.enum_name("V1LayerParameter.LayerType", 39) == "IMAGE_SEG_DATA"
    assert schema.Phase.Value("TRAIN") == schema.TRAIN == 0 and schema.TEST == 1


def test_relocated_fields_are_private_and_consistent():
    messages = set()
    for key, (real, here, why) in schema.RELOCATED_FIELDS.items():
        message, field = key.split(".")
        assert _num(message, field) == here, key
        assert 536_000_000 <= here < 2**29 and not 19000 <= here <= 19999
        assert here != real and why
        messages.add(message)
    for message in messages:
        all_nums = [f.number for f in schema.message_class(message).DESCRIPTOR.fields]
        assert len(all_nums) == len(set(all_nums)), message
    assert _num("LayerParameter", "input_param") != 143
    assert _num("ConvolutionParameter", "force_nd_im2col") != 17
    for key in schema.UNVERIFIED_FIELDS:
        assert _num(*key.split(".")) >= 536_000_000


def test_defaults():
    conv = schema.ConvolutionParameter()
    assert conv.bias_term is True and conv.group == 1 and conv.hole == 1 and conv.axis == 1
    assert list(conv.stride) == [] and list(conv.pad) == [] and list(conv.dilation) == []
    pool = schema.PoolingParameter()
    assert pool.pool == schema.PoolingParameter.MAX and pool.stride == 1 and pool.pad == 0
    assert pool.round_mode == schema.PoolingParameter.CEIL
    assert schema.DropoutParameter().dropout_ratio == 0.5
    elt = schema.EltwiseParameter()
    assert elt.operation == schema.EltwiseParameter.SUM and elt.stable_prod_grad is True
    power = schema.PowerParameter()
    assert (power.power, power.scale, power.shift) == (1.0, 1.0, 0.0)
    assert schema.SoftmaxParameter().axis == 1
    assert schema.ConcatParameter().axis == 1 and schema.ConcatParameter().concat_dim == 1
    assert schema.SliceParameter().axis == 1 and schema.SliceParameter().slice_dim == 1
    ip = schema.InnerProductParameter()
    assert ip.bias_term is True and ip.axis == 1
    loss = schema.LossParameter()
    assert loss.normalization == schema.LossParameter.VALID and not loss.HasField("normalize")
    filler = schema.FillerParameter()
    assert filler.type == "constant" and filler.std == 1.0 and filler.sparse == -1
    assert schema.BlobProto().num == 0
    solver = schema.SolverParameter()
    assert solver.iter_size == 1 and solver.solver_mode == schema.SolverParameter.GPU
    assert solver.regularization_type == "L2" and solver.type == "SGD" and solver.random_seed == -1
    assert schema.NetState().phase == schema.TEST
    interp = schema.InterpParameter()
    assert (interp.zoom_factor, interp.shrink_factor, interp.pad_beg, interp.pad_end) == (1, 1, 0, 0)
    img = schema.ImageDataParameter()
    assert img.label_type == schema.ImageDataParameter.IMAGE and img.ignore_label == 255 and img.has_label
    assert schema.SegAccuracyParameter().reset is True
    assert schema.ParamSpec().lr_mult == 1.0 and schema.ParamSpec().decay_mult == 1.0


_NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { name: "w" lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 2 hole: 2 weight_filler { type: "gaussian" std: 0.01 } }
}
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "up" type: "Interp" bottom: "pool1" top: "up" interp_param { zoom_factor: 4 shrink_factor: 3 } }
layer { name: "acc" type: "SegAccuracy" bottom: "up" bottom: "label" seg_accuracy_param { ignore_label: 255 reset: false }
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "up" bottom: "label" loss_param { ignore_label: 255 normalization: VALID } }
"""

_V1_NET = """
layers { name: "data" type: IMAGE_SEG_DATA top: "data" top: "label"
         image_data_param { source: "list.txt" batch_size: 1 label_type: PIXEL has_label: false } }
layers { name: "fc6" type: CONVOLUTION bottom: "data" top: "fc6" strict_dim: false blobs_lr: 1 weight_decay: 1
         convolution_param { num_output: 8 kernel_size: 3 hole: 12 } }
layers { name: "fc8_interp" type: INTERP bottom: "fc6" top: "fc8_interp" interp_param { zoom_factor: 8 } }
layers { name: "mat" type: MAT_WRITE bottom: "fc8_interp" mat_write_param { prefix: "out/" strip: 0 period: 1 } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "fc6" bottom: "label" softmaxloss_param { ignore_label: 255 } }
"""


@pytest.mark.parametrize("text", [_NET, _V1_NET])
def test_text_round_trip(text):
    net = text_format.Parse(text, schema.NetParameter())
    again = schema.NetParameter.FromString(net.SerializeToString())
    assert again == net
    assert text_format.Parse(text_format.MessageToString(again), schema.NetParameter()) == net


def test_parsed_values():
    net = text_format.Parse(_NET, schema.NetParameter())
    conv, pool, interp = net.layer[1], net.layer[2], net.layer[3]
    assert conv.convolution_param.hole == 2 and list(conv.convolution_param.pad) == [2]
    assert conv.param[0].name == "w" and conv.param[1].decay_mult == 0
    assert pool.pooling_param.pool == schema.PoolingParameter.AVE
    assert interp.interp_param.zoom_factor == 4 and interp.interp_param.shrink_factor == 3
    assert net.layer[4].include[0].phase == schema.TEST
    v1 = text_format.Parse(_V1_NET, schema.NetParameter())
    assert v1.layers[0].type == schema.V1LayerParameter.IMAGE_SEG_DATA
    assert v1.layers[0].image_data_param.label_type == schema.ImageDataParameter.PIXEL
    assert v1.layers[1].strict_dim is False and v1.layers[1].convolution_param.hole == 12
    assert v1.layers[2].interp_param.zoom_factor == 8


def _field_bytes(number, payload):
    def varint(v):
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _input_param(layer):
    """The InputParameter the reader recovers (binary BVLC files keep it at 143, interp_param here)."""
    from attn2scale.caffe.upgrade import upgrade_net

    net = schema.NetParameter()
    net.layer.add().CopyFrom(layer)
    return upgrade_net(net).layer[0].input_param


def test_bvlc_binary_input_param_is_recovered():
    shape = schema.InputParameter()
    shape.shape.add().dim.extend([1, 3, 97, 97])
    raw = schema.LayerParameter(name="data", type="Input", top=["data"]).SerializeToString()
    raw += _field_bytes(143, shape.SerializeToString())   # how BVLC writes input_param
    layer = schema.LayerParameter.FromString(raw)
    assert layer.HasField("interp_param") and not layer.HasField("input_param")
    assert list(_input_param(layer).shape[0].dim) == [1, 3, 97, 97]
    text_layer = text_format.Parse('type: "Input" input_param { shape { dim: 2 } }', schema.LayerParameter())
    assert list(_input_param(text_layer).shape[0].dim) == [2]


def test_private_pool_and_exports():
    assert schema.POOL is not descriptor_pool.Default()
    assert schema.FILE.package == "caffe" and schema.FILE.syntax == "proto2"
    assert schema.message_class("caffe.NetParameter") is schema.NetParameter
    for name in ("NetParameter", "LayerParameter", "V1LayerParameter", "V0LayerParameter", "BlobProto",
                 "BlobShape", "BlobProtoVector", "SolverParameter", "NetState", "NetStateRule", "ParamSpec",
                 "InterpParameter", "InputParameter", "ConvolutionParameter", "SegAccuracyParameter"):
        assert name in schema.__all__ and getattr(schema, name).DESCRIPTOR.full_name == f"caffe.{name}"
    with pytest.raises(KeyError):
        schema.message_class("NoSuchParameter")


def _substituted(path):
    text = Path(path).read_text()
    text = re.sub(r"\$\{NUM_LABELS\}", "21", text)
    return re.sub(r"\$\{\w+\}", "x", text)


def test_shared_prototxts_parse():
    root = require_shared("caffe")
    paths = sorted({p for sub in ("configs", "golden", "models")
                    for p in glob.glob(str(root / sub / "**" / "*.prototxt"), recursive=True)})
    assert paths
    for path in paths:
        solver = "solver" in os.path.basename(path)
        msg = schema.SolverParameter() if solver else schema.NetParameter()
        text_format.Parse(_substituted(path), msg)   # no allow_unknown_field
        assert solver or msg.layer or msg.layers, path


def test_shared_caffemodels_parse():
    root = require_shared("caffe")
    paths = sorted(glob.glob(str(root / "**" / "*.caffemodel"), recursive=True))
    assert paths
    for path in paths:
        data = Path(path).read_bytes()
        net = schema.NetParameter.FromString(data)
        assert len(net.SerializeToString()) == len(data), path
        for layer in list(net.layer) + list(net.layers):
            for blob in layer.blobs:
                if blob.HasField("shape"):
                    count = 1
                    for d in blob.shape.dim:
                        count *= d
                else:
                    count = blob.num * blob.channels * blob.height * blob.width
                assert count == len(blob.data) + len(blob.double_data), (path, layer.name)
    slim = schema.NetParameter.FromString((root / "golden/largefov_slim/largefov_slim.caffemodel").read_bytes())
    assert slim.layer[0].type == "Input"
    assert list(_input_param(slim.layer[0]).shape[0].dim) == [1, 3, 97, 97]

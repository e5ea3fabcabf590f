"""The Caffe protobuf schema (package ``caffe``, proto2), built at import time.

No generated ``caffe_pb2`` and no ``protoc``: the messages are written below as
small tables, turned into one ``FileDescriptorProto`` (:data:`FILE`) and added to
a *private* :class:`~google.protobuf.descriptor_pool.DescriptorPool`
(:data:`POOL`), so an installed ``caffe_pb2`` can never clash with it. Every
message is a module attribute (``schema.NetParameter``, ``schema.BlobProto`` ...),
as are the top-level enum ``Phase`` and its values ``TRAIN``/``TEST``; nested
enums hang off their message (``schema.PoolingParameter.PoolMethod``).

Sources (field numbers, names, types and defaults are copied as declared):

* BVLC/caffe master ``src/caffe/proto/caffe.proto`` -- every message and field.
* The authors' Attention-to-Scale fork: yangyi02/segmentation_attention @215968b
  ``code/src/caffe/proto/caffe.proto`` (new-style ``layer`` nets of
  ``configs/authors``): ``hole``/``hole_w``, InterpParameter, SegAccuracyParameter
  (with ``reset``), MatWrite/MatRead/BinWrite/Padding/DenseCRF (with
  ``output_probability``), BN/Unpooling/Upsample/Resize/SpatialPooling,
  ImageDataParameter ``ignore_label``/``label_type``/``max_labels``.
* DeepLab v1: TheLegendAli/DeepLab-Context ``src/caffe/proto/caffe.proto``
  (@0d1a253, @013b41e; the V1 ``layers`` nets of ``configs/deeplab_v1_official``):
  the V1 LayerType values INTERP ... ONEHOT, the V1 per-type fields 42-59,
  ``strict_dim`` = 1003, ImageDataParameter ``has_label``, SoftmaxLossParameter,
  and the V1-only messages (BiasChannel, UniqueLabel, ...).
* DeepLab v2 (deeplab-public-ver2 @a11f8a2, ``src/caffe/proto/caffe.proto``;
  BVLC @fe0f441 plus its additions): ``interp_param`` at 143 (the number used
  here; the authors' fork has it at 138), TransformationParameter
  ``scale_factors``/``crop_width``/``crop_height``, BatchNormParameter
  ``update_global_stats``, BiasChannelParameter ``label_type``/``background_label``,
  DomainTransformParameter, and LayerParameter 144-151 (seg_accuracy, mat_write,
  dense_crf, domain_transform, adaptive_bias_channel, bias_channel,
  unique_label, mat_read). mat_write (145), unique_label (150) and mat_read
  (151) have their DeepLab v2 numbers here; where the others' are BVLC's
  (144, 146-148) or the authors' fork's (149) the field keeps its name at
  another number and :data:`DEEPLAB_V2_NUMBERS` gives the real one, for
  binary files.

Number conflicts. Where BVLC and DeepLab use one number for two fields, the
DeepLab field keeps the number and the other one moves to a private number in
536,100,000-536,499,999 (below 2**29, far from every real range and from the
reserved 19000-19999), so its *name* still parses in text format.
:data:`RELOCATED_FIELDS` lists each (real number, number here, why):

* ``LayerParameter.input_param`` (BVLC 143): 143 is DeepLab's ``interp_param``.
  A BVLC *binary* Input layer therefore decodes into ``interp_param`` (as unknown
  fields, the wire types differ); :func:`attn2scale.caffe.upgrade.upgrade_net`
  re-reads those bytes as an InputParameter when ``layer.type == "Input"``. Text
  files are unaffected. Writing a BVLC binary needs the reverse move.
* ``ConvolutionParameter.force_nd_im2col`` (BVLC 17): 17 is DeepLab's ``hole``.
* ``ConvolutionParameter.hole_h`` (DeepLab 18): 18 is BVLC's ``dilation``
  (so a fork binary's ``hole_h: h`` reads as ``dilation: h``). ``hole_w`` keeps 19.
* ``V1LayerParameter.loss_param`` (BVLC 42): 42 is DeepLab v1's ``seg_accuracy_param``.
* ``LayerParameter.parameter_param`` (BVLC 145): 145 is DeepLab v2's ``mat_write_param``
  (whose ``prefix`` is declared ``bytes`` so any BVLC payload decodes; a binary
  Parameter layer's bytes are moved back by ``upgrade_net``).
* The authors' fork's own LayerParameter numbers 137-148 all collide with BVLC
  (embed, tile, batch_norm, elu, bias, scale, input, crop, parameter, recurrent,
  swish, clip); BVLC keeps them and those fork fields live at private numbers.
  :data:`AUTHORS_FORK_NUMBERS` gives every place where a binary written by the
  authors' fork differs from this schema, for a caller that has to remap one.

Enum conflict: V1 LayerType 39 is DeepLab v1's IMAGE_SEG_DATA and BVLC's
DECONVOLUTION; the enum allows aliases so both names parse (:data:`ENUM_ALIASES`).

Where the forks disagree with BVLC inside a shared message only in ways the wire
format does not see (``LossParameter``/``AccuracyParameter.ignore_label``
repeated in the fork, optional in BVLC; ``LossParameter.normalize`` default),
BVLC's declaration is used. ``required`` fields stay required, as in Caffe: text
and binary parsing accept a message without them, serializing it raises.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper

_F = descriptor_pb2.FieldDescriptorProto

# Private field numbers (see the module docstring).
_MOVED = 536_100_000     # + the real number of a BVLC field that lost its number to DeepLab
_FORK = 536_200_000      # + the real number of a fork field whose number BVLC owns
_UNSURE = 536_300_000    # + k for fork fields whose real number could not be found
_DEEPLAB2 = 536_400_000  # + the real number of a DeepLab v2 field whose number another fork owns


# --------------------------------------------------------------------------
# The table DSL
# --------------------------------------------------------------------------

def _o(type_, name, number, default=None):
    return ("optional", type_, name, number, default, False)


def _r(type_, name, number, packed=False):
    return ("repeated", type_, name, number, None, packed)


def _q(type_, name, number, default=None):
    return ("required", type_, name, number, default, False)


def _seq(names, start=0):
    """Enum values numbered from ``start`` in the order given: "A B C"."""
    return [(n, i) for i, n in enumerate(names.split(), start)]


_MESSAGES = {}   # name -> (fields, {enum name: [(value name, number), ...]})


def _msg(name, fields, enums=None):
    _MESSAGES[name] = (fields, enums or {})


_ENUMS = {"Phase": _seq("TRAIN TEST")}   # top-level enums
_ENGINE = _seq("DEFAULT CAFFE CUDNN")
_POOL3 = _seq("MAX AVE STOCHASTIC")
_DIMCHECK = _seq("STRICT PERMISSIVE")

# --------------------------------------------------------------------------
# BVLC master (with the fork fields of shared messages marked "fork")
# --------------------------------------------------------------------------

_msg("BlobShape", [_r("int64", "dim", 1, packed=True)])
_msg("BlobProto", [
    _o("BlobShape", "shape", 7),
    _r("float", "data", 5, packed=True),
    _r("float", "diff", 6, packed=True),
    _r("double", "double_data", 8, packed=True),
    _r("double", "double_diff", 9, packed=True),
    _o("int32", "num", 1, 0),
    _o("int32", "channels", 2, 0),
    _o("int32", "height", 3, 0),
    _o("int32", "width", 4, 0),
])
_msg("BlobProtoVector", [_r("BlobProto", "blobs", 1)])
_msg("Datum", [
    _o("int32", "channels", 1), _o("int32", "height", 2), _o("int32", "width", 3),
    _o("bytes", "data", 4), _o("int32", "label", 5), _r("float", "float_data", 6),
    _o("bool", "encoded", 7, False),
])
_msg("FillerParameter", [
    _o("string", "type", 1, "constant"),
    _o("float", "value", 2, 0), _o("float", "min", 3, 0), _o("float", "max", 4, 1),
    _o("float", "mean", 5, 0), _o("float", "std", 6, 1),
    _o("int32", "sparse", 7, -1),
    _o("VarianceNorm", "variance_norm", 8, "FAN_IN"),
], {"VarianceNorm": _seq("FAN_IN FAN_OUT AVERAGE")})
_msg("NetParameter", [
    _o("string", "name", 1),
    _r("string", "input", 3),
    _r("BlobShape", "input_shape", 8),
    _r("int32", "input_dim", 4),
    _o("bool", "force_backward", 5, False),
    _o("NetState", "state", 6),
    _o("bool", "debug_info", 7, False),
    _r("LayerParameter", "layer", 100),
    _r("V1LayerParameter", "layers", 2),
])
_msg("SolverParameter", [
    _o("string", "net", 24), _o("NetParameter", "net_param", 25),
    _o("string", "train_net", 1), _r("string", "test_net", 2),
    _o("NetParameter", "train_net_param", 21), _r("NetParameter", "test_net_param", 22),
    _o("NetState", "train_state", 26), _r("NetState", "test_state", 27),
    _r("int32", "test_iter", 3),
    _o("int32", "test_interval", 4, 0),
    _o("bool", "test_compute_loss", 19, False),
    _o("bool", "test_initialization", 32, True),
    _o("float", "base_lr", 5),
    _o("int32", "display", 6),
    _o("int32", "average_loss", 33, 1),
    _o("int32", "max_iter", 7),
    _o("int32", "iter_size", 36, 1),
    _o("string", "lr_policy", 8),
    _o("float", "gamma", 9), _o("float", "power", 10),
    _o("float", "momentum", 11), _o("float", "weight_decay", 12),
    _o("string", "regularization_type", 29, "L2"),
    _o("int32", "stepsize", 13),
    _r("int32", "stepvalue", 34),
    _o("float", "clip_gradients", 35, -1),
    _o("int32", "snapshot", 14, 0),
    _o("string", "snapshot_prefix", 15),
    _o("bool", "snapshot_diff", 16, False),
    _o("SnapshotFormat", "snapshot_format", 37, "BINARYPROTO"),
    _o("SolverMode", "solver_mode", 17, "GPU"),
    _o("int32", "device_id", 18, 0),
    _o("int64", "random_seed", 20, -1),
    _o("string", "type", 40, "SGD"),
    _o("float", "delta", 31, 1e-8),
    _o("float", "momentum2", 39, 0.999),
    _o("float", "rms_decay", 38, 0.99),
    _o("bool", "debug_info", 23, False),
    _o("bool", "snapshot_after_train", 28, True),
    _o("SolverType", "solver_type", 30, "SGD"),
    _o("bool", "layer_wise_reduce", 41, True),
    _r("string", "weights", 42),
], {
    "SnapshotFormat": _seq("HDF5 BINARYPROTO"),
    "SolverMode": _seq("CPU GPU"),
    "SolverType": _seq("SGD NESTEROV ADAGRAD RMSPROP ADADELTA ADAM"),
})
_msg("SolverState", [
    _o("int32", "iter", 1), _o("string", "learned_net", 2),
    _r("BlobProto", "history", 3), _o("int32", "current_step", 4, 0),
])
_msg("NetState", [
    _o("Phase", "phase", 1, "TEST"), _o("int32", "level", 2, 0), _r("string", "stage", 3),
])
_msg("NetStateRule", [
    _o("Phase", "phase", 1), _o("int32", "min_level", 2), _o("int32", "max_level", 3),
    _r("string", "stage", 4), _r("string", "not_stage", 5),
])
_msg("ParamSpec", [
    _o("string", "name", 1),
    _o("DimCheckMode", "share_mode", 2),
    _o("float", "lr_mult", 3, 1.0),
    _o("float", "decay_mult", 4, 1.0),
], {"DimCheckMode": _DIMCHECK})
_msg("LayerParameter", [
    _o("string", "name", 1), _o("string", "type", 2),
    _r("string", "bottom", 3), _r("string", "top", 4),
    _o("Phase", "phase", 10),
    _r("float", "loss_weight", 5),
    _r("ParamSpec", "param", 6),
    _r("BlobProto", "blobs", 7),
    _r("bool", "propagate_down", 11),
    _r("NetStateRule", "include", 8), _r("NetStateRule", "exclude", 9),
    _o("TransformationParameter", "transform_param", 100),
    _o("LossParameter", "loss_param", 101),
    _o("AccuracyParameter", "accuracy_param", 102),
    _o("ArgMaxParameter", "argmax_param", 103),
    _o("BatchNormParameter", "batch_norm_param", 139),
    _o("BiasParameter", "bias_param", 141),
    _o("ClipParameter", "clip_param", 148),
    _o("ConcatParameter", "concat_param", 104),
    _o("ContrastiveLossParameter", "contrastive_loss_param", 105),
    _o("ConvolutionParameter", "convolution_param", 106),
    _o("CropParameter", "crop_param", 144),
    _o("DataParameter", "data_param", 107),
    _o("DropoutParameter", "dropout_param", 108),
    _o("DummyDataParameter", "dummy_data_param", 109),
    _o("EltwiseParameter", "eltwise_param", 110),
    _o("ELUParameter", "elu_param", 140),
    _o("EmbedParameter", "embed_param", 137),
    _o("ExpParameter", "exp_param", 111),
    _o("FlattenParameter", "flatten_param", 135),
    _o("HDF5DataParameter", "hdf5_data_param", 112),
    _o("HDF5OutputParameter", "hdf5_output_param", 113),
    _o("HingeLossParameter", "hinge_loss_param", 114),
    _o("ImageDataParameter", "image_data_param", 115),
    _o("InfogainLossParameter", "infogain_loss_param", 116),
    _o("InnerProductParameter", "inner_product_param", 117),
    _o("InputParameter", "input_param", _MOVED + 143),        # BVLC 143, relocated
    _o("LogParameter", "log_param", 134),
    _o("LRNParameter", "lrn_param", 118),
    _o("MemoryDataParameter", "memory_data_param", 119),
    _o("MVNParameter", "mvn_param", 120),
    _o("ParameterParameter", "parameter_param", _MOVED + 145),  # BVLC 145, relocated
    _o("PoolingParameter", "pooling_param", 121),
    _o("PowerParameter", "power_param", 122),
    _o("PReLUParameter", "prelu_param", 131),
    _o("PythonParameter", "python_param", 130),
    _o("RecurrentParameter", "recurrent_param", 146),
    _o("ReductionParameter", "reduction_param", 136),
    _o("ReLUParameter", "relu_param", 123),
    _o("ReshapeParameter", "reshape_param", 133),
    _o("ScaleParameter", "scale_param", 142),
    _o("SigmoidParameter", "sigmoid_param", 124),
    _o("SoftmaxParameter", "softmax_param", 125),
    _o("SPPParameter", "spp_param", 132),
    _o("SliceParameter", "slice_param", 126),
    _o("SwishParameter", "swish_param", 147),
    _o("TanHParameter", "tanh_param", 127),
    _o("ThresholdParameter", "threshold_param", 128),
    _o("TileParameter", "tile_param", 138),
    _o("WindowDataParameter", "window_data_param", 129),
    # fork (DeepLab v2 number for interp_param; the authors' fork numbers of the
    # others collide with BVLC, see AUTHORS_FORK_NUMBERS)
    _o("InterpParameter", "interp_param", 143),
    _o("BinWriteParameter", "bin_write_param", 149),
    _o("BNParameter", "bn_param", _FORK + 145),
    _o("DenseCRFParameter", "dense_crf_param", _FORK + 137),
    _o("MatReadParameter", "mat_read_param", 151),     # DeepLab v2's numbers (the authors' fork: 139, 140)
    _o("MatWriteParameter", "mat_write_param", 145),
    _o("PaddingParameter", "padding_param", _FORK + 141),
    _o("ResizeParameter", "resize_param", _FORK + 147),
    _o("SegAccuracyParameter", "seg_accuracy_param", _FORK + 142),
    _o("SoftmaxLossParameter", "softmax_loss_param", _FORK + 143),
    _o("SpatialPoolingParameter", "spatial_pooling_param", _FORK + 148),
    _o("UnpoolingParameter", "unpooling_param", _FORK + 146),
    _o("UpsampleParameter", "upsample_param", _FORK + 144),
    # DeepLab v2 only (its numbers: DEEPLAB_V2_NUMBERS)
    _o("DomainTransformParameter", "domain_transform_param", _DEEPLAB2 + 147),
    _o("AdaptiveBiasChannelParameter", "adaptive_bias_channel_param", _DEEPLAB2 + 148),
    _o("BiasChannelParameter", "bias_channel_param", _DEEPLAB2 + 149),
    _o("UniqueLabelParameter", "unique_label_param", 150),
])
_msg("TransformationParameter", [
    _o("float", "scale", 1, 1), _o("bool", "mirror", 2, False),
    _o("uint32", "crop_size", 3, 0), _o("string", "mean_file", 4),
    _r("float", "mean_value", 5),
    _o("bool", "force_color", 6, False), _o("bool", "force_gray", 7, False),
    # DeepLab v2 (ImageSegData)
    _r("float", "scale_factors", 8),
    _o("uint32", "crop_width", 9, 0), _o("uint32", "crop_height", 10, 0),
])
_msg("LossParameter", [
    _o("int32", "ignore_label", 1),
    _o("NormalizationMode", "normalization", 3, "VALID"),
    _o("bool", "normalize", 2),
], {"NormalizationMode": _seq("FULL VALID BATCH_SIZE NONE")})
_msg("AccuracyParameter", [
    _o("uint32", "top_k", 1, 1), _o("int32", "axis", 2, 1), _o("int32", "ignore_label", 3),
])
_msg("ArgMaxParameter", [
    _o("bool", "out_max_val", 1, False), _o("uint32", "top_k", 2, 1), _o("int32", "axis", 3),
])
_msg("ClipParameter", [_q("float", "min", 1), _q("float", "max", 2)])
_msg("ConcatParameter", [_o("int32", "axis", 2, 1), _o("uint32", "concat_dim", 1, 1)])
_msg("BatchNormParameter", [
    _o("bool", "use_global_stats", 1),
    _o("float", "moving_average_fraction", 2, 0.999),
    _o("float", "eps", 3, 1e-5),
    _o("bool", "update_global_stats", 4, False),    # DeepLab v2
])
_msg("BiasParameter", [
    _o("int32", "axis", 1, 1), _o("int32", "num_axes", 2, 1), _o("FillerParameter", "filler", 3),
])
_msg("ContrastiveLossParameter", [
    _o("float", "margin", 1, 1.0), _o("bool", "legacy_version", 2, False),
])
_msg("ConvolutionParameter", [
    _o("uint32", "num_output", 1),
    _o("bool", "bias_term", 2, True),
    _r("uint32", "pad", 3),              # repeated in BVLC: no default (0 by convention)
    _r("uint32", "kernel_size", 4),
    _r("uint32", "stride", 6),           # repeated: no default (1 by convention)
    _r("uint32", "dilation", 18),        # repeated: no default (1 by convention)
    _o("uint32", "pad_h", 9, 0), _o("uint32", "pad_w", 10, 0),
    _o("uint32", "kernel_h", 11), _o("uint32", "kernel_w", 12),
    _o("uint32", "stride_h", 13), _o("uint32", "stride_w", 14),
    _o("uint32", "group", 5, 1),
    _o("FillerParameter", "weight_filler", 7), _o("FillerParameter", "bias_filler", 8),
    _o("Engine", "engine", 15, "DEFAULT"),
    _o("int32", "axis", 16, 1),
    _o("bool", "force_nd_im2col", _MOVED + 17, False),        # BVLC 17, relocated
    # fork: DeepLab's dilation ("filter stride")
    _o("uint32", "hole", 17, 1),
    _o("uint32", "hole_h", _FORK + 18, 1),
    _o("uint32", "hole_w", 19, 1),
], {"Engine": _ENGINE})
_msg("CropParameter", [_o("int32", "axis", 1, 2), _r("uint32", "offset", 2)])
_msg("DataParameter", [
    _o("string", "source", 1), _o("uint32", "batch_size", 4),
    _o("uint32", "rand_skip", 7, 0), _o("DB", "backend", 8, "LEVELDB"),
    _o("float", "scale", 2, 1), _o("string", "mean_file", 3),
    _o("uint32", "crop_size", 5, 0), _o("bool", "mirror", 6, False),
    _o("bool", "force_encoded_color", 9, False),
    _o("uint32", "prefetch", 10, 4),
], {"DB": _seq("LEVELDB LMDB")})
_msg("DropoutParameter", [_o("float", "dropout_ratio", 1, 0.5)])
_msg("DummyDataParameter", [
    _r("FillerParameter", "data_filler", 1), _r("BlobShape", "shape", 6),
    _r("uint32", "num", 2), _r("uint32", "channels", 3),
    _r("uint32", "height", 4), _r("uint32", "width", 5),
])
_msg("EltwiseParameter", [
    _o("EltwiseOp", "operation", 1, "SUM"),
    _r("float", "coeff", 2),
    _o("bool", "stable_prod_grad", 3, True),
], {"EltwiseOp": _seq("PROD SUM MAX")})
_msg("ELUParameter", [_o("float", "alpha", 1, 1)])
_msg("EmbedParameter", [
    _o("uint32", "num_output", 1), _o("uint32", "input_dim", 2),
    _o("bool", "bias_term", 3, True),
    _o("FillerParameter", "weight_filler", 4), _o("FillerParameter", "bias_filler", 5),
])
_msg("ExpParameter", [
    _o("float", "base", 1, -1.0), _o("float", "scale", 2, 1.0), _o("float", "shift", 3, 0.0),
])
_msg("FlattenParameter", [_o("int32", "axis", 1, 1), _o("int32", "end_axis", 2, -1)])
_msg("HDF5DataParameter", [
    _o("string", "source", 1), _o("uint32", "batch_size", 2), _o("bool", "shuffle", 3, False),
])
_msg("HDF5OutputParameter", [_o("string", "file_name", 1)])
_msg("HingeLossParameter", [_o("Norm", "norm", 1, "L1")], {"Norm": _seq("L1 L2", 1)})
_msg("ImageDataParameter", [
    _o("string", "source", 1),
    _o("uint32", "batch_size", 4, 1),
    _o("uint32", "rand_skip", 7, 0),
    _o("bool", "shuffle", 8, False),
    _o("uint32", "new_height", 9, 0), _o("uint32", "new_width", 10, 0),
    _o("bool", "is_color", 11, True),
    _o("float", "scale", 2, 1), _o("string", "mean_file", 3),
    _o("uint32", "crop_size", 5, 0), _o("bool", "mirror", 6, False),
    _o("string", "root_folder", 12, ""),
    # fork (ImageSegData)
    _o("bool", "has_label", 13, True),          # DeepLab v1
    _o("int32", "max_labels", 14, 1),
    _o("int32", "ignore_label", 15, 255),
    _o("LabelType", "label_type", 16, "IMAGE"),
], {"LabelType": _seq("NONE IMAGE PIXEL")})
# BVLC master's InfogainLossParameter also has ``axis`` (field 2, the probability axis).
_msg("InfogainLossParameter", [_o("string", "source", 1), _o("int32", "axis", 2, 1)])
_msg("InnerProductParameter", [
    _o("uint32", "num_output", 1), _o("bool", "bias_term", 2, True),
    _o("FillerParameter", "weight_filler", 3), _o("FillerParameter", "bias_filler", 4),
    _o("int32", "axis", 5, 1), _o("bool", "transpose", 6, False),
])
_msg("InputParameter", [_r("BlobShape", "shape", 1)])
_msg("LogParameter", [
    _o("float", "base", 1, -1.0), _o("float", "scale", 2, 1.0), _o("float", "shift", 3, 0.0),
])
_msg("LRNParameter", [
    _o("uint32", "local_size", 1, 5), _o("float", "alpha", 2, 1.0), _o("float", "beta", 3, 0.75),
    _o("NormRegion", "norm_region", 4, "ACROSS_CHANNELS"),
    _o("float", "k", 5, 1.0),
    _o("Engine", "engine", 6, "DEFAULT"),
], {"NormRegion": _seq("ACROSS_CHANNELS WITHIN_CHANNEL"), "Engine": _ENGINE})
_msg("MemoryDataParameter", [
    _o("uint32", "batch_size", 1), _o("uint32", "channels", 2),
    _o("uint32", "height", 3), _o("uint32", "width", 4),
])
_msg("MVNParameter", [
    _o("bool", "normalize_variance", 1, True), _o("bool", "across_channels", 2, False),
    _o("float", "eps", 3, 1e-9),
])
_msg("ParameterParameter", [_o("BlobShape", "shape", 1)])
_msg("PoolingParameter", [
    _o("PoolMethod", "pool", 1, "MAX"),
    _o("uint32", "pad", 4, 0), _o("uint32", "pad_h", 9, 0), _o("uint32", "pad_w", 10, 0),
    _o("uint32", "kernel_size", 2), _o("uint32", "kernel_h", 5), _o("uint32", "kernel_w", 6),
    _o("uint32", "stride", 3, 1), _o("uint32", "stride_h", 7), _o("uint32", "stride_w", 8),
    _o("Engine", "engine", 11, "DEFAULT"),
    _o("bool", "global_pooling", 12, False),
    _o("RoundMode", "round_mode", 13, "CEIL"),
], {"PoolMethod": _POOL3, "Engine": _ENGINE, "RoundMode": _seq("CEIL FLOOR")})
_msg("PowerParameter", [
    _o("float", "power", 1, 1.0), _o("float", "scale", 2, 1.0), _o("float", "shift", 3, 0.0),
])
_msg("PythonParameter", [
    _o("string", "module", 1), _o("string", "layer", 2),
    _o("string", "param_str", 3, ""), _o("bool", "share_in_parallel", 4, False),
])
_msg("RecurrentParameter", [
    _o("uint32", "num_output", 1, 0),
    _o("FillerParameter", "weight_filler", 2), _o("FillerParameter", "bias_filler", 3),
    _o("bool", "debug_info", 4, False), _o("bool", "expose_hidden", 5, False),
])
_msg("ReductionParameter", [
    _o("ReductionOp", "operation", 1, "SUM"), _o("int32", "axis", 2, 0), _o("float", "coeff", 3, 1.0),
], {"ReductionOp": _seq("SUM ASUM SUMSQ MEAN", 1)})
_msg("ReLUParameter", [
    _o("float", "negative_slope", 1, 0), _o("Engine", "engine", 2, "DEFAULT"),
], {"Engine": _ENGINE})
_msg("ReshapeParameter", [
    _o("BlobShape", "shape", 1), _o("int32", "axis", 2, 0), _o("int32", "num_axes", 3, -1),
])
_msg("ScaleParameter", [
    _o("int32", "axis", 1, 1), _o("int32", "num_axes", 2, 1),
    _o("FillerParameter", "filler", 3),
    _o("bool", "bias_term", 4, False), _o("FillerParameter", "bias_filler", 5),
])
_msg("SigmoidParameter", [_o("Engine", "engine", 1, "DEFAULT")], {"Engine": _ENGINE})
_msg("SliceParameter", [
    _o("int32", "axis", 3, 1), _r("uint32", "slice_point", 2), _o("uint32", "slice_dim", 1, 1),
])
_msg("SoftmaxParameter", [
    _o("Engine", "engine", 1, "DEFAULT"), _o("int32", "axis", 2, 1),
], {"Engine": _ENGINE})
_msg("SwishParameter", [_o("float", "beta", 1, 1)])
_msg("TanHParameter", [_o("Engine", "engine", 1, "DEFAULT")], {"Engine": _ENGINE})
_msg("TileParameter", [_o("int32", "axis", 1, 1), _o("int32", "tiles", 2)])
_msg("ThresholdParameter", [_o("float", "threshold", 1, 0)])
_msg("WindowDataParameter", [
    _o("string", "source", 1), _o("float", "scale", 2, 1), _o("string", "mean_file", 3),
    _o("uint32", "batch_size", 4), _o("uint32", "crop_size", 5, 0), _o("bool", "mirror", 6, False),
    _o("float", "fg_threshold", 7, 0.5), _o("float", "bg_threshold", 8, 0.5),
    _o("float", "fg_fraction", 9, 0.25), _o("uint32", "context_pad", 10, 0),
    _o("string", "crop_mode", 11, "warp"), _o("bool", "cache_images", 12, False),
    _o("string", "root_folder", 13, ""),
])
_msg("SPPParameter", [
    _o("uint32", "pyramid_height", 1),
    _o("PoolMethod", "pool", 2, "MAX"),
    _o("Engine", "engine", 6, "DEFAULT"),
], {"PoolMethod": _POOL3, "Engine": _ENGINE})

# V1 (DEPRECATED ``layers``). LayerType: BVLC values, then DeepLab v1's (39 is an
# alias: IMAGE_SEG_DATA first so that it is the name printed for 39).
_V1_TYPES = [
    ("NONE", 0), ("ABSVAL", 35), ("ACCURACY", 1), ("ARGMAX", 30), ("BNLL", 2),
    ("CONCAT", 3), ("CONTRASTIVE_LOSS", 37), ("CONVOLUTION", 4), ("DATA", 5),
    ("IMAGE_SEG_DATA", 39), ("DECONVOLUTION", 39),
    ("DROPOUT", 6), ("DUMMY_DATA", 32), ("EUCLIDEAN_LOSS", 7), ("ELTWISE", 25),
    ("EXP", 38), ("FLATTEN", 8), ("HDF5_DATA", 9), ("HDF5_OUTPUT", 10),
    ("HINGE_LOSS", 28), ("IM2COL", 11), ("IMAGE_DATA", 12), ("INFOGAIN_LOSS", 13),
    ("INNER_PRODUCT", 14), ("LRN", 15), ("MEMORY_DATA", 29),
    ("MULTINOMIAL_LOGISTIC_LOSS", 16), ("MVN", 34), ("POOLING", 17), ("POWER", 26),
    ("RELU", 18), ("SIGMOID", 19), ("SIGMOID_CROSS_ENTROPY_LOSS", 27), ("SILENCE", 36),
    ("SOFTMAX", 20), ("SOFTMAX_LOSS", 21), ("SPLIT", 22), ("SLICE", 33), ("TANH", 23),
    ("WINDOW_DATA", 24), ("THRESHOLD", 31),
    # DeepLab v1 (DeepLab-Context)
    ("SEG_ACCURACY", 40), ("INTERP", 41), ("PADDING", 42), ("MAT_WRITE", 43),
    ("MAT_READ", 44), ("DENSE_CRF", 45), ("DOMINANT_CHANNEL", 46), ("BIAS_CHANNEL", 47),
    ("UNIQUE_LABEL", 48), ("CENSOR_LABEL", 49), ("ADAPTIVE_BIAS_CHANNEL", 50),
    ("CHANNEL_AGGREGATOR", 51), ("IGNORE_OVERLAY", 52), ("HISTOGRAM", 53),
    ("RELATIVE_ERROR", 54), ("GAIN_CHANNEL", 55), ("ONEHOT", 56),
]
_msg("V1LayerParameter", [
    _r("string", "bottom", 2), _r("string", "top", 3), _o("string", "name", 4),
    _r("NetStateRule", "include", 32), _r("NetStateRule", "exclude", 33),
    _o("LayerType", "type", 5),
    _r("BlobProto", "blobs", 6),
    _r("string", "param", 1001),
    _r("DimCheckMode", "blob_share_mode", 1002),
    _r("float", "blobs_lr", 7), _r("float", "weight_decay", 8), _r("float", "loss_weight", 35),
    _o("AccuracyParameter", "accuracy_param", 27),
    _o("ArgMaxParameter", "argmax_param", 23),
    _o("ConcatParameter", "concat_param", 9),
    _o("ContrastiveLossParameter", "contrastive_loss_param", 40),
    _o("ConvolutionParameter", "convolution_param", 10),
    _o("DataParameter", "data_param", 11),
    _o("DropoutParameter", "dropout_param", 12),
    _o("DummyDataParameter", "dummy_data_param", 26),
    _o("EltwiseParameter", "eltwise_param", 24),
    _o("ExpParameter", "exp_param", 41),
    _o("HDF5DataParameter", "hdf5_data_param", 13),
    _o("HDF5OutputParameter", "hdf5_output_param", 14),
    _o("HingeLossParameter", "hinge_loss_param", 29),
    _o("ImageDataParameter", "image_data_param", 15),
    _o("InfogainLossParameter", "infogain_loss_param", 16),
    _o("InnerProductParameter", "inner_product_param", 17),
    _o("LRNParameter", "lrn_param", 18),
    _o("MemoryDataParameter", "memory_data_param", 22),
    _o("MVNParameter", "mvn_param", 34),
    _o("PoolingParameter", "pooling_param", 19),
    _o("PowerParameter", "power_param", 21),
    _o("ReLUParameter", "relu_param", 30),
    _o("SigmoidParameter", "sigmoid_param", 38),
    _o("SoftmaxParameter", "softmax_param", 39),
    _o("SliceParameter", "slice_param", 31),
    _o("TanHParameter", "tanh_param", 37),
    _o("ThresholdParameter", "threshold_param", 25),
    _o("WindowDataParameter", "window_data_param", 20),
    _o("TransformationParameter", "transform_param", 36),
    _o("LossParameter", "loss_param", _MOVED + 42),           # BVLC 42, relocated
    _o("V0LayerParameter", "layer", 1),
    # DeepLab v1 (DeepLab-Context)
    _o("bool", "strict_dim", 1003, True),
    _o("SegAccuracyParameter", "seg_accuracy_param", 42),
    _o("InterpParameter", "interp_param", 43),
    _o("SoftmaxLossParameter", "softmaxloss_param", 44),
    _o("PaddingParameter", "padding_param", 45),
    _o("MatWriteParameter", "mat_write_param", 46),
    _o("MatReadParameter", "mat_read_param", 47),
    _o("DenseCRFParameter", "dense_crf_param", 48),
    _o("DominantChannelParameter", "dominant_channel_param", 49),
    _o("BiasChannelParameter", "bias_channel_param", 50),
    _o("UniqueLabelParameter", "unique_label_param", 51),
    _o("CensorLabelParameter", "censor_label_param", 52),
    _o("AdaptiveBiasChannelParameter", "adaptive_bias_channel_param", 53),
    _o("ChannelAggregatorParameter", "channel_aggregator_param", 54),
    _o("IgnoreOverlayParameter", "ignore_overlay_param", 55),
    _o("HistogramParameter", "histogram_param", 56),
    _o("EuclideanLossParameter", "euclidean_loss_param", 57),
    _o("GainChannelParameter", "gain_channel_param", 58),
    _o("OneHotParameter", "onehot_param", 59),
], {"LayerType": _V1_TYPES, "DimCheckMode": _DIMCHECK})
_msg("V0LayerParameter", [
    _o("string", "name", 1), _o("string", "type", 2),
    _o("uint32", "num_output", 3), _o("bool", "biasterm", 4, True),
    _o("FillerParameter", "weight_filler", 5), _o("FillerParameter", "bias_filler", 6),
    _o("uint32", "pad", 7, 0), _o("uint32", "kernelsize", 8),
    _o("uint32", "group", 9, 1), _o("uint32", "stride", 10, 1),
    _o("PoolMethod", "pool", 11, "MAX"),
    _o("float", "dropout_ratio", 12, 0.5),
    _o("uint32", "local_size", 13, 5), _o("float", "alpha", 14, 1.0),
    _o("float", "beta", 15, 0.75), _o("float", "k", 22, 1.0),
    _o("string", "source", 16), _o("float", "scale", 17, 1),
    _o("string", "meanfile", 18), _o("uint32", "batchsize", 19),
    _o("uint32", "cropsize", 20, 0), _o("bool", "mirror", 21, False),
    _r("BlobProto", "blobs", 50), _r("float", "blobs_lr", 51), _r("float", "weight_decay", 52),
    _o("uint32", "rand_skip", 53, 0),
    _o("float", "det_fg_threshold", 54, 0.5), _o("float", "det_bg_threshold", 55, 0.5),
    _o("float", "det_fg_fraction", 56, 0.25),
    _o("uint32", "det_context_pad", 58, 0), _o("string", "det_crop_mode", 59, "warp"),
    _o("int32", "new_num", 60, 0), _o("int32", "new_channels", 61, 0),
    _o("int32", "new_height", 62, 0), _o("int32", "new_width", 63, 0),
    _o("bool", "shuffle_images", 64, False),
    _o("uint32", "concat_dim", 65, 1),
    _o("HDF5OutputParameter", "hdf5_output_param", 1001),
], {"PoolMethod": _POOL3})
_msg("PReLUParameter", [_o("FillerParameter", "filler", 1), _o("bool", "channel_shared", 2, False)])

# --------------------------------------------------------------------------
# Fork-only messages
# --------------------------------------------------------------------------

_msg("InterpParameter", [
    _o("int32", "height", 1, 0), _o("int32", "width", 2, 0),
    _o("int32", "zoom_factor", 3, 1), _o("int32", "shrink_factor", 4, 1),
    _o("int32", "pad_beg", 5, 0), _o("int32", "pad_end", 6, 0),
])
_msg("SegAccuracyParameter", [
    _o("AccuracyMetric", "metric", 1, "PixelAccuracy"),
    _r("int32", "ignore_label", 2),
    _o("bool", "reset", 3, True),       # authors' fork (not in the stored DeepLab-Context copies)
], {"AccuracyMetric": _seq("PixelAccuracy ClassAccuracy PixelIOU")})
# DeepLab v1 numbering; the authors' fork has weight_source = 3 and no ignore_label.
_msg("SoftmaxLossParameter", [_o("string", "weight_source", 16), _r("int32", "ignore_label", 2)])
# prefix is bytes, not string (the same in text): a BVLC binary's ParameterParameter at 145 then
# decodes here whatever its bytes are, and is moved to parameter_param (upgrade._BINARY_HOMES).
_msg("MatWriteParameter", [
    _q("bytes", "prefix", 1), _o("string", "source", 2, ""),
    _o("int32", "strip", 3, 0), _o("int32", "period", 4, 1),
])
_msg("MatReadParameter", [
    _q("string", "prefix", 1), _o("string", "source", 2, ""),
    _o("int32", "strip", 3, 0), _o("int32", "batch_size", 4, 1),
])
_msg("BinWriteParameter", [
    _q("string", "prefix", 1), _o("string", "source", 2, ""),
    _o("int32", "strip", 3, 0), _o("int32", "period", 4, 1),
])
_msg("PaddingParameter", [_o("int32", "pad_beg", 1, 0), _o("int32", "pad_end", 2, 0)])
_msg("DenseCRFParameter", [
    _o("int32", "max_iter", 1, 10),
    _r("float", "pos_xy_std", 2), _r("float", "pos_w", 3),
    _r("float", "bi_xy_std", 4), _r("float", "bi_rgb_std", 5), _r("float", "bi_w", 6),
    _o("bool", "output_probability", 7, True),
])
_msg("DominantChannelParameter", [_o("int32", "top_k", 1, 1)])
_msg("OneHotParameter", [_q("int32", "num_labels", 1)])
_msg("BNParameter", [
    _o("BNForwardMode", "bn_forward_mode", 1, "CenterMean"),
    _o("BNMode", "bn_mode", 2, "LEARN"),
    _o("FillerParameter", "scale_filler", 3), _o("FillerParameter", "shift_filler", 4),
    _o("float", "var_eps", 5, 1e-10),
    _o("bool", "moving_average", 6, False),
    _o("float", "decay", 7, 0.95),
], {"BNMode": _seq("LEARN INFERENCE"), "BNForwardMode": _seq("NoMean CenterMean")})
_msg("ResizeParameter", [_o("float", "resize_ratio", 1, 1.0)])
_msg("SpatialPoolingParameter", [
    _o("uint32", "num_bin", 1, 1), _o("PoolMethod", "pool", 2, "MAX"),
], {"PoolMethod": _seq("MAX AVE")})
_msg("UnpoolingParameter", [
    _o("UnpoolMethod", "unpool", 1, "MAX"),
    _o("uint32", "pad", 4, 0), _o("uint32", "pad_h", 9, 0), _o("uint32", "pad_w", 10, 0),
    _o("uint32", "kernel_size", 2), _o("uint32", "kernel_h", 5), _o("uint32", "kernel_w", 6),
    _o("uint32", "stride", 3, 1), _o("uint32", "stride_h", 7), _o("uint32", "stride_w", 8),
    _o("uint32", "unpool_size", 12), _o("uint32", "unpool_h", 13), _o("uint32", "unpool_w", 14),
    _o("Engine", "engine", 11, "DEFAULT"),
], {"UnpoolMethod": _seq("MAX AVE TILE"), "Engine": _seq("DEFAULT CAFFE")})
_msg("UpsampleParameter", [_o("uint32", "upsample_ratio", 1, 1)])
# DeepLab v1 (V1 ``layers``) and v2
_msg("BiasChannelParameter", [
    _o("float", "bg_bias", 1, 1.0), _o("float", "fg_bias", 2, 2.0), _r("int32", "ignore_label", 3),
    _o("LabelType", "label_type", 4, "IMAGE"), _o("int32", "background_label", 6, 0),   # v2
], {"LabelType": [("IMAGE", 1), ("PIXEL", 2)]})
_msg("DomainTransformParameter", [
    _o("int32", "num_iter", 1, 3), _o("float", "spatial_sigma", 2, 50), _o("float", "range_sigma", 3, 5),
    _o("float", "min_weight", 4, 0),
])
_msg("AdaptiveBiasChannelParameter", [
    _o("int32", "num_iter", 1, 1), _o("float", "bg_portion", 2, 0.2), _o("float", "fg_portion", 3, 0.2),
    _o("bool", "suppress_others", 4, True), _o("float", "margin_others", 5, 1e-5),
])
_msg("CensorLabelParameter", [_q("int32", "ignore_label", 1)])
_msg("ChannelAggregatorParameter", [_o("string", "label_map_file", 1)])
_msg("EuclideanLossParameter", [_o("Type", "type", 1, "L2")], {"Type": _seq("L2 L2sqrt")})
_msg("GainChannelParameter", [
    _q("int32", "num_output_nz", 1, 0), _o("float", "drift", 2, 0.0), _o("float", "stdev", 3, 0.0),
    _o("FillerParameter", "gain_filler", 4), _o("bool", "norm_mean", 5, True),
    _o("float", "thresh", 6, 1e-3),
])
_msg("HistogramParameter", [_q("int32", "num_labels", 1), _r("int32", "ignore_label", 2)])
_msg("IgnoreOverlayParameter", [_o("int32", "ignore_label", 1)])
_msg("UniqueLabelParameter", [
    _q("int32", "max_labels", 1), _r("float", "ignore_label", 2), _r("float", "force_label", 3),
])

# --------------------------------------------------------------------------
# Conflict bookkeeping (documented in the module docstring)
# --------------------------------------------------------------------------

# The authors' fork's LayerParameter fields whose numbers BVLC owns: (name, fork number, BVLC's field there).
_AUTHORS_LAYER_CLASHES = [
    ("dense_crf_param", 137, "embed_param"), ("mat_read_param", 139, "batch_norm_param"),
    ("mat_write_param", 140, "elu_param"), ("padding_param", 141, "bias_param"),
    ("seg_accuracy_param", 142, "scale_param"), ("softmax_loss_param", 143, "input_param"),
    ("upsample_param", 144, "crop_param"), ("bn_param", 145, "parameter_param"),
    ("unpooling_param", 146, "recurrent_param"), ("resize_param", 147, "swish_param"),
    ("spatial_pooling_param", 148, "clip_param"),
]

# Authors' fork fields that sit at DeepLab v2's number for them (free in BVLC, or BVLC's relocated).
_AT_DEEPLAB_V2_NUMBER = ("mat_read_param", "mat_write_param")

#: "Message.field" -> (real number, number in this schema, why it moved).
RELOCATED_FIELDS = {
    "LayerParameter.input_param": (143, _MOVED + 143, (
        "BVLC InputParameter; 143 is DeepLab's interp_param. For a binary Input layer "
        "re-parse layer.interp_param.SerializeToString() as InputParameter (upgrade.upgrade_net).")),
    "ConvolutionParameter.force_nd_im2col": (17, _MOVED + 17, "BVLC; 17 is DeepLab's hole."),
    "ConvolutionParameter.hole_h": (18, _FORK + 18, "DeepLab; 18 is BVLC's dilation."),
    "V1LayerParameter.loss_param": (42, _MOVED + 42, "BVLC V1; 42 is DeepLab v1's seg_accuracy_param."),
    "LayerParameter.parameter_param": (145, _MOVED + 145, (
        "BVLC ParameterParameter; 145 is DeepLab v2's mat_write_param. A binary Parameter layer's "
        "bytes are re-read from mat_write_param (upgrade.upgrade_net).")),
    **{f"LayerParameter.{name}": (n, _FORK + n, f"authors' fork; {n} is BVLC's {bvlc}.")
       for name, n, bvlc in _AUTHORS_LAYER_CLASHES if name not in _AT_DEEPLAB_V2_NUMBER},
}

#: Every number of the authors' fork (yangyi02/segmentation_attention) that differs
#: from this schema: "Message.field" -> the fork's number. (Its V1 extras -- LayerType
#: BN=40, UNPOOLING=41, BATCHNORM=42, SIGMOID_WEIGHTED_CROSS_ENTROPY_LOSS=43 and
#: V1 bn_param=43, unpooling_param=44 -- collide with DeepLab v1's and are left out.)
AUTHORS_FORK_NUMBERS = {
    "LayerParameter.interp_param": 138,
    **{f"LayerParameter.{name}": n for name, n, _ in _AUTHORS_LAYER_CLASHES},
    "ConvolutionParameter.hole_h": 18,
    "V1LayerParameter.loss_param": 42,
    "SoftmaxLossParameter.weight_source": 3,
}

#: Where DeepLab v2 (deeplab-public-ver2) numbers LayerParameter fields that this
#: schema keeps elsewhere (BVLC owns 144-148, the authors' fork 149).
DEEPLAB_V2_NUMBERS = {
    "LayerParameter.seg_accuracy_param": 144,
    "LayerParameter.dense_crf_param": 146, "LayerParameter.domain_transform_param": 147,
    "LayerParameter.adaptive_bias_channel_param": 148, "LayerParameter.bias_channel_param": 149,
}

#: Fork fields placed at _UNSURE + k because their real number was not found.
#: Empty: every field the configs use was found in one of the fork protos above.
UNVERIFIED_FIELDS = ()

#: Enum numbers that carry two names (allow_alias); the first name is the one
#: ``Name()`` returns. A V1 layer of type 39 is told apart by its content: a
#: DECONVOLUTION has bottoms and a convolution_param, an IMAGE_SEG_DATA has neither.
ENUM_ALIASES = {"V1LayerParameter.LayerType": {39: ("IMAGE_SEG_DATA", "DECONVOLUTION")}}


# --------------------------------------------------------------------------
# Tables -> FileDescriptorProto -> private pool -> classes
# --------------------------------------------------------------------------

_SCALARS = {
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64, "int32": _F.TYPE_INT32, "uint32": _F.TYPE_UINT32,
    "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES,
}
_LABELS = {"optional": _F.LABEL_OPTIONAL, "repeated": _F.LABEL_REPEATED, "required": _F.LABEL_REQUIRED}


def _add_enum(enum_proto, name, values):
    enum_proto.name = name
    for value_name, number in values:
        enum_proto.value.add(name=value_name, number=number)
    if len({n for _, n in values}) != len(values):
        enum_proto.options.allow_alias = True


def _default_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _build_file():
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe.proto", package="caffe", syntax="proto2")
    for name, values in _ENUMS.items():
        _add_enum(fdp.enum_type.add(), name, values)
    for msg_name, (fields, enums) in _MESSAGES.items():
        mp = fdp.message_type.add(name=msg_name)
        for enum_name, values in enums.items():
            _add_enum(mp.enum_type.add(), enum_name, values)
        for label, type_, name, number, default, packed in fields:
            fp = mp.field.add(name=name, number=number, label=_LABELS[label])
            if type_ in _SCALARS:
                fp.type = _SCALARS[type_]
            elif type_ in enums:
                fp.type, fp.type_name = _F.TYPE_ENUM, f".caffe.{msg_name}.{type_}"
            elif type_ in _ENUMS:
                fp.type, fp.type_name = _F.TYPE_ENUM, f".caffe.{type_}"
            elif type_ in _MESSAGES:
                fp.type, fp.type_name = _F.TYPE_MESSAGE, f".caffe.{type_}"
            else:
                raise TypeError(f"caffe schema: {msg_name}.{name} has unknown type {type_!r}")
            if default is not None:
                fp.default_value = _default_text(default)
            if packed:
                fp.options.packed = True
    return fdp


FILE = _build_file()
POOL = descriptor_pool.DescriptorPool()
POOL.AddSerializedFile(FILE.SerializeToString())

if hasattr(message_factory, "GetMessageClass"):
    _get_class = message_factory.GetMessageClass
else:  # protobuf < 4.22
    _get_class = message_factory.MessageFactory(POOL).GetPrototype

_CLASSES = {n: _get_class(POOL.FindMessageTypeByName(f"caffe.{n}")) for n in _MESSAGES}
globals().update(_CLASSES)

Phase = enum_type_wrapper.EnumTypeWrapper(POOL.FindEnumTypeByName("caffe.Phase"))
TRAIN = Phase.Value("TRAIN")
TEST = Phase.Value("TEST")


def message_class(name):
    """The message class called ``name`` ("NetParameter" or "caffe.NetParameter")."""
    try:
        return _CLASSES[name.removeprefix("caffe.")]
    except KeyError:
        raise KeyError(f"no Caffe message called {name!r}") from None


def _enum(enum_full_name):
    key = enum_full_name if enum_full_name.startswith("caffe.") else f"caffe.{enum_full_name}"
    return POOL.FindEnumTypeByName(key)


def enum_value(enum_full_name, name):
    """The number of ``name`` in an enum: enum_value("PoolingParameter.PoolMethod", "AVE") == 1."""
    return _enum(enum_full_name).values_by_name[name].number


def enum_name(enum_full_name, number):
    """The (first) name of ``number`` in an enum."""
    return _enum(enum_full_name).values_by_number[number].name


def field_number(message_name, field_name):
    """The field number of ``message_name.field_name`` in this schema."""
    return message_class(message_name).DESCRIPTOR.fields_by_name[field_name].number


__all__ = [  # noqa: PLE0604 -- the message classes are only known at run time
    *sorted(_CLASSES),
    "AUTHORS_FORK_NUMBERS", "ENUM_ALIASES", "FILE", "POOL", "Phase", "RELOCATED_FIELDS",
    "TEST", "TRAIN", "UNVERIFIED_FIELDS", "enum_name", "enum_value", "field_number",
    "message_class",
]

// Argument checking and output allocation shared by the CPU and CUDA
// implementations, so both devices reject the same inputs with the same words.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "macros.h"
#include "scale_merge_math.h"

namespace a2s {

std::string shape_str(const at::Tensor& t);

void check_float_tensor(const at::Tensor& t, const char* op, const char* name);

// Validates a requested output size; returns it as (H, W).
std::pair<int, int> check_size(at::IntArrayRef size, const char* op);

struct InterpGeometry {
  int64_t planes;  // N * C
  int H, W;        // full input size
  int off;         // crop offset (-pad_beg) for rows and columns
  int He, We;      // effective (cropped) input size
  int Ho, Wo;      // output size
};

InterpGeometry check_interp(const at::Tensor& x, at::IntArrayRef size, int64_t pad_beg,
                            int64_t pad_end);
InterpGeometry check_interp_backward(const at::Tensor& grad, at::IntArrayRef input_shape,
                                     int64_t pad_beg, int64_t pad_end);

// The code (MergeMode) of a mode name; an unknown name is refused with the
// list of known ones, naming op.
int parse_merge_mode(const std::string& mode, const char* op);

struct MergeGeometry {
  int mode;
  int S;
  int64_t N, C;
  int H, W;
  std::vector<int> h, w;  // per-scale input sizes
  double avg_weight;
};

MergeGeometry check_scale_merge(at::TensorList scores, at::IntArrayRef size,
                                const std::string& mode, const c10::optional<at::Tensor>& logits,
                                const c10::optional<at::Tensor>& gate,
                                c10::optional<double> avg_weight);

MergeGeometry check_scale_merge_backward(const at::Tensor& grad, at::TensorList scores,
                                         const std::string& mode, const at::Tensor& aux,
                                         const c10::optional<at::Tensor>& gate,
                                         c10::optional<double> avg_weight);

// Outputs of scale_merge: the merge and its auxiliary tensor (attention:
// softmax weights N x S x H x W; max: winning scale index N x C x H x W uint8;
// avg: an empty tensor).
std::pair<at::Tensor, at::Tensor> alloc_merge_outputs(const MergeGeometry& g,
                                                      const at::Tensor& like);

// The tensors of a scale_merge call, made contiguous (gate/logits undefined
// when absent).
struct MergeInputs {
  std::vector<at::Tensor> scores;
  at::Tensor logits, gate;
};
MergeInputs contiguous_inputs(at::TensorList scores, const c10::optional<at::Tensor>& logits,
                              const c10::optional<at::Tensor>& gate);

// Outputs of scale_merge_backward: per-scale gradients, the logits' (empty
// unless attention) and the gate's (empty without a gate). `trivial` is true
// when N or C is 0: the outputs are then already final (zero where needed).
struct MergeGrads {
  std::vector<at::Tensor> scores;
  at::Tensor logits, gate;
  bool trivial;
};
MergeGrads alloc_merge_grads(const MergeGeometry& g, const MergeInputs& in, const at::Tensor& grad);

void check_upsample_argmax(const at::Tensor& scores, at::IntArrayRef size);

}  // namespace a2s

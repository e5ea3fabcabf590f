#include "op_common.h"

#include <sstream>

namespace a2s {

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes() << " " << t.scalar_type() << " on " << t.device();
  return os.str();
}

void check_float_tensor(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op, ": ", name,
              " must be a floating tensor (float32, float64, float16 or bfloat16), got ",
              shape_str(t));
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D, got ", shape_str(t));
}

std::pair<int, int> check_size(at::IntArrayRef size, const char* op) {
  TORCH_CHECK(size.size() == 2, op, ": size must have 2 entries (H, W), got ", size);
  for (auto v : size) {
    TORCH_CHECK(v > 0 && v < kMaxSpatial, op, ": target size ", size,
                " must be positive and below 2^24 per side (coordinates are float32, as in Caffe)");
  }
  return {static_cast<int>(size[0]), static_cast<int>(size[1])};
}

static void check_spatial(const at::Tensor& t, const char* op, const char* name) {
  if (t.size(0) == 0) return;  // empty batch: nothing is read
  TORCH_CHECK(t.size(2) > 0 && t.size(3) > 0, op, ": ", name,
              " has an empty spatial size: ", shape_str(t));
  TORCH_CHECK(t.size(2) < kMaxSpatial && t.size(3) < kMaxSpatial, op, ": ", name,
              " is too large per side (limit 2^24): ", shape_str(t));
}

static InterpGeometry interp_geometry(int64_t N, int64_t C, int64_t H, int64_t W,
                                      at::IntArrayRef size, int64_t pad_beg, int64_t pad_end,
                                      const char* op) {
  TORCH_CHECK(pad_beg <= 0 && pad_end <= 0, op, ": pad_beg (", pad_beg, ") and pad_end (",
              pad_end, ") must be <= 0; Caffe's Interp only crops");
  auto hw = check_size(size, op);
  InterpGeometry g;
  g.planes = N * C;
  g.H = static_cast<int>(H);
  g.W = static_cast<int>(W);
  g.off = static_cast<int>(-pad_beg);
  const int64_t he = H + pad_beg + pad_end, we = W + pad_beg + pad_end;
  TORCH_CHECK(N == 0 || (he > 0 && we > 0), op, ": cropping pad_beg=", pad_beg,
              " pad_end=", pad_end, " leaves nothing of a ", H, "x", W, " input");
  g.He = static_cast<int>(he);
  g.We = static_cast<int>(we);
  g.Ho = hw.first;
  g.Wo = hw.second;
  return g;
}

InterpGeometry check_interp(const at::Tensor& x, at::IntArrayRef size, int64_t pad_beg,
                            int64_t pad_end) {
  check_float_tensor(x, "interp", "x");
  check_spatial(x, "interp", "x");
  return interp_geometry(x.size(0), x.size(1), x.size(2), x.size(3), size, pad_beg, pad_end,
                         "interp");
}

InterpGeometry check_interp_backward(const at::Tensor& grad, at::IntArrayRef input_shape,
                                     int64_t pad_beg, int64_t pad_end) {
  check_float_tensor(grad, "interp_backward", "grad");
  TORCH_CHECK(input_shape.size() == 4, "interp_backward: input_shape must have 4 entries, got ",
              input_shape);
  TORCH_CHECK(input_shape[0] == grad.size(0) && input_shape[1] == grad.size(1),
              "interp_backward: grad ", shape_str(grad), " does not match input_shape ",
              input_shape, " in N or C");
  for (auto v : input_shape) {
    TORCH_CHECK(v >= 0 && v < kMaxSpatial, "interp_backward: bad input_shape ", input_shape);
  }
  TORCH_CHECK(grad.size(0) == 0 || (input_shape[2] > 0 && input_shape[3] > 0),
              "interp_backward: empty spatial input_shape ", input_shape);
  return interp_geometry(input_shape[0], input_shape[1], input_shape[2], input_shape[3],
                         {grad.size(2), grad.size(3)}, pad_beg, pad_end, "interp_backward");
}

int parse_merge_mode(const std::string& mode, const char* op) {
  for (int m = 0; m < kNumMergeModes; ++m) {
    if (mode == kMergeModeNames[m]) return m;
  }
  TORCH_CHECK(false, op, ": mode must be ", merge_mode_list(), ", got '", mode, "'");
}

static void check_same(const at::Tensor& t, const at::Tensor& ref, const char* op,
                       const std::string& name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(),
              " but scores[0] is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
              t.scalar_type(), " but scores[0] has ", ref.scalar_type());
}

static MergeGeometry merge_geometry(at::TensorList scores, int H, int W, const std::string& mode,
                                    c10::optional<double> avg_weight, const char* op) {
  MergeGeometry g;
  g.mode = parse_merge_mode(mode, op);
  TORCH_CHECK(!scores.empty(), op, ": scores is empty; give one score map per scale");
  TORCH_CHECK(static_cast<int>(scores.size()) <= kMaxScales, op, ": at most ", kMaxScales,
              " scales are supported, got ", scores.size());
  g.S = static_cast<int>(scores.size());
  const at::Tensor& s0 = scores[0];
  for (int s = 0; s < g.S; ++s) {
    const std::string name = "scores[" + std::to_string(s) + "]";
    check_float_tensor(scores[s], op, name.c_str());
    check_same(scores[s], s0, op, name);
    TORCH_CHECK(scores[s].size(0) == s0.size(0) && scores[s].size(1) == s0.size(1), op, ": ",
                name, " is ", shape_str(scores[s]), " but scores[0] is ", shape_str(s0),
                "; N and C must agree across scales");
    check_spatial(scores[s], op, name.c_str());
    g.h.push_back(static_cast<int>(scores[s].size(2)));
    g.w.push_back(static_cast<int>(scores[s].size(3)));
  }
  g.N = s0.size(0);
  g.C = s0.size(1);
  g.H = H;
  g.W = W;
  if (avg_weight.has_value()) {
    TORCH_CHECK(g.mode == kMergeAvg, op, ": avg_weight is only used with mode='avg'");
    g.avg_weight = *avg_weight;
  } else {
    g.avg_weight = 1.0 / g.S;
  }
  return g;
}

static void check_gate(const c10::optional<at::Tensor>& gate, const MergeGeometry& g,
                       const at::Tensor& s0, const char* op) {
  if (!gate.has_value()) return;
  check_float_tensor(*gate, op, "gate");
  check_same(*gate, s0, op, "gate");
  TORCH_CHECK(gate->size(0) == g.N && gate->size(1) == g.C && gate->size(2) == g.H &&
                  gate->size(3) == g.W,
              op, ": gate must be (N, C, H, W) = (", g.N, ", ", g.C, ", ", g.H, ", ", g.W,
              "), got ", shape_str(*gate));
}

MergeGeometry check_scale_merge(at::TensorList scores, at::IntArrayRef size,
                                const std::string& mode, const c10::optional<at::Tensor>& logits,
                                const c10::optional<at::Tensor>& gate,
                                c10::optional<double> avg_weight) {
  auto hw = check_size(size, "scale_merge");
  MergeGeometry g = merge_geometry(scores, hw.first, hw.second, mode, avg_weight, "scale_merge");
  if (g.mode == kMergeAttention) {
    TORCH_CHECK(logits.has_value(), "scale_merge: mode='attention' needs logits (N, S, H, W)");
    check_float_tensor(*logits, "scale_merge", "logits");
    check_same(*logits, scores[0], "scale_merge", "logits");
    TORCH_CHECK(logits->size(0) == g.N && logits->size(1) == g.S && logits->size(2) == g.H &&
                    logits->size(3) == g.W,
                "scale_merge: logits must be (N, S, H, W) = (", g.N, ", ", g.S, ", ", g.H, ", ",
                g.W, "), got ", shape_str(*logits));
  } else {
    TORCH_CHECK(!logits.has_value(), "scale_merge: logits are only used with mode='attention', "
                "got mode='", mode, "'");
  }
  check_gate(gate, g, scores[0], "scale_merge");
  return g;
}

MergeGeometry check_scale_merge_backward(const at::Tensor& grad, at::TensorList scores,
                                         const std::string& mode, const at::Tensor& aux,
                                         const c10::optional<at::Tensor>& gate,
                                         c10::optional<double> avg_weight) {
  check_float_tensor(grad, "scale_merge_backward", "grad");
  MergeGeometry g = merge_geometry(scores, static_cast<int>(grad.size(2)),
                                   static_cast<int>(grad.size(3)), mode, avg_weight,
                                   "scale_merge_backward");
  check_same(grad, scores[0], "scale_merge_backward", "grad");
  TORCH_CHECK(grad.size(0) == g.N && grad.size(1) == g.C,
              "scale_merge_backward: grad ", shape_str(grad), " does not match scores[0] ",
              shape_str(scores[0]));
  if (g.mode == kMergeAttention) {
    check_same(aux, scores[0], "scale_merge_backward", "aux (attention weights)");
    TORCH_CHECK(aux.dim() == 4 && aux.size(0) == g.N && aux.size(1) == g.S &&
                    aux.size(2) == g.H && aux.size(3) == g.W,
                "scale_merge_backward: aux must hold the attention weights (N, S, H, W), got ",
                shape_str(aux));
  } else if (g.mode == kMergeMax) {
    TORCH_CHECK(aux.scalar_type() == at::kByte && aux.device() == scores[0].device() &&
                    aux.dim() == 4 && aux.size(0) == g.N && aux.size(1) == g.C &&
                    aux.size(2) == g.H && aux.size(3) == g.W,
                "scale_merge_backward: aux must hold the winning scale (N, C, H, W) uint8, got ",
                shape_str(aux));
  }
  check_gate(gate, g, scores[0], "scale_merge_backward");
  return g;
}

std::pair<at::Tensor, at::Tensor> alloc_merge_outputs(const MergeGeometry& g,
                                                      const at::Tensor& like) {
  at::Tensor out = at::empty({g.N, g.C, g.H, g.W}, like.options());
  at::Tensor aux;
  if (g.mode == kMergeAttention) {
    aux = at::empty({g.N, g.S, g.H, g.W}, like.options());
  } else if (g.mode == kMergeMax) {
    aux = at::empty({g.N, g.C, g.H, g.W}, like.options().dtype(at::kByte));
  } else {
    aux = at::empty({0}, like.options());
  }
  return {out, aux};
}

MergeInputs contiguous_inputs(at::TensorList scores, const c10::optional<at::Tensor>& logits,
                              const c10::optional<at::Tensor>& gate) {
  MergeInputs in;
  for (const auto& t : scores) in.scores.push_back(t.contiguous());
  if (logits.has_value()) in.logits = logits->contiguous();
  if (gate.has_value()) in.gate = gate->contiguous();
  return in;
}

MergeGrads alloc_merge_grads(const MergeGeometry& g, const MergeInputs& in, const at::Tensor& grad) {
  MergeGrads out;
  for (const auto& t : in.scores) out.scores.push_back(at::empty_like(t));
  out.logits = g.mode == kMergeAttention ? at::empty({g.N, g.S, g.H, g.W}, grad.options())
                                         : at::empty({0}, grad.options());
  out.gate = in.gate.defined() ? at::empty_like(in.gate) : at::empty({0}, grad.options());
  out.trivial = g.N == 0 || g.C == 0;
  if (out.trivial) {  // no class to read: every gradient is zero
    for (auto& t : out.scores) t.zero_();
    out.logits.zero_();
  }
  return out;
}

void check_upsample_argmax(const at::Tensor& scores, at::IntArrayRef size) {
  check_float_tensor(scores, "upsample_argmax", "scores");
  check_spatial(scores, "upsample_argmax", "scores");
  TORCH_CHECK(scores.size(1) > 0, "upsample_argmax: scores has no classes: ", shape_str(scores));
  TORCH_CHECK(scores.size(1) <= INT32_MAX, "upsample_argmax: too many classes: ", shape_str(scores));
  check_size(size, "upsample_argmax");
}

}  // namespace a2s

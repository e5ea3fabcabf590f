// Autograd of the attn2scale ops, registered for the Autograd dispatch key:
// one kernel per op, for every backend (the CPU and CUDA kernels of cpu/ and
// cuda/, and the runtime-compiled CUDA kernels that attn2scale/ops/
// _nvrtc_ops.py registers from Python). Device independent; no Python here.
//
// Each differentiable op is a torch::autograd::Function: its forward calls
// the op itself below autograd (AutoDispatchBelowADInplaceOrView, so the
// dispatcher goes on to the backend kernel, or to the fake kernel of
// _registration.py under torch.compile), its backward calls the backward op
// through the dispatcher, so that a backward run with create_graph=True is
// itself recorded:
//   interp                backward: interp_backward (input_shape and pads kept)
//   interp_backward       backward: interp (its adjoint), so interp has a
//                         double backward
//   scale_merge           backward: scale_merge_backward with the saved aux,
//                         gate and score maps; aux is not differentiable (it
//                         never requires grad)
//   scale_merge_backward  differentiating it again is refused
//   upsample_argmax       not differentiable: outputs never require grad
// When no graph is needed (grad mode off, or no input requires grad) the
// kernels skip the autograd node and only redispatch.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace a2s {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- the ops, looked up once in the dispatcher ------------------------------

using InterpSig = at::Tensor(const at::Tensor&, c10::SymIntArrayRef, int64_t, int64_t);
using InterpBackwardSig = at::Tensor(const at::Tensor&, c10::SymIntArrayRef, int64_t, int64_t);
using MergeSig = std::tuple<at::Tensor, at::Tensor>(at::TensorList, c10::SymIntArrayRef, c10::string_view,
                                                    const std::optional<at::Tensor>&,
                                                    const std::optional<at::Tensor>&, std::optional<double>);
using MergeBackwardSig = std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor>(
    const at::Tensor&, at::TensorList, c10::string_view, const at::Tensor&, const std::optional<at::Tensor>&,
    std::optional<double>);
using ArgmaxSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::SymIntArrayRef, bool);

template <typename Sig>
c10::TypedOperatorHandle<Sig> lookup(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

const c10::TypedOperatorHandle<InterpSig>& interp_op() {
  static const auto op = lookup<InterpSig>("attn2scale::interp");
  return op;
}
const c10::TypedOperatorHandle<InterpBackwardSig>& interp_backward_op() {
  static const auto op = lookup<InterpBackwardSig>("attn2scale::interp_backward");
  return op;
}
const c10::TypedOperatorHandle<MergeSig>& merge_op() {
  static const auto op = lookup<MergeSig>("attn2scale::scale_merge");
  return op;
}
const c10::TypedOperatorHandle<MergeBackwardSig>& merge_backward_op() {
  static const auto op = lookup<MergeBackwardSig>("attn2scale::scale_merge_backward");
  return op;
}
const c10::TypedOperatorHandle<ArgmaxSig>& argmax_op() {
  static const auto op = lookup<ArgmaxSig>("attn2scale::upsample_argmax");
  return op;
}

// ---- when a node is needed ----------------------------------------------------

bool requires_grad(const at::Tensor& t) { return t.defined() && t.requires_grad(); }
bool requires_grad(const std::optional<at::Tensor>& t) { return t.has_value() && requires_grad(*t); }
bool requires_grad(at::TensorList ts) {
  for (const auto& t : ts) {
    if (requires_grad(t)) return true;
  }
  return false;
}

// True when the call must record an autograd node: grad mode is on and an
// input requires grad (what torch::autograd::Function::apply decides too).
template <typename... Ts>
bool needs_graph(const Ts&... inputs) {
  return at::GradMode::is_enabled() && (requires_grad(inputs) || ...);
}

// Keys of AutogradContext::saved_data.
constexpr const char* kShape = "shape";  // interp: input shape; interp_backward: grad's H, W
constexpr const char* kPadBeg = "pad_beg";
constexpr const char* kPadEnd = "pad_end";
constexpr const char* kMode = "mode";
constexpr const char* kAvgWeight = "avg_weight";
constexpr const char* kHasLogits = "has_logits";

// ---- interp / interp_backward -------------------------------------------------

struct InterpFunction : public torch::autograd::Function<InterpFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, c10::SymIntArrayRef size,
                               int64_t pad_beg, int64_t pad_end) {
    at::Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      y = interp_op().call(x, size, pad_beg, pad_end);
    }
    ctx->saved_data[kShape] = x.sym_sizes();
    ctx->saved_data[kPadBeg] = pad_beg;
    ctx->saved_data[kPadEnd] = pad_end;
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<c10::SymInt> shape = ctx->saved_data[kShape].toSymIntVector();
    at::Tensor gx = interp_backward_op().call(grads[0], shape, ctx->saved_data[kPadBeg].toInt(),
                                              ctx->saved_data[kPadEnd].toInt());
    return {gx, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct InterpBackwardFunction : public torch::autograd::Function<InterpBackwardFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, c10::SymIntArrayRef input_shape,
                               int64_t pad_beg, int64_t pad_end) {
    at::Tensor gx;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      gx = interp_backward_op().call(grad, input_shape, pad_beg, pad_end);
    }
    // The op has checked that grad is 4-D.
    ctx->saved_data[kShape] = grad.sym_sizes().slice(2);
    ctx->saved_data[kPadBeg] = pad_beg;
    ctx->saved_data[kPadEnd] = pad_end;
    return {gx};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // interp_backward is linear in grad, and its adjoint is interp itself.
    const std::vector<c10::SymInt> size = ctx->saved_data[kShape].toSymIntVector();
    at::Tensor gg = interp_op().call(grads[0], size, ctx->saved_data[kPadBeg].toInt(),
                                     ctx->saved_data[kPadEnd].toInt());
    return {gg, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor interp_autograd(const at::Tensor& x, c10::SymIntArrayRef size, int64_t pad_beg, int64_t pad_end) {
  if (!needs_graph(x)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return interp_op().call(x, size, pad_beg, pad_end);
  }
  return InterpFunction::apply(x, size, pad_beg, pad_end)[0];
}

at::Tensor interp_backward_autograd(const at::Tensor& grad, c10::SymIntArrayRef input_shape, int64_t pad_beg,
                                   int64_t pad_end) {
  if (!needs_graph(grad)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return interp_backward_op().call(grad, input_shape, pad_beg, pad_end);
  }
  return InterpBackwardFunction::apply(grad, input_shape, pad_beg, pad_end)[0];
}

// ---- scale_merge / scale_merge_backward ---------------------------------------

// Saved tensors of a scale_merge node: aux, gate and logits (undefined
// without them), then the S score maps. The logits are kept only as the
// anchor of a second derivative (see ScaleMergeFunction::backward).
constexpr size_t kSavedAux = 0, kSavedGate = 1, kSavedLogits = 2, kSavedScores = 3;

constexpr const char* kMergeDoubleBackwardRefusal =
    "attn2scale::scale_merge_backward is not differentiable (double backward through scale_merge is not "
    "implemented); use attn2scale.ops.reference.scale_merge if you need higher-order gradients";

// Records a node only so that differentiating the gradients of scale_merge
// again fails, with a message that names the differentiable reference op.
struct ScaleMergeBackwardFunction : public torch::autograd::Function<ScaleMergeBackwardFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, at::TensorList scores,
                               c10::string_view mode, const at::Tensor& aux, const std::optional<at::Tensor>& gate,
                               std::optional<double> avg_weight, const std::optional<at::Tensor>& logits_anchor) {
    (void)logits_anchor;  // an input of the node only (nullopt when not needed)
    at::AutoDispatchBelowADInplaceOrView below;
    auto [g_scores, g_logits, g_gate] = merge_backward_op().call(grad, scores, mode, aux, gate, avg_weight);
    ctx->set_materialize_grads(false);  // backward only refuses
    variable_list outs;
    outs.reserve(g_scores.size() + 2);
    for (auto& g : g_scores) outs.push_back(std::move(g));
    outs.push_back(std::move(g_logits));
    outs.push_back(std::move(g_gate));
    return outs;
  }

  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false, kMergeDoubleBackwardRefusal);
    return {};
  }
};

// The refusing node's outputs as the op returns them: S score gradients,
// then the logits' and the gate's.
std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> split_merge_grads(variable_list outs) {
  const size_t S = outs.size() - 2;
  std::vector<at::Tensor> g_scores(std::make_move_iterator(outs.begin()),
                                   std::make_move_iterator(outs.begin() + S));
  return {std::move(g_scores), std::move(outs[S]), std::move(outs[S + 1])};
}


// The node's only output is `out`. aux, never differentiable, leaves forward
// through aux_out instead of being an output marked non-differentiable: it
// then never requires grad all the same, no zero gradient is made for it
// before backward, and the node stays usable by compiled autograd (which
// refuses C++ nodes with non-differentiable outputs).
struct ScaleMergeFunction : public torch::autograd::Function<ScaleMergeFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList scores, c10::SymIntArrayRef size,
                               c10::string_view mode, const std::optional<at::Tensor>& logits,
                               const std::optional<at::Tensor>& gate, std::optional<double> avg_weight,
                               at::Tensor* aux_out) {
    at::Tensor out, aux;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      std::tie(out, aux) = merge_op().call(scores, size, mode, logits, gate, avg_weight);
    }
    variable_list saved;
    saved.reserve(kSavedScores + scores.size());
    saved.push_back(aux);
    saved.push_back(gate.has_value() ? *gate : at::Tensor());
    saved.push_back(logits.has_value() ? *logits : at::Tensor());
    saved.insert(saved.end(), scores.begin(), scores.end());
    ctx->save_for_backward(std::move(saved));
    ctx->saved_data[kMode] = std::string(mode);
    ctx->saved_data[kAvgWeight] = avg_weight;
    ctx->saved_data[kHasLogits] = logits.has_value() && logits->defined();
    *aux_out = std::move(aux);
    return {out};
  }

  // grads[0] is defined: a missing gradient of out is materialized as zeros.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& gate = saved[kSavedGate];
    const at::Tensor& logits = saved[kSavedLogits];
    const at::TensorList scores = at::TensorList(saved).slice(kSavedScores);
    const std::optional<at::Tensor> gate_opt = gate.defined() ? std::optional<at::Tensor>(gate) : std::nullopt;
    const std::string& mode = ctx->saved_data[kMode].toStringRef();
    const std::optional<double> avg_weight = ctx->saved_data[kAvgWeight].toOptional<double>();
    std::vector<at::Tensor> g_scores;
    at::Tensor g_logits, g_gate;
    if (at::GradMode::is_enabled() && logits.defined() && logits.requires_grad()) {
      // create_graph with logits that need a gradient: every gradient here
      // depends on them through aux, which the backward op takes as plain
      // data, so a second derivative would silently miss that path. The
      // refusing node is recorded with the logits as one more input, so a
      // second derivative reaching them fails with the refusal instead.
      std::tie(g_scores, g_logits, g_gate) =
          split_merge_grads(ScaleMergeBackwardFunction::apply(grads[0], scores, mode, saved[kSavedAux], gate_opt,
                                                              avg_weight, std::optional<at::Tensor>(logits)));
    } else {
      std::tie(g_scores, g_logits, g_gate) =
          merge_backward_op().call(grads[0], scores, mode, saved[kSavedAux], gate_opt, avg_weight);
    }
    // One entry per forward argument, a list counting one per tensor:
    // scores..., size, mode, logits, gate, avg_weight, aux_out.
    variable_list result;
    result.reserve(g_scores.size() + 6);
    for (auto& g : g_scores) result.push_back(std::move(g));
    result.emplace_back();  // size
    result.emplace_back();  // mode
    result.push_back(ctx->saved_data[kHasLogits].toBool() ? std::move(g_logits) : at::Tensor());
    result.push_back(gate.defined() ? std::move(g_gate) : at::Tensor());
    result.emplace_back();  // avg_weight
    result.emplace_back();  // aux_out
    return result;
  }
};

std::tuple<at::Tensor, at::Tensor> scale_merge_autograd(at::TensorList scores, c10::SymIntArrayRef size,
                                                        c10::string_view mode,
                                                        const std::optional<at::Tensor>& logits,
                                                        const std::optional<at::Tensor>& gate,
                                                        std::optional<double> avg_weight) {
  if (!needs_graph(scores, logits, gate)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return merge_op().call(scores, size, mode, logits, gate, avg_weight);
  }
  at::Tensor aux;
  at::Tensor out = ScaleMergeFunction::apply(scores, size, mode, logits, gate, avg_weight, &aux)[0];
  return {std::move(out), std::move(aux)};
}

std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> scale_merge_backward_autograd(
    const at::Tensor& grad, at::TensorList scores, c10::string_view mode, const at::Tensor& aux,
    const std::optional<at::Tensor>& gate, std::optional<double> avg_weight) {
  if (!needs_graph(grad, scores, aux, gate)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return merge_backward_op().call(grad, scores, mode, aux, gate, avg_weight);
  }
  return split_merge_grads(ScaleMergeBackwardFunction::apply(grad, scores, mode, aux, gate, avg_weight, std::nullopt));
}

// ---- upsample_argmax -------------------------------------------------------------

// Not differentiable: run below autograd, so the outputs never require grad
// (using them in a loss fails with "does not require grad").
std::tuple<at::Tensor, at::Tensor> upsample_argmax_autograd(const at::Tensor& scores, c10::SymIntArrayRef size,
                                                            bool with_score) {
  at::AutoDispatchBelowADInplaceOrView below;
  return argmax_op().call(scores, size, with_score);
}

}  // namespace

TORCH_LIBRARY_IMPL(attn2scale, Autograd, m) {
  m.impl("interp", &interp_autograd);
  m.impl("interp_backward", &interp_backward_autograd);
  m.impl("scale_merge", &scale_merge_autograd);
  m.impl("scale_merge_backward", &scale_merge_backward_autograd);
  m.impl("upsample_argmax", &upsample_argmax_autograd);
}

}  // namespace a2s

// Microbenchmark of the attn2scale ops, called through the dispatcher (no
// Python): scale_merge in attention mode at the training shape (forward, and
// forward + scale_merge_backward) and upsample_argmax at the inference shape,
// each next to the unfused ATen composite it replaces. Before timing, the
// ops' results are checked against ATen (upsample_bilinear2d with
// align_corners=true, softmax, autograd, max/argmax) in float64 and float32;
// any mismatch makes the program exit with status 1.
//
//   a2s_bench [--device cpu|cuda] [--repeats 50] [--warmup 5] [--threads N]
//             [--check-only] [--inject-error]
//
// --check-only stops after the checks (CI runs it: no GPU needed on cpu).
// --inject-error perturbs the ops' results before they are checked, so CI can
// see that a wrong kernel really makes the program fail.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

// C++ signatures of the kernels (csrc/cpu, csrc/cuda): a typed dispatcher
// call must name exactly these types.
using MergeFn = std::tuple<at::Tensor, at::Tensor>(at::TensorList, at::IntArrayRef, c10::string_view,
                                                   const std::optional<at::Tensor>&,
                                                   const std::optional<at::Tensor>&, std::optional<double>);
using MergeBackwardFn = std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor>(
    const at::Tensor&, at::TensorList, c10::string_view, const at::Tensor&, const std::optional<at::Tensor>&,
    std::optional<double>);
using ArgmaxFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, at::IntArrayRef, bool);

struct Ops {
  c10::TypedOperatorHandle<MergeFn> merge;
  c10::TypedOperatorHandle<MergeBackwardFn> merge_backward;
  c10::TypedOperatorHandle<ArgmaxFn> upsample_argmax;
};

Ops find_ops() {
  auto& d = c10::Dispatcher::singleton();
  return {d.findSchemaOrThrow("attn2scale::scale_merge", "").typed<MergeFn>(),
          d.findSchemaOrThrow("attn2scale::scale_merge_backward", "").typed<MergeBackwardFn>(),
          d.findSchemaOrThrow("attn2scale::upsample_argmax", "").typed<ArgmaxFn>()};
}

struct Options {
  std::string device = "cpu";
  int repeats = 50;
  int warmup = 5;
  int threads = 0;  // 0: ATen's default
  bool check_only = false;
  bool inject_error = false;
};

[[noreturn]] void usage(const char* prog) {
  std::fprintf(stderr, "usage: %s [--device cpu|cuda] [--repeats N] [--warmup N] [--threads N] [--check-only] "
               "[--inject-error]\n",
               prog);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--device") {
      o.device = value();
    } else if (a == "--repeats") {
      o.repeats = std::atoi(value());
    } else if (a == "--warmup") {
      o.warmup = std::atoi(value());
    } else if (a == "--threads") {
      o.threads = std::atoi(value());
    } else if (a == "--check-only") {
      o.check_only = true;
    } else if (a == "--inject-error") {
      o.inject_error = true;
    } else {
      usage(argv[0]);
    }
  }
  if (o.repeats < 1 || o.warmup < 0) usage(argv[0]);
  return o;
}

// ---- shapes ------------------------------------------------------------------
// Training: DeepLab-LargeFOV attention-to-scale, 3 scales (1, 0.75, 0.5 of a
// 321 crop give 41, 31, 21 score maps), merged at the largest scale's size.
constexpr int64_t kTrainN = 10, kTrainC = 21, kTrainOut = 41;
const std::vector<int64_t> kTrainSizes = {41, 31, 21};
// Inference: one image's 65 x 65 scores upsampled to the 513 x 513 input.
constexpr int64_t kInferN = 1, kInferC = 21, kInferIn = 65, kInferOut = 513;

struct MergeInputs {
  std::vector<at::Tensor> scores;
  at::Tensor logits, grad;
};

MergeInputs make_merge_inputs(at::ScalarType dtype, const at::Device& dev, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  MergeInputs in;
  for (int64_t hw : kTrainSizes) {
    in.scores.push_back((3.0 * at::randn({kTrainN, kTrainC, hw, hw}, gen, opt)).to(dev, dtype));
  }
  const int64_t S = static_cast<int64_t>(kTrainSizes.size());
  in.logits = at::randn({kTrainN, S, kTrainOut, kTrainOut}, gen, opt).to(dev, dtype);
  in.grad = at::randn({kTrainN, kTrainC, kTrainOut, kTrainOut}, gen, opt).to(dev, dtype);
  return in;
}

at::Tensor make_argmax_input(at::ScalarType dtype, const at::Device& dev, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return (3.0 * at::randn({kInferN, kInferC, kInferIn, kInferIn}, gen, at::TensorOptions().dtype(at::kDouble)))
      .to(dev, dtype);
}

// The unfused ATen composite scale_merge replaces (attention mode).
at::Tensor aten_merge(at::TensorList scores, const at::Tensor& logits) {
  const at::Tensor w = at::softmax(logits, 1);
  at::Tensor out;
  for (int64_t s = 0; s < static_cast<int64_t>(scores.size()); ++s) {
    at::Tensor r = at::upsample_bilinear2d(scores[s], {logits.size(2), logits.size(3)}, /*align_corners=*/true);
    r = w.narrow(1, s, 1) * r;
    out = s == 0 ? r : out + r;
  }
  return out;
}

// ---- checks ------------------------------------------------------------------
int g_failures = 0;
bool g_inject_error = false;  // --inject-error

// What a subtly wrong kernel would return: one element off by far more than
// any tolerance below (relative 1e-3), everything else untouched.
at::Tensor maybe_corrupt(const at::Tensor& t) {
  if (!g_inject_error || t.numel() == 0) return t;
  at::Tensor bad = t.clone();
  auto first = bad.view(-1).narrow(0, 0, 1);
  first.mul_(1.001).add_(1e-3);
  return bad;
}

// Passes when |got - ref| <= atol + rtol * |ref| everywhere (compared in float64 on the CPU).
void expect_close(const char* what, const at::Tensor& got_, const at::Tensor& ref_, double atol, double rtol) {
  const at::Tensor got = got_.to(at::kCPU, at::kDouble), ref = ref_.to(at::kCPU, at::kDouble);
  bool ok = got.sizes() == ref.sizes();
  double max_diff = -1.0, worst = 0.0;
  if (ok) {
    const at::Tensor diff = (got - ref).abs();
    max_diff = diff.max().item<double>();
    worst = (diff / (atol + rtol * ref.abs())).max().item<double>();
    ok = worst <= 1.0 && !std::isnan(worst);
  }
  std::printf("  %-34s %s  max|diff| %.3g (%.2f of tolerance)\n", what, ok ? "ok  " : "FAIL", max_diff, worst);
  if (!ok) {
    if (got.sizes() != ref.sizes()) {
      std::printf("    shapes: got %s, expected %s\n", c10::str(got.sizes()).c_str(), c10::str(ref.sizes()).c_str());
    }
    ++g_failures;
  }
}

void check_merge(const Ops& ops, at::ScalarType dtype, const at::Device& dev, double tol) {
  std::printf("check scale_merge (attention, logits) + scale_merge_backward, %s on %s\n",
              c10::toString(dtype), dev.str().c_str());
  const MergeInputs in = make_merge_inputs(dtype, dev, 1234);
  const auto [out_, aux] = ops.merge.call(in.scores, {kTrainOut, kTrainOut}, "attention", in.logits, std::nullopt,
                                          std::nullopt);
  const auto [g_scores, g_logits_, g_gate] =
      ops.merge_backward.call(in.grad, in.scores, "attention", aux, std::nullopt, std::nullopt);
  const at::Tensor out = maybe_corrupt(out_), g_logits = maybe_corrupt(g_logits_);

  // Reference: the ATen composite on the CPU in the same dtype, gradients by autograd.
  std::vector<at::Tensor> scores_ref;
  for (const auto& s : in.scores) scores_ref.push_back(s.to(at::kCPU).detach().requires_grad_(true));
  const at::Tensor logits_ref = in.logits.to(at::kCPU).detach().requires_grad_(true);
  const at::Tensor out_ref = aten_merge(scores_ref, logits_ref);
  out_ref.backward(in.grad.to(at::kCPU));

  expect_close("out", out, out_ref.detach(), tol, tol);
  expect_close("aux (softmax weights)", aux, at::softmax(logits_ref.detach(), 1), tol, tol);
  for (size_t s = 0; s < scores_ref.size(); ++s) {
    const std::string name = "g_scores[" + std::to_string(s) + "] (" + std::to_string(kTrainSizes[s]) + "x" +
                             std::to_string(kTrainSizes[s]) + ")";
    expect_close(name.c_str(), g_scores.at(s), scores_ref[s].grad(), tol, tol);
  }
  expect_close("g_logits", g_logits, logits_ref.grad(), tol, tol);
  if (g_gate.numel() != 0) {
    std::printf("  g_gate must be empty without a gate, got %s  FAIL\n", c10::str(g_gate.sizes()).c_str());
    ++g_failures;
  }
}

void check_argmax(const Ops& ops, at::ScalarType dtype, const at::Device& dev, double tol) {
  std::printf("check upsample_argmax, %s on %s\n", c10::toString(dtype), dev.str().c_str());
  const at::Tensor x = make_argmax_input(dtype, dev, 4321);
  const auto [labels_, score_] = ops.upsample_argmax.call(x, {kInferOut, kInferOut}, true);
  at::Tensor labels = labels_.to(at::kCPU).clone();
  const at::Tensor score = score_.to(at::kCPU);
  if (g_inject_error) {  // the class ATen ranks last at the first pixel: never a near tie
    const at::Tensor first = at::upsample_bilinear2d(x.to(at::kCPU), {kInferOut, kInferOut}, true)
                                 .select(0, 0).select(1, 0).select(1, 0);
    labels.view(-1).narrow(0, 0, 1).fill_(first.argmin().item<int64_t>());
  }

  const at::Tensor up = at::upsample_bilinear2d(x.to(at::kCPU), {kInferOut, kInferOut}, true).to(at::kDouble);
  const auto [best, best_idx] = up.max(1);
  expect_close("score (max over classes)", score, best, tol, tol);

  bool ok = labels.scalar_type() == at::kLong && labels.sizes() == best_idx.sizes();
  int64_t differ = 0, unexplained = 0;
  if (ok) {
    // A label may differ from ATen's argmax only where the top two classes
    // are within rounding of each other; the chosen class must still be
    // (within rounding) maximal there.
    const at::Tensor top2 = std::get<0>(up.topk(2, 1));
    const at::Tensor gap = top2.select(1, 0) - top2.select(1, 1);
    const at::Tensor mismatch = labels != best_idx;
    const at::Tensor chosen = up.gather(1, labels.clamp(0, kInferC - 1).unsqueeze(1)).squeeze(1);
    const at::Tensor tol_here = tol * (1.0 + best.abs());
    const at::Tensor bad = mismatch & ((gap > tol_here) | (best - chosen > tol_here));
    differ = mismatch.sum().item<int64_t>();
    unexplained = bad.sum().item<int64_t>();
    ok = unexplained == 0 && labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < kInferC;
  }
  std::printf("  %-34s %s  %lld of %lld labels differ from ATen argmax, %lld not explained by a near tie\n",
              "labels", ok ? "ok  " : "FAIL", static_cast<long long>(differ),
              static_cast<long long>(best_idx.numel()), static_cast<long long>(unexplained));
  if (!ok) ++g_failures;
}

// ---- timing ------------------------------------------------------------------
struct Timer {
  at::Device dev;
  int repeats, warmup;

  void sync() const {
    if (dev.is_cuda()) {
      c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->synchronizeDevice(dev.has_index() ? dev.index() : 0);
    }
  }

  // Median and minimum wall time of one call, in milliseconds.
  std::pair<double, double> run(const std::function<void()>& fn) const {
    for (int i = 0; i < warmup; ++i) fn();
    sync();
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      sync();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const size_t n = ms.size();
    const double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    return {median, ms.front()};
  }
};

void print_row(const char* what, std::pair<double, double> fused, std::pair<double, double> aten) {
  std::printf("  %-26s fused %9.3f ms (min %9.3f) | ATen %9.3f ms (min %9.3f) | x%.2f\n", what, fused.first,
              fused.second, aten.first, aten.second, aten.first / fused.first);
}

void bench(const Ops& ops, const Timer& timer) {
  const at::ScalarType dtype = at::kFloat;
  std::printf("\ntiming: float32 on %s, median of %d calls after %d warm-up calls\n", timer.dev.str().c_str(),
              timer.repeats, timer.warmup);

  std::printf("scale_merge attention, N=%lld C=%lld, scores 41/31/21 -> %lldx%lld\n",
              static_cast<long long>(kTrainN), static_cast<long long>(kTrainC),
              static_cast<long long>(kTrainOut), static_cast<long long>(kTrainOut));
  const MergeInputs in = make_merge_inputs(dtype, timer.dev, 1);
  const std::vector<int64_t> size = {kTrainOut, kTrainOut};
  const auto fwd = timer.run([&] {
    (void)ops.merge.call(in.scores, size, "attention", in.logits, std::nullopt, std::nullopt);
  });
  const auto fwd_aten = timer.run([&] { (void)aten_merge(in.scores, in.logits); });
  print_row("forward", fwd, fwd_aten);

  const auto fwd_bwd = timer.run([&] {
    const auto [out, aux] = ops.merge.call(in.scores, size, "attention", in.logits, std::nullopt, std::nullopt);
    (void)ops.merge_backward.call(in.grad, in.scores, "attention", aux, std::nullopt, std::nullopt);
  });
  std::vector<at::Tensor> leaves;
  for (const auto& s : in.scores) leaves.push_back(s.detach().requires_grad_(true));
  const at::Tensor logits_leaf = in.logits.detach().requires_grad_(true);
  const auto fwd_bwd_aten = timer.run([&] {
    for (auto& t : leaves) t.mutable_grad().reset();
    logits_leaf.mutable_grad().reset();
    aten_merge(leaves, logits_leaf).backward(in.grad);
  });
  print_row("forward + backward", fwd_bwd, fwd_bwd_aten);

  std::printf("upsample_argmax, N=%lld C=%lld, %lldx%lld -> %lldx%lld\n", static_cast<long long>(kInferN),
              static_cast<long long>(kInferC), static_cast<long long>(kInferIn), static_cast<long long>(kInferIn),
              static_cast<long long>(kInferOut), static_cast<long long>(kInferOut));
  const at::Tensor x = make_argmax_input(dtype, timer.dev, 2);
  const auto am = timer.run([&] { (void)ops.upsample_argmax.call(x, {kInferOut, kInferOut}, false); });
  const auto am_aten = timer.run([&] {
    (void)at::upsample_bilinear2d(x, {kInferOut, kInferOut}, true).argmax(1);
  });
  print_row("labels", am, am_aten);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  try {
    if (opt.threads > 0) at::set_num_threads(opt.threads);
    const at::Device dev(opt.device);
    if (dev.is_cuda() && !at::hasCUDA()) {
      std::fprintf(stderr,
                   "CUDA requested but not available: no GPU visible, or a build without "
                   "-DA2S_WITH_CUDA=ON (then only the CPU kernels are registered)\n");
      return 2;
    }
    g_inject_error = opt.inject_error;
    const Ops ops = find_ops();
    std::printf("attn2scale microbenchmark: device %s, %d intra-op threads\n", dev.str().c_str(),
                at::get_num_threads());

    check_merge(ops, at::kDouble, dev, 1e-10);
    check_merge(ops, at::kFloat, dev, 1e-4);
    check_argmax(ops, at::kDouble, dev, 1e-10);
    check_argmax(ops, at::kFloat, dev, 1e-4);
    if (g_failures > 0) {
      std::printf("\n%d check(s) FAILED\n", g_failures);
      return 1;
    }
    std::printf("all checks passed\n");
    if (!opt.check_only) bench(ops, Timer{dev, opt.repeats, opt.warmup});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

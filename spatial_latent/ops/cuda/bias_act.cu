// bias_act: y = clamp(act(x + b) * gain, -clamp, clamp) elementwise, with b broadcast along one
// dimension, and its first derivative (given dy, returns dL/d(x + b)). Matches
// bias_act_reference in spatial_latent/ops/activation.py. Activation codes are the `cuda_code`
// fields of ACTIVATIONS there; alpha is only used by lrelu (elu/selu use torch's constants).
//
// Built with --use_fast_math, which turns tanhf into the ~1e-3-accurate tanh.approx
// instruction; tanh is therefore computed from expm1f, which stays accurate.

#include <limits>

#include <torch/extension.h>
#include <ATen/OpMathType.h>
// c10 headers only: ATen/cuda/CUDAContext.h would also need the cuBLAS/cuSPARSE headers, which
// pip-installed toolkits often lack.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace {

enum Act : int { kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9 };

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSoftplusThreshold = 20.0;  // F.softplus default: linear above it

__device__ __forceinline__ float d_exp(float v) { return expf(v); }
__device__ __forceinline__ double d_exp(double v) { return exp(v); }
__device__ __forceinline__ float d_expm1(float v) { return expm1f(v); }
__device__ __forceinline__ double d_expm1(double v) { return expm1(v); }
__device__ __forceinline__ float d_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double d_log1p(double v) { return log1p(v); }
__device__ __forceinline__ double d_tanh(double v) { return tanh(v); }
__device__ __forceinline__ float d_tanh(float v) {
    // tanh(v) = expm1(2v) / (expm1(2v) + 2); saturates to +-1 well before expm1 overflows.
    if (fabsf(v) > 10.f) return copysignf(1.f, v);
    const float e = expm1f(2.f * v);
    return e / (e + 2.f);
}

template <typename T>
__device__ __forceinline__ T sigmoid(T s) {
    return T(1) / (T(1) + d_exp(-s));
}

template <typename T>
__device__ __forceinline__ T act_forward(int act, T s, T alpha) {
    switch (act) {
        case kRelu: return s > T(0) ? s : T(0);
        case kLrelu: return s > T(0) ? s : s * alpha;
        case kTanh: return d_tanh(s);
        case kSigmoid: return sigmoid(s);
        case kElu: return s > T(0) ? s : d_expm1(s);
        case kSelu: return T(kSeluScale) * (s > T(0) ? s : T(kSeluAlpha) * d_expm1(s));
        case kSoftplus: return s > T(kSoftplusThreshold) ? s : d_log1p(d_exp(s));
        case kSwish: return s * sigmoid(s);
        default: return s;  // linear
    }
}

// d act(s) / ds, with torch's conventions at the kinks (relu' = 0 and lrelu' = alpha at 0).
template <typename T>
__device__ __forceinline__ T act_derivative(int act, T s, T alpha) {
    switch (act) {
        case kRelu: return s > T(0) ? T(1) : T(0);
        case kLrelu: return s > T(0) ? T(1) : alpha;
        case kTanh: { const T t = d_tanh(s); return T(1) - t * t; }
        case kSigmoid: { const T g = sigmoid(s); return g * (T(1) - g); }
        case kElu: return s > T(0) ? T(1) : d_exp(s);
        case kSelu: return s > T(0) ? T(kSeluScale) : T(kSeluScale * kSeluAlpha) * d_exp(s);
        case kSoftplus: return s > T(kSoftplusThreshold) ? T(1) : sigmoid(s);
        case kSwish: { const T g = sigmoid(s); return g + s * g * (T(1) - g); }
        default: return T(1);  // linear
    }
}

template <typename scalar_t, typename index_t>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                const scalar_t* __restrict__ dy, scalar_t* __restrict__ out, index_t numel,
                                index_t step_b, index_t size_b, int act, at::opmath_type<scalar_t> alpha,
                                at::opmath_type<scalar_t> gain, at::opmath_type<scalar_t> clamp, bool grad) {
    using acc_t = at::opmath_type<scalar_t>;
    const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
    for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
        acc_t s = static_cast<acc_t>(x[i]);
        if (b != nullptr) s += static_cast<acc_t>(b[(i / step_b) % size_b]);
        const acc_t v = act_forward(act, s, alpha) * gain;
        if (!grad) {
            // Comparisons (not fminf/fmaxf) so that NaN propagates as in torch.clamp.
            const acc_t c = clamp >= acc_t(0) ? (v < -clamp ? -clamp : (v > clamp ? clamp : v)) : v;
            out[i] = static_cast<scalar_t>(c);
        } else {
            // torch.clamp passes the gradient where -clamp <= v <= clamp (inclusive).
            const bool pass = clamp < acc_t(0) || (v >= -clamp && v <= clamp);
            const acc_t d = pass ? static_cast<acc_t>(dy[i]) * act_derivative(act, s, alpha) * gain : acc_t(0);
            out[i] = static_cast<scalar_t>(d);
        }
    }
}

}  // namespace

torch::Tensor bias_act_cuda(const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& dy, int64_t dim,
                            int64_t act, double alpha, double gain, double clamp, bool grad) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.is_contiguous(), "bias_act: x must be contiguous");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kDouble,
                "bias_act: x must be float16, float32 or float64");
    TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act: unknown activation code ", act);
    const bool has_b = b.numel() > 0;
    if (has_b) {
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for ", x.dim(), "-d x");
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must be [x.shape[dim]]");
        TORCH_CHECK(b.is_contiguous() && b.device() == x.device() && b.scalar_type() == x.scalar_type(),
                    "bias_act: b must be contiguous, on x's device and of x's dtype");
    }
    if (grad) {
        TORCH_CHECK(dy.sizes() == x.sizes() && dy.is_contiguous() && dy.device() == x.device() &&
                        dy.scalar_type() == x.scalar_type(),
                    "bias_act: dy must be contiguous and match x in shape, device and dtype");
    }

    auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
    const int64_t numel = x.numel();
    if (numel == 0) return out;
    int64_t step_b = 1, size_b = 1;
    if (has_b) {
        size_b = x.size(dim);
        for (int64_t d = dim + 1; d < x.dim(); ++d) step_b *= x.size(d);
    }

    const c10::cuda::CUDAGuard guard(x.device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((numel + threads - 1) / threads, 65536);

    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "bias_act_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* bp = has_b ? b.data_ptr<scalar_t>() : nullptr;
        const scalar_t* dyp = grad ? dy.data_ptr<scalar_t>() : nullptr;
        // 32-bit index arithmetic when it fits (the per-element division by step_b is much
        // cheaper); the margin keeps i + grid stride from overflowing.
        if (numel <= std::numeric_limits<int32_t>::max() / 2) {
            bias_act_kernel<scalar_t, int32_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
                x.data_ptr<scalar_t>(), bp, dyp, out.data_ptr<scalar_t>(), static_cast<int32_t>(numel),
                static_cast<int32_t>(step_b), static_cast<int32_t>(size_b), static_cast<int>(act),
                static_cast<acc_t>(alpha), static_cast<acc_t>(gain), static_cast<acc_t>(clamp), grad);
        } else {
            bias_act_kernel<scalar_t, int64_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
                x.data_ptr<scalar_t>(), bp, dyp, out.data_ptr<scalar_t>(), numel, step_b, size_b,
                static_cast<int>(act), static_cast<acc_t>(alpha), static_cast<acc_t>(gain),
                static_cast<acc_t>(clamp), grad);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

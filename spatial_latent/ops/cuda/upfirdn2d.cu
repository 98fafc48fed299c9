// upfirdn2d: zero-insert upsampling, padding/cropping, 2-D FIR filtering and decimation in one
// pass over NCHW tensors. Semantics are those of upfirdn2d_reference in
// spatial_latent/ops/fir.py:
//
//   y[n, c, oy, ox] = sum_{i, j} g[i, j] * U[oy * downy + i - pady0, ox * downx + j - padx0]
//
// where U is x with (up - 1) zeros inserted after every sample (U[a, b] = x[a / upy, b / upx]
// when both divide, else 0; out of range = 0) and g is the filter f scaled by gain, flipped
// unless flip_filter (the reference correlates with the flipped filter = a true convolution).
// A 1-D filter f[k] stands for the separable filter f[i] * f[j].
//
// One thread computes one output pixel; it visits only the taps that land on non-zero samples
// of U (every up-th tap), so the inserted zeros cost nothing.

#include <torch/extension.h>
#include <ATen/OpMathType.h>
// c10 headers only: ATen/cuda/CUDAContext.h would also need the cuBLAS/cuSPARSE headers, which
// pip-installed toolkits often lack.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace {

struct Upfirdn2dParams {
    int in_h, in_w, out_h, out_w;
    int upx, upy, downx, downy;
    int padx0, pady0;
    int fh, fw;
    int64_t planes;  // N * C
    bool flip_filter;
    bool separable;
    double gain;
};

// Index of the first filter tap i >= 0 whose sample position base + i is a multiple of up
// and not negative (so that it hits a real input sample).
__device__ __forceinline__ int first_tap(int base, int up) {
    if (base < 0) return -base;
    const int r = base % up;
    return r == 0 ? 0 : up - r;
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const at::opmath_type<scalar_t>* __restrict__ f,
                                 scalar_t* __restrict__ y, const Upfirdn2dParams p) {
    using acc_t = at::opmath_type<scalar_t>;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    acc_t* g = reinterpret_cast<acc_t*>(smem_raw);

    // Stage the effective (flipped, scaled) filter in shared memory once per block.
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const int nthreads = blockDim.x * blockDim.y;
    const acc_t gain = static_cast<acc_t>(p.gain);
    for (int k = tid; k < p.fh * p.fw; k += nthreads) {
        const int i = k / p.fw, j = k % p.fw;
        const int si = p.flip_filter ? i : p.fh - 1 - i;
        const int sj = p.flip_filter ? j : p.fw - 1 - j;
        const acc_t v = p.separable ? f[si] * f[sj] : f[si * p.fw + sj];
        g[k] = v * gain;
    }
    __syncthreads();

    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= p.out_w || oy >= p.out_h) return;

    const int by = oy * p.downy - p.pady0;  // position in U of tap i = 0
    const int bx = ox * p.downx - p.padx0;
    const int i0 = first_tap(by, p.upy);
    const int j0 = first_tap(bx, p.upx);
    const int iy0 = (by + i0) / p.upy;
    const int ix0 = (bx + j0) / p.upx;
    const int64_t in_plane = static_cast<int64_t>(p.in_h) * p.in_w;
    const int64_t out_plane = static_cast<int64_t>(p.out_h) * p.out_w;

    for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
        const scalar_t* xp = x + plane * in_plane;
        acc_t acc = 0;
        for (int i = i0, iy = iy0; i < p.fh && iy < p.in_h; i += p.upy, ++iy) {
            const scalar_t* row = xp + static_cast<int64_t>(iy) * p.in_w;
            const acc_t* grow = g + i * p.fw;
            for (int j = j0, ix = ix0; j < p.fw && ix < p.in_w; j += p.upx, ++ix) {
                acc += grow[j] * static_cast<acc_t>(row[ix]);
            }
        }
        y[plane * out_plane + static_cast<int64_t>(oy) * p.out_w + ox] = static_cast<scalar_t>(acc);
    }
}

}  // namespace

torch::Tensor upfirdn2d_cuda(const torch::Tensor& x, const torch::Tensor& f, int64_t upx, int64_t upy,
                             int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                             int64_t pady1, bool flip_filter, double gain) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.dim(), " dims");
    TORCH_CHECK(x.is_contiguous(), "upfirdn2d: x must be contiguous");
    TORCH_CHECK(f.device() == x.device(), "upfirdn2d: f must be on the same device as x");
    TORCH_CHECK(f.is_contiguous(), "upfirdn2d: f must be contiguous");
    TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "upfirdn2d: f must be [fh, fw] or [k]");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up and down must be >= 1");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kDouble,
                "upfirdn2d: x must be float16, float32 or float64");
    const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    TORCH_CHECK(f.scalar_type() == acc_type, "upfirdn2d: f must be ", acc_type, " for x of type ", x.scalar_type());

    const int64_t fh = f.size(0);
    const int64_t fw = f.dim() == 2 ? f.size(1) : f.size(0);
    TORCH_CHECK(fh >= 1 && fw >= 1, "upfirdn2d: empty filter");
    const int64_t smem = fh * fw * static_cast<int64_t>(c10::elementSize(acc_type));
    TORCH_CHECK(smem <= 48 * 1024, "upfirdn2d: filter of ", fh, "x", fw, " is too large for the kernel");

    const int64_t n = x.size(0), c = x.size(1), in_h = x.size(2), in_w = x.size(3);
    const int64_t span_h = in_h * upy + pady0 + pady1 - fh;  // padded size minus filter extent
    const int64_t span_w = in_w * upx + padx0 + padx1 - fw;
    TORCH_CHECK(span_h >= 0 && span_w >= 0, "upfirdn2d: the filter (", fh, "x", fw,
                ") is larger than the padded input (", in_h * upy + pady0 + pady1, "x", in_w * upx + padx0 + padx1, ")");
    const int64_t out_h = span_h / downy + 1;
    const int64_t out_w = span_w / downx + 1;
    TORCH_CHECK(out_h < (1 << 24) && out_w < (1 << 24) && in_h * upy < (1LL << 30) && in_w * upx < (1LL << 30),
                "upfirdn2d: sizes too large for the kernel");

    auto y = at::empty({n, c, out_h, out_w}, x.options());
    if (y.numel() == 0) return y;

    const c10::cuda::CUDAGuard guard(x.device());
    Upfirdn2dParams p;
    p.in_h = static_cast<int>(in_h);
    p.in_w = static_cast<int>(in_w);
    p.out_h = static_cast<int>(out_h);
    p.out_w = static_cast<int>(out_w);
    p.upx = static_cast<int>(upx);
    p.upy = static_cast<int>(upy);
    p.downx = static_cast<int>(downx);
    p.downy = static_cast<int>(downy);
    p.padx0 = static_cast<int>(padx0);
    p.pady0 = static_cast<int>(pady0);
    p.fh = static_cast<int>(fh);
    p.fw = static_cast<int>(fw);
    p.planes = n * c;
    p.flip_filter = flip_filter;
    p.separable = f.dim() == 1;
    p.gain = gain;

    // Narrow outputs (4x4, 8x8 in early StyleGAN layers) get narrow, tall blocks of 256 threads.
    int bx = 32;
    while (bx > 4 && bx / 2 >= out_w) bx /= 2;
    const int by = 256 / bx;
    const dim3 block(bx, by, 1);
    const int64_t gy = (out_h + by - 1) / by;
    TORCH_CHECK(gy <= 65535, "upfirdn2d: output too tall for the kernel");
    const dim3 grid(static_cast<unsigned>((out_w + bx - 1) / bx), static_cast<unsigned>(gy),
                    static_cast<unsigned>(std::min<int64_t>(p.planes, 65535)));
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "upfirdn2d_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        upfirdn2d_kernel<scalar_t><<<grid, block, static_cast<size_t>(smem), stream>>>(
            x.data_ptr<scalar_t>(), f.data_ptr<acc_t>(), y.data_ptr<scalar_t>(), p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return y;
}

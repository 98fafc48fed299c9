// Python binding of the upfirdn2d CUDA kernel (spatial_latent.ops.fir.upfirdn2d).
#include <torch/extension.h>

torch::Tensor upfirdn2d_cuda(const torch::Tensor& x, const torch::Tensor& f, int64_t upx, int64_t upy,
                             int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                             int64_t pady1, bool flip_filter, double gain);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d_cuda,
          "upfirdn2d(x[N,C,H,W], f[fh,fw] or [k], upx, upy, downx, downy, padx0, padx1, pady0, pady1, "
          "flip_filter, gain) -> y[N,C,H',W']",
          py::arg("x"), py::arg("f"), py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"),
          py::arg("padx0"), py::arg("padx1"), py::arg("pady0"), py::arg("pady1"), py::arg("flip_filter"),
          py::arg("gain"));
}

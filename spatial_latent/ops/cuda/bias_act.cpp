// Python binding of the bias_act CUDA kernel (spatial_latent.ops.activation.bias_act).
#include <torch/extension.h>

torch::Tensor bias_act_cuda(const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& dy, int64_t dim,
                            int64_t act, double alpha, double gain, double clamp, bool grad);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act_cuda,
          "bias_act(x, b, dy, dim, act, alpha, gain, clamp, grad): grad=False -> clamp(act(x + b) * gain); "
          "grad=True -> dL/d(x + b) given dy = dL/dy. b or dy may be empty; clamp < 0 means no clamp.",
          py::arg("x"), py::arg("b"), py::arg("dy"), py::arg("dim"), py::arg("act"), py::arg("alpha"),
          py::arg("gain"), py::arg("clamp"), py::arg("grad"));
}

#include <pybind11/stl.h>

#include "bindings.hpp"
#include "itpl/gram.hpp"
#include "itpl/parallel.hpp"

namespace py = pybind11;

void register_runtime(py::module_& m) {
    m.attr("has_openmp") = itpl::has_openmp();
    m.def("default_threads", &itpl::default_threads,
          "Threads a kernel uses when num_threads=0 (OpenMP's default; 1 without OpenMP).");
    m.def("gram_kernels", &itpl::supported_gram_kernels,
          "Gram kernels this build and CPU can run; 'auto' picks the last.");
    m.def(
        "gram_kernel", [](const std::string& name) {
            return itpl::resolve_kernel_name(itpl::parse_gram_kernel(name));
        },
        py::arg("name") = "auto", "The Gram kernel that `name` resolves to on this CPU.");
}

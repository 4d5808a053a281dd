#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "itpl's compiled core (private; use itpl.hsic).";
    register_runtime(m);
    register_hsic(m);
}

// Registration functions of the binding files; module.cpp calls them.
#pragma once

#include <pybind11/pybind11.h>

void register_hsic(pybind11::module_& m);
void register_runtime(pybind11::module_& m);

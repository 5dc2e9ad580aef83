// torch.ops.longattn.attention's C++ kernels (torch_op.cpp): bound into longattn._C.
#pragma once

#include <nanobind/nanobind.h>

// Adds _C.torch_op_register(libtorch_cpu, libtorch_cuda, errors) -> (cpu, cuda, why not).
void bind_torch_op(nanobind::module_& m);

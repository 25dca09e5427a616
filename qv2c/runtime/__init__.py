"""The Numba runtime: kernels (`kernels/`, `ops_*.py`), buffer planning and the `Executable` that runs a program.

`Executable(module)` lowers a module (`qv2c.codegen`), plans and allocates its buffers
once (`buffer_plan.py`), imports the generated program and runs it; `fallback.py`
runs any op without a kernel through the NumPy reference.
"""

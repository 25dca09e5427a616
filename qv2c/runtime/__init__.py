"""The Numba runtime: kernels (`kernels/`, `ops_*.py`), buffer planning and the `Executable` that runs a program.

It runs a lowered program (`program.py`, the format the compiler produces) and never imports the
compiler (`qv2c.codegen`): `Executable(module, program, loaded)` plans and allocates the buffers
once (`buffer_plan.py`), compiles the kernels the program calls (`precompile.py`) and runs the
imported source (`loader.py`); `fallback.py` is a debugging backend that runs an op through its
NumPy reference.  `qv2c.backend.build_executable` is the driver that lowers and loads.
"""

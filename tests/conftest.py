"""Shared pytest setup. Being a conftest.py in tests/, it puts tests/ on sys.path (pytest's default
"prepend" import mode), so test files in subfolders such as tests/passes/ can import the helpers that
live here (onnx_text, quant_models).  And since many tests call the kernels directly, not through an
`Executable`, it prepares them as the runtime would (stale Numba caches removed, thread spin set)."""

from qv2c.runtime.kernels import prepare

prepare()

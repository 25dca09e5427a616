"""Shared pytest setup. Its only job: being a conftest.py in tests/, it puts tests/ on
sys.path (pytest's default "prepend" import mode), so test files in subfolders such as
tests/passes/ can import the helpers that live here (onnx_text, quant_models)."""

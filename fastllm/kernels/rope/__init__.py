"""Rotary position embedding: `rope(q, k, cos, sin, ...)` and `rope_tables(...)`.

Backends: ref (PyTorch, the truth), cpp (C++ AVX-512/AVX2/generic), triton, cuda. See op.py for
the op and its calling convention, ref.py for the math.
"""

from fastllm.kernels import dispatch
from fastllm.kernels.rope.op import rope
from fastllm.kernels.rope.ref import rope_ref, rope_tables

dispatch.register("rope", "ref", "fastllm.kernels.rope.ref:rope_ref_backend")
dispatch.register("rope", "cpp", "fastllm.kernels.rope.cpp:rope_cpp")
dispatch.register("rope", "triton", "fastllm.kernels.rope.triton:rope_triton")
dispatch.register("rope", "cuda", "fastllm.kernels.rope.cuda:rope_cuda")

__all__ = ["rope", "rope_ref", "rope_tables"]

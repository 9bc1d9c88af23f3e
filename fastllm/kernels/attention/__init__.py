"""Softmax attention: `attention(q, k, v, causal=True, scale=None)` with GQA and KV-cache alignment.

Backends: ref (PyTorch, the truth), triton (FlashAttention-2 forward and backward), cuda
(tensor-core forward and split-KV decoding; its backward is the Triton one, which reads the same
lse). See op.py for the ops and their calling convention, ref.py for the math.
"""

from fastllm.kernels import dispatch
from fastllm.kernels.attention.op import attention
from fastllm.kernels.attention.ref import attention_ref

dispatch.register("attention", "ref", "fastllm.kernels.attention.ref:attention_ref_forward")
dispatch.register("attention_backward", "ref", "fastllm.kernels.attention.ref:attention_ref_backward")
dispatch.register("attention", "triton", "fastllm.kernels.attention.triton:attention_triton_forward")
dispatch.register("attention_backward", "triton", "fastllm.kernels.attention.triton:attention_triton_backward")
dispatch.register("attention", "cuda", "fastllm.kernels.attention.cuda:attention_cuda_forward")
dispatch.register("attention_backward", "cuda", "fastllm.kernels.attention.cuda:attention_cuda_backward")

__all__ = ["attention", "attention_ref"]

"""Compiles fastllm's Triton kernels for an NVIDIA target on a machine without a GPU (Triton
bundles ptxas), with the tile configurations the launchers use first, and prints one JSON line
per kernel with its shared-memory use and, where Triton's bundled cuobjdump is present, its
registers per thread and stack bytes (stack > 0: registers spilled to local memory). Run with
TRITON_INTERPRET unset (the interpreter replaces @triton.jit functions);
tests/kernels/test_triton_compile.py runs it in a subprocess.

Pointers and strides are compiled as multiples of 16, the specialisation Triton's launcher gives
16-byte aligned tensors with contiguous 64- or 128-wide heads: without it every load is a scalar
16-bit load and the register figures describe code no such launch runs. Sequence lengths stay
unspecialised (odd lengths), the harder case.

    python tests/kernels/triton_compile.py [arch=90]
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from fastllm.kernels.attention.triton import GPU_CONFIGS
from fastllm.kernels.attention.triton_bwd import (
    attention_bwd_delta_kernel,
    attention_bwd_dkdv_kernel,
    attention_bwd_dq_kernel,
)
from fastllm.kernels.attention.triton_fwd import attention_fwd_kernel
from fastllm.kernels.rope.triton import _rope_kernel, tile_shape

TRITON_TYPES = {2: "bf16", 4: "fp32"}


CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
STRIDE = re.compile(r"_s[bht]$")  # batch, head and row strides


def resource_usage(cubin: bytes) -> dict:
    """{"reg": registers per thread, "stack": bytes} from cuobjdump; None values without the tool."""
    if not (os.path.exists(CUOBJDUMP) or shutil.which("cuobjdump")):
        return {"reg": None, "stack": None}
    tool = CUOBJDUMP if os.path.exists(CUOBJDUMP) else shutil.which("cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True,
                              check=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", text)
    assert found, text
    return {"reg": int(found.group(1)), "stack": int(found.group(2))}


def compile_kernel(kernel, types: dict[str, str], constexprs: dict, target, num_warps=4, num_stages=1) -> dict:
    names = list(inspect.signature(kernel.fn).parameters)
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if signature[n].startswith("*") or STRIDE.search(n)}
    source = ASTSource(fn=kernel, signature=signature, attrs=attrs,
                       constexprs={(names.index(k),): v for k, v in constexprs.items()})
    compiled = triton.compile(source, target=target, options={"num_warps": num_warps, "num_stages": num_stages})
    return {"kernel": kernel.fn.__name__, "shared": compiled.metadata.shared,
            **resource_usage(compiled.asm["cubin"])}


def attention_kernels(element_bytes: int, head_dim: int, target, causal: bool = True) -> list[dict]:
    ptr = f"*{TRITON_TYPES[element_bytes]}"
    tensors = {name: ptr for name in ("Q", "K", "V", "Out", "dOut", "dK", "dV", "dQ")}
    types = {**tensors, "Lse": "*fp32", "Delta": "*fp32", "dLse": "*fp32", "sm_scale": "fp32"}
    meta = {"CAUSAL": causal, "HEAD_DIM": head_dim, "BLOCK_D": head_dim,
            "PRECISION": "ieee" if element_bytes == 4 else "tf32"}
    results = []
    for kind, kernel in (("fwd", attention_fwd_kernel), ("dkdv", attention_bwd_dkdv_kernel),
                         ("dq", attention_bwd_dq_kernel)):
        cfg = dict(GPU_CONFIGS[(kind, head_dim, element_bytes)][0])
        warps, stages = cfg.pop("num_warps"), cfg.pop("num_stages")
        result = compile_kernel(kernel, types, {**meta, **cfg}, target, warps, stages)
        results.append({**result, "head_dim": head_dim, "bytes": element_bytes, "causal": causal,
                        "config": [cfg["BLOCK_M"], cfg["BLOCK_N"], warps, stages]})
    delta = compile_kernel(attention_bwd_delta_kernel, types, {"HAS_DLSE": True, "HEAD_DIM": head_dim,
                                                              "BLOCK_D": head_dim, "BLOCK_M": 64}, target)
    return results + [{**delta, "head_dim": head_dim, "bytes": element_bytes}]


def main() -> None:
    arch = int(sys.argv[1]) if len(sys.argv) > 1 else 90
    target = GPUTarget("cuda", arch, 32)
    rope_types = {name: "*bf16" for name in ("q_ptr", "k_ptr", "q_out_ptr", "k_out_ptr")}
    rope_types.update({"cos_ptr": "*fp32", "sin_ptr": "*fp32", "pos_ptr": "*i64", "offset": "i64"})
    rope_tile = dict(zip(("BLOCK_T", "BLOCK_H", "BLOCK_D"), tile_shape(16384, 32, 8, 64, 2)))
    results = [compile_kernel(_rope_kernel, rope_types, {"HAS_POSITIONS": True, "INVERSE": True, "INPLACE": inplace,
                                                         "HALF": 64, **rope_tile}, target)
               for inplace in (False, True)]
    for head_dim in (64, 128):
        results += attention_kernels(2, head_dim, target)
    results += attention_kernels(4, 128, target)
    for head_dim in (64, 128):  # the non-causal loops
        results += attention_kernels(2, head_dim, target, causal=False)[:3]
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The flash-attention tolerance rule (DESIGN.md section 9), shared by the kernel tests:
a kernel may err against the float32 reference at most twice as much as the reference itself
does when computed in the kernel's low precision, plus a small absolute slack."""

import torch


def assert_within_flash_tolerance(name: str, kernel: torch.Tensor, ref_fp32: torch.Tensor,
                                  ref_lowp: torch.Tensor, eps: float = 1e-5) -> None:
    kernel_error = (kernel.float() - ref_fp32.float()).abs().max().item()
    ref_error = (ref_lowp.float() - ref_fp32.float()).abs().max().item()
    bound = 2 * ref_error + eps
    assert kernel_error <= bound, (
        f"{name}: max |kernel - ref_fp32| = {kernel_error:.3g} exceeds 2 * {ref_error:.3g} + {eps:g}")

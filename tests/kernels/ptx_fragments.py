"""The PTX ISA's fragment tables for mma.m16n8k16 (.f16/.bf16 inputs, .f32 accumulators),
written out from the ISA text independently of the kernels, for the CPU models of the CUDA
attention kernels (test_cuda_attention_model.py, test_cuda_decode_model.py). Lane l holds
group = l / 4 and thread-in-group tig = l % 4."""


def ptx_a(lane, i):
    """(row, col) of element a_i (i in 0..7, register i // 2, half i % 2) of the 16 x 16 A."""
    group, tig = lane >> 2, lane % 4
    row = group + 8 if i in (2, 3, 6, 7) else group
    return row, tig * 2 + (i & 1) + (8 if i >= 4 else 0)


def ptx_b(lane, i):
    """(row k, col n) of element b_i (i in 0..3, register i // 2, half i % 2) of the 16 x 8 B."""
    group, tig = lane >> 2, lane % 4
    return tig * 2 + (i & 1) + (8 if i >= 2 else 0), group


def ptx_c(lane, i):
    """(row, col) of accumulator c_i (i in 0..3) of the 16 x 8 C/D."""
    group, tig = lane >> 2, lane % 4
    return group + (8 if i >= 2 else 0), tig * 2 + (i & 1)

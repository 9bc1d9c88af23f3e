"""Checks of the wgmma CPU model (wgmma_spec.py) against worked examples taken from the PTX ISA
text (9.7.15.5.1.2.x, the canonical-layout examples of Figures 166-170) and from how public
Hopper kernels lay out their tiles (CUTLASS/CuTe, DeepGEMM, FlashAttention-3, ThunderKittens:
TMA-written 128B-swizzled tiles, SBO = 1024, K stepped by adding 32 bytes to the start address).

The tile writers here are written from those sources' own descriptions of the storage (TMA box
order, XOR of the 16-byte chunk with the 128-byte row), not from the model's canonical-layout
formulas, so that a wrong stride or swizzle in the model shows up as a mismatch."""

import pytest
import torch
from ptx_fragments import ptx_a, ptx_c
from wgmma_spec import (
    SWIZZLE_CODES,
    a_register_coords,
    accumulator_coords,
    decode_descriptor,
    make_descriptor,
    read_operand,
    swizzle_address,
    wgmma_reference,
)

SMEM_BYTES = 64 * 1024


def empty_smem():
    return torch.full((SMEM_BYTES // 2,), -1, dtype=torch.int16)


def distinct_values(rows, cols):
    return torch.arange(rows * cols, dtype=torch.int16).reshape(rows, cols)


def store(smem, byte_address, value, elem_bytes=2):
    """Writes one element at a byte address of a 16-bit-element smem tensor."""
    raw = smem.view(torch.uint8)
    raw[byte_address : byte_address + elem_bytes] = torch.tensor([int(value)], dtype=torch.int32).view(
        torch.uint8
    )[:elem_bytes]


def tma_sw128_store(smem, base, tile):
    """A (rows, cols) 16-bit tile as TMA with CU_TENSOR_MAP_SWIZZLE_128B (and ThunderKittens' st idx)
    lays it out: boxes of 64 columns (128 bytes) one after another, each box row-major with 128-byte
    rows, and the 16-byte chunk c of row r stored at chunk c ^ (r % 8) (base 1024-aligned)."""
    rows, cols = tile.shape
    for r in range(rows):
        for c in range(cols):
            box, col = divmod(c, 64)
            chunk, within = divmod(col, 8)
            row_start = base + box * rows * 128 + r * 128
            store(smem, row_start + ((chunk ^ (r % 8)) * 16) + within * 2, tile[r, c])


# ---- descriptor ----------------------------------------------------------------------------


def test_descriptor_bit_positions_match_the_ptx_table():
    desc = make_descriptor(0x1230, 16, 1024, "128B")
    assert desc == 0x123 | (1 << 16) | (64 << 32) | (1 << 62)
    assert (
        make_descriptor(0x10, 0x20, 0x30, "64B", base_offset=5) == 1 | 2 << 16 | 3 << 32 | 5 << 49 | 2 << 62
    )
    assert SWIZZLE_CODES == {"none": 0, "128B": 1, "64B": 2, "32B": 3}
    for swizzle in SWIZZLE_CODES:
        fields = decode_descriptor(make_descriptor(0x3FFF0, 0x3FFF0, 0x10, swizzle))
        assert fields == {
            "start_address": 0x3FFF0,
            "lbo": 0x3FFF0,
            "sbo": 0x10,
            "base_offset": 0,
            "swizzle": swizzle,
        }


@pytest.mark.parametrize(
    "lbo, sbo, swizzle, lbo_field, sbo_field",
    [
        (64 * 4, 32 * 4, "none", 16, 8),  # Figure 166: K-major, no swizzle, tf32
        (128 * 2, 64 * 2, "none", 16, 8),  # Figure 168: MN-major, no swizzle, bf16
        (128 * 2, 256 * 2, "32B", 16, 32),  # Figure 169: MN-major, 32B, bf16
        (256 * 2, 512 * 2, "64B", 32, 64),  # Figure 170: MN-major, 64B, bf16
    ],
)
def test_descriptor_encodings_of_the_ptx_examples(lbo, sbo, swizzle, lbo_field, sbo_field):
    desc = make_descriptor(0, lbo, sbo, swizzle)
    assert (desc >> 16) & 0x3FFF == lbo_field
    assert (desc >> 32) & 0x3FFF == sbo_field


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_address": 8},  # not 16-byte aligned
        {"lbo": 24},
        {"sbo": 1 << 18},  # needs a 15th bit after >> 4
        {"start_address": 1 << 18},
        {"start_address": -16},
        {"base_offset": 8},
        {"swizzle": "16B"},
        {"swizzle": "none", "base_offset": 1},
    ],
)
def test_make_descriptor_refuses_what_does_not_fit(kwargs):
    args = {"start_address": 0, "lbo": 16, "sbo": 1024, "swizzle": "128B", "base_offset": 0} | kwargs
    with pytest.raises(ValueError):
        make_descriptor(**args)


def test_decode_refuses_a_start_address_that_overflowed_into_unused_bits():
    desc = make_descriptor(0x3FFF0, 16, 1024, "128B")
    with pytest.raises(ValueError, match="unused bits"):
        decode_descriptor(desc + 1)  # start field 0x3FFF + 1 carries into bit 14


# ---- swizzle -------------------------------------------------------------------------------


@pytest.mark.parametrize("swizzle, row_bits", [("128B", 3), ("64B", 2), ("32B", 1)])
def test_swizzle_xors_the_chunk_with_the_128_byte_row(swizzle, row_bits):
    for address in range(0, 8192, 2):
        row128, chunk, within = address >> 7, (address >> 4) & 7, address & 15
        expected_chunk = chunk ^ (row128 & ((1 << row_bits) - 1))
        assert swizzle_address(address, swizzle) == (row128 << 7) | (expected_chunk << 4) | within


@pytest.mark.parametrize("swizzle, period", [("128B", 1024), ("64B", 512), ("32B", 256), ("none", 16)])
def test_swizzle_permutes_16_byte_chunks_inside_each_period(swizzle, period):
    addresses = torch.arange(0, 4 * period, 16)
    swizzled = swizzle_address(addresses, swizzle)
    assert torch.equal((swizzled // period).sort().values, (addresses // period).sort().values)
    assert torch.equal(swizzled.sort().values, addresses)
    assert torch.equal(swizzle_address(swizzled, swizzle), addresses)  # an involution


# ---- shared-memory operands ----------------------------------------------------------------


@pytest.mark.parametrize("base", [0, 2048, 5 * 1024])
def test_k_major_sw128_tile_read_in_k16_steps_as_public_kernels_do(base):
    # Q or K of FlashAttention (rows x head_dim 64, bf16): TMA SW128, SBO = 8 rows * 128 B, LBO
    # unused; each k16 step adds 32 bytes to the start address (DeepGEMM, FA3, ThunderKittens).
    rows = 128
    tile = distinct_values(rows, 64)
    smem = empty_smem()
    tma_sw128_store(smem, base, tile)
    for step in range(4):
        desc = make_descriptor(base + 32 * step, 16, 1024, "128B")
        got = read_operand(smem, desc, rows, 16, "K")
        assert torch.equal(got, tile[:, 16 * step : 16 * step + 16])
        # [LBO] "Swizzled layouts: not used": another LBO reads the same operand.
        assert torch.equal(
            read_operand(smem, make_descriptor(base + 32 * step, 4096, 1024, "128B"), rows, 16, "K"), got
        )


def test_k_major_sw128_whole_row_read_equals_the_four_k16_steps():
    tile = distinct_values(64, 64)
    smem = empty_smem()
    tma_sw128_store(smem, 1024, tile)
    assert torch.equal(read_operand(smem, make_descriptor(1024, 16, 1024, "128B"), 64, 64, "K"), tile)
    with pytest.raises(ValueError):
        read_operand(smem, make_descriptor(1024, 16, 1024, "128B"), 64, 72, "K")


@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_mn_major_sw128_v_tile_needs_lbo_between_64_wide_boxes(head_dim):
    # V of FlashAttention as the B operand of P @ V: (kv rows, head_dim) with head_dim contiguous,
    # so B is N-major (imm-trans-b = 1). TMA SW128 stores it as boxes of 64 columns; [LBO] for
    # swizzled MN-major = offset between 64-element groups = box stride; [SBO] = 8 K rows = 1024.
    kv_rows = 64
    v = distinct_values(kv_rows, head_dim)
    smem = empty_smem()
    base = 4096
    tma_sw128_store(smem, base, v)
    box_stride = kv_rows * 128
    for step in range(kv_rows // 16):
        desc = make_descriptor(base + step * 16 * 128, box_stride, 1024, "128B")
        got = read_operand(smem, desc, head_dim, 16, "MN")
        assert torch.equal(got, v[16 * step : 16 * step + 16].T)
    if head_dim > 64:
        wrong = read_operand(smem, make_descriptor(base, 1024 * 3, 1024, "128B"), head_dim, 16, "MN")
        assert not torch.equal(wrong, v[:16].T)


@pytest.mark.parametrize("lbo, sbo", [(128, 256), (1024, 128)])
def test_k_major_no_swizzle_core_matrices(lbo, sbo):
    # [LAYOUT]/[LBO]/[SBO]: a core matrix is 8 rows x 16 bytes, stored as 128 contiguous bytes; LBO
    # steps to the K-neighbour core matrix, SBO to the next 8 rows. Both usual packings: K-neighbours
    # adjacent (lbo=128), and the 8 row groups adjacent ("column-major" core matrices, sbo=128).
    tile = distinct_values(64, 16)
    smem = empty_smem()
    base = 256
    for i in range(64):
        for j in range(16):
            core_matrix = base + (i // 8) * sbo + (j // 8) * lbo
            store(smem, core_matrix + (i % 8) * 16 + (j % 8) * 2, tile[i, j])
    assert torch.equal(read_operand(smem, make_descriptor(base, lbo, sbo, "none"), 64, 16, "K"), tile)


def cute_offset(index, shape, stride):
    """Offset of a 1-D index into a flat CuTe mode (colexicographic: first sub-mode fastest)."""
    offset = 0
    for extent, step in zip(shape, stride):
        offset += (index % extent) * step
        index //= extent
    return offset


# The worked examples of [CANON]: (figure, major, swizzle, elem bytes, (mn shape, mn stride),
# (k shape, k stride), LBO bytes, SBO bytes), the exact layouts in elements as the PTX ISA prints them.
PTX_EXAMPLES = [
    ("166", "K", "none", 4, ((8, 2), (4, 32)), ((4, 4), (1, 64)), 64 * 4, 32 * 4),
    ("167", "K", "32B", 4, ((8, 2), (8, 64)), ((4, 2), (1, 4)), 16, 64 * 4),
    ("168", "MN", "none", 2, ((8, 1, 2), (1, 8, 64)), ((8, 2), (8, 128)), 128 * 2, 64 * 2),
    ("169", "MN", "32B", 2, ((8, 2, 2), (1, 8, 128)), ((8, 2), (16, 256)), 128 * 2, 256 * 2),
    ("170", "MN", "64B", 2, ((8, 4, 2), (1, 8, 256)), ((8, 2), (32, 512)), 256 * 2, 512 * 2),
]


@pytest.mark.parametrize("example", PTX_EXAMPLES, ids=[e[0] for e in PTX_EXAMPLES])
def test_the_ptx_canonical_layout_examples(example):
    # Figure 167 prints k = 4 chunks of tf32 at stride T, which would run into the next 32-byte row;
    # one wgmma reads 2 chunks (32 bytes), so only those are checked (k shape (4, 2)).
    _, major, swizzle, elem_bytes, (mn_shape, mn_stride), (k_shape, k_stride), lbo, sbo = example
    mn = 1
    for extent in mn_shape:
        mn *= extent
    k = k_shape[0] * k_shape[1]
    base = 2048
    smem = empty_smem()
    expected = torch.zeros(mn, k, dtype=torch.int64)
    for i in range(mn):
        for j in range(k):
            element = cute_offset(i, mn_shape, mn_stride) + cute_offset(j, k_shape, k_stride)
            value = 1000 + i * k + j
            store(smem, swizzle_address(base + element * elem_bytes, swizzle), value, elem_bytes)
            expected[i, j] = value
    got = read_operand(smem, make_descriptor(base, lbo, sbo, swizzle), mn, k, major, elem_bytes)
    assert torch.equal(got.long(), expected)


def test_base_offset_model_anchors_the_pattern():
    # MODEL ONLY (unconfirmed on hardware): a SW128 tile whose pattern starts 3 rows past a
    # 1024-byte boundary, read with base_offset = (pattern start >> 7) & 7 as [DESC] prescribes.
    tile = distinct_values(8, 64)
    smem = empty_smem()
    start = 4096 + 3 * 128
    for r in range(8):
        for c in range(64):
            store(smem, start + r * 128 + ((c // 8) ^ r) * 16 + (c % 8) * 2, tile[r, c])
    desc = make_descriptor(start, 16, 1024, "128B", base_offset=(start >> 7) & 7)
    assert torch.equal(read_operand(smem, desc, 8, 64, "K"), tile)


def test_read_operand_refuses_bad_requests():
    smem = empty_smem()
    desc = make_descriptor(0, 16, 1024, "128B")
    with pytest.raises(ValueError):
        read_operand(smem, desc, 60, 16, "K")  # not whole core matrices
    with pytest.raises(ValueError):
        read_operand(smem, desc, 64, 16, "MN", elem_bytes=4)  # transpose is 16-bit only
    with pytest.raises(ValueError):
        read_operand(smem, desc, 64, 16, "row")
    with pytest.raises(IndexError):
        read_operand(smem, make_descriptor(SMEM_BYTES - 1024, 16, 1024, "128B"), 64, 16, "K")


def test_reference_mma_of_operands_read_back():
    a = torch.randn(64, 16).to(torch.bfloat16)
    b = torch.randn(32, 16).to(torch.bfloat16)
    smem = empty_smem()
    tma_sw128_store(smem, 0, a.view(torch.int16))
    tma_sw128_store(smem, 8192, b.view(torch.int16))
    a_read = read_operand(smem, make_descriptor(0, 16, 1024, "128B"), 64).view(torch.bfloat16)
    b_read = read_operand(smem, make_descriptor(8192, 16, 1024, "128B"), 32).view(torch.bfloat16)
    torch.testing.assert_close(wgmma_reference(a_read, b_read), a.float() @ b.float().T)


# ---- register fragments --------------------------------------------------------------------


@pytest.mark.parametrize("n", [8, 16, 64, 128, 256])
def test_accumulator_layout_covers_the_tile_once(n):
    coords = [accumulator_coords(t, r, n) for t in range(128) for r in range(n // 2)]
    assert len(set(coords)) == len(coords) == 64 * n
    assert set(coords) == {(row, col) for row in range(64) for col in range(n)}


def test_accumulator_layout_spot_values():
    assert [accumulator_coords(0, r, 16) for r in range(8)] == [
        (0, 0), (0, 1), (8, 0), (8, 1), (0, 8), (0, 9), (8, 8), (8, 9),
    ]  # fmt: skip
    assert accumulator_coords(37, 0, 64) == (17, 2)  # warp 1, lane 5
    assert accumulator_coords(127, 31, 64) == (63, 63)
    with pytest.raises(ValueError):
        accumulator_coords(0, 8, 16)


def test_a_fragment_covers_the_tile_once():
    coords = [a_register_coords(t, r, h) for t in range(128) for r in range(4) for h in range(2)]
    assert len(set(coords)) == len(coords) == 64 * 16
    assert set(coords) == {(row, col) for row in range(64) for col in range(16)}


def test_each_warp_uses_the_mma_m16n8k16_fragments_16_rows_down():
    # CuTe's ALayout_64x16 / CLayout_64xN are the mma.m16n8k16 layouts stacked per warp.
    for thread in range(128):
        warp, lane = divmod(thread, 32)
        for i in range(8):
            row, col = ptx_a(lane, i)
            assert a_register_coords(thread, i // 2, i % 2) == (row + 16 * warp, col)
        for block in range(4):
            for i in range(4):
                row, col = ptx_c(lane, i)
                assert accumulator_coords(thread, 4 * block + i, 32) == (row + 16 * warp, col + 8 * block)

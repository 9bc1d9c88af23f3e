"""A CPU model of what Hopper's wgmma.mma_async (sm_90a) reads from shared memory and where its
register fragments live, written from the PTX ISA text so that tests can check a CUDA kernel's
descriptors and shared-memory index math without a GPU.

Sources (section numbers are those of the PTX ISA 8.x "Asynchronous Warpgroup Level Matrix"
chapter; the anchors are those of docs.nvidia.com/cuda/parallel-thread-execution):
  [DESC]   9.7.15.5.1.2.2 "Matrix Descriptor Format"
           (#asynchronous-warpgroup-level-matrix-shared-memory-layout-matrix-descriptor)
  [LAYOUT] 9.7.15.5.1.2 "Shared Memory Matrix Layout", Table 38 (swizzle atoms)
  [LBO]    9.7.15.5.1.2.1.1 "Leading Dimension Byte Offset"
  [SBO]    9.7.15.5.1.2.1.2 "Stride Dimension Byte Offset"
  [CANON]  9.7.15.5.1.2.1.3 "Canonical Layouts" (CuTe notation, with worked examples
           Figures 166-170)
  [FRAG]   9.7.15.5.1.1.1 "Matrix Fragments for wgmma.mma_async.m64nNk16", Figures 148/149
  [CUTE]   NVIDIA/cutlass include/cute/arch/mma_sm90_desc.hpp (GmmaDescriptor bitfield,
           LayoutType enum) and include/cute/atom/mma_traits_sm90_gmma.hpp (make_gmma_desc,
           Layout_*_Atom_Bits, CLayout_64xN, ALayout_64x16 = CLayout_64x16)

Conventions: all addresses, LBO and SBO are in bytes of the CTA's shared-memory window; a "chunk"
is 16 bytes (the spec's "128-bit element"), holding T = 16 / elem_bytes matrix elements. Operand
coordinates are (mn, k): mn is M for A and N for B, k is the reduction index.
"""

from __future__ import annotations

import torch

# [DESC] bits 63-62: 0 = no swizzle (CuTe calls it INTERLEAVE), 1 = 128B, 2 = 64B, 3 = 32B.
SWIZZLE_CODES = {"none": 0, "128B": 1, "64B": 2, "32B": 3}
_SWIZZLE_NAMES = {code: name for name, code in SWIZZLE_CODES.items()}
# Bytes in one row of the swizzle atom ([LAYOUT] Table 38: 8x8, 8x4, 8x2, 8x1 chunks for K-major).
SWIZZLE_ROW_BYTES = {"none": 16, "32B": 32, "64B": 64, "128B": 128}
# [DESC] table "Starting address of the repeating pattern": 1024 / 512 / 256 bytes.
SWIZZLE_PERIOD_BYTES = {"none": 16, "32B": 256, "64B": 512, "128B": 1024}

_FIELD_BITS = 14
_RESERVED_MASK = (0b11 << 14) | (0b11 << 30) | (0b111 << 46) | (0x3FF << 52)
_ELEMENT_DTYPES = {1: torch.uint8, 2: torch.int16, 4: torch.int32}


def _check_swizzle(swizzle: str) -> None:
    if swizzle not in SWIZZLE_CODES:
        raise ValueError(f"swizzle must be one of {sorted(SWIZZLE_CODES)}, got {swizzle!r}")


def _encode_field(name: str, byte_value: int) -> int:
    # [DESC] matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4. The mask silently wraps; a model
    # meant to catch kernel bugs refuses instead of wrapping.
    if not isinstance(byte_value, int) or byte_value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {byte_value!r}")
    if byte_value % 16:
        raise ValueError(f"{name} = {byte_value} is not a multiple of 16 bytes")
    if byte_value >> 4 >= 1 << _FIELD_BITS:
        raise ValueError(f"{name} = {byte_value} does not fit the 14-bit (bytes >> 4) field")
    return byte_value >> 4


def make_descriptor(start_address: int, lbo: int, sbo: int, swizzle: str, base_offset: int = 0) -> int:
    """The 64-bit wgmma shared-memory matrix descriptor ([DESC]; same packing as CuTe's
    GmmaDescriptor bitfield [CUTE]):
      bits 13-0  start address >> 4      bits 29-16 LBO >> 4      bits 45-32 SBO >> 4
      bits 51-49 matrix base offset      bits 63-62 swizzle code (SWIZZLE_CODES)
    Bits 15-14, 31-30, 48-46 and 61-52 are unused on sm_90 and left 0."""
    _check_swizzle(swizzle)
    if not 0 <= base_offset <= 7:
        raise ValueError(f"base_offset is a 3-bit field, got {base_offset}")
    if base_offset and swizzle == "none":
        # [DESC]: "valid for all swizzling modes except the no-swizzle mode".
        raise ValueError("base_offset is not valid with the no-swizzle mode")
    return (
        _encode_field("start_address", start_address)
        | _encode_field("lbo", lbo) << 16
        | _encode_field("sbo", sbo) << 32
        | base_offset << 49
        | SWIZZLE_CODES[swizzle] << 62
    )


def decode_descriptor(desc: int) -> dict:
    """Fields of a descriptor, byte values decoded (field << 4). Raises on set unused bits, which a
    kernel gets by letting a start-address increment overflow its 14-bit field."""
    if not 0 <= desc < 1 << 64:
        raise ValueError(f"descriptor must be an unsigned 64-bit value, got {desc:#x}")
    if desc & _RESERVED_MASK:
        raise ValueError(f"descriptor {desc:#018x} has unused bits set: {desc & _RESERVED_MASK:#x}")
    field = (1 << _FIELD_BITS) - 1
    return {
        "start_address": (desc & field) << 4,
        "lbo": (desc >> 16 & field) << 4,
        "sbo": (desc >> 32 & field) << 4,
        "base_offset": desc >> 49 & 0b111,
        "swizzle": _SWIZZLE_NAMES[desc >> 62 & 0b11],
    }


def swizzle_address(byte_address, swizzle: str, base_offset: int = 0):
    """The physical shared-memory byte address that a canonical (pre-swizzle) byte address maps to.

    [CANON] pairs each mode with CuTe's Swizzle<B,4,3> (B = 3/2/1/0 for 128B/64B/32B/none), and CuTe
    applies smem swizzles to byte addresses ([CUTE] Layout_*_Atom_Bits are composed with
    smem_ptr_flag), so: the 16-byte-chunk bits [4, 4+B) are XORed with the bits [7, 7+B) that
    count 128-byte rows:
        128B: bits [4,7) ^= bits [7,10)   (pattern repeats every 1024 bytes)
        64B:  bits [4,6) ^= bits [7,9)    (every 512 bytes)
        32B:  bit 4      ^= bit 7         (every 256 bytes)
    The row bits are the absolute shared-memory address bits: public kernels (CUTLASS, DeepGEMM,
    FlashAttention-3, ThunderKittens) keep base_offset = 0, align tiles to the period and step K
    inside a 128-byte row by adding bytes to the start address, which only reads the TMA-written
    tile right if the XOR uses the absolute address. base_offset (MODEL, unconfirmed): [DESC] says
    it is 0 when the pattern starts on the period boundary and (pattern_start >> 7) & 7 otherwise;
    this model reads that as "the pattern is anchored at an address whose bits [7,10) equal
    base_offset", i.e. the row bits are taken from byte_address - 128 * base_offset.
    Works on ints and on int64 tensors."""
    _check_swizzle(swizzle)
    bits = {"none": 0, "32B": 1, "64B": 2, "128B": 3}[swizzle]
    if bits == 0:
        return byte_address
    row_mask = (1 << bits) - 1
    rows = ((byte_address - (base_offset << 7)) >> 7) & row_mask
    return byte_address ^ (rows << 4)


def _k_major_offsets(mn_idx, k_idx, fields, elem_bytes):
    """[CANON] K-major, in chunks (T elements):
         none : ((8,m),(T,2k)) : ((1T, SBO), (1, LBO))
         32B  : ((8,m),(T,2k)) : ((2T, SBO), (1, T))      likewise 4T for 64B, 8T for 128B
    Rows of a core matrix sit one swizzle row (16/32/64/128 bytes) apart; SBO steps between
    groups of 8 rows ([SBO] "offset from the first 8 rows to the next 8 rows"). Along K, chunks are
    LBO apart without swizzle ([LBO] "first column to the second column of the 8x2 tile") and
    simply adjacent inside the swizzle row otherwise ([LBO] "Swizzled layouts: not used, assumed
    to be 1"): this model ignores the LBO field for swizzled K-major operands."""
    swizzle = fields["swizzle"]
    per_chunk = 16 // elem_bytes
    row_pitch = SWIZZLE_ROW_BYTES[swizzle]
    chunk_stride = fields["lbo"] if swizzle == "none" else 16
    mn_offset = (mn_idx % 8) * row_pitch + (mn_idx // 8) * fields["sbo"]
    k_offset = (k_idx % per_chunk) * elem_bytes + (k_idx // per_chunk) * chunk_stride
    return mn_offset + k_offset


def _mn_major_offsets(mn_idx, k_idx, fields, elem_bytes):
    """[CANON] MN-major, in chunks (T elements):
         none : ((T,1,m),(8,k)) : ((1,T,SBO), (1T,LBO))
         32B  : ((T,2,m),(8,k)) : ((1,T,LBO), (2T,SBO))   likewise 4/4T for 64B, 8/8T for 128B
    Note the swap: without swizzle SBO steps between 16-byte MN chunks ([SBO] "Interleave: offset
    from the first row to the next row") and LBO between groups of 8 K ([LBO] "Interleave: offset
    from the first 8 columns to the next 8 columns"); with swizzle LBO steps between swizzle-row
    wide MN groups (64 16-bit elements for 128B; [LBO] "offset from the first
    (swizzle-byte-size/16) rows to the next") and SBO between groups of 8 K ([SBO] "offset from
    the first 8 columns to the next 8 columns"). CuTe's make_gmma_desc [CUTE] makes the same swap."""
    swizzle = fields["swizzle"]
    per_chunk = 16 // elem_bytes
    in_chunk = (mn_idx % per_chunk) * elem_bytes
    if swizzle == "none":
        mn_offset = in_chunk + (mn_idx // per_chunk) * fields["sbo"]
        k_offset = (k_idx % 8) * 16 + (k_idx // 8) * fields["lbo"]
        return mn_offset + k_offset
    row_bytes = SWIZZLE_ROW_BYTES[swizzle]
    per_row = row_bytes // elem_bytes
    mn_offset = in_chunk + (mn_idx % per_row) // per_chunk * 16 + (mn_idx // per_row) * fields["lbo"]
    k_offset = (k_idx % 8) * row_bytes + (k_idx // 8) * fields["sbo"]
    return mn_offset + k_offset


def _check_operand_shape(mn: int, k: int, major: str, swizzle: str, elem_bytes: int) -> None:
    if elem_bytes not in _ELEMENT_DTYPES:
        raise ValueError(f"elem_bytes must be 1, 2 or 4, got {elem_bytes}")
    if mn <= 0 or mn % 8:
        raise ValueError(f"mn must be a positive multiple of 8 (core matrices are 8 rows), got {mn}")
    per_chunk = 16 // elem_bytes
    if k <= 0 or k % per_chunk:
        raise ValueError(f"k must be a positive multiple of {per_chunk} (one 16-byte chunk)")
    if major == "K":
        if swizzle != "none" and k * elem_bytes > SWIZZLE_ROW_BYTES[swizzle]:
            # The canonical K-major layout has no K stride past the swizzle row; wider tiles are
            # read by stepping the start address (one wgmma reads 32 bytes of K).
            raise ValueError(f"a {swizzle} K-major operand holds at most one swizzle row of K")
    elif major == "MN":
        # wgmma: imm-trans-a/-b (MN-major shared-memory operands) exist only for .f16/.bf16.
        if elem_bytes != 2:
            raise ValueError("MN-major (transposed) operands are defined only for 16-bit types")
        if k % 8:
            raise ValueError(f"an MN-major operand's k must be a multiple of 8, got {k}")
    else:
        raise ValueError(f"major must be 'K' or 'MN', got {major!r}")


def operand_byte_addresses(desc: int, mn: int, k: int = 16, major: str = "K", elem_bytes: int = 2):
    """(mn, k) int64 tensor of the physical byte address of each operand element."""
    fields = decode_descriptor(desc)
    _check_operand_shape(mn, k, major, fields["swizzle"], elem_bytes)
    mn_idx = torch.arange(mn, dtype=torch.int64).unsqueeze(1)
    k_idx = torch.arange(k, dtype=torch.int64).unsqueeze(0)
    offsets = (_k_major_offsets if major == "K" else _mn_major_offsets)(mn_idx, k_idx, fields, elem_bytes)
    canonical = fields["start_address"] + offsets
    return swizzle_address(canonical, fields["swizzle"], fields["base_offset"])


def _smem_bytes(smem: torch.Tensor) -> torch.Tensor:
    if smem.dim() != 1 or smem.element_size() not in (1, 2, 4):
        raise ValueError("smem must be a 1-D tensor of 1-, 2- or 4-byte elements (the whole window)")
    return smem.contiguous().view(torch.uint8)


def read_operand(smem: torch.Tensor, desc: int, mn: int, k: int = 16, major: str = "K", elem_bytes: int = 2):
    """Element [i, j] = the value wgmma uses for operand row/col i (M for A, N for B) and reduction
    index j, as raw bits (int16 for 16-bit types). major="K": K is contiguous (imm-trans = 0, the
    default for both A and B); major="MN": MN is contiguous (imm-trans = 1)."""
    raw = _smem_bytes(smem)
    addresses = operand_byte_addresses(desc, mn, k, major, elem_bytes)
    if int(addresses.max()) + elem_bytes > raw.numel():
        raise IndexError(f"operand reaches byte {int(addresses.max()) + elem_bytes}, smem has {raw.numel()}")
    if bool((addresses % elem_bytes != 0).any()):
        raise ValueError("an element address is not aligned to the element size")
    usable = raw.numel() // elem_bytes * elem_bytes
    return raw[:usable].view(_ELEMENT_DTYPES[elem_bytes])[addresses // elem_bytes]


def accumulator_coords(thread: int, reg: int, n: int) -> tuple[int, int]:
    """(row, col) in the 64 x N D tile of f32 accumulator register `reg` (0 .. N/2-1) of warpgroup
    thread `thread` for wgmma .m64nNk16. [FRAG] Figure 149; CuTe's CLayout_64xN [CUTE] =
    ((4,8,4),(2,2,N/8)) : ((128,1,16),(64,8,512)) on column-major (M=64, N) coordinates: warp w
    owns rows 16w..16w+15, lane l sits at row l/4 (+8 for the second register pair) and column
    2*(l%4) (+1 for the odd register) of each 8-column block, blocks in register order."""
    if n % 8 or not 8 <= n <= 256:
        raise ValueError(f"N must be a multiple of 8 in [8, 256], got {n}")
    if not 0 <= reg < n // 2:
        raise ValueError(f"an m64n{n} f32 accumulator has {n // 2} registers per thread, got {reg}")
    warp, lane = _split_thread(thread)
    row = 16 * warp + lane // 4 + 8 * (reg >> 1 & 1)
    col = 8 * (reg >> 2) + 2 * (lane % 4) + (reg & 1)
    return row, col


def a_register_coords(thread: int, reg: int, half: int) -> tuple[int, int]:
    """(row, col) in the 64 x 16 A tile of the low (half=0) or high (half=1) 16-bit element of
    .f16x2 register `reg` (0..3) when A comes from registers. [FRAG] Figure 148 (elements a0..a7,
    a_{2*reg+half}); CuTe's ALayout_64x16 = CLayout_64x16 [CUTE]: each warp's 16 rows use the
    mma.m16n8k16 A fragment, with reg 1 / 3 eight rows down and reg 2 / 3 eight columns right."""
    if not 0 <= reg < 4 or half not in (0, 1):
        raise ValueError(f"A has 4 registers of 2 halves per thread, got reg={reg}, half={half}")
    warp, lane = _split_thread(thread)
    row = 16 * warp + lane // 4 + 8 * (reg & 1)
    col = 8 * (reg >> 1) + 2 * (lane % 4) + half
    return row, col


def _split_thread(thread: int) -> tuple[int, int]:
    if not 0 <= thread < 128:
        raise ValueError(f"a warpgroup has threads 0..127, got {thread}")
    return divmod(thread, 32)


def wgmma_reference(a_mk: torch.Tensor, b_nk: torch.Tensor) -> torch.Tensor:
    """D = A @ B^T in float32 for operands as read_operand returns them (rows M or N, columns K),
    given here as real values (e.g. read_operand(...).view(torch.bfloat16))."""
    if a_mk.shape[1] != b_nk.shape[1]:
        raise ValueError(f"K differs: A {tuple(a_mk.shape)}, B {tuple(b_nk.shape)}")
    return a_mk.float() @ b_nk.float().T

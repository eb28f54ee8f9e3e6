"""Storage formats and quantisation-simulation primitives (dsv4-architecture.md §3.1, §9).

Everything here is exact integer/bit arithmetic on top of float32 so that results are
bit-identical across runs.  Torch versions are used inside the reference model; numpy
versions are used when writing checkpoints.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import torch

E2M1_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                        -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


# ----------------------------------------------------------------------------- helpers
def _ceil_log2_pos_f32_np(v: np.ndarray) -> np.ndarray:
    """ceil(log2(v)) for positive normal float32 v, by exponent/mantissa bits (exact)."""
    v = np.ascontiguousarray(v, dtype=np.float32)
    bits = v.view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.int32) - 127
    man = bits & 0x7FFFFF
    return exp + (man != 0).astype(np.int32)


def _ceil_log2_pos_f32_t(v: torch.Tensor) -> torch.Tensor:
    v = v.to(torch.float32).contiguous()
    bits = v.view(torch.int32)
    exp = ((bits >> 23) & 0xFF) - 127
    man = bits & 0x7FFFFF
    return exp + (man != 0).to(torch.int32)


def _pow2_t(e: torch.Tensor) -> torch.Tensor:
    """2**e for int32 e in the normal float32 range, exact."""
    return ((e + 127).to(torch.int32) << 23).view(torch.float32)


def _pow2_np(e: np.ndarray) -> np.ndarray:
    return ((e.astype(np.int32) + 127).astype(np.uint32) << 23).view(np.float32)


# ----------------------------------------------------------------------------- weights (numpy)
def fp8_block_quant(w: np.ndarray, block: int = 128):
    """W [out,in] f32 -> (e4m3 bytes [out,in] as uint8, e8m0 bytes [ceil(out/128), ceil(in/128)])."""
    w = np.asarray(w, dtype=np.float32)
    out, inn = w.shape
    ro, ri = -(-out // block), -(-inn // block)
    pad = np.zeros((ro * block, ri * block), np.float32)
    pad[:out, :inn] = w
    blk = pad.reshape(ro, block, ri, block)
    amax = np.abs(blk).max(axis=(1, 3))
    amax = np.maximum(amax, np.float32(1e-4))
    e = _ceil_log2_pos_f32_np(amax / np.float32(448.0))
    s = _pow2_np(e)
    sfull = np.repeat(np.repeat(s, block, 0), block, 1)[:out, :inn]
    q = np.clip(w / sfull, -448.0, 448.0).astype(ml_dtypes.float8_e4m3fn)
    return q.view(np.uint8), (e + 127).astype(np.uint8)


def fp8_block_dequant(q_u8: np.ndarray, e_u8: np.ndarray, block: int = 128) -> np.ndarray:
    q = q_u8.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    out, inn = q.shape
    s = _pow2_np(e_u8.astype(np.int32) - 127)
    sfull = np.repeat(np.repeat(s, block, 0), block, 1)[:out, :inn]
    return q * sfull


def fp4_quant(w: np.ndarray, block: int = 32):
    """W [out,in] -> (packed uint8 [out, in/2] low nibble = even element, e8m0 [out, in/32])."""
    w = np.asarray(w, dtype=np.float32)
    out, inn = w.shape
    assert inn % block == 0 and inn % 2 == 0
    blk = w.reshape(out, inn // block, block)
    amax = np.maximum(np.abs(blk).max(axis=2), np.float32(6.0 * 2.0 ** -126))
    e = _ceil_log2_pos_f32_np(amax / np.float32(6.0))
    s = _pow2_np(e)
    x = np.clip(blk / s[..., None], -6.0, 6.0).astype(ml_dtypes.float4_e2m1fn)
    nib = (x.view(np.uint8) & 0x0F).reshape(out, inn)
    packed = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    return packed, (e + 127).astype(np.uint8)


def fp4_unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    out, half = packed.shape
    nib = np.empty((out, half * 2), np.uint8)
    nib[:, 0::2] = packed & 0x0F
    nib[:, 1::2] = packed >> 4
    return nib


def fp4_dequant(packed: np.ndarray, e_u8: np.ndarray, block: int = 32) -> np.ndarray:
    nib = fp4_unpack_nibbles(packed)
    vals = E2M1_VALUES[nib]
    s = _pow2_np(e_u8.astype(np.int32) - 127)
    return vals * np.repeat(s, block, axis=1)


def fp4_to_mxfp4_blocks(packed: np.ndarray, e_u8: np.ndarray) -> np.ndarray:
    """Official FP4 (low nibble = even) + per-32 E8M0 -> ggml MXFP4 blocks [out, in/32, 17] (lossless).

    ggml block_mxfp4 = {uint8 e; uint8 qs[16]}, element j (<16) in the low nibble of qs[j],
    element j+16 in the high nibble; value = kvalues_doubled[n] * 2^(e-128) = e2m1[n] * 2^(e-127).
    """
    out = packed.shape[0]
    nib = fp4_unpack_nibbles(packed).reshape(out, -1, 32)
    qs = (nib[..., :16] | (nib[..., 16:] << 4)).astype(np.uint8)
    return np.concatenate([e_u8.reshape(out, -1, 1).astype(np.uint8), qs], axis=-1)


# ----------------------------------------------------------------------------- activations (torch)
def fp8_roundtrip(x: torch.Tensor, block: int) -> torch.Tensor:
    """§9.2 / §9.1: per `block` channels along the last dim, power-of-two scale, e4m3 RNE, back to x.dtype."""
    shp = x.shape
    assert shp[-1] % block == 0
    xf = x.to(torch.float32).reshape(*shp[:-1], shp[-1] // block, block)
    amax = xf.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)
    s = _pow2_t(_ceil_log2_pos_f32_t(amax / 448.0))
    q = (xf / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).to(torch.float32)
    return (q * s).reshape(shp).to(x.dtype)


def _e2m1_round_t(y: torch.Tensor) -> torch.Tensor:
    """Round float32 in [-6,6] to the e2m1 grid, nearest, ties to even mantissa (via ml_dtypes)."""
    a = y.detach().cpu().numpy().astype(np.float32)
    r = a.astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    return torch.from_numpy(r).to(y.device)


def fp4_roundtrip(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """§9.3 FP4 round-trip: per 32, amax floor 6*2^-126, s = 2^ceil(log2(amax/6)), e2m1 RNE."""
    shp = x.shape
    xf = x.to(torch.float32).reshape(*shp[:-1], shp[-1] // block, block)
    amax = xf.abs().amax(dim=-1, keepdim=True).clamp_min(6.0 * 2.0 ** -126)
    s = _pow2_t(_ceil_log2_pos_f32_t(amax / 6.0))
    q = _e2m1_round_t((xf / s).clamp(-6.0, 6.0))
    return (q * s).reshape(shp).to(x.dtype)


_HAD_CACHE: dict = {}


def hadamard_matrix(n: int, dtype=torch.float32) -> torch.Tensor:
    """Sylvester (natural order) Hadamard matrix scaled by 1/sqrt(n)."""
    key = (n, dtype)
    if key not in _HAD_CACHE:
        assert n & (n - 1) == 0
        h = np.array([[1.0]])
        while h.shape[0] < n:
            h = np.block([[h, h], [h, -h]])
        _HAD_CACHE[key] = torch.tensor(h / math.sqrt(n), dtype=dtype)
    return _HAD_CACHE[key]


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal Walsh-Hadamard transform along the last dim (butterfly, exact same order as
    the in-place (a+b, a-b) transform over strides 1..n/2, then * 1/sqrt(n))."""
    n = x.shape[-1]
    y = x.to(torch.float32).clone()
    h = 1
    shp = y.shape
    while h < n:
        y = y.reshape(*shp[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    y = y.reshape(shp) * (1.0 / math.sqrt(n))
    return y.to(x.dtype)

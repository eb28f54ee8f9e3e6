"""Our CPU replacements for three of the six official kernels (written by us, not copied).

The official model.py imports ``act_quant, fp4_act_quant, fp8_gemm, fp4_gemm, sparse_attn,
hc_split_sinkhorn`` from ``kernel``. The official ``kernel.py`` is tilelang (CUDA only). The
``Nicooo-Wang/DeepSeek-V4-Pro-code`` mirror ships a third-party pure-PyTorch ``kernel.py``; we
use its ``fp8_gemm``, ``sparse_attn``, ``hc_split_sinkhorn`` and ``hadamard_transform`` unchanged,
but its quantisers do NOT match the official tilelang kernels:

* its ``act_quant(inplace=True)`` never casts to e4m3 (so the FP8 KV "simulation" is a no-op),
  its scale is ``2**ceil(log2(.))`` in float (not bit-exact at powers of two);
* its ``fp4_act_quant(inplace=True)`` never casts to e2m1 (indexer FP4 simulation is a no-op);
* its ``fp4_gemm`` treats the packed ``float4_e2m1fn_x2`` weight as unpacked floats.

The functions below re-implement the semantics of ``kernel_tilelang.py`` (current official
revision, Pro mirror @0ec3a03) and, with ``revision='initial'``, of the initial revision's
``act_quant`` whose in-place path casts to the *input* dtype instead of FP8 (no rounding when the
input is float32; bf16 rounding when it is bf16).
"""
import numpy as np
import torch
import ml_dtypes

FP8_MAX = 448.0
FP4_MAX = 6.0
FP4_TABLE = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                          -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float32)

REVISION = "current"   # set by run_official.py
# Diagnostic switches (all True = the official behaviour). Turning one off is OUR change, used only
# to explain disagreements (e.g. official-code with kv_fp8/indexer_fp4 off vs transformers sim OFF):
#   kv_fp8      act_quant(inplace=True): FP8 round-trip of KV nope channels (main KV + compressor)
#   indexer_fp4 fp4_act_quant(inplace=True): FP4 round-trip of indexer q / compressed keys
#   act_fp8     act_quant(inplace=False) before FP8/FP4 GEMMs (dynamic activation quantisation)
SIM = {"kv_fp8": True, "indexer_fp4": True, "act_fp8": True}


def pow2_ceil(x: torch.Tensor) -> torch.Tensor:
    """2**ceil(log2(x)) for positive normal float32 x, exactly (tilelang fast_round_scale:
    exponent bits + 1 if any mantissa bit is set)."""
    x = x.float()
    m, e = torch.frexp(x)                 # x = m * 2**e, m in [0.5, 1)
    k = torch.where(m == 0.5, e - 1, e)   # exact power of two -> itself
    return torch.ldexp(torch.ones_like(x), k)


def round_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Round float32 to the e4m3fn grid (RNE, torch's CPU cast) and back to float32."""
    return x.float().to(torch.float8_e4m3fn).float()


def round_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Round float32 (already clamped to [-6, 6]) to the e2m1 grid, RNE (ml_dtypes), back to f32."""
    a = x.detach().float().cpu().numpy()
    r = a.astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    return torch.from_numpy(r).to(x.device)


def act_quant(x, block_size=128, scale_fmt=None, scale_dtype=torch.float32, inplace=False):
    N = x.size(-1)
    assert N % block_size == 0
    if inplace and not SIM["kv_fp8"]:
        return x
    if not inplace and not SIM["act_fp8"]:
        return x.float(), torch.ones(*x.shape[:-1], N // block_size)
    orig = x.dtype
    xb = x.float().unflatten(-1, (-1, block_size))
    amax = xb.abs().amax(-1, keepdim=True).clamp_min(1e-4)
    s = amax * (1.0 / FP8_MAX)
    if scale_fmt is not None:
        s = pow2_ceil(s)
    q = (xb / s).clamp(-FP8_MAX, FP8_MAX)
    if inplace:
        if REVISION == "initial":
            # initial kernel: T.Cast(out_dtype=in_dtype, clamp(x/s)) * s -> rounds to the input
            # dtype only (a no-op for float32 inputs)
            y = q.to(orig).float() * s
        else:
            y = round_e4m3(q) * s
        x.copy_(y.flatten(-2).to(orig))
        return x
    y = q.flatten(-2).to(torch.float8_e4m3fn)
    s = s.squeeze(-1)
    if scale_dtype == torch.float8_e8m0fnu:
        s = s.to(torch.float8_e8m0fnu)
    return y, s


def fp4_act_quant(x, block_size=32, inplace=False):
    N = x.size(-1)
    assert N % block_size == 0
    if inplace and not SIM["indexer_fp4"]:
        return x
    orig = x.dtype
    xb = x.float().unflatten(-1, (-1, block_size))
    amax = xb.abs().amax(-1, keepdim=True).clamp_min(6 * 2.0 ** -126)
    s = pow2_ceil(amax * (1.0 / FP4_MAX))
    q = (xb / s).clamp(-FP4_MAX, FP4_MAX)
    if inplace:
        x.copy_((round_e2m1(q) * s).flatten(-2).to(orig))
        return x
    raise NotImplementedError("fp4_act_quant(inplace=False) is not used by model.py")


def _scale_f32(t):
    if t.dtype == torch.float8_e8m0fnu:
        return torch.ldexp(torch.ones(t.shape), t.view(torch.uint8).to(torch.int32) - 127)
    return t.float()


def unpack_fp4(w: torch.Tensor) -> torch.Tensor:
    """[N, K/2] packed e2m1 (low nibble = even column) -> [N, K] float32."""
    u = w.view(torch.uint8)
    lo, hi = (u & 0x0F).long(), ((u >> 4) & 0x0F).long()
    return torch.stack([FP4_TABLE[lo], FP4_TABLE[hi]], dim=-1).flatten(-2)


_WCACHE = {}


def _dequant_cached(kind, b, b_s):
    """Dequantised float32 copy of a (constant) weight, cached by storage pointer."""
    key = (kind, b.data_ptr(), b_s.data_ptr(), tuple(b.shape))
    w = _WCACHE.get(key)
    if w is None:
        if kind == "fp4":
            w = unpack_fp4(b) * _scale_f32(b_s).repeat_interleave(32, 1)
        else:
            N, K = b.shape
            sb = _scale_f32(b_s).repeat_interleave(128, 0).repeat_interleave(128, 1)[:N, :K]
            w = b.float() * sb
        _WCACHE[key] = w
    return w


def fp4_gemm(a, a_s, b, b_s, scale_dtype=torch.float32):
    """C = A_fp8[..., K] @ B_fp4[N, K]^T; A per-128 scales along K, B per-32 scales along K.
    fp32 accumulation (tilelang accumulates per 128-block in fp32 and applies scales; we
    dequantise both operands exactly and do one fp32 matmul)."""
    lead, K = a.shape[:-1], a.size(-1)
    a2 = a.reshape(-1, K).float() * _scale_f32(a_s).reshape(-1, K // 128).repeat_interleave(128, 1)
    c = a2 @ _dequant_cached("fp4", b, b_s).T
    return c.reshape(*lead, -1).to(torch.get_default_dtype())


def fp8_gemm(a, a_s, b, b_s, scale_dtype=torch.float32):
    """C = A_fp8 @ B_fp8^T with per-128 activation scales and 128x128 weight scales (same maths
    as the Pro mirror's kernel.fp8_gemm; re-implemented so e8m0 decoding is exact)."""
    lead, K = a.shape[:-1], a.size(-1)
    N = b.size(0)
    a2 = a.reshape(-1, K).float() * _scale_f32(a_s).reshape(-1, (K + 127) // 128).repeat_interleave(128, 1)[:, :K]
    c = a2 @ _dequant_cached("fp8", b, b_s).T
    return c.reshape(*lead, N).to(torch.get_default_dtype())

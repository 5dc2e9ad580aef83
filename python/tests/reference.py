"""The float64 reference of longattn's semantics (README "Semantics"), in numpy."""

import numpy as np


def attention_ref(q, k, v, causal=False, window_left=-1, softcap=0.0, scale=None, sinks=None,
                  mask=None):
    """q [B,Hq,Lq,D], k [B,Hkv,Lk,D], v [B,Hkv,Lk,Dv] (float64 arrays) -> (o, lse)."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    g = Hq // Hkv
    k = np.repeat(k, g, axis=1)
    v = np.repeat(v, g, axis=1)
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    visible = np.ones((Lq, Lk), dtype=bool)
    i = np.arange(Lq)[:, None]
    j = np.arange(Lk)[None, :]
    off = Lk - Lq
    if causal:
        visible &= j <= i + off
    if window_left >= 0:
        visible &= j >= i + off - window_left
    s = np.where(visible, s, -np.inf)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == bool or m.dtype == np.uint8:
            s = np.where(np.broadcast_to(m != 0, s.shape), s, -np.inf)
        else:
            s = s + np.broadcast_to(m.astype(np.float64), s.shape)
    cols = [s]
    if sinks is not None:
        cols.append(np.broadcast_to(np.asarray(sinks, np.float64)[None, :, None, None],
                                    (B, Hq, Lq, 1)))
    full = np.concatenate(cols, axis=-1)
    mx = full.max(axis=-1, keepdims=True)
    empty = ~np.isfinite(s).any(axis=-1, keepdims=True)  # no visible key
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.exp(full - mx)
    den = e.sum(axis=-1, keepdims=True)
    p = e[..., :Lk] / np.where(den > 0, den, 1.0)
    o = np.einsum("bhij,bhjd->bhid", p, v)
    with np.errstate(divide="ignore"):
        lse = (np.log(den) + mx)[..., 0]
    o = np.where(empty, 0.0, o)
    lse = np.where(empty[..., 0], -np.inf, lse)
    return o, lse

"""Context-parallel attention over torch.distributed: one sequence spread over the ranks of a
process group, partial results combined exactly through their LSEs (longattn.merge_states).

    zigzag_shard(x, rank, world, dim)     # the causal load balance: chunks r and 2*world-1-r
    zigzag_unshard(shards, world, dim)    # the inverse, from every rank's shard
    ring_attention(q, k, v, ...)          # pass-KV ring over zig-zag shards of Q, K and V
    pass_q_attention(q, k, v, ...)        # one query chunk against a KV cache split by slices

Every rank calls the same function with tensors of the same shapes (the SPMD convention).
Tensors are torch CPU tensors (gloo) or CUDA tensors (nccl), layout [B, H, L, D], forward only.
"""

import torch
import torch.distributed as dist

from ._errors import InvalidArgumentError
from .api import attention, merge_states

__all__ = ["zigzag_shard", "zigzag_unshard", "ring_attention", "pass_q_attention"]


# ---- Zig-zag sharding ----------------------------------------------------------------------------
def _chunk_len(length, world, name):
    if world < 1:
        raise InvalidArgumentError(f"world = {world}: it must be >= 1")
    if length % (2 * world):
        raise InvalidArgumentError(
            f"{name} = {length}: the zig-zag split cuts the sequence into 2 * world = "
            f"{2 * world} equal chunks, so it must be divisible by {2 * world}")
    return length // (2 * world)


def zigzag_shard(x, rank, world, dim=2):
    """Rank `rank`'s share of x along `dim`: chunks rank and 2*world-1-rank of the 2*world equal
    chunks, concatenated. Under causal attention every rank then holds the same work."""
    if not 0 <= rank < world:
        raise InvalidArgumentError(
            f"rank = {rank}: allowed values are 0 to world - 1 = {world - 1}")
    c = _chunk_len(x.shape[dim], world, f"x.shape[{dim}]")
    return torch.cat((x.narrow(dim, rank * c, c), x.narrow(dim, (2 * world - 1 - rank) * c, c)),
                     dim)


def zigzag_unshard(shards, world, dim=2):
    """The full tensor from the list of every rank's zig-zag shard (shards[r] from rank r)."""
    if len(shards) != world:
        raise InvalidArgumentError(
            f"shards has {len(shards)} entries: it must hold one shard per rank (world = {world})")
    length = shards[0].shape[dim]
    if length % 2 or any(s.shape[dim] != length for s in shards):
        raise InvalidArgumentError(
            f"shards have lengths {[s.shape[dim] for s in shards]} along dim {dim}: every shard "
            f"is two equal chunks, so they must be equal and even")
    c = length // 2
    firsts = [s.narrow(dim, 0, c) for s in shards]
    seconds = [s.narrow(dim, c, c) for s in reversed(shards)]
    return torch.cat(firsts + seconds, dim)


# ---- Shared helpers ------------------------------------------------------------------------------
def _rank_world(group):
    if not (dist.is_available() and dist.is_initialized()):
        raise InvalidArgumentError(
            "group: torch.distributed is not initialized; call torch.distributed."
            "init_process_group first")
    return dist.get_rank(group), dist.get_world_size(group)


def _global_rank(group, r):
    return r if group is None else dist.get_global_rank(group, r)


def _check_common(q, k, v, window_left, sinks, names=("q", "k", "v")):
    for t, name in zip((q, k, v), names):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise InvalidArgumentError(
                f"{name} must be a 4-d torch tensor [B, H, L, D] (layout 'bhld')")
    if window_left != -1:
        raise InvalidArgumentError(
            f"window_left = {window_left}: context-parallel attention supports only -1 (no "
            f"window); a window crosses chunk boundaries unevenly")
    if sinks is not None and (not isinstance(sinks, torch.Tensor) or sinks.dtype != torch.float32
                              or tuple(sinks.shape) != (q.shape[1],)):
        raise InvalidArgumentError(
            f"sinks must be a float32 [Hq = {q.shape[1]}] tensor (one logit per query head)")


def _merge(o1, l1, o2, l2):
    """Exact LSE merge of two float32 partials over disjoint keys (a part with lse -inf adds
    nothing)."""
    return merge_states(torch.stack((o1, o2)), torch.stack((l1, l2)))


def _finish(o, lse, sinks, dtype, return_lse):
    """Adds the sinks once, to the merged result (they join the softmax denominator and carry no
    value; a row that sees no key stays O = 0, LSE = -inf), and casts O to the input dtype."""
    if sinks is not None:
        s = sinks.to(lse.device).view(1, -1, 1)
        total = torch.where(torch.isinf(lse), lse, torch.logaddexp(lse, s))
        scale = torch.where(torch.isinf(lse), torch.zeros_like(lse), torch.exp(lse - total))
        o, lse = o * scale.unsqueeze(-1), total
    o = o.to(dtype)
    return (o, lse) if return_lse else o


def _partial(q, k, v, causal, scale, softcap, num_threads):
    o, lse = attention(q, k, v, causal=causal, scale=scale, softcap=softcap, return_lse=True,
                       num_threads=num_threads)
    return o.float(), lse


class _Exchange:
    """One non-blocking send to the next rank and receive from the previous one. CUDA tensors
    post it on a side stream so that it overlaps the attention on the current stream."""

    def __init__(self, device, group):
        self.group = group
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def start(self, buf, to, frm):
        recv = torch.empty_like(buf)
        ops = [dist.P2POp(dist.isend, buf, to, self.group),
               dist.P2POp(dist.irecv, recv, frm, self.group)]
        if self.stream is None:
            return dist.batch_isend_irecv(ops), recv
        self.stream.wait_stream(torch.cuda.current_stream(buf.device))  # buf is written
        with torch.cuda.stream(self.stream):
            return dist.batch_isend_irecv(ops), recv

    @staticmethod
    def finish(reqs):
        for r in reqs:  # for CUDA: the current stream waits for the transfer
            r.wait()


# ---- Ring (pass-KV) ------------------------------------------------------------------------------
def _visible(q_chunk, kv_chunks, causal):
    """(n, diagonal): q_chunk sees the first n of the visiting chunks (listed in ascending order,
    so the visible ones are a prefix), the last one causally when it is q_chunk itself."""
    if not causal:
        return len(kv_chunks), False
    n = sum(kc <= q_chunk for kc in kv_chunks)
    return n, n > 0 and kv_chunks[n - 1] == q_chunk


def ring_attention(q, k, v, *, group=None, causal=True, window_left=-1, scale=None, softcap=0.0,
                   sinks=None, return_lse=False, num_threads=None):
    """Attention of one sequence whose Q, K and V are zig-zag sharded over the ranks of `group`.

    q [B, Hq, L_local, Dqk], k [B, Hkv, L_local, Dqk], v [B, Hkv, L_local, Dv]: this rank's
    zigzag_shard of each (L_local = 2 * chunk, the same on every rank). K/V shards travel around
    the ring, the next transfer posted before the current shard is used. Returns this rank's
    o [B, Hq, L_local, Dv] in q's dtype (and lse [B, Hq, L_local] float32), in the same zig-zag
    order: zigzag_unshard of every rank's o is attention() of the full sequence. Causal is over
    the full sequence (self-attention, Lq = Lk); window_left must be -1.
    """
    rank, world = _rank_world(group)
    _check_common(q, k, v, window_left, sinks)
    length = q.shape[2]
    if length % 2 or k.shape[2] != length or v.shape[2] != length:
        raise InvalidArgumentError(
            f"q, k, v have local lengths {q.shape[2]}, {k.shape[2]}, {v.shape[2]}: each must be "
            f"a zig-zag shard (two equal chunks) of the same sequence, so equal and even")
    c = length // 2
    q_chunks = (rank, 2 * world - 1 - rank)
    to, frm = _global_rank(group, (rank + 1) % world), _global_rank(group, (rank - 1) % world)
    # K and V travel as one flat buffer: one message each way per step.
    kv = torch.cat((k.reshape(-1), v.reshape(-1)))
    nk = k.numel()
    exchange = _Exchange(q.device, group)

    B, Hq, Dv = q.shape[0], q.shape[1], v.shape[3]
    acc_o = q.new_zeros((B, Hq, length, Dv), dtype=torch.float32)
    acc_lse = q.new_full((B, Hq, length), float("-inf"), dtype=torch.float32)
    for step in range(world):
        pending = exchange.start(kv, to, frm) if step + 1 < world else None
        src = (rank - step) % world
        ks = kv[:nk].view(k.shape)
        vs = kv[nk:].view(v.shape)
        first, second = (_visible(qc, (src, 2 * world - 1 - src), causal) for qc in q_chunks)
        # Both local chunks see the same full chunks (every step but the first): one call.
        work = ([(slice(0, length), first)] if first == second and not first[1] else
                [(slice(0, c), first), (slice(c, length), second)])
        for rows, (n, diagonal) in work:
            if n == 0:
                continue
            o, lse = _partial(q[:, :, rows], ks[:, :, :n * c], vs[:, :, :n * c], diagonal,
                              scale, softcap, num_threads)
            acc_o[:, :, rows], acc_lse[:, :, rows] = _merge(acc_o[:, :, rows],
                                                            acc_lse[:, :, rows], o, lse)
        if pending is not None:
            reqs, kv = pending
            exchange.finish(reqs)
    return _finish(acc_o, acc_lse, sinks, q.dtype, return_lse)


# ---- Pass-Q (a query chunk against a KV cache sliced over the ranks) -----------------------------
def _slice_partial(q, k, v, off, causal, scale, softcap, num_threads):
    """(o, lse) float32 of q against this slice, where query i sees local key j iff j <= i + off
    (when causal). Rows split into: none visible (i < -off), a prefix of the slice (bottom-right
    causal over the whole slice for rows up to the one that reaches its end), all of it."""
    B, Hq, Lq, n = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    o = q.new_zeros((B, Hq, Lq, v.shape[3]), dtype=torch.float32)
    lse = q.new_full((B, Hq, Lq), float("-inf"), dtype=torch.float32)
    if n == 0:
        return o, lse
    i0, i1 = (max(0, -off), min(Lq, n - off)) if causal else (0, 0)
    if i0 < i1:
        o[:, :, i0:i1], lse[:, :, i0:i1] = _partial(q[:, :, i0:i1], k, v, True, scale, softcap,
                                                    num_threads)
    start = max(i1, 0)
    if start < Lq:
        o[:, :, start:], lse[:, :, start:] = _partial(q[:, :, start:], k, v, False, scale,
                                                      softcap, num_threads)
    return o, lse


def pass_q_attention(q, k_local, v_local, *, kv_start, kv_total, group=None, causal=True,
                     window_left=-1, scale=None, softcap=0.0, sinks=None, return_lse=False,
                     num_threads=None):
    """A query chunk against a KV cache whose slices are spread over the ranks of `group`.

    Every rank passes the same q [B, Hq, Lq, Dqk]: the last Lq positions of a sequence of
    kv_total keys (bottom-right causal). k_local [B, Hkv, n, Dqk] and v_local [B, Hkv, n, Dv] are
    keys [kv_start, kv_start + n) of it; the ranks' slices must tile [0, kv_total) (in any rank
    order; a slice may be empty). Each rank attends to its slice, the float32 partials are
    all-gathered and merged by LSE, and every rank returns the same o [B, Hq, Lq, Dv] in q's dtype
    (and lse [B, Hq, Lq] float32). Arguments are checked on every rank together, so a bad slice
    raises everywhere instead of leaving the others waiting.
    """
    rank, world = _rank_world(group)
    _check_common(q, k_local, v_local, window_left, sinks, ("q", "k_local", "v_local"))
    Lq, n = q.shape[2], k_local.shape[2]
    local_ok = (0 <= kv_start and kv_start + n <= kv_total and Lq <= kv_total
                and v_local.shape[2] == n)
    meta = torch.tensor([kv_start, n, kv_total, Lq, int(local_ok)], dtype=torch.int64,
                        device=q.device)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta, group)
    metas = [m.tolist() for m in metas]
    bad = [r for r, m in enumerate(metas) if not m[4]]
    if bad:
        raise InvalidArgumentError(
            f"kv_start, k_local, kv_total on rank(s) {bad}: each rank needs 0 <= kv_start, "
            f"kv_start + k_local.shape[2] <= kv_total, q.shape[2] <= kv_total and v_local as long "
            f"as k_local (this rank: kv_start = {kv_start}, {n} keys, kv_total = {kv_total}, "
            f"q.shape[2] = {Lq}, v_local.shape[2] = {v_local.shape[2]})")
    if any(m[2] != kv_total or m[3] != Lq for m in metas):
        raise InvalidArgumentError(
            f"kv_total and q.shape[2] differ between ranks ({[(m[2], m[3]) for m in metas]}): "
            f"every rank passes the same query chunk and total length")
    end = 0
    for start, length, *_ in sorted(metas):
        if length and start != end:
            break
        end = max(end, start + length)
    if end != kv_total or sum(m[1] for m in metas) != kv_total:
        raise InvalidArgumentError(
            f"kv_start: the slices [kv_start, kv_start + n) of the ranks "
            f"{[(m[0], m[0] + m[1]) for m in metas]} must tile [0, kv_total = {kv_total}) "
            f"without gaps or overlaps")

    o, lse = _slice_partial(q, k_local, v_local, kv_total - Lq - kv_start, causal, scale, softcap,
                            num_threads)
    # o and lse travel as one float32 tensor: a single all_gather.
    packed = torch.cat((o, lse.unsqueeze(-1)), -1).contiguous()
    parts = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(parts, packed, group)
    parts = torch.stack(parts)
    o, lse = merge_states(parts[..., :-1].contiguous(), parts[..., -1].contiguous())
    return _finish(o, lse, sinks, q.dtype, return_lse)

"""longattn as a Hugging Face transformers attention implementation.

    import longattn.integrations.transformers as lt
    lt.register()                                   # once, before loading the model
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="longattn")
    model.set_attn_implementation("longattn")       # or switch a loaded model

Two functions are registered under one name: an attention function (AttentionInterface) and a
mask function (AttentionMaskInterface). They agree on what the mask passed between them means:

- None: the layer's own pattern, nothing more: causal (module.is_causal or the `is_causal`
  kwarg) and the `sliding_window` kwarg, bottom-right aligned as longattn defines them (the
  contract transformers' flash-attention path relies on too). The mask function returns None
  only when transformers' index-space mask is exactly that.
- [B, 1, 1, Lk] (query axis of size 1): keys to drop (padding), combined with the causal/window
  pattern above; a view of the 2-d attention mask, never a [B, 1, Lq, Lk] tensor.
- [B, 1, Lq, Lk] with Lq > 1: the whole pattern, as transformers' sdpa mask builds it (static
  caches longer than the sequence, masks we do not recognize, masks passed in 4-d by the user).

Alignment: transformers masks by absolute positions, query i at q_offset + i and key j at
kv_offset + j: causal is kv_offset + j <= q_offset + i and sliding window S adds
kv_offset + j > q_offset + i - S. longattn's bottom-right causal is j <= i + (Lk - Lq) and
window_left W adds j >= i + (Lk - Lq) - W. The two agree exactly when
q_offset - kv_offset == Lk - Lq (the queries end at the last key), with W = S - 1. Dynamic caches
(full and sliding), chunked prefill and decode satisfy it; a static cache whose slots run past the
sequence does not, and gets an explicit mask.
"""

import logging

import torch

import longattn

NAME = "longattn"

logger = logging.getLogger(__name__)
_logged = set()


def _log_once(message):
    if message not in _logged:
        _logged.add(message)
        logger.warning(message)


def register(name=NAME):
    """Register longattn with transformers under `name` (attention and mask functions)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, mask_interface)
    return name


# ---------------------------------------------------------------------------------------------
# Mask function


def _closure(fn):
    cells = getattr(fn, "__closure__", None) or ()
    return dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in cells)))


def _is_causal_pattern(mask_function):
    """True when mask_function is transformers' causal mask, alone or with a sliding window.

    Anything else (chunked, bidirectional, image-token overlays, packed sequences) is False: its
    mask is materialized. Recognized by identity and closure, so a changed transformers internal
    only costs speed (a materialized mask), never correctness.
    """
    from transformers import masking_utils as mu

    if mask_function is mu.causal_mask_function:
        return True
    if getattr(mask_function, "__qualname__", "") != "and_masks.<locals>.and_mask":
        return False
    parts = _closure(mask_function).get("mask_functions", ())
    others = [f for f in parts if f is not mu.causal_mask_function]
    return (len(parts) == 2 and len(others) == 1
            and getattr(others[0], "__qualname__", "").startswith("sliding_window_overlay."))


def _tracing(x):
    try:
        from transformers.utils.import_utils import is_tracing
    except ImportError:  # older transformers
        return torch.compiler.is_compiling()
    return x is not None and is_tracing(x)


def _dense_mask(**kwargs):
    """The whole pattern as transformers' sdpa mask builds it (bool, True = visible)."""
    from transformers.masking_utils import sdpa_mask

    kwargs.update(allow_is_causal_skip=False)
    return sdpa_mask(**kwargs)


def mask_interface(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None,
                   attention_mask=None, allow_is_causal_skip=True, **kwargs):
    """AttentionMaskInterface function: None, a [B,1,1,Lk] key mask, or a full mask (see top)."""
    from transformers.masking_utils import causal_mask_function

    mask_function = mask_function or causal_mask_function
    args = dict(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                kv_offset=kv_offset, mask_function=mask_function,
                attention_mask=attention_mask, **kwargs)
    # allow_is_causal_skip=False: the caller wants a real mask (to concatenate, or a compiled
    # decode step); a traced offset or mask cannot be read without a graph break.
    if (not allow_is_causal_skip or not _is_causal_pattern(mask_function)
            or _tracing(q_offset) or _tracing(attention_mask)):
        return _dense_mask(**args)
    if int(q_offset) - kv_offset != kv_length - q_length:
        return _dense_mask(**args)  # e.g. a static cache: keys past the queries' end
    if attention_mask is None:
        return None
    end = kv_offset + kv_length
    keys = attention_mask  # [B, tokens so far]: pad with False to the cache's end, take the window
    if keys.shape[-1] < end:
        keys = torch.nn.functional.pad(keys, (0, end - keys.shape[-1]))
    keys = keys[:, kv_offset:end]
    if bool(keys.all()):
        return None
    return keys[:, None, None, :]


# ---------------------------------------------------------------------------------------------
# Attention function


def _pattern(module, query, attention_mask, sliding_window, is_causal):
    """(causal, window_left, mask) for longattn from what transformers passed the layer."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    window = sliding_window - 1 if (causal and sliding_window) else -1
    mask = attention_mask
    if mask is not None and mask.shape[-2] != 1:
        causal, window = False, -1  # the mask is the whole pattern
    # At Lq = 1 a full mask looks like a key mask. Adding causal is then a no-op; adding the
    # window could only drop keys if Lk > window + 1, which transformers' caches never give a
    # mask they could not align (a not-yet-full static sliding layer holds at most S keys).
    return bool(causal), int(window), mask


def _unsupported(query, key, value, attention_mask, dropout, kwargs, s_aux):
    if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (query, key, value, s_aux)):
        return "inputs require grad (longattn is forward-only)"
    if dropout:
        return "attention dropout"
    if kwargs.get("output_attentions"):
        return "output_attentions"
    if kwargs.get("position_bias") is not None:
        return "position_bias"
    if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
        return f"attention mask of type {type(attention_mask).__name__}"
    return None


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      sliding_window=None, softcap=None, s_aux=None, is_causal=None, **kwargs):
    """AttentionInterface function: q [B,Hq,Lq,D], k/v [B,Hkv,Lk,D] -> ([B,Lq,Hq,Dv], None)."""
    causal, window, mask = _pattern(module, query, attention_mask, sliding_window, is_causal)
    reason = _unsupported(query, key, value, attention_mask, dropout, kwargs, s_aux)
    if reason is None:
        B, Hq, Lq, _ = query.shape
        # The output is allocated [B, Lq, Hq, Dv], what the caller reshapes, and written through
        # a [B, Hq, Lq, Dv] view: no transpose copy afterwards.
        out = query.new_empty(B, Lq, Hq, value.shape[-1])
        if mask is not None and mask.dtype not in (torch.bool, torch.float32):
            mask = mask.float()  # an additive mask in the model's dtype
        sinks = s_aux.detach().float().contiguous() if s_aux is not None else None
        try:
            longattn.attention(query, key, value, causal=causal, window_left=window,
                               softcap=float(softcap or 0.0), scale=scaling, sinks=sinks,
                               mask=mask, out=out.transpose(1, 2))
            return out, None
        except longattn.Error as e:
            reason = str(e).splitlines()[0]
    _log_once(f"longattn: falling back to transformers' attention ({reason})")
    return _fallback(module, query, key, value, causal, window, mask, dropout, scaling, softcap,
                     s_aux, kwargs)


def _full_mask(query, key, causal, window, mask):
    """The whole boolean pattern [B or 1, 1, Lq, Lk] for transformers' own functions."""
    Lq, Lk = query.shape[2], key.shape[2]
    if not causal and window < 0:
        return mask
    i = torch.arange(Lq, device=query.device)[:, None] + (Lk - Lq)
    j = torch.arange(Lk, device=query.device)[None, :]
    keep = (j <= i) if causal else torch.ones(Lq, Lk, dtype=torch.bool, device=query.device)
    if window >= 0:
        keep &= j >= i - window
    keep = keep[None, None]
    if mask is None:
        return keep
    return keep & mask if mask.dtype == torch.bool else mask.masked_fill(~keep, float("-inf"))


def _fallback(module, query, key, value, causal, window, mask, dropout, scaling, softcap, s_aux,
              kwargs):
    """sdpa, or the model's own eager function where sdpa cannot (sinks, softcap)."""
    import sys

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    mask = _full_mask(query, key, causal, window, mask)
    if s_aux is None and not softcap:
        return sdpa_attention_forward(module, query, key, value, mask, dropout=dropout,
                                      scaling=scaling, is_causal=False, **kwargs)
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward")
    if mask is not None and mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=query.dtype, device=query.device)
        mask = torch.where(mask, zero, torch.finfo(query.dtype).min)
    extra = {"softcap": softcap} if softcap else {}
    if s_aux is not None:
        extra["s_aux"] = s_aux
    return eager(module, query, key, value, mask, dropout=dropout, scaling=scaling, **extra,
                 **kwargs)

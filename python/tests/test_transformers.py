"""longattn as a transformers attention implementation, against transformers' own attention.

Tiny models built from configs with random weights (no downloads) on the CPU: logits against
eager attention (float32 and bfloat16, left and right padding) and greedy generate() identical to
eager's (batch 3, left padding, dynamic / static cache, chunked prefill). The GPU tests run the
same models at their real attention geometry (head dims, head counts) against sdpa.
"""

import logging

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
longattn = pytest.importorskip("longattn")

from transformers import masking_utils as mu  # noqa: E402
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer  # noqa: E402

from longattn.integrations import transformers as lt  # noqa: E402

lt.register()

VOCAB = 128
PAD = 0

# name -> (config class, model class, config kwargs); small but with each model's attention
# features: sliding + full layers, GQA, k == v, KV sharing, sinks, softcap, query scaling.
TINY = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(
        num_attention_heads=4, num_key_value_heads=2)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, use_sliding_window=True,
        sliding_window=8, max_window_layers=1)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(  # attention softcap
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=8,
        attn_logit_softcapping=5.0, query_pre_attn_scalar=24)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=8,
        query_pre_attn_scalar=24, num_hidden_layers=3,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])),
    "gemma4": ("Gemma4TextConfig", "Gemma4ForCausalLM", dict(  # 32 sliding, 64 global, k == v
        vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=16,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, global_head_dim=64,
        num_global_key_value_heads=1, attention_k_eq_v=True, sliding_window=8,
        num_hidden_layers=6, num_kv_shared_layers=2,
        layer_types=["sliding_attention", "full_attention"] * 3)),
    # sinks; every expert routed, so a bf16 rounding cannot flip a top-k choice
    "gpt-oss": ("GptOssConfig", "GptOssForCausalLM", dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
        num_experts_per_tok=4, sliding_window=8)),
}
MODELS = list(TINY)


def tiny_model(name, dtype=torch.float32, attn="eager"):
    cfg_name, model_name, extra = TINY[name]
    kwargs = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    kwargs.update(extra)
    config = getattr(transformers, cfg_name)(**kwargs)
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config).eval().to(dtype)
    model.set_attn_implementation(attn)
    return model


def padded_batch(lengths, total, left):
    """Random token ids [3, total] with each row's own length, padded left or right."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (len(lengths), total), generator=g)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        (mask[row, total - n:] if left else mask[row, :n]).fill_(1)
    return ids.masked_fill(mask == 0, PAD), mask


def logits(model, attn, ids, mask):
    model.set_attn_implementation(attn)
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits.float()


def rel_err(got, ref, keep):
    return ((got - ref).abs()[keep].max() / ref.abs()[keep].max()).item()


# --- masks: longattn's pattern equals transformers' mask wherever it is used -------------------


def _dense_from_ours(ours, q_len, kv_len, window):
    q = torch.empty(1, 1, q_len, 1)
    k = torch.empty(1, 1, kv_len, 1)
    causal, window, mask = lt._pattern(None, q, ours, window + 1 if window >= 0 else None, True)
    full = lt._full_mask(q, k, causal, window, mask)
    return full.expand(3, 1, q_len, kv_len)


@pytest.mark.parametrize("sliding", [None, 4])
@pytest.mark.parametrize("past,q_len", [(0, 1), (0, 6), (3, 1), (3, 5), (9, 1), (9, 4), (12, 7)])
def test_mask_matches_transformers(sliding, past, q_len):
    layer = DynamicSlidingWindowLayer(sliding) if sliding else DynamicLayer()
    if past:
        layer.update(torch.zeros(1, 1, past, 1), torch.zeros(1, 1, past, 1))
    kv_len, kv_off = layer.get_mask_sizes(q_len)
    fn = (mu.sliding_window_causal_mask_function(sliding) if sliding
          else mu.causal_mask_function)
    total = past + q_len
    pads = [None, torch.ones(3, total, dtype=torch.bool),
            padded_batch([total, total - 2, 1], total, left=True)[1].bool(),
            padded_batch([total, total - 2, 1], total, left=False)[1].bool()]
    for pad in pads:
        args = dict(batch_size=3, q_length=q_len, kv_length=kv_len, q_offset=past,
                    kv_offset=kv_off, mask_function=fn, attention_mask=pad, local_size=sliding)
        ours = lt.mask_interface(**args)
        assert ours is None or ours.shape[-2] == 1  # never [B, 1, Lq, Lk] on a dynamic cache
        ref = mu.sdpa_mask(**dict(args, allow_is_causal_skip=False)).expand(3, 1, q_len, kv_len)
        got = _dense_from_ours(ours, q_len, kv_len, sliding - 1 if sliding else -1)
        assert torch.equal(got, ref), (pad, ours)


def test_mask_static_cache_is_explicit():
    # A static cache of 16 slots holding 5 tokens: keys past the sequence need a real mask.
    args = dict(batch_size=1, q_length=5, kv_length=16, q_offset=torch.tensor(0), kv_offset=0,
                mask_function=mu.causal_mask_function, attention_mask=None)
    ours = lt.mask_interface(**args)
    assert ours is not None and ours.shape == (1, 1, 5, 16)
    assert torch.equal(ours, mu.sdpa_mask(**dict(args, allow_is_causal_skip=False)))


# --- logits against eager ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("left", [True, False], ids=["left-pad", "right-pad"])
def test_logits_float32(name, left):
    model = tiny_model(name)
    ids, mask = padded_batch([20, 13, 6], 20, left)
    ref = logits(model, "eager", ids, mask)
    got = logits(model, "longattn", ids, mask)
    assert rel_err(got, ref, mask.bool()) < 1e-4  # padded query rows are not compared


@pytest.mark.parametrize("name", MODELS)
def test_logits_bfloat16(name):
    ids, mask = padded_batch([20, 13, 6], 20, left=True)
    ref = logits(tiny_model(name), "eager", ids, mask)
    model = tiny_model(name, torch.bfloat16)
    got = logits(model, "longattn", ids, mask)
    base = logits(model, "eager", ids, mask)
    keep = mask.bool()
    # bf16 longattn is as close to float32 eager as bf16 eager is (both round activations).
    assert rel_err(got, ref, keep) < max(2 * rel_err(base, ref, keep), 2e-2)


# --- generate ----------------------------------------------------------------------------------


def generate(model, attn, ids, mask, **kwargs):
    model.set_attn_implementation(attn)
    with torch.no_grad():
        return model.generate(ids, attention_mask=mask, max_new_tokens=32, min_new_tokens=32,
                              do_sample=False, pad_token_id=PAD, **kwargs)


@pytest.fixture
def attention_calls(monkeypatch):
    """The (Lq, Lk, mask shape) of every longattn call, to check that masks stay small."""
    calls, real = [], longattn.attention

    def spy(q, k, v, **kw):
        m = kw.get("mask")
        calls.append((q.shape[2], k.shape[2], None if m is None else tuple(m.shape)))
        return real(q, k, v, **kw)

    monkeypatch.setattr(longattn, "attention", spy)
    return calls


@pytest.mark.parametrize("name", MODELS)
def test_generate_left_padding(name, attention_calls):
    model = tiny_model(name)
    ids, mask = padded_batch([12, 7, 3], 12, left=True)
    ref = generate(model, "eager", ids, mask)
    got = generate(model, "longattn", ids, mask)
    assert torch.equal(got, ref)
    assert attention_calls and all(m is None or m[-2] == 1 for _, _, m in attention_calls)
    assert any(lq == 1 for lq, _, _ in attention_calls)  # decode steps ran through longattn


@pytest.mark.parametrize("name", ["gemma3", "gemma4"])
def test_generate_chunked_prefill(name, attention_calls):
    model = tiny_model(name)
    ids, mask = padded_batch([21, 16, 9], 21, left=True)
    ref = generate(model, "eager", ids, mask)
    got = generate(model, "longattn", ids, mask, prefill_chunk_size=5)
    assert torch.equal(got, ref)
    assert any(1 < lq < lk for lq, lk, _ in attention_calls)  # a chunk against a cache


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_generate_static_cache(name):
    model = tiny_model(name)
    ids, mask = padded_batch([12, 7, 3], 12, left=True)
    ref = generate(model, "eager", ids, mask)
    got = generate(model, "longattn", ids, mask, cache_implementation="static")
    assert torch.equal(got, ref)


# --- registration and fallback -----------------------------------------------------------------


def test_from_pretrained(tmp_path):
    model = tiny_model("gemma3")
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="longattn").eval()
    assert loaded.config._attn_implementation == "longattn"
    ids, mask = padded_batch([10, 6, 4], 10, left=True)
    with torch.no_grad():
        got = loaded(ids, attention_mask=mask).logits
    assert rel_err(got, logits(model, "eager", ids, mask), mask.bool()) < 1e-4


def test_fallback_when_grad_is_needed(caplog):
    model = tiny_model("gemma3", attn="longattn")
    ids, mask = padded_batch([10, 6, 4], 10, left=True)
    lt._logged.clear()
    with caplog.at_level(logging.WARNING):
        got = model(ids, attention_mask=mask).logits.detach()  # grad enabled: longattn can't
    assert sum("falling back" in r.message for r in caplog.records) == 1  # logged once
    assert rel_err(got, logits(model, "eager", ids, mask), mask.bool()) < 1e-4


# --- GPU: real attention geometry against sdpa -------------------------------------------------

# Real head counts and head dims of each model's default config; few layers, small hidden
# (llama's head dim follows hidden_size, so it is set); windows shorter than the prompts.
REAL = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(head_dim=128)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
        sliding_window=64, layer_types=["sliding_attention", "full_attention"])),
    "gemma4": ("Gemma4TextConfig", "Gemma4ForCausalLM", dict(  # 256 sliding, 512 global, k == v
        sliding_window=64, attention_k_eq_v=True, num_global_key_value_heads=2,
        vocab_size_per_layer_input=1024, layer_types=["sliding_attention", "full_attention"])),
    "gpt-oss": ("GptOssConfig", "GptOssForCausalLM", dict(
        num_local_experts=4, num_experts_per_tok=4, intermediate_size=256)),  # see TINY
}


def real_model(name, dtype, attn):
    cfg_name, model_name, extra = REAL[name]
    kwargs = dict(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  pad_token_id=PAD)
    kwargs.update(extra)
    config = getattr(transformers, cfg_name)(**kwargs)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = getattr(transformers, model_name)(config)
    model = model.eval().to(dtype)
    model.set_attn_implementation(attn)
    return model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(REAL))
def test_gpu_real_geometry(name):
    # sdpa cannot add sinks: gpt-oss is checked against its eager attention.
    base = "eager" if name == "gpt-oss" else "sdpa"
    ids, mask = padded_batch([300, 211, 97], 300, left=True)
    ids, mask = ids.cuda(), mask.cuda()
    keep = mask.bool()
    exact = real_model(name, torch.float32, base)
    ref = logits(exact, base, ids, mask)
    model = real_model(name, torch.bfloat16, base)
    got = logits(model, "longattn", ids, mask)
    noise = logits(model, base, ids, mask)
    # bf16 longattn is as close to the float32 baseline as the bf16 baseline is (random-weight
    # Gemma 4 amplifies bf16 rounding to ~10% of its logits whatever the attention).
    assert rel_err(got, ref, keep) < max(2 * rel_err(noise, ref, keep), 2e-2)

    # Greedy decoding in bf16 may take another path at a near tie, so each token longattn picks
    # must be the float32 baseline's best up to the bf16 noise on the same sequence.
    out = generate(model, "longattn", ids, mask)
    full_mask = torch.cat([mask, torch.ones_like(out[:, ids.shape[1]:])], 1)
    scored = logits(exact, base, out, full_mask)[:, ids.shape[1] - 1:-1]
    picked = scored.gather(-1, out[:, ids.shape[1]:, None])[..., 0]
    gap = scored.max(-1).values - picked
    tolerance = 2 * (noise - ref).abs()[keep].max() + 1e-3 * ref.abs().max()
    assert (gap <= tolerance).all(), (gap.max(), tolerance)

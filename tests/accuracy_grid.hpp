// The accuracy grid: one list of cases that every device's test runs against the float64
// reference of reference_test_util.hpp (accuracy_cpu_test.cpp, gpu/accuracy_cuda_test.cpp), in
// the style of llama.cpp's test-backend-ops. A list covers every value of every axis at least once
// instead of the (far too slow) cartesian product. A device that cannot run a case (the CUDA paths
// and FP8 caches) must refuse it with a reason naming the argument.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reference_test_util.hpp"

namespace longattn_test {

inline std::vector<Case> accuracy_grid() {
  constexpr int32_t F32 = LONGATTN_FLOAT32, F16 = LONGATTN_FLOAT16, BF16 = LONGATTN_BFLOAT16;
  constexpr int32_t kBool = LONGATTN_MASK_BOOLEAN, kAdd = LONGATTN_MASK_ADDITIVE;
  using L = Layout;
  std::vector<Case> cases = {
      // Every head dim (and 192/128); each dtype appears across them.
      Case("d64_f32").shape(2, 4, 4, 113, 113).dims(64),
      Case("d72_bf16_causal").shape(1, 4, 2, 113, 1023).dims(72).type(BF16).is_causal(),
      Case("d80_f16_mqa").shape(2, 2, 1, 7, 113).dims(80).type(F16),
      Case("d96_f32_gqa8_causal").shape(1, 8, 1, 113, 113).dims(96).is_causal(),
      Case("d128_bf16_gqa4_causal").shape(1, 8, 2, 1023, 1023).dims(128).type(BF16).is_causal(),
      Case("d192_f16").shape(1, 2, 2, 113, 1023).dims(192).type(F16),
      Case("d256_f32_causal_window_large")
          .shape(1, 2, 1, 1023, 1023)
          .dims(256)
          .is_causal()
          .win(500),
      Case("d256_bf16").shape(1, 2, 2, 113, 113).dims(256).type(BF16),
      Case("d512_bf16").shape(1, 2, 1, 113, 1023).dims(512).type(BF16),
      Case("d512_f32_causal").shape(1, 1, 1, 300, 300).dims(512).is_causal(),
      Case("d512_f16_add_mask").shape(1, 2, 2, 7, 113).dims(512).type(F16).mask(kAdd, 1, 1, 1, 1),
      Case("d192x128_f32").shape(1, 4, 2, 113, 1023).dims(192, 128),
      Case("d192x128_bf16_causal").shape(2, 4, 1, 1023, 1023).dims(192, 128).type(BF16).is_causal(),
      Case("d192x128_f16_sinks").shape(1, 2, 1, 7, 113).dims(192, 128).type(F16).sinks(1.0f),
      // Lengths 1, 7, 113, 1023, 4096, with Lq > Lk (causal: the first Lq - Lk rows see no key).
      Case("len_1x1").shape(1, 2, 2, 1, 1).dims(64),
      Case("len_1x7_f16").shape(3, 2, 1, 1, 7).dims(128).type(F16),
      Case("len_7x1_causal").shape(1, 2, 2, 7, 1).dims(64).is_causal(),
      Case("len_7x7_window0").shape(1, 2, 2, 7, 7).dims(64).is_causal().win(0),
      Case("len_1023x113_causal_bf16").shape(1, 2, 1, 1023, 113).dims(128).type(BF16).is_causal(),
      Case("long_decode_gqa8_f32").shape(1, 8, 1, 1, 4096).dims(128),
      Case("long_decode_bf16").shape(2, 4, 2, 1, 4096).dims(64).type(BF16),
      // Decode tiles stream K and V in place: head dims off whole vectors, every dtype, GQA
      // groups from 1 to 8 rows, softcap, sinks and a window.
      Case("decode_d100x37_f16_gqa4").shape(2, 8, 2, 1, 777).dims(100, 37).type(F16),
      Case("decode_d33_bf16_softcap_sinks")
          .shape(1, 4, 1, 2, 300)
          .dims(33)
          .type(BF16)
          .cap(20.0f, 6.0f)
          .sinks(1.0f),
      Case("decode_d200_f32_window").shape(1, 3, 3, 1, 1023).dims(200).is_causal().win(100),
      Case("long_causal_f16").shape(1, 1, 1, 4096, 4096).dims(64).type(F16).is_causal(),
      Case("long_kv_bf16").shape(1, 2, 1, 113, 4096).dims(128).type(BF16),
      Case("long_q_causal_f32").shape(1, 1, 1, 4096, 1023).dims(64).is_causal(),
      Case("long_chunk_causal_f32").shape(1, 2, 1, 1023, 4096).dims(128).is_causal(),
      Case("long_chunk_window_f16")
          .shape(1, 1, 1, 1023, 4096)
          .dims(128)
          .type(F16)
          .is_causal()
          .win(1023),
      // Sliding windows: 0 (above), small, large (above), without causal, with Lq > Lk.
      Case("window_small_f32").shape(1, 2, 1, 1023, 1023).dims(64).is_causal().win(16),
      Case("window_no_causal_bf16").shape(1, 2, 2, 113, 113).dims(64).type(BF16).win(8),
      Case("window_lq_gt_lk").shape(1, 2, 1, 113, 7).dims(64).is_causal().win(3),
      // Softcap (q_amp makes scores large enough for tanh to bend) and an explicit scale.
      Case("softcap_f32").shape(1, 4, 2, 113, 1023).dims(128).cap(1.0f, 3.0f),
      Case("softcap_bf16_causal")
          .shape(1, 2, 1, 1023, 1023)
          .dims(256)
          .type(BF16)
          .is_causal()
          .cap(30.0f, 8.0f),
      // Scores spanning tens of units: the online softmax must rescale without overflow.
      Case("large_scores_f32").shape(1, 2, 1, 113, 1023).dims(128).amp(8.0f),
      Case("large_scores_f16_causal")
          .shape(1, 2, 2, 1023, 1023)
          .dims(64)
          .type(F16)
          .is_causal()
          .amp(12.0f),
      Case("scale_custom_f32").shape(1, 2, 2, 113, 113).dims(96).with_scale(0.3f),
      // Sinks: ordinary, dominant, and on rows that see no key.
      Case("sinks_f32").shape(1, 4, 2, 113, 113).dims(64).sinks(1.0f),
      Case("sinks_large_bf16").shape(1, 4, 1, 7, 1023).dims(128).type(BF16).sinks(6.0f),
      Case("sinks_causal_lq_gt_lk_f16")
          .shape(1, 2, 2, 113, 7)
          .dims(64)
          .type(F16)
          .is_causal()
          .sinks(2.0f),
      // Masks: broadcast dims of 1 and full dims, -inf entries, fully masked rows, padded strides.
      Case("bool_mask_bcast_bh").shape(2, 4, 2, 113, 113).dims(64).mask(kBool, 0, 0, 1, 1),
      Case("bool_mask_full_f16")
          .shape(2, 2, 1, 113, 1023)
          .dims(128)
          .type(F16)
          .mask(kBool, 1, 1, 1, 1),
      Case("bool_mask_rows_only").shape(2, 2, 2, 113, 113).dims(64).mask(kBool, 1, 0, 1, 0),
      Case("bool_mask_causal_bf16")
          .shape(1, 2, 1, 1023, 1023)
          .dims(64)
          .type(BF16)
          .is_causal()
          .mask(kBool, 0, 0, 1, 1, true),
      Case("add_mask_batch_causal_f32")
          .shape(2, 2, 2, 113, 1023)
          .dims(64)
          .is_causal()
          .mask(kAdd, 1, 0, 1, 1),
      Case("add_mask_keys_only_bf16")
          .shape(1, 4, 2, 113, 1023)
          .dims(128)
          .type(BF16)
          .mask(kAdd, 0, 1, 0, 1),
      Case("add_mask_padded_f32").shape(2, 2, 1, 113, 113).dims(80).mask(kAdd, 1, 1, 1, 1, true),
      Case("add_mask_scalar").shape(1, 2, 2, 7, 113).dims(64).mask(kAdd, 0, 0, 0, 0),
      Case("everything_f32")
          .shape(2, 4, 2, 113, 1023)
          .dims(128)
          .is_causal()
          .win(200)
          .cap(5.0f, 3.0f)
          .sinks(1.0f)
          .mask(kAdd, 1, 0, 1, 1, true)
          .layout(L::kTokensMajorPadded, L::kPadded),
      Case("everything_bf16")
          .shape(1, 8, 1, 1023, 1023)
          .dims(96)
          .type(BF16)
          .is_causal()
          .win(300)
          .cap(20.0f, 6.0f)
          .sinks(2.0f)
          .mask(kBool, 1, 1, 1, 1)
          .layout(L::kPadded, L::kTokensMajor),
      // Layouts: padding everywhere, [B, L, H, D] via strides, mixed, and k == v (one buffer).
      Case("padded_f32").shape(2, 4, 2, 113, 113).dims(72).layout(L::kPadded, L::kPadded),
      Case("tokens_major_f16")
          .shape(2, 4, 2, 113, 1023)
          .dims(128)
          .type(F16)
          .layout(L::kTokensMajor, L::kTokensMajor),
      Case("tokens_major_padded_bf16")
          .shape(2, 4, 1, 113, 113)
          .dims(96)
          .type(BF16)
          .layout(L::kTokensMajorPadded, L::kContiguous),
      Case("out_tokens_major_padded")
          .shape(1, 4, 4, 113, 113)
          .dims(64)
          .layout(L::kContiguous, L::kTokensMajorPadded),
      Case("k_eq_v_bf16")
          .shape(1, 8, 2, 113, 1023)
          .dims(256)
          .type(BF16)
          .same_kv()
          .layout(L::kTokensMajor, L::kContiguous),
      Case("k_eq_v_f32_causal").shape(1, 2, 1, 113, 113).dims(512).same_kv().is_causal(),
      // FP8 KV caches (kv_dtype): every scale kind, both formats, every Q dtype, outlier channels.
      Case("fp8_e4m3_decode_gqa4_head_scales")
          .shape(2, 8, 2, 1, 1023)
          .dims(128)
          .fp8(LONGATTN_FLOAT8_E4M3, 2),
      Case("fp8_e5m2_bf16_causal_tensor_scale")
          .shape(1, 4, 2, 113, 1023)
          .dims(256)
          .type(BF16)
          .is_causal()
          .fp8(LONGATTN_FLOAT8_E5M2, 1),
      Case("fp8_e4m3_f16_d512_window_sinks")
          .shape(1, 4, 1, 113, 1023)
          .dims(512)
          .type(F16)
          .is_causal()
          .win(200)
          .sinks(1.0f)
          .fp8(LONGATTN_FLOAT8_E4M3, 2),
      Case("fp8_e4m3_bf16_mla_decode_k_eq_v")
          .shape(1, 8, 1, 1, 777)
          .dims(576, 512)
          .type(BF16)
          .same_kv()
          .fp8(LONGATTN_FLOAT8_E4M3, 1),
      Case("fp8_e5m2_f32_mask_padded_layouts")
          .shape(2, 4, 2, 113, 113)
          .dims(72)
          .mask(kAdd, 1, 0, 1, 1, true)
          .layout(L::kTokensMajorPadded, L::kPadded)
          .fp8(LONGATTN_FLOAT8_E5M2, 2),
      Case("fp8_e5m2_f16_decode_tensor_scale")
          .shape(3, 4, 1, 1, 517)
          .dims(80)
          .type(F16)
          .fp8(LONGATTN_FLOAT8_E5M2, 1),
      Case("fp8_e4m3_decode_d33_softcap_no_scales")
          .shape(2, 4, 4, 1, 300)
          .dims(33)
          .cap(5.0f, 3.0f)
          .fp8(LONGATTN_FLOAT8_E4M3, 0),
      // Without LSE output.
      Case("no_lse_f16").shape(1, 2, 1, 113, 113).dims(64).type(F16).no_lse(),
      Case("no_lse_decode_f32").shape(2, 8, 2, 1, 1023).dims(128).no_lse(),
      // ---- GPU-born cases: kernel modes, padded head dims, odd layouts
      // Every fused head dim (and 192/128), each dtype somewhere, GQA 1..8.
      Case("d64_bf16_gqa2_causal").shape(2, 4, 2, 113, 1023).dims(64).type(BF16).is_causal(),
      Case("d256_bf16_window").shape(1, 2, 1, 1023, 1023).dims(256).type(BF16).is_causal().win(500),
      Case("d512_f16_causal_kv").shape(1, 4, 2, 300, 300).dims(512).type(F16).is_causal().same_kv(),
      // The sm90 kernel's modes (run there on Hopper): d = 512 split across consumers with masks
      // and sinks, K aliasing V in a tokens-major layout, GQA 8 with a window and Lq > Lk,
      // 192/128 with softcap and an additive mask.
      Case("d512_bf16_gqa8_causal_sinks_mask")
          .shape(1, 16, 2, 113, 1023)
          .dims(512)
          .type(BF16)
          .is_causal()
          .sinks(1.0f)
          .mask(kBool, 0, 0, 1, 1),
      Case("d256_f16_kv_tokens_major")
          .shape(2, 4, 2, 300, 1023)
          .dims(256)
          .type(F16)
          .same_kv()
          .layout(L::kTokensMajor, L::kTokensMajor),
      Case("d64_f16_gqa8_window_lq_gt_lk")
          .shape(1, 16, 2, 300, 113)
          .dims(64)
          .type(F16)
          .is_causal()
          .win(40),
      Case("d192x128_f16_softcap_add_mask")
          .shape(1, 4, 2, 200, 777)
          .dims(192, 128)
          .type(F16)
          .cap(30.0f, 8.0f)
          .mask(kAdd, 0, 1, 0, 1),
      // Rows not on 16 bytes (odd token, head and batch strides: the CUDA kernels load and store
      // them element by element) and head dims without a compiled kernel (padded to the next
      // compiled pair on the GPU: zero columns in shared memory, partial 16-byte chunks).
      Case("odd_strides_f16")
          .shape(2, 4, 2, 113, 113)
          .dims(64)
          .type(F16)
          .layout(L::kPadded, L::kPadded),
      Case("d1_bf16_causal").shape(2, 4, 2, 113, 300).dims(1).type(BF16).is_causal(),
      Case("d1_f16_decode").shape(1, 8, 2, 1, 4096).dims(1).type(F16),
      Case("d40_f16_gqa2").shape(1, 4, 2, 200, 777).dims(40).type(F16),
      Case("d32_bf16_gqa4_causal").shape(1, 8, 2, 300, 777).dims(32).type(BF16).is_causal(),
      Case("d32_f16_decode").shape(2, 8, 2, 1, 4096).dims(32).type(F16),
      Case("d100_bf16_odd_strides_causal")
          .shape(2, 4, 2, 113, 1023)
          .dims(100)
          .type(BF16)
          .is_causal()
          .layout(L::kPadded, L::kPadded),
      Case("d200_f16_tokens_major_odd")
          .shape(1, 4, 2, 113, 300)
          .dims(200)
          .type(F16)
          .layout(L::kTokensMajorPadded, L::kTokensMajorPadded),
      Case("d500_bf16_decode_odd_strides")
          .shape(1, 8, 2, 1, 2048)
          .dims(500)
          .type(BF16)
          .layout(L::kPadded, L::kPadded),
      Case("d500_f16_causal").shape(1, 2, 1, 113, 300).dims(500).type(F16).is_causal(),
      Case("d64x512_bf16_causal").shape(1, 4, 2, 113, 300).dims(64, 512).type(BF16).is_causal(),
      Case("d512x64_f16").shape(1, 4, 2, 113, 300).dims(512, 64).type(F16),
      Case("d72x50_bf16_decode_sinks").shape(2, 8, 2, 1, 4096).dims(72, 50).type(BF16).sinks(1.0f),
      Case("d100x37_f16_decode_odd")
          .shape(1, 8, 1, 1, 4096)
          .dims(100, 37)
          .type(F16)
          .layout(L::kPadded, L::kPadded),
      Case("d100_f32_odd_strides")
          .shape(1, 4, 2, 113, 300)
          .dims(100)
          .layout(L::kPadded, L::kPadded),
      Case("d33_f32_decode").shape(1, 8, 2, 1, 2048).dims(33),
      Case("d130_bf16_k_eq_v").shape(1, 4, 2, 113, 300).dims(130).type(BF16).same_kv(),
      // Padded head dims whose rows start on 16 bytes: on Hopper the sm90a kernel runs them on
      // its next compiled pair (TMA zero-fills K and V past the real columns, NaN gaps follow each
      // row): every panel count, a fully padded panel (257 -> 512), split_keys, the elementwise
      // variant, k == v, windows and Lq > Lk.
      Case("d100_bf16_rows16_causal")
          .shape(2, 4, 2, 113, 1023)
          .dims(100)
          .type(BF16)
          .is_causal()
          .layout(L::kRows16, L::kRows16),
      Case("d8_f16_rows16")
          .shape(1, 4, 2, 300, 777)
          .dims(8)
          .type(F16)
          .layout(L::kRows16, L::kRows16),
      Case("d200_bf16_gqa4_window")
          .shape(1, 8, 2, 1023, 1023)
          .dims(200)
          .type(BF16)
          .is_causal()
          .win(300),
      Case("d320_f16_rows16_sinks")
          .shape(1, 4, 2, 113, 1023)
          .dims(320)
          .type(F16)
          .is_causal()
          .sinks(1.0f)
          .layout(L::kRows16, L::kRows16),
      Case("d257_bf16_rows16_k_eq_v")
          .shape(1, 4, 2, 113, 300)
          .dims(257)
          .type(BF16)
          .same_kv()
          .layout(L::kRows16, L::kRows16),
      Case("d136x72_bf16_rows16_softcap_mask")
          .shape(1, 4, 2, 200, 777)
          .dims(136, 72)
          .type(BF16)
          .cap(30.0f, 8.0f)
          .mask(kBool, 0, 0, 1, 1)
          .layout(L::kRows16, L::kRows16),
      Case("d40x500_f16_rows16_lq_gt_lk")
          .shape(1, 4, 1, 300, 113)
          .dims(40, 500)
          .type(F16)
          .is_causal()
          .layout(L::kRows16, L::kRows16),
      Case("d24x8_bf16_rows16_tokens_out")
          .shape(2, 4, 2, 113, 300)
          .dims(24, 8)
          .type(BF16)
          .layout(L::kRows16, L::kTokensMajor),
      // Lengths 1, 7, 113, 1023, 4096; Lq > Lk with causal (rows that see no key).
      Case("len_1x1_bf16").shape(1, 2, 2, 1, 1).dims(64).type(BF16),
      Case("len_7x1_causal_f16").shape(1, 2, 2, 7, 1).dims(64).type(F16).is_causal(),
      Case("decode_gqa8_bf16").shape(2, 8, 1, 1, 4096).dims(128).type(BF16),
      Case("decode_gqa8_d256_f16_sinks").shape(1, 16, 2, 1, 4096).dims(256).type(F16).sinks(2.0f),
      Case("decode_d512_kv_bf16").shape(1, 16, 2, 1, 4096).dims(512).type(BF16).same_kv(),
      Case("chunk_causal_f16").shape(1, 4, 2, 1023, 4096).dims(128).type(F16).is_causal(),
      // Windows: 0, small, without causal, with Lq > Lk.
      Case("window0").shape(1, 2, 2, 7, 7).dims(64).type(BF16).is_causal().win(0),
      Case("window_small").shape(1, 2, 1, 1023, 1023).dims(64).type(F16).is_causal().win(16),
      Case("window_lq_gt_lk_bf16").shape(1, 2, 1, 113, 7).dims(64).type(BF16).is_causal().win(3),
      Case("scale_custom").shape(1, 2, 2, 113, 113).dims(96).type(BF16).with_scale(0.3f),
      // Sinks: ordinary, dominant, on rows that see no key.
      Case("sinks_bf16").shape(1, 4, 2, 113, 113).dims(64).type(BF16).sinks(1.0f),
      // Masks: broadcast and full dims, -inf entries, fully masked rows, padded strides.
      Case("bool_mask_bcast_bh_bf16")
          .shape(2, 4, 2, 113, 113)
          .dims(64)
          .type(BF16)
          .mask(kBool, 0, 0, 1, 1),
      Case("add_mask_scalar_f16").shape(1, 2, 2, 7, 113).dims(512).type(F16).mask(kAdd, 0, 0, 0, 0),
      Case("everything_bf16_tokens_major")
          .shape(1, 8, 1, 1023, 1023)
          .dims(96)
          .type(BF16)
          .is_causal()
          .win(300)
          .cap(20.0f, 6.0f)
          .sinks(2.0f)
          .mask(kBool, 1, 1, 1, 1)
          .layout(L::kTokensMajor, L::kContiguous),
      // float32 inputs (the CUDA fused kernels multiply them as bf16: see its criterion).
      Case("f32_causal_d128").shape(1, 4, 2, 113, 1023).dims(128).is_causal().sinks(1.0f),
      Case("f32_decode_d64").shape(2, 8, 2, 1, 1023).dims(64).mask(kAdd, 1, 1, 1, 1),
      Case("no_lse_bf16").shape(1, 2, 1, 113, 113).dims(64).type(BF16).no_lse(),
  };
  // MLA (DeepSeek-V3, Kimi K2): 576-wide keys whose first 512 columns are the values (v == k),
  // one KV head: prefill, decode at 32 and 128 heads, a windowed chunk and a padded 520/500.
  for (int32_t t : {F32, BF16})
    cases.push_back(Case(std::string("mla_576_512_decode_") + dtype_label(t))
                        .shape(2, 32, 1, 1, 1023)
                        .dims(576, 512)
                        .type(t)
                        .same_kv());
  cases.push_back(Case("mla_576_512_bf16_causal")
                      .shape(1, 16, 1, 113, 300)
                      .dims(576, 512)
                      .type(BF16)
                      .same_kv()
                      .is_causal());
  cases.push_back(Case("mla_576_512_decode_h128_f16")
                      .shape(1, 128, 1, 1, 1023)
                      .dims(576, 512)
                      .type(F16)
                      .same_kv());
  cases.push_back(Case("mla_576_512_chunk_window")
                      .shape(2, 16, 1, 64, 700)
                      .dims(576, 512)
                      .type(BF16)
                      .same_kv()
                      .is_causal()
                      .win(200));
  cases.push_back(Case("mla_520_500_padded").shape(1, 4, 1, 33, 257).dims(520, 500).type(BF16));

  // options.num_splits fixes split_kv's slice count: most slices empty (40 over a few key tiles),
  // many slices (150: more than one batch of the merge's loads), a narrow window (slices without a
  // visible key), Lq > Lk (rows without any), masks and float32 through the merge, and one slice.
  cases.push_back(Case("splits40_decode_mostly_empty")
                      .shape(1, 8, 2, 1, 300)
                      .dims(128)
                      .type(BF16)
                      .sinks(1.0f)
                      .splits(40));
  cases.push_back(Case("splits150_decode_d256")
                      .shape(1, 8, 2, 1, 20000)
                      .dims(256)
                      .type(BF16)
                      .sinks(1.0f)
                      .splits(150));
  cases.push_back(Case("splits8_window10_d128")
                      .shape(1, 4, 1, 40, 1023)
                      .dims(128)
                      .type(BF16)
                      .is_causal()
                      .win(10)
                      .sinks(1.0f)
                      .splits(8));
  cases.push_back(Case("splits2_lq_gt_lk_d256_f16")
                      .shape(1, 2, 2, 113, 70)
                      .dims(256)
                      .type(F16)
                      .is_causal()
                      .sinks(1.0f)
                      .splits(2));
  cases.push_back(Case("splits4_f32_bool_mask_padded_d256")
                      .shape(1, 8, 2, 2, 1023)
                      .dims(256)
                      .mask(kBool, 1, 1, 1, 1)
                      .layout(L::kPadded, L::kPadded)
                      .splits(4));
  cases.push_back(Case("splits3_add_mask_f16_d64")
                      .shape(1, 8, 2, 100, 1023)
                      .dims(64)
                      .type(F16)
                      .mask(kAdd, 1, 0, 1, 1)
                      .splits(3));
  cases.push_back(Case("splits5_d512_chunk_tokens_major")
                      .shape(1, 4, 2, 113, 1023)
                      .dims(512)
                      .type(BF16)
                      .is_causal()
                      .sinks(1.0f)
                      .layout(L::kTokensMajor, L::kTokensMajor)
                      .splits(5));
  cases.push_back(
      Case("splits1_d192x128_decode").shape(2, 16, 2, 1, 1023).dims(192, 128).type(F16).splits(1));

  // More (query tile, kv head) items than a GPU has resident blocks (the sm90a kernel's persistent
  // schedule) at every compiled head dim: causal Lq > Lk, where most items see no key, and
  // non-causal k == v with a window and sinks.
  const int64_t compiled[][2] = {{64, 64},   {80, 80},   {96, 96},   {128, 128},
                                 {192, 128}, {192, 192}, {256, 256}, {512, 512}};
  for (const auto& d : compiled) {
    const std::string dims = std::to_string(d[0]) + "x" + std::to_string(d[1]);
    cases.push_back(Case("persistent_h96_lq_gt_lk_d" + dims)
                        .shape(1, 96, 48, 300, 7)
                        .dims(d[0], d[1])
                        .type(BF16)
                        .is_causal());
    Case wide = Case("persistent_h140_window_sinks_d" + dims)
                    .shape(1, 140, 140, 65, 200)
                    .dims(d[0], d[1])
                    .type(F16)
                    .win(50)
                    .sinks(1.0f);
    if (d[0] == d[1]) wide.same_kv();
    cases.push_back(wide);
  }
  return cases;
}

// FlashAttention's yardstick: the same math in float32 with Q, K, V rounded to `dtype` (a no-op
// for a case's own 16-bit dtype; bf16 for float32 inputs that a kernel multiplies as bf16) and P
// and O rounded to it. Its error against the float64 reference is what a 16-bit kernel may double.
inline Errors low_precision_errors(const Problem& p, const RefResult& ref, int32_t dtype) {
  Problem rounded = p;
  rounded.dtype = dtype;
  if (dtype != p.dtype)
    for (auto* t : {&rounded.q, &rounded.k, &rounded.v})
      for (float& x : *t) x = round_to_dtype(x, dtype);
  const RefResult lp = reference_attention<float>(rounded, /*low_precision=*/true);
  return measure(ref, lp.o, &lp.lse);
}

// What every device's run of `path` is held to: it ran the path asked for (AUTO: never the test
// path), said why, took exactly its predicted bytes, wrote nothing outside O and LSE, left rows
// without keys at O = 0 / LSE = -inf, and is within 1e-5 of float64 (`exact`: float32 math
// throughout) or within twice the low precision yardstick's error.
inline void expect_accurate(const Case& c, const Problem& p, const RefResult& ref,
                            const RunOutput& out, int32_t path, bool exact, const Errors& lowp) {
  ASSERT_EQ(out.status, LONGATTN_OK) << out.message;
  EXPECT_EQ(out.guard_problem, "");
  if (path == LONGATTN_PATH_AUTO) {
    EXPECT_NE(out.plan.path, LONGATTN_PATH_REFERENCE) << "AUTO chose the test-only path";
  } else {
    EXPECT_EQ(out.plan.path, path);
  }
  if (c.num_splits > 1 && (path == LONGATTN_PATH_AUTO || path == LONGATTN_PATH_SPLIT_KV)) {
    EXPECT_EQ(out.plan.path, LONGATTN_PATH_SPLIT_KV) << out.plan.reason;
    EXPECT_EQ(out.plan.splits, c.num_splits);
  }
  if (c.num_splits == 1 && path == LONGATTN_PATH_AUTO) {
    EXPECT_EQ(out.plan.path, LONGATTN_PATH_FUSED) << out.plan.reason;
  }
  EXPECT_EQ(out.plan.allocated_bytes, out.plan.transient_bytes);
  EXPECT_NE(std::string(out.plan.reason), "") << "the plan should say why";
  EXPECT_EQ(check_empty_rows(p, ref, out, c.lse), "");
  const Errors e = measure(ref, out.o_dense, c.lse ? &out.lse_dense : nullptr);
  if (exact) {
    EXPECT_LE(e.o_abs, 1e-5 * e.ref_max) << describe(e, p);
    EXPECT_LE(e.lse_rel, 1e-5) << describe(e, p);
    return;
  }
  // The floor (1e-6 of the output's scale, far below one 16-bit ulp) only matters where the
  // yardstick happens to be exact, e.g. a row with one visible key gives O = V exactly. LSE comes
  // from float32 scores of exactly representable inputs: float32 accuracy.
  EXPECT_LE(e.o_abs, 2 * lowp.o_abs + 1e-6 * e.ref_max)
      << describe(e, p) << "\nlow precision reference: " << describe(lowp, p);
  EXPECT_LE(e.lse_rel, 2 * lowp.lse_rel + 1e-5)
      << describe(e, p) << "\nlow precision reference: " << describe(lowp, p);
}

// options for one path of a case: num_splits where the path takes it.
inline longattn_options case_options(const Case& c, int32_t path) {
  longattn_options o = default_options();
  if (path == LONGATTN_PATH_SPLIT_KV || path == LONGATTN_PATH_AUTO) o.num_splits = c.num_splits;
  return o;
}

}  // namespace longattn_test

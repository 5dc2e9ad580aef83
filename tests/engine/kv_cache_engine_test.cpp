// KV caches: contiguous growth, windows and rollback; block pool bookkeeping; the paged cache's
// contents, sliding-window release and sharing; and attention over a paged view equal, bit for
// bit, to attention over a contiguous cache holding the same keys.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "longattn/engine.hpp"

namespace longattn::engine {
namespace {

LayerSpec layer(int64_t d, int64_t hq, int64_t hkv, int64_t window = -1, bool k_eq_v = false,
                int64_t dv = -1) {
  LayerSpec l;
  l.head_dim_qk = d;
  l.head_dim_v = dv < 0 ? d : dv;
  l.q_heads = hq;
  l.kv_heads = hkv;
  l.window_left = window;
  l.k_eq_v = k_eq_v;
  return l;
}

// Per-layer K/V of a whole sequence, float32, [kv_heads, tokens, dim]; rows differ everywhere.
struct Data {
  LayerSpec l;
  int64_t tokens;
  std::vector<float> k, v;
  Data(const LayerSpec& spec, int64_t n, uint32_t seed) : l(spec), tokens(n) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    k.resize(size_t(l.kv_heads * n * l.head_dim_qk));
    v.resize(size_t(l.kv_heads * n * l.head_dim_v));
    for (auto& x : k) x = u(rng);
    for (auto& x : v) x = u(rng);
  }
  const float* key(int64_t pos, int64_t h) const {
    return &k[size_t((h * tokens + pos) * l.head_dim_qk)];
  }
  const float* value(int64_t pos, int64_t h) const {
    return l.k_eq_v ? key(pos, h) : &v[size_t((h * tokens + pos) * l.head_dim_v)];
  }
  // Tokens [p0, p0 + n) in the [kv_heads, n, dim] layout append() takes.
  std::vector<float> slice_k(int64_t p0, int64_t n) const { return slice(k, l.head_dim_qk, p0, n); }
  std::vector<float> slice_v(int64_t p0, int64_t n) const { return slice(v, l.head_dim_v, p0, n); }

 private:
  std::vector<float> slice(const std::vector<float>& src, int64_t d, int64_t p0, int64_t n) const {
    std::vector<float> out(size_t(l.kv_heads * n * d));
    for (int64_t h = 0; h < l.kv_heads; ++h)
      std::memcpy(&out[size_t(h * n * d)], &src[size_t((h * tokens + p0) * d)], size_t(n * d * 4));
    return out;
  }
};

bool row_equal(const void* a, const float* b, int64_t d) {
  return std::memcmp(a, b, size_t(d * 4)) == 0;
}

void append(ContiguousKvCache& c, const Data& d, int64_t p0, int64_t n) {
  auto k = d.slice_k(p0, n), v = d.slice_v(p0, n);
  c.append(k.data(), v.data(), n);
}

void append(PagedKvCache& c, PagedKvCache::SequenceId s, int layer, const Data& d, int64_t p0,
            int64_t n) {
  auto k = d.slice_k(p0, n), v = d.slice_v(p0, n);
  c.append(s, layer, k.data(), v.data(), n);
}

TEST(KvCacheEngine, ContiguousGrowsByDoublingAndKeepsContents) {
  Data d(layer(64, 4, 2), 1000, 1);
  ContiguousKvCache c(d.l, LONGATTN_FLOAT32, cpu_allocator());
  EXPECT_EQ(c.capacity(), 0);
  int64_t sizes[] = {1, 100, 155, 300, 444};
  int64_t p = 0;
  for (int64_t n : sizes) {
    append(c, d, p, n);
    p += n;
    EXPECT_EQ(c.length(), p);
    EXPECT_GE(c.capacity(), p);
  }
  EXPECT_EQ(c.capacity(), 1024);  // 256, then the next power of two above 556
  EXPECT_EQ(c.bytes_in_use(), 1000 * 2 * (64 + 64) * 4);
  EXPECT_EQ(c.bytes_reserved(), 1024 * 2 * (64 + 64) * 4);
  for (int64_t pos = 0; pos < 1000; ++pos)
    for (int64_t h = 0; h < 2; ++h) {
      ASSERT_TRUE(row_equal(c.key_row(pos, h), d.key(pos, h), 64)) << pos << " " << h;
      ASSERT_TRUE(row_equal(c.value_row(pos, h), d.value(pos, h), 64)) << pos << " " << h;
    }
}

TEST(KvCacheEngine, KeqVStoresOneTensor) {
  Data d(layer(128, 8, 2, -1, true), 50, 2);
  ContiguousKvCache c(d.l, LONGATTN_BFLOAT16, cpu_allocator(), 64, true);
  EXPECT_EQ(c.bytes_reserved(), 64 * 2 * 128 * 2);  // K only
  std::vector<uint16_t> k(size_t(2 * 50 * 128), 0x3f80);
  c.append(k.data(), nullptr, 50);
  EXPECT_EQ(c.key_row(7, 1), c.value_row(7, 1));
  longattn_args a;
  longattn_args_init(&a);
  c.fill_args(&a);
  EXPECT_EQ(a.k, a.v);
  EXPECT_EQ(a.kv_len, 50);
}

// An FP8 cache: one byte per element, and fill_args hands it over as kv_dtype, keeping the caller's
// dtype (Q and O); a 16-bit cache sets dtype and clears kv_dtype.
TEST(KvCacheEngine, Fp8CacheFillsKvDtype) {
  Data d(layer(64, 4, 2), 10, 4);
  ContiguousKvCache c(d.l, LONGATTN_FLOAT8_E4M3, cpu_allocator(), 16, true);
  EXPECT_EQ(c.bytes_reserved(), 16 * 2 * (64 + 64) * 1);
  std::vector<uint8_t> k(size_t(2 * 10 * 64), 0x38), v(k.size(), 0x40);  // 1.0, 2.0
  c.append(k.data(), v.data(), 10);
  longattn_args a;
  longattn_args_init(&a);
  a.dtype = LONGATTN_BFLOAT16;
  c.fill_args(&a);
  EXPECT_EQ(a.dtype, LONGATTN_BFLOAT16);
  EXPECT_EQ(a.kv_dtype, LONGATTN_FLOAT8_E4M3);
  EXPECT_EQ(*static_cast<const uint8_t*>(c.value_row(9, 1)), 0x40);
  ContiguousKvCache h(d.l, LONGATTN_FLOAT16, cpu_allocator(), 16, true);
  h.fill_args(&a);
  EXPECT_EQ(a.dtype, LONGATTN_FLOAT16);
  EXPECT_EQ(a.kv_dtype, 0);
}

TEST(KvCacheEngine, FixedCapacityOverflowIsOverBudget) {
  Data d(layer(32, 2, 1), 20, 3);
  ContiguousKvCache c(d.l, LONGATTN_FLOAT32, cpu_allocator(), 16, true);
  append(c, d, 0, 16);
  try {
    append(c, d, 16, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), LONGATTN_OVER_BUDGET);
    EXPECT_NE(std::string(e.what()).find("fixed capacity of 16 tokens"), std::string::npos);
  }
  EXPECT_THROW(c.truncate(17), Error);
  c.truncate(10);
  EXPECT_EQ(c.length(), 10);
  append(c, d, 10, 6);  // refills the rolled-back tokens
  EXPECT_TRUE(row_equal(c.key_row(15, 0), d.key(15, 0), 32));
}

TEST(KvCacheEngine, SlidingWindowKeepsItsWindowInFixedMemory) {
  const int64_t W = 100, keep = 16, chunk = 64, total = 2000;
  Data d(layer(32, 4, 2, W), total, 4);
  int64_t cap = contiguous_capacity(d.l, total, chunk, keep);
  EXPECT_EQ(cap, 2 * (W + keep) + chunk);
  ContiguousKvCache c(d.l, LONGATTN_FLOAT32, cpu_allocator(), cap, true);
  for (int64_t p = 0; p < total; p += chunk) {
    int64_t n = std::min(chunk, total - p);
    c.release_before(p - W - keep);
    append(c, d, p, n);
    EXPECT_EQ(c.start(), std::max<int64_t>(0, p - W - keep));
    EXPECT_EQ(c.capacity(), cap);  // compaction, never growth
    for (int64_t pos = c.start(); pos < c.length(); pos += 7)
      ASSERT_TRUE(row_equal(c.key_row(pos, 1), d.key(pos, 1), 32)) << pos;
    EXPECT_THROW(c.key_row(c.start() - 1, 0), Error);
  }
  EXPECT_LE(c.stored(), W + keep + chunk);
  EXPECT_THROW(c.truncate(c.start() - 1), Error);  // those keys are gone
}

TEST(KvCacheEngine, BlockPoolCountsAndRefuses) {
  BlockPool pool(cpu_allocator(), 1024, 3);
  EXPECT_EQ(pool.free(), 3);
  int32_t a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  EXPECT_EQ(pool.used(), 3);
  EXPECT_EQ(pool.bytes_in_use(), 3 * 1024);
  try {
    pool.allocate();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), LONGATTN_OVER_BUDGET);
  }
  pool.retain(b);
  pool.release(b);
  EXPECT_EQ(pool.used(), 3);
  pool.release(b);
  EXPECT_EQ(pool.free(), 1);
  EXPECT_EQ(pool.allocate(), b);  // the freed block comes back
  EXPECT_THROW(pool.release(99), Error);
  pool.release(a);
  EXPECT_THROW(pool.release(a), Error);  // double free is caught
  // A reclaimer that frees a block lets allocation succeed.
  int calls = 0;
  pool.set_reclaimer([&] {
    ++calls;
    pool.release(c);
    return true;
  });
  pool.allocate();  // takes a
  EXPECT_EQ(pool.allocate(), c);
  EXPECT_EQ(calls, 1);
}

TEST(KvCacheEngine, PagedHoldsWhatContiguousHolds) {
  ModelPreset stack{"t",
                    {layer(64, 4, 2), layer(32, 4, 4, 40), layer(64, 8, 1, -1, true),
                     layer(48, 2, 2, -1, false, 16)},
                    ""};
  const int64_t total = 300, bs = 16;
  PagedKvCache paged(stack, LONGATTN_FLOAT32, bs, total, cpu_allocator());
  auto seq = paged.create_sequence();
  std::vector<Data> data;
  std::vector<ContiguousKvCache> flat;
  for (size_t i = 0; i < stack.layers.size(); ++i) {
    data.emplace_back(stack.layers[i], total, uint32_t(10 + i));
    flat.emplace_back(stack.layers[i], LONGATTN_FLOAT32, cpu_allocator());
  }
  // Chunk starts include 55, where 55 - W + 1 is a whole block: an off-by-one would free the
  // block holding key 15, which the query at 55 still sees.
  int64_t chunks[] = {5, 11, 16, 23, 110, 135};
  int64_t p = 0;
  for (int64_t n : chunks) {
    for (int li = 0; li < 4; ++li) {
      append(paged, seq, li, data[li], p, n);
      append(flat[li], data[li], p, n);
    }
    // The sliding layer keeps exactly the blocks from the one holding key p - W on.
    EXPECT_EQ(paged.view(seq, 1).first_block, std::max<int64_t>(0, p - 40) / bs) << p;
    p += n;
  }
  ASSERT_EQ(p, total);
  for (int li = 0; li < 4; ++li) {
    const LayerSpec& l = stack.layers[li];
    PagedLayerView v = paged.view(seq, li);
    EXPECT_EQ(paged.length(seq, li), total);
    EXPECT_EQ(v.first_block * bs + v.kv_len, total);
    for (int64_t pos = v.first_block * bs; pos < total; ++pos)
      for (int64_t h = 0; h < l.kv_heads; ++h) {
        ASSERT_EQ(std::memcmp(paged.key_row(seq, li, pos, h), flat[li].key_row(pos, h),
                              size_t(l.head_dim_qk * 4)),
                  0)
            << li << " " << pos;
        ASSERT_EQ(std::memcmp(paged.value_row(seq, li, pos, h), flat[li].value_row(pos, h),
                              size_t(l.head_dim_v * 4)),
                  0)
            << li << " " << pos;
      }
  }
  // The sliding layer (W = 40) let go of the blocks before the last chunk's window: queries
  // from 165 on see keys >= 125, so blocks 0..6 (keys < 112) are gone.
  PagedLayerView sw = paged.view(seq, 1);
  EXPECT_EQ(sw.first_block, 7);
  EXPECT_EQ(paged.block_id(seq, 1, 6), -1);
  EXPECT_EQ(paged.pool(1).used(), (total + bs - 1) / bs - 7);
  EXPECT_EQ(paged.pool(0).used(), (total + bs - 1) / bs);
  // k == v stores K only: its block is half of a same-shaped K+V layer's.
  EXPECT_EQ(paged.pool(2).block_bytes(), bs * 1 * 64 * 4);
  EXPECT_EQ(paged.pool(3).block_bytes(), bs * 2 * (48 + 16) * 4);
  int64_t used = 0;
  for (int li = 0; li < 4; ++li) used += paged.pool(li).bytes_in_use();
  EXPECT_EQ(paged.bytes_in_use(), used);
  paged.free_sequence(seq);
  EXPECT_EQ(paged.blocks_used(), 0);
  EXPECT_EQ(paged.bytes_in_use(), 0);
  EXPECT_THROW(paged.view(seq, 0), Error);
}

TEST(KvCacheEngine, PagedValidatesItsArguments) {
  ModelPreset stack{"t", {layer(64, 4, 2)}, ""};
  try {
    PagedKvCache bad(stack, LONGATTN_FLOAT32, 8, 100, cpu_allocator());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("block_size = 8: must be between 16 and 256"),
              std::string::npos);
  }
  EXPECT_THROW(PagedKvCache(stack, LONGATTN_FLOAT32, 512, 100, cpu_allocator()), Error);
  PagedKvCache c(stack, LONGATTN_FLOAT32, 16, 32, cpu_allocator());  // 2 blocks
  auto s = c.create_sequence();
  Data d(stack.layers[0], 40, 5);
  append(c, s, 0, d, 0, 32);
  try {
    append(c, s, 0, d, 32, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), LONGATTN_OVER_BUDGET);
  }
  EXPECT_THROW(append(c, s, 1, d, 0, 1), Error);  // no layer 1
  EXPECT_EQ(PagedKvCache::capacity_for_bytes(stack, LONGATTN_FLOAT32, 16, 16 * 2 * 128 * 4 * 5),
            5 * 16);
}

// The caches' argument errors share one form: the argument, its value, what is allowed.
TEST(KvCacheEngine, BadArgumentsNameTheirValue) {
  ModelPreset stack{"t", {layer(64, 4, 2)}, ""};
  auto msg = [](auto make) {
    try {
      make();
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), LONGATTN_INVALID_ARGUMENT);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(msg([&] { ContiguousKvCache(stack.layers[0], LONGATTN_FLOAT32, cpu_allocator(), -1); }),
            "capacity = -1: must be >= 0");
  EXPECT_EQ(msg([&] { PagedKvCache(stack, LONGATTN_FLOAT32, 16, 0, cpu_allocator()); }),
            "capacity_tokens = 0: must be >= 1");
  EXPECT_EQ(msg([] { PrefixCache(16, -2, nullptr); }),
            "prefix cache: byte budget = -2: must be -1 (unlimited) or >= 0");
}

TEST(KvCacheEngine, SharedBlocksAreAdoptedNotCopied) {
  ModelPreset stack{"t", {layer(32, 2, 2), layer(32, 2, 2, 20)}, ""};
  const int64_t bs = 16;
  PagedKvCache c(stack, LONGATTN_FLOAT32, bs, 256, cpu_allocator());
  auto a = c.create_sequence();
  Data d0(stack.layers[0], 80, 6), d1(stack.layers[1], 80, 7);
  append(c, a, 0, d0, 0, 64);
  append(c, a, 1, d1, 0, 64);
  std::vector<std::vector<int32_t>> shared;
  for (int64_t b = 0; b < 4; ++b) shared.push_back(c.share(a, b));
  int64_t used = c.blocks_used();
  auto b = c.create_sequence();
  c.adopt(b, shared);
  EXPECT_EQ(c.blocks_used(), used);  // no new blocks
  EXPECT_EQ(c.length(b, 0), 64);
  EXPECT_EQ(c.block_id(b, 0, 2), c.block_id(a, 0, 2));
  EXPECT_EQ(c.block_id(b, 1, 0), -1);  // outside the window after 64 tokens: not adopted
  EXPECT_EQ(c.block_id(b, 1, 3), c.block_id(a, 1, 3));
  // b continues on its own blocks; a's contents are untouched.
  append(c, b, 0, d0, 64, 16);
  EXPECT_NE(c.block_id(b, 0, 4), -1);
  EXPECT_TRUE(row_equal(c.key_row(b, 0, 70, 1), d0.key(70, 1), 32));
  EXPECT_TRUE(row_equal(c.key_row(a, 0, 63, 1), d0.key(63, 1), 32));
  for (auto& ids : shared) c.unshare(ids);
  c.free_sequence(a);
  EXPECT_TRUE(row_equal(c.key_row(b, 0, 10, 0), d0.key(10, 0), 32));  // b still holds them
  c.free_sequence(b);
  EXPECT_EQ(c.blocks_used(), 0);
}

// Attention reading K/V in place from the paged cache (longattn_args' block table) equals, bit
// for bit, attention over a contiguous cache holding the same keys: the table, the strides and
// the window offset describe exactly the cached keys, and no path gathers a copy.
TEST(KvCacheEngine, PagedViewAttentionEqualsContiguousBitForBit) {
  ModelPreset stack{"t", {layer(64, 4, 2, 50), layer(128, 4, 1, -1, true), layer(64, 2, 2)}, ""};
  const int64_t bs = 32, total = 230, chunk = 70;
  PagedKvCache paged(stack, LONGATTN_FLOAT32, bs, total, cpu_allocator());
  auto seq = paged.create_sequence();
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int li = 0; li < 3; ++li) {
    const LayerSpec& l = stack.layers[li];
    Data d(l, total, uint32_t(20 + li));
    ContiguousKvCache flat(l, LONGATTN_FLOAT32, cpu_allocator());
    for (int64_t p = 0; p < total; p += chunk) {
      int64_t n = std::min(chunk, total - p);
      append(paged, seq, li, d, p, n);
      PagedLayerView v = paged.view(seq, li);
      // Every key the chunk's first query sees is still there.
      if (l.window_left >= 0) {
        ASSERT_LE(v.first_block * bs, std::max<int64_t>(0, p - l.window_left));
      }
      // The contiguous cache holds the same range: from the paged view's first block on.
      append(flat, d, p, n);
      flat.release_before(v.first_block * bs);
      ASSERT_EQ(flat.stored(), v.kv_len);

      std::vector<float> q(size_t(l.q_heads * n * l.head_dim_qk)),
          o1(size_t(l.q_heads * n * l.head_dim_v)), o2(o1.size());
      for (auto& x : q) x = u(rng);
      AttentionArgs a =
          make_args(1, l.q_heads, l.kv_heads, n, v.kv_len, l.head_dim_qk, l.head_dim_v);
      a.q = q.data();
      a.o = o1.data();
      a.dtype = LONGATTN_FLOAT32;
      a.causal = 1;
      a.window_left = l.window_left;
      flat.fill_args(&a);
      Options opt = default_options();
      opt.path = LONGATTN_PATH_FUSED;
      run(a, opt);

      AttentionArgs b =
          make_args(1, l.q_heads, l.kv_heads, n, v.kv_len, l.head_dim_qk, l.head_dim_v);
      b.q = q.data();
      b.o = o2.data();
      b.causal = 1;
      b.window_left = l.window_left;
      paged.fill_args(seq, li, &b);
      ASSERT_NE(b.block_table, nullptr);
      EXPECT_EQ(b.kv_len, v.kv_len);
      EXPECT_EQ(b.dtype, LONGATTN_FLOAT32);
      run(b, opt);
      ASSERT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * 4), 0)
          << "layer " << li << " at " << p;
    }
  }
}

}  // namespace
}  // namespace longattn::engine

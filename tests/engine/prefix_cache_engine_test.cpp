// Prefix cache: chained keys, hit/miss counting, references, LRU eviction under a byte budget,
// and the paged adapter reusing blocks across sequences (and evicting when the pool runs out).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "longattn/engine.hpp"

namespace longattn::engine {
namespace {

std::vector<int32_t> tokens(int64_t n, int32_t first = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Inserts the full blocks of t (block size bs), each `bytes`, handle = block index; returns keys.
std::vector<uint64_t> insert_all(PrefixCache& c, const std::vector<int32_t>& t, int64_t bytes) {
  std::vector<uint64_t> keys = c.block_keys(t.data(), int64_t(t.size()));
  for (size_t b = 0; b < keys.size(); ++b) {
    uint64_t parent = b == 0 ? PrefixCache::kRootKey : keys[b - 1];
    EXPECT_TRUE(c.insert(parent, t.data() + b * c.block_size(), int64_t(b), bytes)) << b;
  }
  return keys;
}

TEST(PrefixCacheEngine, KeysChainSoABlockNamesItsWholePrefix) {
  PrefixCache c(4, -1, nullptr);
  auto a = tokens(12), b = tokens(12);
  b[1] = 99;  // differs in block 0 only
  auto ka = c.block_keys(a.data(), 12), kb = c.block_keys(b.data(), 12);
  ASSERT_EQ(ka.size(), 3u);
  EXPECT_EQ(c.block_keys(a.data(), 11).size(), 2u);             // only full blocks
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(ka[i], kb[i]) << i;  // same tokens, other prefix
  EXPECT_EQ(ka, c.block_keys(a.data(), 12));
}

TEST(PrefixCacheEngine, LookupCountsHitsAndMisses) {
  PrefixCache c(4, -1, nullptr);
  auto t = tokens(10);
  insert_all(c, t, 100);  // blocks 0, 1
  EXPECT_EQ(c.entries(), 2);
  EXPECT_EQ(c.bytes(), 200);

  auto longer = tokens(20);  // same first 8 tokens, 5 full blocks
  PrefixCache::Match m = c.lookup(longer);
  EXPECT_EQ(m.tokens, 8);
  EXPECT_EQ(m.handles, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(c.hits(), 2);
  EXPECT_EQ(c.misses(), 3);

  auto other = tokens(20, 1000);
  EXPECT_EQ(c.lookup(other).tokens, 0);
  EXPECT_EQ(c.misses(), 8);
  auto diverge = tokens(8);
  diverge[5] = -7;  // block 1 differs
  EXPECT_EQ(c.lookup(diverge).tokens, 4);
  EXPECT_EQ(c.hits(), 3);
}

TEST(PrefixCacheEngine, InsertNeedsItsParentAndRefusesDuplicates) {
  PrefixCache c(4, -1, nullptr);
  auto t = tokens(8);
  auto keys = c.block_keys(t.data(), 8);
  EXPECT_FALSE(c.insert(keys[0], t.data() + 4, 1, 10));  // parent not cached
  EXPECT_TRUE(c.insert(PrefixCache::kRootKey, t.data(), 0, 10));
  EXPECT_FALSE(c.insert(PrefixCache::kRootKey, t.data(), 5, 10));  // already there
  EXPECT_TRUE(c.insert(keys[0], t.data() + 4, 1, 10));
  EXPECT_EQ(c.refs(keys[0]), 1);
  EXPECT_EQ(c.refs(keys[1]), 1);
}

TEST(PrefixCacheEngine, EvictsLeastRecentlyUsedUnreferencedFirst) {
  std::vector<int64_t> evicted;
  PrefixCache c(4, 300, [&](int64_t h) { evicted.push_back(h); });
  auto a = tokens(8, 0), b = tokens(4, 100);
  auto ka = insert_all(c, a, 100);  // handles 0, 1
  auto kb = c.block_keys(b.data(), 4);
  ASSERT_TRUE(c.insert(PrefixCache::kRootKey, b.data(), 10, 100));
  EXPECT_EQ(c.bytes(), 300);

  // Everything is referenced: a new block cannot fit and nothing is evicted.
  auto d = tokens(4, 200);
  EXPECT_FALSE(c.insert(PrefixCache::kRootKey, d.data(), 20, 100));
  EXPECT_TRUE(evicted.empty());

  // a's blocks are released tail first, then b; then a is looked up again (used recently).
  c.release(ka[1]);
  c.release(ka[0]);
  c.release(kb[0]);
  c.lookup(a);
  EXPECT_TRUE(c.insert(PrefixCache::kRootKey, d.data(), 20, 100));  // evicts b: least recent
  EXPECT_EQ(evicted, (std::vector<int64_t>{10}));
  auto e = tokens(4, 300);
  EXPECT_TRUE(c.insert(PrefixCache::kRootKey, e.data(), 30, 100));  // then a's tail, not its head
  EXPECT_EQ(evicted, (std::vector<int64_t>{10, 1}));
  EXPECT_EQ(c.lookup(a).tokens, 4);
  EXPECT_EQ(c.evictions(), 2);
  EXPECT_EQ(c.bytes(), 300);

  // A retained entry is safe again; a block larger than the whole budget never fits.
  c.retain(ka[0]);
  EXPECT_EQ(c.refs(ka[0]), 1);
  auto f = tokens(4, 400);
  EXPECT_FALSE(c.insert(PrefixCache::kRootKey, f.data(), 40, 301));
  EXPECT_THROW(c.release(kb[0]), Error);  // evicted: not cached any more
}

TEST(PrefixCacheEngine, ClearEvictsEverything) {
  int evicted = 0;
  PrefixCache c(4, -1, [&](int64_t) { ++evicted; });
  insert_all(c, tokens(16), 1);
  c.clear();
  EXPECT_EQ(evicted, 4);
  EXPECT_EQ(c.entries(), 0);
  EXPECT_EQ(c.bytes(), 0);
}

LayerSpec layer(int64_t d, int64_t hq, int64_t hkv, int64_t window = -1) {
  LayerSpec l;
  l.head_dim_qk = l.head_dim_v = d;
  l.q_heads = hq;
  l.kv_heads = hkv;
  l.window_left = window;
  return l;
}

void fill(PagedKvCache& c, PagedKvCache::SequenceId s, int64_t from, int64_t to, float value) {
  for (int li = 0; li < c.num_layers(); ++li) {
    const size_t count = static_cast<size_t>(2 * (to - from) * 16);  // kv_heads 2, d 16
    std::vector<float> k(count), v(count);
    std::fill(k.begin(), k.end(), value);
    std::fill(v.begin(), v.end(), -value);
    c.append(s, li, k.data(), v.data(), to - from);
  }
}

TEST(PrefixCacheEngine, PagedSequencesShareTheirCommonPrefix) {
  ModelPreset stack{"t", {layer(16, 2, 2), layer(16, 2, 2, 20)}, ""};
  const int64_t bs = 16;
  PagedKvCache cache(stack, LONGATTN_FLOAT32, bs, 16 * bs, cpu_allocator());
  PagedPrefixCache prefix(cache, -1);

  // Turn 1: 70 tokens, 4 full blocks published.
  auto conv = tokens(70);
  auto s1 = cache.create_sequence();
  EXPECT_EQ(prefix.attach(s1, conv), 0);
  fill(cache, s1, 0, 70, 1.f);
  prefix.publish(s1, conv);
  EXPECT_EQ(prefix.index().entries(), 4);
  int64_t used_turn1 = cache.blocks_used();

  // Turn 2 re-submits the conversation plus 30 tokens: 64 are reused.
  prefix.detach(s1);
  cache.free_sequence(s1);
  for (int32_t t = 70; t < 100; ++t) conv.push_back(t);
  auto s2 = cache.create_sequence();
  EXPECT_EQ(prefix.attach(s2, conv), 64);
  EXPECT_EQ(cache.length(s2, 0), 64);
  EXPECT_EQ(*static_cast<const float*>(cache.key_row(s2, 0, 63, 1)), 1.f);  // turn 1's data
  fill(cache, s2, 64, 100, 2.f);
  prefix.publish(s2, conv);
  EXPECT_EQ(prefix.index().entries(), 6);
  EXPECT_EQ(prefix.index().hits(), 4);
  // The cache pins the prefix blocks; turn 2 added only its own new blocks.
  EXPECT_LE(cache.blocks_used(), used_turn1 + 2 * 3);

  // Another conversation shares nothing.
  auto s3 = cache.create_sequence();
  EXPECT_EQ(prefix.attach(s3, tokens(40, 5000)), 0);
  prefix.detach(s3);
  cache.free_sequence(s3);
  prefix.detach(s2);
  cache.free_sequence(s2);
}

TEST(PrefixCacheEngine, PagedPoolReclaimsFromThePrefixCache) {
  ModelPreset stack{"t", {layer(16, 2, 2)}, ""};
  const int64_t bs = 16;
  PagedKvCache cache(stack, LONGATTN_FLOAT32, bs, 4 * bs, cpu_allocator());  // 4 blocks
  PagedPrefixCache prefix(cache, -1);
  auto a = tokens(64);
  auto s1 = cache.create_sequence();
  prefix.attach(s1, a);
  fill(cache, s1, 0, 64, 1.f);
  prefix.publish(s1, a);
  prefix.detach(s1);
  cache.free_sequence(s1);
  EXPECT_EQ(cache.blocks_used(), 4);  // held by the prefix cache only

  // A different prompt needs blocks: the pool evicts cached ones, least recent (tail) first.
  auto b = tokens(32, 900);
  auto s2 = cache.create_sequence();
  EXPECT_EQ(prefix.attach(s2, b), 0);
  fill(cache, s2, 0, 32, 3.f);
  EXPECT_EQ(prefix.index().evictions(), 2);
  EXPECT_EQ(prefix.index().lookup(a).tokens, 32);  // a's first two blocks survive
  // While in use, blocks are not evictable: a third sequence cannot get more than what is free.
  auto s3 = cache.create_sequence();
  fill(cache, s3, 0, 32, 4.f);  // evicts a's last two
  EXPECT_EQ(prefix.index().entries(), 0);
  try {
    fill(cache, s3, 32, 48, 4.f);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), LONGATTN_OVER_BUDGET);
  }
}

}  // namespace
}  // namespace longattn::engine

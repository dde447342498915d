// A set of node indices (0 .. kMaxNodes) as a bitset of 64-bit words: the routable nodes, the nodes
// a request has tried, the nodes a policy may pick. It replaces the old 64-node `NodeMask`.
//
// Sized to the highest node it holds, rounded up to whole words, and kept inline (no allocation)
// up to 1024 nodes, so copying and combining sets costs a few word operations per 64 nodes.
// Words past a set's size read as zero, so sets of different sizes combine as expected.
//
// Thread-compatible: a value type; share it read-only or copy it.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <initializer_list>

#include "absl/container/inlined_vector.h"
#include "absl/types/span.h"

namespace helm::route {

class NodeSet {
 public:
  NodeSet() = default;
  // The nodes listed (for tests and small literals).
  NodeSet(std::initializer_list<int> nodes) {
    for (int node : nodes) Insert(node);
  }
  // Nodes [0, n).
  static NodeSet FirstN(int n) {
    NodeSet set;
    set.words_.assign(WordsFor(n), ~uint64_t{0});
    if (n % 64 != 0) set.words_.back() = (uint64_t{1} << (n % 64)) - 1;
    return set;
  }
  // The set whose word w is words[w] (bit b of word w: node 64 * w + b).
  static NodeSet FromWords(absl::Span<const uint64_t> words) {
    NodeSet set;
    set.words_.assign(words.begin(), words.end());
    return set;
  }

  // REQUIRES: node >= 0.
  void Insert(int node) {
    const size_t w = static_cast<size_t>(node) / 64;
    if (w >= words_.size()) words_.resize(w + 1, 0);
    words_[w] |= uint64_t{1} << (node % 64);
  }
  // Empties the set, keeping its storage (a reused request's set).
  void Clear() { words_.clear(); }
  void Erase(int node) {
    const size_t w = static_cast<size_t>(node) / 64;
    if (w < words_.size()) words_[w] &= ~(uint64_t{1} << (node % 64));
  }
  bool Contains(int node) const {
    const size_t w = static_cast<size_t>(node) / 64;
    return w < words_.size() && ((words_[w] >> (node % 64)) & 1) != 0;
  }
  bool Empty() const {
    for (uint64_t word : words_) {
      if (word != 0) return false;
    }
    return true;
  }
  int Count() const {
    int count = 0;
    for (uint64_t word : words_) count += std::popcount(word);
    return count;
  }
  // The k-th member in increasing order (k in [0, Count())); -1 when there are fewer.
  int Nth(int k) const {
    for (size_t w = 0; w < words_.size(); ++w) {
      const int in_word = std::popcount(words_[w]);
      if (k < in_word) {
        uint64_t word = words_[w];
        for (; k > 0; --k) word &= word - 1;
        return static_cast<int>(w * 64) + std::countr_zero(word);
      }
      k -= in_word;
    }
    return -1;
  }
  // One past the highest node the set can hold without growing (a multiple of 64).
  int capacity() const { return static_cast<int>(words_.size() * 64); }
  absl::Span<const uint64_t> words() const { return words_; }

  // Calls fn(node) for every member, in increasing order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    const uint64_t* words = words_.data();  // unchecked: policies call this per decision
    for (size_t w = 0; w < words_.size(); ++w) {
      for (uint64_t word = words[w]; word != 0; word &= word - 1) {
        fn(static_cast<int>(w * 64) + std::countr_zero(word));
      }
    }
  }

  NodeSet& operator&=(const NodeSet& other) {
    const size_t common = std::min(words_.size(), other.words_.size());
    for (size_t w = 0; w < common; ++w) words_[w] &= other.words_[w];
    for (size_t w = common; w < words_.size(); ++w) words_[w] = 0;
    return *this;
  }
  NodeSet& operator|=(const NodeSet& other) {
    if (other.words_.size() > words_.size()) words_.resize(other.words_.size(), 0);
    for (size_t w = 0; w < other.words_.size(); ++w) words_[w] |= other.words_[w];
    return *this;
  }
  // Removes every member of `other`.
  NodeSet& Subtract(const NodeSet& other) {
    const size_t common = std::min(words_.size(), other.words_.size());
    for (size_t w = 0; w < common; ++w) words_[w] &= ~other.words_[w];
    return *this;
  }

  // Same members (sizes may differ).
  friend bool operator==(const NodeSet& a, const NodeSet& b) {
    const size_t n = std::max(a.words_.size(), b.words_.size());
    for (size_t w = 0; w < n; ++w) {
      if (a.word(w) != b.word(w)) return false;
    }
    return true;
  }

  static size_t WordsFor(int nodes) { return (static_cast<size_t>(nodes) + 63) / 64; }

 private:
  uint64_t word(size_t w) const { return w < words_.size() ? words_[w] : 0; }

  absl::InlinedVector<uint64_t, 16> words_;
};

}  // namespace helm::route

// The fuzz input as a file, for loaders that take a path: an anonymous in-memory file
// (memfd_create) named by /proc/self/fd/<n>. No disk I/O, nothing left behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace helm::fuzz {

class MemFdFile {
 public:
  // Creates the file holding `size` bytes of `data`; ok() is false when the kernel refuses.
  MemFdFile(const uint8_t* data, size_t size);
  ~MemFdFile();
  MemFdFile(const MemFdFile&) = delete;
  MemFdFile& operator=(const MemFdFile&) = delete;

  bool ok() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace helm::fuzz

#include "helm/emb/host_table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "helm/common/hash.h"

namespace helm::emb {

namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";

// Value of `'key': ` in a .npy header dict, up to the next top-level comma or closing brace.
std::string HeaderValue(const std::string& header, const std::string& key) {
  const std::string needle = "'" + key + "':";
  const size_t at = header.find(needle);
  if (at == std::string::npos) return "";
  size_t i = at + needle.size();
  int depth = 0;
  std::string out;
  for (; i < header.size(); ++i) {
    const char c = header[i];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    out.push_back(c);
    if (depth < 0) break;
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

bool DescrMatches(const std::string& descr, Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32:
      return descr == "'<f4'";
    case Dtype::kFp16:
      return descr == "'<f2'";
    case Dtype::kBf16:
      return descr == "'<V2'" || descr == "'|V2'" || descr == "'<u2'" || descr == "'<i2'";
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HostTable>> HostTable::CreateRandom(int64_t num_items, int32_t dim,
                                                                   Dtype dtype, uint64_t seed) {
  if (num_items <= 0 || dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb table: num_items and dim must be positive, got ", num_items, " x ", dim));
  }
  std::unique_ptr<HostTable> t(new HostTable());
  t->num_items_ = num_items;
  t->dim_ = dim;
  t->dtype_ = dtype;
  t->row_bytes_ = int64_t{dim} * DtypeBytes(dtype);
  t->source_ = absl::StrCat("random(seed=", seed, ")");
  const int64_t total = num_items * t->row_bytes_;
  t->owned_.reset(new (std::nothrow) uint8_t[static_cast<size_t>(total)]);
  if (t->owned_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("emb table: cannot allocate ", total, " bytes for ", num_items, " rows"));
  }
  const uint64_t base = SplitMix64(seed);
  uint8_t* out = t->owned_.get();
  const int64_t n = num_items * dim;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = SplitMix64(base ^ static_cast<uint64_t>(i));
    // 24 random bits -> [-0.1, 0.1).
    const float v = (static_cast<float>(r >> 40) * (1.0f / 16777216.0f) - 0.5f) * 0.2f;
    switch (dtype) {
      case Dtype::kFp32:
        std::memcpy(out + 4 * i, &v, 4);
        break;
      case Dtype::kFp16: {
        const uint16_t h = FloatToHalf(v);
        std::memcpy(out + 2 * i, &h, 2);
        break;
      }
      case Dtype::kBf16: {
        const uint16_t b = FloatToBf16(v);
        std::memcpy(out + 2 * i, &b, 2);
        break;
      }
    }
  }
  t->data_ = out;
  return t;
}

absl::StatusOr<std::unique_ptr<HostTable>> HostTable::OpenNpy(const std::string& path,
                                                              int64_t num_items, int32_t dim,
                                                              Dtype dtype) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("emb.table_path: cannot open '", path, "': ", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return absl::NotFoundError(
        absl::StrCat("emb.table_path: cannot stat '", path, "': ", std::strerror(e)));
  }
  const size_t file_bytes = static_cast<size_t>(st.st_size);
  void* map =
      file_bytes > 0 ? ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  auto bad = [&](const std::string& what) {
    if (map != MAP_FAILED) ::munmap(map, file_bytes);
    return absl::InvalidArgumentError(absl::StrCat("emb.table_path '", path, "': ", what));
  };
  if (map == MAP_FAILED) return bad("cannot mmap the file (empty?)");
  const auto* bytes = static_cast<const uint8_t*>(map);
  if (file_bytes < 10 || std::memcmp(bytes, kNpyMagic, 6) != 0) {
    return bad("not a .npy file (bad magic)");
  }
  const int major = bytes[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = bytes[8] | (size_t{bytes[9]} << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (file_bytes < 12) return bad("truncated header");
    header_len =
        bytes[8] | (size_t{bytes[9]} << 8) | (size_t{bytes[10]} << 16) | (size_t{bytes[11]} << 24);
    header_start = 12;
  } else {
    return bad(absl::StrCat("unsupported .npy version ", major));
  }
  if (header_start + header_len > file_bytes) return bad("truncated header");
  const std::string header(reinterpret_cast<const char*>(bytes + header_start), header_len);
  const std::string descr = HeaderValue(header, "descr");
  if (!DescrMatches(descr, dtype)) {
    return bad(absl::StrCat("dtype ", descr, " does not match emb.dtype ", DtypeName(dtype)));
  }
  if (HeaderValue(header, "fortran_order") != "False") {
    return bad("fortran_order must be False (C order)");
  }
  std::string shape = HeaderValue(header, "shape");
  absl::string_view sv(shape);
  if (!absl::ConsumePrefix(&sv, "(") || !absl::ConsumeSuffix(&sv, ")")) {
    return bad(absl::StrCat("cannot parse shape ", shape));
  }
  std::vector<int64_t> dims;
  for (absl::string_view part : absl::StrSplit(sv, ',', absl::SkipWhitespace())) {
    int64_t d;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &d)) {
      return bad(absl::StrCat("cannot parse shape ", shape));
    }
    dims.push_back(d);
  }
  if (dims.size() != 2 || dims[0] != num_items || dims[1] != dim) {
    return bad(absl::StrCat("shape ", shape, " does not match emb.num_items x emb.dim = (",
                            num_items, ", ", dim, ")"));
  }
  const int64_t row_bytes = int64_t{dim} * DtypeBytes(dtype);
  const size_t data_start = header_start + header_len;
  if (file_bytes - data_start < static_cast<size_t>(num_items * row_bytes)) {
    return bad(absl::StrCat("holds ", file_bytes - data_start, " data bytes, expected ",
                            num_items * row_bytes));
  }
  std::unique_ptr<HostTable> t(new HostTable());
  t->num_items_ = num_items;
  t->dim_ = dim;
  t->dtype_ = dtype;
  t->row_bytes_ = row_bytes;
  t->source_ = path;
  t->map_ = map;
  t->map_bytes_ = file_bytes;
  t->data_ = bytes + data_start;
  return t;
}

absl::StatusOr<std::unique_ptr<HostTable>> HostTable::Create(const EmbOptions& options) {
  absl::StatusOr<Dtype> dtype = ParseDtype(options.dtype);
  if (!dtype.ok()) return dtype.status();
  if (!options.table_path.empty()) {
    return OpenNpy(options.table_path, options.num_items, options.dim, *dtype);
  }
  return CreateRandom(options.num_items, options.dim, *dtype, options.seed);
}

HostTable::~HostTable() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

absl::Status WriteNpy(const std::string& path, Dtype dtype, int64_t rows, int32_t cols,
                      const void* data) {
  const char* descr = dtype == Dtype::kFp32 ? "<f4" : (dtype == Dtype::kFp16 ? "<f2" : "<V2");
  std::string header = absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (",
                                    rows, ", ", cols, "), }");
  // Pad with spaces so that magic + lengths + header end on a 64-byte boundary, then '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot write '", path, "': ", std::strerror(errno)));
  }
  const uint8_t prefix[10] = {0x93,
                              'N',
                              'U',
                              'M',
                              'P',
                              'Y',
                              1,
                              0,
                              static_cast<uint8_t>(header.size() & 0xff),
                              static_cast<uint8_t>(header.size() >> 8)};
  const size_t data_bytes = static_cast<size_t>(rows * cols * DtypeBytes(dtype));
  const bool ok = std::fwrite(prefix, 1, 10, f) == 10 &&
                  std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
                  std::fwrite(data, 1, data_bytes, f) == data_bytes;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) return absl::InternalError(absl::StrCat("short write to '", path, "'"));
  return absl::OkStatus();
}

}  // namespace helm::emb

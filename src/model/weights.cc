#include "helm/model/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace helm::model {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Random values for one tensor, by what it is.
void FillRandom(const TensorSpec& spec, std::mt19937_64& rng, float* out) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const int64_t n = spec.elements();
  const absl::string_view name = spec.name;
  auto ends_with = [&](absl::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (name.find("norm") != absl::string_view::npos && ends_with(".weight")) {
    for (int64_t i = 0; i < n; ++i) out[i] = 1.0f + 0.1f * unit(rng);
  } else if (ends_with(".bias") || ends_with("_bias")) {
    for (int64_t i = 0; i < n; ++i) out[i] = 0.1f * unit(rng);
  } else if (name == "action_emb") {
    for (int64_t i = 0; i < n; ++i) out[i] = 0.5f * unit(rng);
  } else {
    const float scale = std::sqrt(3.0f / static_cast<float>(spec.shape[0]));
    for (int64_t i = 0; i < n; ++i) out[i] = scale * unit(rng);
  }
}

}  // namespace

int64_t TensorSpec::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<TensorSpec> WeightSpecs(const ModelDims& dims) {
  const int64_t D = dims.d_model;
  const int64_t H = dims.num_heads;
  std::vector<TensorSpec> specs;
  if (dims.projects_embeddings()) {
    specs.push_back({"item_proj.weight", {dims.emb_dim, D}});
    specs.push_back({"item_proj.bias", {D}});
  }
  specs.push_back({"action_emb", {dims.num_actions, D}});
  for (int32_t l = 0; l < dims.num_layers; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    specs.push_back({p + "norm_in.weight", {D}});
    specs.push_back({p + "norm_in.bias", {D}});
    specs.push_back({p + "uvqk.weight", {D, dims.uvqk_width()}});
    specs.push_back({p + "uvqk.bias", {dims.uvqk_width()}});
    specs.push_back({p + "pos_bias", {H, dims.position_buckets}});
    specs.push_back({p + "time_bias", {H, dims.time_buckets}});
    specs.push_back({p + "norm_attn.weight", {dims.attn_width()}});
    specs.push_back({p + "norm_attn.bias", {dims.attn_width()}});
    specs.push_back({p + "out.weight", {dims.attn_width(), D}});
    specs.push_back({p + "out.bias", {D}});
  }
  specs.push_back({"final_norm.weight", {D}});
  specs.push_back({"final_norm.bias", {D}});
  specs.push_back({"head.weight", {D, D}});
  specs.push_back({"head.bias", {D}});
  return specs;
}

Weights::Weights(const ModelDims& dims) : dims_(dims), specs_(WeightSpecs(dims)) {}

Weights::~Weights() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_bytes_);
}

std::unique_ptr<Weights> Weights::Random(const ModelDims& dims, uint64_t seed) {
  std::unique_ptr<Weights> w(new Weights(dims));
  int64_t total = 0;
  for (const auto& s : w->specs_) total += s.elements();
  w->owned_.resize(total);
  std::mt19937_64 rng(seed);
  int64_t offset = 0;
  for (const auto& s : w->specs_) {
    FillRandom(s, rng, w->owned_.data() + offset);
    w->tensors_[s.name] = w->owned_.data() + offset;
    offset += s.elements();
  }
  return w;
}

absl::StatusOr<std::unique_ptr<Weights>> Weights::Load(const std::string& path,
                                                       const ModelDims& dims) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("weights '", path, "': cannot open (", std::strerror(errno), ")"));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::NotFoundError(absl::StrCat("weights '", path, "': cannot stat"));
  }
  const size_t file_bytes = static_cast<size_t>(st.st_size);
  const std::string where = absl::StrCat("weights '", path, "'");
  if (file_bytes < 8) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": truncated: ", file_bytes, " bytes, no safetensors header"));
  }
  void* map = mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": mmap failed"));
  }
  std::unique_ptr<Weights> w(new Weights(dims));
  w->mapping_ = map;
  w->mapping_bytes_ = file_bytes;
  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];
  if (header_bytes > file_bytes - 8) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": truncated: header claims ",
                                                   header_bytes, " bytes but the file has ",
                                                   file_bytes - 8, " after the length"));
  }
  const nlohmann::json header = nlohmann::json::parse(
      reinterpret_cast<const char*>(bytes + 8),
      reinterpret_cast<const char*>(bytes + 8 + header_bytes), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": header is not a JSON object"));
  }
  const uint8_t* data = bytes + 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - 8 - header_bytes;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") continue;
    bool expected = false;
    for (const auto& s : w->specs_) expected = expected || s.name == key;
    if (!expected) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unexpected tensor '", key,
                                                     "' (not part of a model with these options)"));
    }
  }
  // Tensors at 4-byte aligned offsets are used in place; others are copied into owned_.
  bool aligned = true;
  for (const auto& s : w->specs_) {
    const auto it = header.find(s.name);
    if (it == header.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": missing tensor '", s.name, "' of shape ", ShapeText(s.shape)));
    }
    const nlohmann::json& t = *it;
    if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
        !t["shape"].is_array() || !t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2 || !t["data_offsets"][0].is_number_unsigned() ||
        !t["data_offsets"][1].is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor '", s.name,
                       "': entry needs dtype, shape and data_offsets [begin, end]"));
    }
    const std::string dtype = t["dtype"].get<std::string>();
    if (dtype != "F32") {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor '", s.name, "': dtype must be F32, got ", dtype));
    }
    std::vector<int64_t> shape;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_integer()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": tensor '", s.name, "': shape holds a non-integer"));
      }
      shape.push_back(d.get<int64_t>());
    }
    if (shape != s.shape) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", s.name,
                                                     "': shape must be ", ShapeText(s.shape),
                                                     ", got ", ShapeText(shape)));
    }
    const uint64_t begin = t["data_offsets"][0].get<uint64_t>();
    const uint64_t end = t["data_offsets"][1].get<uint64_t>();
    if (end < begin || end - begin != static_cast<uint64_t>(s.elements()) * sizeof(float)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor '", s.name, "': data_offsets [", begin, ", ", end,
                       ") hold ", end - begin, " bytes, expected ", s.elements() * sizeof(float)));
    }
    if (end > data_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", s.name, "': data [",
                                                     begin, ", ", end, ") beyond the file's ",
                                                     data_bytes, " data bytes (truncated file?)"));
    }
    aligned = aligned && (reinterpret_cast<uintptr_t>(data + begin) % alignof(float) == 0);
  }
  int64_t total = 0;
  if (!aligned) {
    for (const auto& s : w->specs_) total += s.elements();
    w->owned_.resize(total);
  }
  int64_t offset = 0;
  for (const auto& s : w->specs_) {
    const uint8_t* src = data + header[s.name]["data_offsets"][0].get<uint64_t>();
    if (aligned) {
      w->tensors_[s.name] = reinterpret_cast<const float*>(src);
    } else {
      std::memcpy(w->owned_.data() + offset, src, s.elements() * sizeof(float));
      w->tensors_[s.name] = w->owned_.data() + offset;
      offset += s.elements();
    }
  }
  for (const auto& s : w->specs_) {
    const float* t = w->tensors_[s.name];
    for (int64_t i = 0; i < s.elements(); ++i) {
      if (!std::isfinite(t[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": tensor '", s.name, "': element ", i, " is not finite"));
      }
    }
  }
  return w;
}

absl::Status Weights::Save(const std::string& path) const {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "helm-hstu-v1"},
                            {"num_layers", std::to_string(dims_.num_layers)},
                            {"num_heads", std::to_string(dims_.num_heads)},
                            {"d_qk", std::to_string(dims_.d_qk)},
                            {"d_v", std::to_string(dims_.d_v)},
                            {"d_model", std::to_string(dims_.d_model)},
                            {"emb_dim", std::to_string(dims_.emb_dim)}};
  uint64_t offset = 0;
  for (const auto& s : specs_) {
    const uint64_t bytes = static_cast<uint64_t>(s.elements()) * sizeof(float);
    header[s.name] = {
        {"dtype", "F32"}, {"shape", s.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad the header with spaces so tensor data starts 8-byte aligned (as safetensors writers do).
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InvalidArgumentError(absl::StrCat("cannot write '", path, "'"));
  uint8_t length[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) {
    length[i] = static_cast<uint8_t>(n & 0xff);
    n >>= 8;
  }
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& s : specs_) {
    out.write(reinterpret_cast<const char*>(Get(s.name)),
              static_cast<std::streamsize>(s.elements() * sizeof(float)));
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing '", path, "' failed"));
  return absl::OkStatus();
}

const float* Weights::Get(absl::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

}  // namespace helm::model

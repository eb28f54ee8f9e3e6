// Model::load on an official safetensors directory vs on the `--keep-fp8` GGUF of the same
// checkpoint (issue 3, acceptance "Loading a fixture checkpoint from safetensors and from a
// --keep-fp8 GGUF yields identical weights"), and both through the forward pass.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/model/forward.h"
#include "dsv4/model/hf_convert.h"
#include "dsv4/model/model.h"
#include "fixture_util.h"

namespace {

using dsv4::model::Model;
using namespace dsv4::test;

TEST(ModelLoad, SafetensorsDirEqualsKeepFp8Gguf) {
  const std::string dir = std::string(DSV4_FIXTURES_DIR) + "/tiny-quant";
  auto from_dir = Model::load(dir);
  ASSERT_TRUE(from_dir.is_ok()) << from_dir.status().to_string();
  const std::string gguf = (std::filesystem::temp_directory_path() / "dsv4_model_load_keepfp8.gguf").string();
  dsv4::ConvertOptions co;
  co.keep_fp8 = true;
  ASSERT_TRUE(dsv4::convert_hf_to_gguf(dir, gguf, co).is_ok());
  auto from_file = Model::load(gguf);
  ASSERT_TRUE(from_file.is_ok()) << from_file.status().to_string();
  const auto& a = (*from_dir)->file();
  const auto& b = (*from_file)->file();
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  int n_native = 0;
  for (const dsv4::GgufTensorInfo* t : a.tensors()) {
    const dsv4::GgufTensorInfo* u = b.find_tensor(t->name);
    ASSERT_NE(u, nullptr) << t->name;
    EXPECT_EQ(t->type, u->type) << t->name;
    EXPECT_EQ(std::memcmp(t->ne, u->ne, sizeof t->ne), 0) << t->name;
    ASSERT_EQ(t->n_bytes, u->n_bytes) << t->name;
    EXPECT_EQ(std::memcmp(t->data.data(), u->data.data(), t->n_bytes), 0) << t->name;
    const std::string ty(t->type->name);
    if (ty == "mxfp4" || ty == "f8_e4m3_b128") ++n_native;
  }
  EXPECT_GT(n_native, 0) << "FP4/FP8 weights should stay in native block formats";
  // and the same logits through the forward pass
  auto ops = dsv4::backend::make_cpu_ops(1);
  const auto toks = tokens_of(load_npy(fx("tiny-quant", "tokens/short.npy")));
  std::vector<float> la, lb;
  for (auto* m : {from_dir->get(), from_file->get()}) {
    dsv4::model::Forward f(*m, *ops);
    dsv4::model::SequenceState st(*m, {});
    dsv4::model::SeqInput in{&st, toks, true};
    ASSERT_TRUE(f.run(std::span<const dsv4::model::SeqInput>(&in, 1), m == from_dir->get() ? la : lb).is_ok());
  }
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * 4), 0);
  std::filesystem::remove(gguf);
}

TEST(ModelLoad, BadDirectoryNamesTheProblem) {
  const std::string d = (std::filesystem::temp_directory_path() / "dsv4_empty_ckpt").string();
  std::filesystem::create_directories(d);
  auto m = Model::load(d);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("config.json"), std::string::npos) << m.status().to_string();
  std::filesystem::remove_all(d);
}

}  // namespace

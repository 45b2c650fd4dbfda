#include "client/coordinator_address.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::client {
namespace {

using ::testing::HasSubstr;

class CoordinatorAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/rackctl_address_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void WriteAddr(const std::string& dir, const std::string& text) {
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/coordinator.addr") << text;
  }
  std::string dir_;
};

TEST_F(CoordinatorAddressTest, FlagThenEnvironmentThenRackDirThenDefault) {
  WriteAddr(dir_ + "/env", "127.0.0.1:7001\n");
  WriteAddr(dir_ + "/default", "  127.0.0.1:7002  \n");
  AddressSources s{"h:1", "h:2", dir_ + "/env", dir_ + "/default"};
  EXPECT_EQ(*ResolveCoordinatorAddress(s), "h:1");
  s.flag.clear();
  EXPECT_EQ(*ResolveCoordinatorAddress(s), "h:2");
  s.env_coordinator.clear();
  EXPECT_EQ(*ResolveCoordinatorAddress(s), "127.0.0.1:7001");
  s.env_rack_dir.clear();
  EXPECT_EQ(*ResolveCoordinatorAddress(s), "127.0.0.1:7002");
}

TEST_F(CoordinatorAddressTest, MissingFileIsNotFoundNamingIt) {
  AddressSources s{"", "", dir_ + "/nothing", ""};
  auto address = ResolveCoordinatorAddress(s);
  EXPECT_EQ(address.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(address.status().message()),
              HasSubstr(dir_ + "/nothing/coordinator.addr"));
}

TEST_F(CoordinatorAddressTest, AddressWithoutPortIsInvalidNamingTheSource) {
  auto flag = ResolveCoordinatorAddress({"localhost", "", "", ""});
  EXPECT_EQ(flag.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(flag.status().message()), HasSubstr("--coordinator: \"localhost\""));
  WriteAddr(dir_ + "/bad", "garbage\n");
  auto file = ResolveCoordinatorAddress({"", "", dir_ + "/bad", ""});
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("bad/coordinator.addr"));
}

TEST_F(CoordinatorAddressTest, DefaultRackDirIsNextToTheBuildsClientFolder) {
  std::filesystem::create_directories(dir_ + "/build/client");
  std::ofstream(dir_ + "/build/client/rackctl") << "";
  const AddressSources s = AddressSourcesFromEnvironment("", dir_ + "/build/client/rackctl");
  EXPECT_EQ(s.default_rack_dir, (std::filesystem::canonical(dir_) / "build" / "rack").string());
}

}  // namespace
}  // namespace rackserve::client

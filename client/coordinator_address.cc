#include "client/coordinator_address.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace rackserve::client {
namespace {

absl::StatusOr<std::string> Checked(std::string address, const std::string& source) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", address, "\" is not a HOST:PORT address"));
  }
  return address;
}

}  // namespace

absl::StatusOr<std::string> ResolveCoordinatorAddress(const AddressSources& sources) {
  if (!sources.flag.empty()) return Checked(sources.flag, "--coordinator");
  if (!sources.env_coordinator.empty()) {
    return Checked(sources.env_coordinator, "RACKSERVE_COORDINATOR");
  }
  const std::string dir =
      sources.env_rack_dir.empty() ? sources.default_rack_dir : sources.env_rack_dir;
  const std::string path = (std::filesystem::path(dir) / "coordinator.addr").string();
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::NotFoundError(absl::StrCat(
        "no coordinator address: ", path,
        " cannot be read (is a rack up? `deploy/rack up`), and neither --coordinator nor "
        "RACKSERVE_COORDINATOR is set"));
  }
  return Checked(std::string(absl::StripAsciiWhitespace(line)), path);
}

AddressSources AddressSourcesFromEnvironment(std::string_view flag, std::string_view executable) {
  AddressSources sources;
  sources.flag = std::string(flag);
  if (const char* env = std::getenv("RACKSERVE_COORDINATOR")) sources.env_coordinator = env;
  if (const char* env = std::getenv("RACKSERVE_RACK_DIR")) sources.env_rack_dir = env;
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::canonical(executable, error);
  sources.default_rack_dir =
      error ? std::string("build/rack") : (exe.parent_path().parent_path() / "rack").string();
  return sources;
}

}  // namespace rackserve::client

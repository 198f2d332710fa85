// ringlink-devices: lists the RDMA devices the verbs transport can use — HCAs and ports with
// state, link layer, speed, MTU and GID table (RoCE v1/v2) — or says why verbs are unavailable.
//   ringlink-devices [--hca SPEC] [--sysfs-root DIR]
// SPEC defaults to RINGLINK_IB_HCA and DIR to RINGLINK_IB_SYSFS_ROOT (else /sys/class/infiniband);
// "soft" lists the software verbs used in tests.
#include <cstdio>
#include <exception>
#include <string>

#include <ringlink/options.h>

#include "transport/verbs/devices.h"

int main(int argc, char** argv) {
  ringlink::Options options;
  try {
    options = ringlink::Options::from_environment();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringlink-devices: %s\n", e.what());
    return 2;
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--hca" || a == "--sysfs-root") && i + 1 < argc) {
      (a == "--hca" ? options.ib_hca : options.ib_sysfs_root) = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: ringlink-devices [--hca SPEC] [--sysfs-root DIR]\n");
      return 0;
    } else {
      std::fprintf(stderr, "ringlink-devices: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::fputs(ringlink::verbs::list_devices(options).c_str(), stdout);
  return 0;
}

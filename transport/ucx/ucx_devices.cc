#include "transport/ucx/ucx_devices.h"

#include <uct/api/uct.h>
#include <ucp/api/ucp.h>

#include <vector>

#include <fmt/format.h>

namespace ringlink::ucx {

namespace {

// The transport resources of one memory domain; nothing when the domain does not open here
// (a component can list a domain whose hardware is absent).
std::string list_memory_domain(uct_component_h component, const char* md_name) {
  uct_md_config_t* md_config = nullptr;
  if (uct_md_config_read(component, nullptr, nullptr, &md_config) != UCS_OK) return {};
  uct_md_h md = nullptr;
  const ucs_status_t st = uct_md_open(component, md_name, md_config, &md);
  uct_config_release(md_config);
  if (st != UCS_OK) return {};
  std::string out;
  uct_tl_resource_desc_t* tls = nullptr;
  unsigned ntls = 0;
  if (uct_md_query_tl_resources(md, &tls, &ntls) == UCS_OK) {
    for (unsigned t = 0; t < ntls; ++t)
      out += fmt::format("  {:<10} {:<14} (memory domain {})\n", tls[t].tl_name, tls[t].dev_name, md_name);
    uct_release_tl_resource_list(tls);
  }
  uct_md_close(md);
  return out;
}

std::string list_component(uct_component_h component) {
  uct_component_attr_t attr{};
  attr.field_mask = UCT_COMPONENT_ATTR_FIELD_NAME | UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
  if (uct_component_query(component, &attr) != UCS_OK) return {};
  std::vector<uct_md_resource_desc_t> mds(attr.md_resource_count);
  attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
  attr.md_resources = mds.data();
  if (uct_component_query(component, &attr) != UCS_OK) return {};
  std::string out;
  for (const auto& md : mds) out += list_memory_domain(component, md.md_name);
  return out;
}

}  // namespace

std::string list_devices() {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  std::string out = fmt::format("ucx {}.{}.{} (RINGLINK_TRANSPORT=ucx; select with UCX_TLS / UCX_NET_DEVICES):\n",
                                major, minor, release);
  uct_component_h* components = nullptr;
  unsigned ncomponents = 0;
  if (uct_query_components(&components, &ncomponents) != UCS_OK) return out + "  (cannot query UCX components)\n";
  for (unsigned c = 0; c < ncomponents; ++c) out += list_component(components[c]);
  uct_release_component_list(components);
  return out;
}

}  // namespace ringlink::ucx

#include "bench/report.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace ringlink::bench {

namespace {

std::string redop_name(const RunInfo& i) {
  return has_reduction(i.coll) ? std::string(to_string(i.op)) : std::string("none");
}
int root_shown(const RunInfo& i) { return has_root(i.coll) ? i.root : -1; }

std::string wrong_cell(int64_t wrong) { return wrong < 0 ? std::string("N/A") : std::to_string(wrong); }

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{:.6g}", v);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        else out += c;
    }
  }
  return out + "\"";
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string format_time_us(double us) {
  if (us >= 10000.0) return fmt::format("{:7.0f}", us);
  if (us >= 100.0) return fmt::format("{:7.1f}", us);
  return fmt::format("{:7.2f}", us);
}

std::string table_header(const RunInfo& info) {
  if (info.coll == Collective::P2P) {
    return fmt::format("# {:>10}  {:>12}  {:>8}  {:>6}  {:>9}  {:>9}  {:>6}\n", "size", "count", "type", "window",
                       "bandwidth", "latency", "#wrong") +
           fmt::format("# {:>10}  {:>12}  {:>8}  {:>6}  {:>9}  {:>9}  {:>6}\n", "(B)", "(elements)", "", "",
                       "(GB/s)", "(us)", "");
  }
  std::string h;
  h += fmt::format("# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}           out-of-place                       in-place          \n",
                   "", "", "", "", "");
  h += fmt::format("# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6} {:>6}  {:>7}  {:>6}  {:>6} {:>6}\n", "size",
                   "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw",
                   "#wrong");
  h += fmt::format("# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>5}  {:>7}  {:>6}  {:>6}  {:>5}\n", "(B)",
                   "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
  return h;
}

std::string table_row(const RunInfo& info, const Row& r) {
  const std::string type(to_string(info.type));
  if (info.coll == Collective::P2P) {
    return fmt::format("{:>12}  {:>12}  {:>8}  {:>6}  {:>9.2f}  {:>9.2f}  {:>6}", r.bytes, r.count, type, r.window,
                       r.p2p_gbps, r.latency_us, wrong_cell(r.p2p_wrong));
  }
  std::string s = fmt::format("{:>12}  {:>12}  {:>8}  {:>6}  {:>6}", r.bytes, r.count, type, redop_name(info),
                              root_shown(info));
  for (const ModeResult* m : {&r.oop, &r.ip})
    s += fmt::format("  {:>7}  {:>6.2f}  {:>6.2f}  {:>5}", format_time_us(m->time_us), m->bw.algbw, m->bw.busbw,
                     wrong_cell(m->wrong));
  return s;
}

double average_busbw(const RunInfo& info) {
  double sum = 0;
  int n = 0;
  for (const Row& r : info.rows) {
    if (info.coll == Collective::P2P) {
      sum += r.p2p_gbps;
      ++n;
    } else {
      sum += r.oop.bw.busbw + r.ip.bw.busbw;
      n += 2;
    }
  }
  return n ? sum / n : 0;
}

int64_t total_wrong(const RunInfo& info) {
  int64_t t = 0;
  for (const Row& r : info.rows) {
    t += std::max<int64_t>(r.oop.wrong, 0) + std::max<int64_t>(r.ip.wrong, 0) + std::max<int64_t>(r.p2p_wrong, 0);
  }
  return t;
}

std::string table_footer(const RunInfo& info) {
  const int64_t wrong = total_wrong(info);
  std::string s = info.check ? fmt::format("# Out of bounds values : {} {}\n", wrong, wrong ? "FAILED" : "OK")
                             : std::string("# Out of bounds values : not checked (-c 0)\n");
  s += fmt::format("# Avg bus bandwidth    : {:g}\n#\n", average_busbw(info));
  return s;
}

std::string to_csv(const RunInfo& info) {
  std::string s =
      "label,library,transport,algorithm,collective,ranks,type,redop,root,size,count,"
      "time_oop_us,algbw_oop,busbw_oop,wrong_oop,time_ip_us,algbw_ip,busbw_ip,wrong_ip,"
      "window,p2p_bw,latency_us,p2p_wrong\n";
  const std::string prefix = fmt::format("{},{},{},{},{},{},{},{},{}", csv_cell(info.label), csv_cell(info.library),
                                         csv_cell(info.transport), csv_cell(info.algorithm), to_string(info.coll),
                                         info.ranks, to_string(info.type), redop_name(info), root_shown(info));
  for (const Row& r : info.rows) {
    s += fmt::format("{},{},{}", prefix, r.bytes, r.count);
    if (info.coll == Collective::P2P) {
      s += fmt::format(",,,,,,,,,{},{},{},{}\n", r.window, num(r.p2p_gbps), num(r.latency_us), r.p2p_wrong);
    } else {
      for (const ModeResult* m : {&r.oop, &r.ip})
        s += fmt::format(",{},{},{},{}", num(m->time_us), num(m->bw.algbw), num(m->bw.busbw), m->wrong);
      s += ",,,,\n";
    }
  }
  return s;
}

std::string to_json(const RunInfo& info) {
  std::string s = "{\n";
  s += fmt::format("  \"tool\": {},\n  \"library\": {},\n  \"transport\": {},\n  \"algorithm\": {},\n",
                   json_string(info.tool), json_string(info.library), json_string(info.transport),
                   json_string(info.algorithm));
  s += fmt::format("  \"wire\": {},\n", json_string(info.wire));
  s += fmt::format("  \"label\": {},\n  \"host\": {},\n  \"ranks\": {},\n  \"collective\": \"{}\",\n",
                   json_string(info.label), json_string(info.host), info.ranks, to_string(info.coll));
  s += fmt::format("  \"type\": \"{}\",\n  \"redop\": \"{}\",\n  \"root\": {},\n  \"check\": {},\n", to_string(info.type),
                   redop_name(info), root_shown(info), info.check ? "true" : "false");
  s += fmt::format("  \"iters\": {},\n  \"warmup\": {},\n  \"min_bytes\": {},\n  \"max_bytes\": {},\n", info.iters,
                   info.warmup, info.min_bytes, info.max_bytes);
  s += fmt::format("  \"avg_busbw\": {},\n  \"wrong\": {},\n  \"rows\": [", num(average_busbw(info)),
                   total_wrong(info));
  bool first = true;
  for (const Row& r : info.rows) {
    s += first ? "\n" : ",\n";
    first = false;
    s += fmt::format("    {{\"size\": {}, \"count\": {}", r.bytes, r.count);
    if (info.coll == Collective::P2P) {
      s += fmt::format(", \"window\": {}, \"bw\": {}, \"latency_us\": {}, \"wrong\": {}, \"bw_iters\": {}, "
                       "\"lat_iters\": {}}}",
                       r.window, num(r.p2p_gbps), num(r.latency_us), r.p2p_wrong, r.bw_iters, r.lat_iters);
    } else {
      const char* names[] = {"oop", "ip"};
      int k = 0;
      for (const ModeResult* m : {&r.oop, &r.ip}) {
        s += fmt::format(", \"{}\": {{\"time_us\": {}, \"algbw\": {}, \"busbw\": {}, \"wrong\": {}, \"iters\": {}}}",
                         names[k++], num(m->time_us), num(m->bw.algbw), num(m->bw.busbw), m->wrong, m->iters);
      }
      s += "}";
    }
  }
  s += "\n  ]\n}\n";
  return s;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  f << text;
  f.close();
  if (!f) throw std::runtime_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
}

}  // namespace ringlink::bench

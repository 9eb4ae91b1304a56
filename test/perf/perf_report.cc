#include "test/perf/perf_report.h"

#include <cmath>
#include <cstdio>
#include <map>

namespace {

const char* onOff(bool b) { return b ? "on" : "off"; }

std::string version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

void printFloors(const llPerfFloors& f) {
  printf("# Floors, measured in this run on rank 0's GPU (how a row's floor is made: perf_floors.h)\n");
  printf("#   HBM copy          %9.1f GB/s  cudaMemcpyAsync device to device, 1 GiB, bytes read + written\n",
         f.copyGBps);
  if (f.peerGBps > 0) printf("#   peer copy         %9.1f GB/s  %s\n", f.peerGBps, f.peerNote.c_str());
  else printf("#   peer copy               %s\n", f.peerNote.c_str());
  printf("#   empty kernel      %9.2f us    events around one launch, stream busy ahead (call rows)\n",
         f.callUs);
  printf("#   empty pair        %9.2f us    events; %.2f us wall clock with the synchronize (step rows)\n",
         f.stepUs, f.stepHostUs);
  if (f.roundTripUs > 0)
    printf("#   signal round trip %9.2f us    %s; a call waits one way (half)\n", f.roundTripUs,
           f.roundTripNote.c_str());
  else printf("#   signal round trip       %s\n", f.roundTripNote.c_str());
  printf("#   floor = max(ranks on the GPU x bytes read + written once / HBM copy,\n"
         "#               ranks on the GPU x bytes to other GPUs / peer copy,\n"
         "#               empty kernel(s) + signal hops)\n");
}

void printNccl(const std::string& note) {
  printf("# NCCL baseline (nccl_us; nccl/ll = nccl_us / median, > 1: llep faster): %s\n", note.c_str());
}

void printColumns() {
  printf("#\n# bytes: DeepEP's convention, per (token, k) pair with an expert: dispatch H + H/128*4 + 16\n"
         "# (fp8) or 2H + 16 (bf16), combine 2H; GB/s = bytes / median; %%floor = floor / median * 100\n#\n");
  printf("# %14s %7s %12s %10s %10s %9s %9s %7s %9s %7s %7s\n", "op", "tokens", "bytes", "median_us", "p99_us",
         "GB/s", "floor_us", "%floor", "nccl_us", "nccl/ll", "#wrong");
}

// Averages per operation, in the order operations first appear.
struct Averages {
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> gbps, pct;
};

Averages averagesOf(const std::vector<llPerfRow>& rows) {
  Averages a;
  for (const llPerfRow& r : rows) {
    if (!a.gbps.count(r.op)) a.order.push_back(r.op);
    a.gbps[r.op].push_back(r.gbps());
    if (r.pctFloor() >= 0) a.pct[r.op].push_back(r.pctFloor());
  }
  return a;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A JSON object written field by field; numbers keep enough digits to round-trip a table value, and
// n/a or non-finite numbers become null.
class JsonObject {
 public:
  JsonObject& raw(const char* key, const std::string& encoded) {
    body_ += (body_.empty() ? "" : ", ") + jsonString(key) + ": " + encoded;
    return *this;
  }
  JsonObject& str(const char* key, const std::string& v) { return raw(key, jsonString(v)); }
  JsonObject& num(const char* key, double v, bool present = true) {
    char buf[32] = "null";
    if (present && std::isfinite(v)) snprintf(buf, sizeof(buf), "%.10g", v);
    return raw(key, buf);
  }
  JsonObject& boolean(const char* key, bool v) { return raw(key, v ? "true" : "false"); }
  std::string text() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

std::string jsonEnvironment(const llPerfRunInfo& i) {
  return JsonObject()
      .str("gpu", i.gpuName)
      .str("driver", i.driver)
      .str("cuda_driver", version(i.cudaDriver))
      .str("cuda_runtime", version(i.cudaRuntime))
      .num("sms", i.smCount)
      .num("l2_bytes", i.l2Bytes)
      .str("commit", i.commit)
      .str("host", i.host)
      .num("ranks", i.ranks)
      .num("gpus", i.gpus)
      .num("ranks_per_gpu", i.ranksOnGpu)
      .str("aggregate", i.aggregate)
      .text();
}

std::string jsonOptions(const llPerfRunInfo& i) {
  return JsonObject()
      .str("ops", i.ops)
      .num("hidden", i.hidden)
      .num("topk", i.topk)
      .num("experts", i.experts)
      .num("max_tokens", i.maxTokens)
      .str("dispatch_payload", i.payload)
      .num("warmup", i.warmup)
      .num("iters", i.iters)
      .boolean("check", i.check)
      .boolean("graph", i.graph)
      .boolean("send_only", i.sendOnly)
      .boolean("align", i.align)
      .str("transport", i.transport)
      .num("sms", i.sms)
      .num("l2_flush_bytes", i.flushBytes)
      .str("l2_flush", i.flush)
      .text();
}

std::string jsonFloors(const llPerfFloors& f) {
  return JsonObject()
      .num("hbm_copy_gbps", f.copyGBps)
      .num("peer_copy_gbps", f.peerGBps, f.peerGBps > 0)
      .str("peer_note", f.peerNote)
      .num("empty_kernel_us", f.callUs)
      .num("empty_pair_us", f.stepUs)
      .num("empty_pair_host_us", f.stepHostUs)
      .num("round_trip_us", f.roundTripUs, f.roundTripUs > 0)
      .str("round_trip_note", f.roundTripNote)
      .text();
}

std::string jsonNccl(const llPerfRunInfo& i) {
  return JsonObject().str("nccl_baseline", i.ncclNote).text();
}

std::string jsonRow(const llPerfRow& r) {
  return JsonObject()
      .str("op", r.op)
      .num("tokens", r.tokens)
      .num("bytes", r.bytes)
      .num("median_us", r.us.median)
      .num("p99_us", r.us.p99)
      .num("gbps", r.gbps())
      .num("floor_us", r.floorUs, r.floorUs > 0)
      .num("pct_floor", r.pctFloor(), r.pctFloor() >= 0)
      .num("wrong", static_cast<double>(r.wrong), r.wrong >= 0)
      .num("nccl_us", r.ncclUs, r.ncclUs > 0)
      .num("nccl_over_llep", r.vsNccl(), r.vsNccl() > 0)
      .text();
}

}  // namespace

void llPerfPrintHeader(const llPerfRunInfo& i) {
  printf("# ll_perf: llDispatch / llCombine (DeepEP low-latency semantics), operations: %s\n", i.ops.c_str());
  printf("# ranks %d on %d GPU(s), %d on rank 0's GPU; times: %s\n", i.ranks, i.gpus, i.ranksOnGpu,
         i.aggregate.c_str());
  printf("# hidden %d, top-k %d, experts %d (%d per rank), dispatch %s, combine bf16, N (max tokens) %d\n",
         i.hidden, i.topk, i.experts, i.experts / i.ranks, i.payload.c_str(), i.maxTokens);
  printf("# warm-up %d, timed %d, check %s, CUDA graph %s, send-only %s, transport %s, SMs %s, align %s,\n",
         i.warmup, i.iters, onOff(i.check), onOff(i.graph), onOff(i.sendOnly), i.transport.c_str(),
         i.sms > 0 ? std::to_string(i.sms).c_str() : "library choice", onOff(i.align));
  if (i.flush == "none")
    printf("# L2 not flushed (-F none): inputs and code may be in the L2 when a timed call starts\n");
  else
    printf("# L2 flushed right before every timed call (%.1f MB %s)\n", i.flushBytes / 1e6,
           i.flush == "read" ? "read: clean lines left" : "written: dirty lines left");
  printf("# GPU %s (%d SMs, L2 %.1f MB), driver %s, CUDA driver %s, runtime %s\n", i.gpuName.c_str(),
         i.smCount, i.l2Bytes / 1e6, i.driver.c_str(), version(i.cudaDriver).c_str(),
         version(i.cudaRuntime).c_str());
  printf("# commit %s, host %s\n", i.commit.c_str(), i.host.c_str());
  printf("# device memory per rank: %.2f GiB benchmark buffers + %.2f GiB library buffer\n",
         i.ioBytes / 1073741824.0, i.libraryBytes / 1073741824.0);
  printFloors(i.floors);
  printNccl(i.ncclNote);
  printColumns();
}

void llPerfPrintRow(const llPerfRow& r) {
  char floor[32] = "-", pct[32] = "-", wrong[32] = "-", nccl[32] = "-", vs[32] = "-";
  if (r.floorUs > 0) snprintf(floor, sizeof(floor), "%.2f", r.floorUs);
  if (r.vsNccl() > 0) snprintf(nccl, sizeof(nccl), "%.2f", r.ncclUs), snprintf(vs, sizeof(vs), "%.2f", r.vsNccl());
  if (r.pctFloor() >= 0) snprintf(pct, sizeof(pct), "%.1f", r.pctFloor());
  if (r.wrong >= 0) snprintf(wrong, sizeof(wrong), "%ld", r.wrong);
  printf("  %14s %7d %12.0f %10.2f %10.2f %9.2f %9s %7s %9s %7s %7s\n", r.op.c_str(), r.tokens, r.bytes,
         r.us.median, r.us.p99, r.gbps(), floor, pct, nccl, vs, wrong);
}

void llPerfPrintFooter(const std::vector<llPerfRow>& rows) {
  long wrong = 0;
  bool checked = false;
  for (const llPerfRow& r : rows)
    if (r.wrong >= 0) wrong += r.wrong, checked = true;
  Averages a = averagesOf(rows);
  printf("#\n# Wrong rows       : %s\n",
         !checked ? "not checked (-c 0)" : wrong == 0 ? "0 OK" : (std::to_string(wrong) + " FAILED").c_str());
  printf("# Avg GB/s         :");
  for (const std::string& op : a.order) printf("  %s %.2f", op.c_str(), mean(a.gbps[op]));
  printf("\n# Avg %% of floor   :");
  for (const std::string& op : a.order)
    if (!a.pct[op].empty()) printf("  %s %.1f", op.c_str(), mean(a.pct[op]));
  printf("\n");
}

void llPerfWriteJson(const std::string& path, const llPerfRunInfo& info, const std::vector<llPerfRow>& rows) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) llPerfDie("cannot write %s", path.c_str());
  std::string text = "{\"environment\": " + jsonEnvironment(info) + ",\n \"options\": " + jsonOptions(info) +
                     ",\n \"floors\": " + jsonFloors(info.floors) +
                     ",\n \"baseline\": " + jsonNccl(info) + ",\n \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); i++)
    text += "  " + jsonRow(rows[i]) + (i + 1 < rows.size() ? ",\n" : "\n");
  text += " ]}\n";
  bool ok = fputs(text.c_str(), f) >= 0;
  if (fclose(f) != 0 || !ok) llPerfDie("cannot write %s", path.c_str());
}

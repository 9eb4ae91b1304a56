// llrun: starts R ranks of a program as local processes, for tests and tools.
//
//   llrun [-np R] [-t SECONDS] [--] PROGRAM [ARGS...]
//
// Each rank gets LLEP_UNIQUE_ID (one rendezvous served by this process, see llGetUniqueId),
// RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE, and MASTER_ADDR / MASTER_PORT for programs that
// rendezvous torchrun-style. Ranks pick their GPU as LOCAL_RANK % (GPUs present), so R may exceed
// the GPU count (ranks then share GPUs). The run is bounded: when a rank fails, the others are
// stopped; when the time limit passes, all are. Exit code: the first failure's (128+signal for a
// signal, 124 for the time limit, 130 when llrun itself is interrupted), else 77 if any rank skipped, else 0.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llep.h"

namespace {

constexpr int kSkipped = 77;
constexpr int kTimedOut = 124;
constexpr int kGraceMs = 2000;

void usage() {
  fprintf(stderr, "usage: llrun [-np RANKS] [-t SECONDS] [--] PROGRAM [ARGS...]\n");
}

double nowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Binds a loopback socket to `port` (0: the kernel's choice; SO_REUSEADDR, as the library's listener)
// and closes it: the port it got, or -1 when the bind failed.
int bindLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  socklen_t len = sizeof(a);
  int bound = -1;
  if (bind(fd, (sockaddr*)&a, sizeof(a)) == 0 && getsockname(fd, (sockaddr*)&a, &len) == 0) bound = ntohs(a.sin_port);
  close(fd);
  return bound;
}

// A port no one listens on now; MASTER_PORT for torchrun-style rendezvous. Picked below the kernel's
// ephemeral range when it can be, with kPortsAbove more ports below the range after it (a test may meet
// on MASTER_PORT + k for its k-th communicator): the kernel gives ports of that range to every outgoing
// connection (the ranks' own connections to each other among them), so a port found free there may be
// taken before rank 0 binds it, and rank 0 then waits out its deadline on a port it never gets.
constexpr int kPortsAbove = 1000;

int freePort() {
  int ephemeralLow = 32768;
  if (FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (fscanf(f, "%d", &ephemeralLow) != 1) ephemeralLow = 32768;
    fclose(f);
  }
  constexpr int kLowest = 10000;
  unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)(nowSeconds() * 1e6);
  for (int attempt = 0; attempt < 64 && ephemeralLow - kPortsAbove > kLowest; attempt++) {
    seed = seed * 1664525u + 1013904223u;
    int port = kLowest + (int)((seed >> 8) % (unsigned)(ephemeralLow - kPortsAbove - kLowest));
    if (bindLoopback(port) == port) return port;
  }
  // No free port below the range: any free one (the kernel's choice).
  int port = bindLoopback(0);
  return port > 0 ? port : 29500;
}

std::string hex(const llUniqueId& id) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : id.internal) s += digits[c >> 4], s += digits[c & 15];
  return s;
}

// Each rank runs in its own process group, so stopping a rank stops whatever it started too.
void signalAll(const std::vector<pid_t>& pids, const std::vector<bool>& done, int sig) {
  for (size_t i = 0; i < pids.size(); i++)
    if (!done[i] && pids[i] > 0) kill(-pids[i], sig);
}

volatile sig_atomic_t gInterrupted = 0;
void onInterrupt(int) { gInterrupted = 1; }

int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int nranks = 1;
  double limit = 600;
  int i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "-np") && i + 1 < argc) nranks = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-t") && i + 1 < argc) limit = atof(argv[++i]);
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(), 0;
    else if (!strcmp(argv[i], "--")) { i++; break; }
    else if (argv[i][0] == '-') return usage(), 2;
    else break;
  }
  if (i >= argc || nranks < 1 || limit <= 0) return usage(), 2;

  llUniqueId id;
  if (llGetUniqueId(&id) != llSuccess) {
    fprintf(stderr, "llrun: llGetUniqueId failed: %s\n", llGetLastError(nullptr));
    return 1;
  }
  std::string idHex = hex(id), port = std::to_string(freePort()), world = std::to_string(nranks);

  std::vector<pid_t> pids(nranks, -1);
  std::vector<bool> done(nranks, false);
  for (int r = 0; r < nranks; r++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("llrun: fork");
      signalAll(pids, done, SIGKILL);
      return 1;
    }
    if (pid == 0) {
      setpgid(0, 0);
      std::string rank = std::to_string(r);
      setenv("LLEP_UNIQUE_ID", idHex.c_str(), 1);
      setenv("RANK", rank.c_str(), 1);
      setenv("LOCAL_RANK", rank.c_str(), 1);
      setenv("WORLD_SIZE", world.c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", world.c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      execvp(argv[i], argv + i);
      fprintf(stderr, "llrun: cannot run %s: %s\n", argv[i], strerror(errno));
      _exit(127);
    }
    setpgid(pid, pid);  // also here: no race with the child's own call
    pids[r] = pid;
  }
  // Ranks are not in llrun's process group, so a terminal's Ctrl-C reaches them through llrun.
  signal(SIGINT, onInterrupt);
  signal(SIGTERM, onInterrupt);

  int result = 0, remaining = nranks;
  bool anySkipped = false, stopping = false;
  double deadline = nowSeconds() + limit, killAt = 0;
  while (remaining > 0) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < nranks; r++) {
        if (pids[r] != pid) continue;
        done[r] = true;
        remaining--;
        int code = exitCodeOf(status);
        if (code == kSkipped) anySkipped = true;
        if (code != 0 && code != kSkipped && result == 0) {
          if (!stopping) fprintf(stderr, "llrun: rank %d failed (exit code %d); stopping the others\n", r, code);
          result = code;
        }
      }
      continue;
    }
    double now = nowSeconds();
    if (!stopping && (result != 0 || now > deadline || gInterrupted)) {
      if (result == 0 && gInterrupted) {
        fprintf(stderr, "llrun: interrupted; stopping all ranks\n");
        result = 130;
      } else if (result == 0) {
        fprintf(stderr, "llrun: time limit of %.0f s passed; stopping all ranks\n", limit);
        result = kTimedOut;
      }
      stopping = true;
      signalAll(pids, done, SIGTERM);
      killAt = now + kGraceMs / 1000.0;
    } else if (stopping && now > killAt) {
      signalAll(pids, done, SIGKILL);
      killAt = now + 3600;
    }
    usleep(10000);
  }
  if (result != 0) return result;
  return anySkipped ? kSkipped : 0;
}

// Ranks as child processes, for the CPU tests of code that runs one rank per process: fork `count`
// children, run fn(rank) in each (a failed check ends that child with exit 1), and wait for all of them
// with a bound (a child that outlives the limit is hung: killed, and counted as exit 124).
#pragma once

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "harness.h"

namespace lltest {

// File descriptors open in this process.
inline int openFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) fail(__FILE__, __LINE__, "cannot open /proc/self/fd");
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1;  // the directory's own descriptor
}

inline int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

// Waits for every child; returns the worst exit status.
inline int waitChildren(std::vector<pid_t> pids, int limitMs) {
  int worst = 0;
  auto limit = std::chrono::steady_clock::now() + std::chrono::milliseconds(limitMs);
  while (!pids.empty()) {
    for (size_t i = pids.size(); i-- > 0;) {
      int status;
      if (waitpid(pids[i], &status, WNOHANG) != pids[i]) continue;
      worst = std::max(worst, exitCodeOf(status));
      pids.erase(pids.begin() + i);
    }
    if (pids.empty()) break;
    if (std::chrono::steady_clock::now() >= limit) {
      for (pid_t pid : pids) {
        std::printf("  child %d hung: killed\n", (int)pid);
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
      return 124;
    }
    usleep(2000);
  }
  return worst;
}

// Runs fn(i) in `count` child processes; returns the worst exit status (0: all passed).
inline int runChildren(int count, const std::function<void(int)>& fn, int limitMs) {
  std::vector<pid_t> pids;
  for (int i = 0; i < count; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      for (pid_t p : pids) kill(p, SIGKILL);
      waitChildren(pids, limitMs);
      fail(__FILE__, __LINE__, "fork failed");
    }
    if (pid == 0) {
      int rc = 0;
      try {
        fn(i);
      } catch (const Failure& f) {
        std::printf("  rank %d: %s\n", i, f.what.c_str());
        rc = 1;
      }
      std::fflush(stdout);
      _exit(rc);
    }
    pids.push_back(pid);
  }
  return waitChildren(pids, limitMs);
}

}  // namespace lltest

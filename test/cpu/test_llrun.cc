// The rank launcher: environment per rank, worst exit code, bounded runs.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "harness.h"

namespace {

// Runs `llrun ARGS` through the shell; returns its exit code.
int llrun(const std::string& args) {
  const char* exe = getenv("LLRUN");
  if (exe == nullptr) LL_SKIP("LLRUN (path of llrun) is not set; run through meson test");
  std::string cmd = std::string(exe) + " " + args + " 2>/dev/null";
  int status = system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

LL_TEST(runs_all_ranks) {
  char dir[] = "/tmp/llrun-XXXXXX";
  EXPECT(mkdtemp(dir) != nullptr);
  std::string d = dir;
  // Each rank checks its environment and leaves a file named after its rank.
  int rc = llrun("-np 4 -- sh -c '[ \"$WORLD_SIZE\" = 4 ] && [ ${#LLEP_UNIQUE_ID} = 256 ] && "
                 "[ -n \"$MASTER_PORT\" ] && [ \"$LOCAL_RANK\" = \"$RANK\" ] && touch " + d + "/r$RANK'");
  EXPECT_EQ(rc, 0);
  for (int r = 0; r < 4; r++) EXPECT_MSG(access((d + "/r" + std::to_string(r)).c_str(), F_OK) == 0, "rank %d", r);
  system(("rm -rf " + d).c_str());
}

LL_TEST(worst_exit_code) {
  EXPECT_EQ(llrun("-np 3 -- sh -c '[ $RANK = 1 ] && exit 3; exit 0'"), 3);
  EXPECT_EQ(llrun("-np 2 -- sh -c 'exit 77'"), 77);
  EXPECT_EQ(llrun("-np 2 -- sh -c '[ $RANK = 0 ] && exit 77; exit 0'"), 77);
  EXPECT_EQ(llrun("-np 2 -- /nonexistent-program"), 127);
  EXPECT_EQ(llrun("-np 2 -- sh -c 'kill -SEGV $$'"), 128 + 11);
  EXPECT_EQ(llrun("-np 0 -- true"), 2);
}

LL_TEST(stops_others_on_failure) {
  double t0 = now();
  EXPECT_EQ(llrun("-np 4 -t 60 -- sh -c '[ $RANK = 2 ] && exit 5; sleep 30'"), 5);
  EXPECT_MSG(now() - t0 < 10, "took %.1f s", now() - t0);
}

LL_TEST(timeout_kills) {
  double t0 = now();
  // A rank that ignores SIGTERM is killed after the grace period.
  EXPECT_EQ(llrun("-np 2 -t 1 -- sh -c 'trap \"\" TERM; sleep 30'"), 124);
  EXPECT_MSG(now() - t0 < 10, "took %.1f s", now() - t0);
}

LL_TEST_MAIN()

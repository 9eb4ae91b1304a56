// LLEP_* environment parsing and the debug log's own knobs.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "debug.h"
#include "harness.h"
#include "param.h"

LL_TEST(int_parsing) {
  unsetenv("LLEP_TEST_INT");
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 42), 42);
  setenv("LLEP_TEST_INT", "", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 42), 42);
  setenv("LLEP_TEST_INT", "17", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 42), 17);
  setenv("LLEP_TEST_INT", "-5", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 42), -5);
  setenv("LLEP_TEST_INT", "0x40", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 42), 64);
}

LL_TEST(suffixes) {
  setenv("LLEP_TEST_INT", "4K", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 0), 4096);
  setenv("LLEP_TEST_INT", "3m", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 0), 3 << 20);
  setenv("LLEP_TEST_INT", "2G", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 0), 2ll << 30);
}

LL_TEST(malformed_falls_back) {
  llClearLastError();
  setenv("LLEP_TEST_INT", "abc", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 7), 7);
  EXPECT(strstr(llLastError(), "LLEP_TEST_INT='abc' is not an integer") != nullptr);
  setenv("LLEP_TEST_INT", "12xyz", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 7), 7);
  EXPECT(strstr(llLastError(), "trailing") != nullptr);
  setenv("LLEP_TEST_INT", "99999999999999999999999", 1);
  EXPECT_EQ(llParamParseInt("LLEP_TEST_INT", 7), 7);
}

LL_TEST(string_param) {
  unsetenv("LLEP_TEST_STR");
  EXPECT_EQ(std::string(llParamParseStr("LLEP_TEST_STR", "auto")), "auto");
  setenv("LLEP_TEST_STR", "p2p", 1);
  EXPECT_EQ(std::string(llParamParseStr("LLEP_TEST_STR", "auto")), "p2p");
  // The table's accessors read the real variables once.
  setenv("LLEP_TIMEOUT_MS", "1234", 1);
  EXPECT_EQ(llParamTimeoutMs(), 1234);
  setenv("LLEP_TIMEOUT_MS", "999", 1);
  EXPECT_EQ(llParamTimeoutMs(), 1234);
  unsetenv("LLEP_TRANSPORT");
  EXPECT_EQ(std::string(llParamTransport()), "auto");
}

namespace {

// Runs fn in a child whose debug settings come from the given environment; returns the log text.
std::string logOfChild(const char* level, const char* subsys, void (*fn)()) {
  char path[] = "/tmp/llep-log-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("LLEP_DEBUG", level, 1);
    if (subsys) setenv("LLEP_DEBUG_SUBSYS", subsys, 1);
    setenv("LLEP_DEBUG_FILE", path, 1);
    fn();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  unlink(path);
  return ss.str();
}

void logSome() {
  LL_INFO(LL_INIT, "info-init-line");
  LL_INFO(LL_P2P, "info-p2p-line");
  LL_TRACE(LL_INIT, "trace-line");
  LL_WARN("warn-line");
}

}  // namespace

LL_TEST(debug_level_parsing) {
  std::string warn = logOfChild("WARN", nullptr, logSome);
  EXPECT(warn.find("warn-line") != std::string::npos);
  EXPECT(warn.find("info-init-line") == std::string::npos);
  std::string info = logOfChild("INFO", "INIT", logSome);
  EXPECT(info.find("info-init-line") != std::string::npos);
  EXPECT(info.find("info-p2p-line") == std::string::npos);
  EXPECT(info.find("trace-line") == std::string::npos);
  std::string allButInit = logOfChild("TRACE", "^INIT", logSome);
  EXPECT(allButInit.find("info-init-line") == std::string::npos);
  EXPECT(allButInit.find("info-p2p-line") != std::string::npos);
  std::string none = logOfChild("NONE", nullptr, logSome);
  EXPECT(none.find("warn-line") == std::string::npos);
  // WARN is recorded as the last error whatever the level.
  llClearLastError();
  LL_WARN("remember %d", 7);
  EXPECT_EQ(std::string(llLastError()), "remember 7");
}

LL_TEST_MAIN()

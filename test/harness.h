// A small test harness: LL_TEST(name) registers a case; the executable runs the case named in argv[1]
// (meson registers each case as its own test), or every case when run with no argument.
// Failures throw, so a case stops at its first failed check; LL_SKIP exits 77 (meson: skipped).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace lltest {

struct Case {
  const char* name;
  void (*fn)();
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

struct Register {
  Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

struct Failure {
  std::string what;
};
struct Skip {
  std::string why;
};

[[noreturn]] inline void fail(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": " << msg;
  throw Failure{os.str()};
}

template <typename A, typename B>
std::string describe(const char* ea, const char* eb, const A& a, const B& b) {
  std::ostringstream os;
  os << ea << " vs " << eb << ": " << a << " vs " << b;
  return os.str();
}

inline int runCase(const Case& c) {
  try {
    c.fn();
  } catch (const Skip& s) {
    std::printf("SKIP %s: %s\n", c.name, s.why.c_str());
    return 77;
  } catch (const Failure& f) {
    std::printf("FAIL %s: %s\n", c.name, f.what.c_str());
    return 1;
  }
  std::printf("PASS %s\n", c.name);
  return 0;
}

inline int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc > 1 && std::strcmp(argv[1], "--list") == 0) {
    for (auto& c : registry()) std::printf("%s\n", c.name);
    return 0;
  }
  if (argc > 1) {
    for (auto& c : registry())
      if (std::strcmp(c.name, argv[1]) == 0) return runCase(c);
    std::printf("no test named %s\n", argv[1]);
    return 2;
  }
  int failed = 0, passed = 0, skipped = 0;
  for (auto& c : registry()) {
    int rc = runCase(c);
    if (rc == 0) passed++;
    else if (rc == 77) skipped++;
    else failed++;
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : (passed == 0 && skipped > 0 ? 77 : 0);
}

}  // namespace lltest

#define LL_TEST(name)                                            \
  static void llTest_##name();                                   \
  static lltest::Register llTestReg_##name(#name, llTest_##name); \
  static void llTest_##name()

#define LL_TEST_MAIN() \
  int main(int argc, char** argv) { return lltest::main(argc, argv); }

#define EXPECT(cond)                                                            \
  do {                                                                          \
    if (!(cond)) lltest::fail(__FILE__, __LINE__, "expected " #cond);           \
  } while (0)

#define EXPECT_EQ(a, b)                                                         \
  do {                                                                          \
    auto llA_ = (a); /* copies: a reference could outlive a temporary */       \
    auto llB_ = (b);                                                            \
    if (!(llA_ == llB_))                                                        \
      lltest::fail(__FILE__, __LINE__, lltest::describe(#a, #b, llA_, llB_));   \
  } while (0)

#define EXPECT_MSG(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      char llMsg_[512];                                                         \
      std::snprintf(llMsg_, sizeof(llMsg_), __VA_ARGS__);                        \
      lltest::fail(__FILE__, __LINE__, std::string(#cond ": ") + llMsg_);       \
    }                                                                           \
  } while (0)

// An llResult_t-returning call expected to succeed; prints llGetLastError otherwise.
#define EXPECT_OK(call)                                                         \
  do {                                                                          \
    llResult_t llR_ = (call);                                                   \
    if (llR_ != llSuccess)                                                      \
      lltest::fail(__FILE__, __LINE__,                                          \
                   std::string(#call " returned ") + llGetErrorString(llR_) +   \
                       ": " + llGetLastError(nullptr));                         \
  } while (0)

#define LL_SKIP(why) throw lltest::Skip{why}

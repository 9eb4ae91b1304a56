#include "debug.h"

#include <pthread.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace {

struct DebugState {
  llDebugLevel level = LL_LOG_WARN;
  unsigned long subsys = LL_INIT | LL_BOOTSTRAP | LL_ENV;
  FILE* file = stderr;
  char host[64] = "";
};

llDebugLevel parseLevel(const char* s) {
  if (s == nullptr || *s == '\0') return LL_LOG_WARN;
  if (strcasecmp(s, "NONE") == 0) return LL_LOG_NONE;
  if (strcasecmp(s, "VERSION") == 0) return LL_LOG_VERSION;
  if (strcasecmp(s, "WARN") == 0) return LL_LOG_WARN;
  if (strcasecmp(s, "INFO") == 0) return LL_LOG_INFO;
  if (strcasecmp(s, "TRACE") == 0) return LL_LOG_TRACE;
  return LL_LOG_WARN;
}

struct SubsysName {
  const char* name;
  unsigned long bit;
};
const SubsysName kSubsys[] = {{"INIT", LL_INIT}, {"BOOTSTRAP", LL_BOOTSTRAP}, {"P2P", LL_P2P},
                              {"IBGDA", LL_IBGDA}, {"ENV", LL_ENV},       {"ALLOC", LL_ALLOC},
                              {"CALL", LL_CALL},  {"ALL", (unsigned long)LL_ALL}};

// "INIT,P2P" selects those; "^INIT" selects all but INIT.
unsigned long parseSubsys(const char* s, unsigned long deflt) {
  if (s == nullptr || *s == '\0') return deflt;
  bool invert = s[0] == '^';
  if (invert) s++;
  unsigned long mask = 0;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", s);
  char* save = nullptr;
  for (char* tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(nullptr, ",", &save))
    for (const SubsysName& n : kSubsys)
      if (strcasecmp(tok, n.name) == 0) mask |= n.bit;
  return invert ? ~mask : mask;
}

// LLEP_DEBUG_FILE: %h expands to the host name, %p to the pid.
FILE* openDebugFile(const char* pattern, const char* host) {
  if (pattern == nullptr || *pattern == '\0') return stderr;
  char path[4096];
  size_t o = 0;
  for (const char* p = pattern; *p && o + 64 < sizeof(path); p++) {
    if (p[0] == '%' && p[1] == 'h') {
      o += snprintf(path + o, sizeof(path) - o, "%s", host), p++;
    } else if (p[0] == '%' && p[1] == 'p') {
      o += snprintf(path + o, sizeof(path) - o, "%d", (int)getpid()), p++;
    } else {
      path[o++] = *p;
    }
  }
  path[o] = '\0';
  FILE* f = fopen(path, "w");
  return f ? f : stderr;
}

DebugState& state() {
  static DebugState st;
  static std::once_flag once;
  std::call_once(once, [] {
    gethostname(st.host, sizeof(st.host) - 1);
    char* dot = strchr(st.host, '.');
    if (dot) *dot = '\0';
    st.level = parseLevel(getenv("LLEP_DEBUG"));
    st.subsys = parseSubsys(getenv("LLEP_DEBUG_SUBSYS"), st.subsys);
    st.file = openDebugFile(getenv("LLEP_DEBUG_FILE"), st.host);
  });
  return st;
}

thread_local char tLastError[1024] = "";

void storeLastError(const char* fmt, va_list ap) {
  vsnprintf(tLastError, sizeof(tLastError), fmt, ap);
  // One line, always: a message that embeds a newline is cut there.
  char* nl = strchr(tLastError, '\n');
  if (nl) *nl = '\0';
}

}  // namespace

llDebugLevel llDebugLevelNow() { return state().level; }

void llDebugLog(llDebugLevel level, unsigned long subsys, const char* file, int line, const char* fmt,
                ...) {
  DebugState& st = state();
  if (level == LL_LOG_WARN) {
    va_list ap;
    va_start(ap, fmt);
    storeLastError(fmt, ap);
    va_end(ap);
  }
  if (level > st.level || (subsys & st.subsys) == 0) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const char* base = strrchr(file, '/');
  base = base ? base + 1 : file;
  if (level == LL_LOG_WARN)
    fprintf(st.file, "%s:%d:%ld [llep] WARN %s:%d %s\n", st.host, (int)getpid(),
            (long)syscall(SYS_gettid), base, line, msg);
  else
    fprintf(st.file, "%s:%d:%ld [llep] %s\n", st.host, (int)getpid(), (long)syscall(SYS_gettid), msg);
  fflush(st.file);
}

void llSetLastError(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  storeLastError(fmt, ap);
  va_end(ap);
}

const char* llLastError() { return tLastError; }
void llClearLastError() { tLastError[0] = '\0'; }

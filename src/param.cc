#include "param.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "debug.h"

int64_t llParamParseInt(const char* envName, int64_t deflt) {
  const char* s = getenv(envName);
  if (s == nullptr || *s == '\0') return deflt;
  errno = 0;
  char* end = nullptr;
  long long v = strtoll(s, &end, 0);
  if (end == s || errno == ERANGE) {
    LL_WARN("%s='%s' is not an integer; using the default %lld", envName, s, (long long)deflt);
    return deflt;
  }
  int64_t scale = 1;
  switch (*end) {
    case 'k': case 'K': scale = 1LL << 10; end++; break;
    case 'm': case 'M': scale = 1LL << 20; end++; break;
    case 'g': case 'G': scale = 1LL << 30; end++; break;
    default: break;
  }
  if (*end != '\0') {
    LL_WARN("%s='%s' has trailing characters; using the default %lld", envName, s, (long long)deflt);
    return deflt;
  }
  LL_INFO(LL_ENV, "%s set by environment to %lld", envName, v * scale);
  return (int64_t)v * scale;
}

const char* llParamParseStr(const char* envName, const char* deflt) {
  const char* s = getenv(envName);
  if (s == nullptr) return deflt;
  LL_INFO(LL_ENV, "%s set by environment to '%s'", envName, s);
  return s;
}

// Each accessor reads its variable once (C++ guarantees thread-safe initialisation of the static).
#define LL_DEFINE_INT_PARAM(name, env, deflt, doc)                        \
  int64_t llParam##name() {                                               \
    static const int64_t value = llParamParseInt("LLEP_" env, (deflt));  \
    return value;                                                         \
  }
#define LL_DEFINE_STR_PARAM(name, env, deflt, doc)                        \
  const char* llParam##name() {                                           \
    static const char* value = llParamParseStr("LLEP_" env, (deflt));    \
    return value;                                                         \
  }
LL_INT_PARAMS(LL_DEFINE_INT_PARAM)
LL_STR_PARAMS(LL_DEFINE_STR_PARAM)

void llParamDumpAll() {
  if (llDebugLevelNow() < LL_LOG_INFO) return;
#define LL_DUMP_INT(name, env, deflt, doc) \
  LL_INFO(LL_ENV, "LLEP_%s = %lld (default %lld): %s", env, (long long)llParam##name(), (long long)(deflt), doc);
#define LL_DUMP_STR(name, env, deflt, doc) \
  LL_INFO(LL_ENV, "LLEP_%s = '%s' (default '%s'): %s", env, llParam##name(), deflt, doc);
  LL_INT_PARAMS(LL_DUMP_INT)
  LL_STR_PARAMS(LL_DUMP_STR)
#undef LL_DUMP_INT
#undef LL_DUMP_STR
}

// Logging and the last-error message.
//
// LLEP_DEBUG=NONE|VERSION|WARN|INFO|TRACE picks the level, LLEP_DEBUG_SUBSYS=INIT,BOOTSTRAP,... (or
// ^X to exclude) the subsystems, LLEP_DEBUG_FILE=path (%h host, %p pid) the destination.
// LL_WARN always records its text as the thread's last error, whatever the level, so llGetLastError
// has the first place a failure was seen.
#pragma once

#include <cstdarg>

enum llDebugLevel { LL_LOG_NONE = 0, LL_LOG_VERSION = 1, LL_LOG_WARN = 2, LL_LOG_INFO = 3, LL_LOG_TRACE = 4 };

enum llDebugSubsys {
  LL_INIT = 0x1,
  LL_BOOTSTRAP = 0x2,
  LL_P2P = 0x4,
  LL_IBGDA = 0x8,
  LL_ENV = 0x10,
  LL_ALLOC = 0x20,
  LL_CALL = 0x40,
  LL_ALL = ~0
};

void llDebugLog(llDebugLevel level, unsigned long subsys, const char* file, int line, const char* fmt,
                ...) __attribute__((format(printf, 5, 6)));

// Records the one-line message returned by llGetLastError, without logging it.
void llSetLastError(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
const char* llLastError();
void llClearLastError();

// Current level, for callers that would do work only to log it.
llDebugLevel llDebugLevelNow();

#define LL_WARN(...) llDebugLog(LL_LOG_WARN, LL_ALL, __FILE__, __LINE__, __VA_ARGS__)
#define LL_INFO(subsys, ...) llDebugLog(LL_LOG_INFO, (subsys), __FILE__, __LINE__, __VA_ARGS__)
#define LL_TRACE(subsys, ...) llDebugLog(LL_LOG_TRACE, (subsys), __FILE__, __LINE__, __VA_ARGS__)

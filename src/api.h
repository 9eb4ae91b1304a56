// Marks the definition of a public C API function: C linkage, exported from libllep.so.
#pragma once
#define LL_API extern "C" __attribute__((visibility("default")))

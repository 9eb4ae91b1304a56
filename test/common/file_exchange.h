// Small blobs between processes of one host through files (/tmp, or $TMPDIR): for tests and tools that
// must hand each other a few bytes (an NCCL unique id, CUDA IPC handles, results) and have no
// communicator of their own. A run key names one run's files, so concurrent runs never meet.
#pragma once

#include <cstddef>
#include <string>

// A key every rank of one run computes alike from its launcher's environment (llrun's LLEP_UNIQUE_ID,
// else torchrun's MASTER_ADDR/MASTER_PORT); empty when the launcher gives neither.
std::string llExchangeRunKey();

// Publishes rank `rank`'s blob under `name`: written aside, then renamed, so a reader never sees half.
// False if the file cannot be written.
bool llExchangePublish(const std::string& key, const std::string& name, int rank, const void* data, size_t bytes);
// Reads rank `from`'s blob under `name`, waiting up to timeoutMs for it. False if it never came or is short.
bool llExchangeFetch(const std::string& key, const std::string& name, int from, void* data, size_t bytes,
                     int timeoutMs);
// Removes rank `from`'s blob under `name` (the reader cleans up once it has what it needs).
void llExchangeUnpublish(const std::string& key, const std::string& name, int from);

/* Compile-only: llep.h is valid strict C11 (-Wall -Wextra -Werror -pedantic), and the initializer
 * works as an initializer and in an assignment. */
#include "llep.h"

llResult_t abiC11Use(llComm_t* comm, llUniqueId id) {
  llConfig_t config = LL_CONFIG_INITIALIZER;
  config.maxTokensPerRank = 128;
  config.hidden = 7168;
  config.numExperts = 256;
  config = LL_CONFIG_INITIALIZER;
  return llCommInitRank(comm, 1, id, 0, &config);
}

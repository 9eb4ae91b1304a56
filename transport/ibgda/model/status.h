// Results of the model's host-side API (object creation, state changes, doorbells). Errors of the
// work itself are never returned here: they are reported as error CQEs, as the device does.
#pragma once

namespace llnic {

enum class Status {
  kOk,
  kInvalidArgument,  // a size, alignment, flag or index the device would refuse
  kNotFound,         // no object with that number or key
  kInvalidState,     // a QP state transition the device does not allow
};

}  // namespace llnic

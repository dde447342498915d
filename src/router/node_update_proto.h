// The one place where helm.v1 node messages become the routing core's values (and nothing else
// in the core sees a proto).
#pragma once

#include "helm/route/node_update.h"
#include "helm/v1/node.pb.h"

namespace helm::router {

// `state` converted field by field (node.proto's NodeState -> route::NodeUpdate). Takes the
// message by value so that a caller done with it can move it in and the EMB summary's bitset
// (up to megabytes) is moved rather than copied. No validation: the core checks what it uses.
route::NodeUpdate ToNodeUpdate(v1::NodeState state);

}  // namespace helm::router

// The verdict's policy type for C++ callers (the function itself is wrapped
// in names.cpp, compiled from kmod/common/gg_verdict.h).
#ifndef GPUGATE_VERDICT_EXPORT_H
#define GPUGATE_VERDICT_EXPORT_H
#include "gg_verdict.h"
#endif

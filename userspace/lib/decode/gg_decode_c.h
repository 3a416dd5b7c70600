// C entry points of the shared decoder for C++ callers and tests.
#ifndef GPUGATE_DECODE_C_H
#define GPUGATE_DECODE_C_H

#include "gg_table_types.h"
#include "gpugate/event.h"

#ifdef __cplusplus
extern "C" {
#endif

int gg_decode_c(const struct gg_raw* raw, struct gg_decoded* d);
unsigned gg_arg_want_c(unsigned dev_kind, unsigned request);
int gg_xfer_ref_c(const struct gg_raw* raw, unsigned long long* ptr, unsigned* len);
int gg_params_ref_c(const struct gg_raw* raw, unsigned long long* ptr, unsigned* len);
const struct gg_nv_esc_entry* gg_table_nv_escapes(int* len);
const struct gg_nv_ctrl_entry* gg_table_nv_controls(int* len);
const struct gg_nv_legacy_entry* gg_table_nv_legacy(int* len);
const struct gg_nv_uvm_entry* gg_table_nv_uvm(int* len);
const struct gg_ioctl_entry* gg_table_ioctls(unsigned table, int* len);

#ifdef __cplusplus
}
#endif

#endif

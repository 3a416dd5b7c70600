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
const struct gg_ioctl_entry* gg_table_ioctls(unsigned table, int* len);  // DRM core, KFD
const struct gg_drm_driver_entry* gg_table_drm_drivers(int* len);        // drm_drivers.def, GENERIC first
const struct gg_drm_ioctl_entry* gg_table_drm_driver_ioctls(int* len);   // every driver's own commands

struct gg_policy;
struct gg_ioctl_enter;
// The gate (GG_DEFINE_GATE) on a recorded request (gg_replay.c): capture
// fills e->raw and e->dec from the recorded bytes and capture flags; decide
// fills e's mode and decision, taking grant_id (0: none) where a signature
// is required. e arrives with who and where (uid, cgroup_id, comm, dev, device).
void gg_replay_capture_c(const struct gg_raw* recorded, const struct gg_policy* pol, struct gg_ioctl_enter* e);
void gg_replay_decide_c(const struct gg_raw* recorded, const struct gg_policy* pol, struct gg_ioctl_enter* e,
                        unsigned grant_id, int recorded_ok, int thread_state);

struct gg_knob_event;
// The knob gate (gg_knob.h): decode fills e->dec from e's knob, call,
// offset, length and captured value; decide fills e's mode and decision,
// with grant_id (0: none) where a signature is required.
void gg_knob_decode_c(struct gg_knob_event* e);
void gg_knob_decide_c(const struct gg_policy* pol, struct gg_knob_event* e, int recorded, unsigned grant_id);
struct gg_knob;
void gg_knob_decode_map_c(const struct gg_knob* k, unsigned call, unsigned long long offset, unsigned long long length,
                          struct gg_decoded* d);

#ifdef __cplusplus
}
#endif

#endif

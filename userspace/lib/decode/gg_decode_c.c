// User space's copy of the shared decoder: the same header BPF compiles.
#include "gg_decode_c.h"
#include "gg_compat.h"
#include "gg_decode.h"

int gg_decode_c(const struct gg_raw* raw, struct gg_decoded* d) { return gg_decode(raw, d); }

unsigned gg_arg_want_c(unsigned dev_kind, unsigned request) { return gg_arg_want(dev_kind, request); }

int gg_xfer_ref_c(const struct gg_raw* raw, unsigned long long* ptr, unsigned* len) {
  __u64 p = 0;
  __u32 l = 0;
  int r = gg_xfer_ref(raw, &p, &l);

  *ptr = p;
  *len = l;
  return r;
}

int gg_params_ref_c(const struct gg_raw* raw, unsigned long long* ptr, unsigned* len) {
  __u64 p = 0;
  __u32 l = 0;
  int r = gg_params_ref(raw, &p, &l);

  *ptr = p;
  *len = l;
  return r;
}

const struct gg_nv_esc_entry* gg_table_nv_escapes(int* len) {
  *len = GG_NV_ESCAPES_LEN;
  return gg_nv_escapes;
}

const struct gg_nv_ctrl_entry* gg_table_nv_controls(int* len) {
  *len = GG_NV_CONTROLS_LEN;
  return gg_nv_controls;
}

const struct gg_nv_legacy_entry* gg_table_nv_legacy(int* len) {
  *len = GG_NV_LEGACY_LEN;
  return gg_nv_legacy;
}

const struct gg_nv_uvm_entry* gg_table_nv_uvm(int* len) {
  *len = GG_NV_UVM_LEN;
  return gg_nv_uvm;
}

const struct gg_ioctl_entry* gg_table_ioctls(unsigned table, int* len) {
  switch (table) {
    case GG_TAB_DRM_CORE: *len = GG_ARRAY_LEN(gg_drm_core); return gg_drm_core;
    case GG_TAB_KFD: *len = GG_ARRAY_LEN(gg_kfd); return gg_kfd;
    default: *len = 0; return 0;
  }
}

const struct gg_drm_driver_entry* gg_table_drm_drivers(int* len) {
  *len = GG_DRM_DRIVER_COUNT;
  return gg_drm_drivers;
}

const struct gg_drm_ioctl_entry* gg_table_drm_driver_ioctls(int* len) {
  *len = GG_DRM_DRIVER_IOCTLS_LEN;
  return gg_drm_driver_ioctls;
}

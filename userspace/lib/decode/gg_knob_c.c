// User space's copy of the knob gate (kmod/common/gg_knob.h): the decode and
// the decision the BPF LSM makes on a write to a GPU's knob, for tests and
// for checking a recorded knob.write again.
#include "gg_compat.h"
#include "gg_decode_c.h"
#include "gg_knob.h"

void gg_knob_decode_c(struct gg_knob_event* e) { gg_knob_decode_event(e); }

void gg_knob_decide_c(const struct gg_policy* pol, struct gg_knob_event* e, int recorded, unsigned grant_id) {
  GG_KNOB_DECIDE(pol, e, recorded, grant_id);
}

void gg_knob_decode_map_c(const struct gg_knob* k, unsigned call, unsigned long long offset, unsigned long long length,
                          struct gg_decoded* d) {
  gg_knob_decode_map(k, call, offset, length, d);
}

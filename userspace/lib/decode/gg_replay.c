// User space's instance of the gate (GG_DEFINE_GATE, kmod/common/gg_gate.h):
// the same function the BPF LSM and gpugate.ko run, reading a request's bytes
// from a record instead of from memory. Whatever the record says could not
// be read, could not be read again; whatever changed while the gate read it,
// changed again. The simulation engine and `gpugate log replay` decide with it.
#include "gg_compat.h"
#include "gg_decode_c.h"
#include "gg_gate.h"

struct gg_replay_src {
  const struct gg_raw* rec;
  __u32 grant_id;
};

static __u32 gg_replay_read(const struct gg_replay_src* s, struct gg_raw* raw, __u32 stage, __u32 len, __u64 src) {
  const struct gg_raw* r = s->rec;
  __u32 why = r->capture_flags &
              (GG_CAP_REFUSED_UFFD | GG_CAP_REFUSED_FUSE | GG_CAP_VMA_BUSY | GG_CAP_NO_FAULT_HOOK | GG_CAP_DEFERRED);
  __u32 fault, have;
  const __u8* from;
  __u8* to;

  (void)src;
  if (stage == GG_STAGE_ARG) {
    fault = GG_CAP_ARG_FAULT, have = r->arg_len, from = r->arg, to = raw->arg;
  } else if (stage == GG_STAGE_INNER) {
    fault = GG_CAP_INNER_FAULT, have = r->inner_len, from = r->inner, to = raw->inner;
  } else {
    fault = GG_CAP_PARAMS_FAULT, have = r->params_len, from = r->params, to = raw->params;
  }
  if ((r->capture_flags & fault) || len > have) return fault | why;
  __builtin_memcpy(to, from, len);
  return r->capture_flags & (GG_CAP_PAGED | GG_CAP_SLOW);
}

#define GG_REPLAY_READ(s, raw, stage, len, src) gg_replay_read(s, raw, stage, len, src)
#define GG_REPLAY_VERIFY(s, raw, stage, src) 0
#define GG_REPLAY_OBJECT(s, client, object) ((s)->rec->target_class)
#define GG_REPLAY_LAST_LOOK(s, pol, e, arg) (((s)->rec->capture_flags & GG_CAP_CHANGED) != 0)
#define GG_REPLAY_GRANT(s, e) ((s)->grant_id)

GG_DEFINE_GATE(gg_replay, const struct gg_replay_src*, GG_REPLAY_READ, GG_REPLAY_VERIFY, GG_REPLAY_OBJECT,
               GG_REPLAY_LAST_LOOK, GG_REPLAY_GRANT)

void gg_replay_capture_c(const struct gg_raw* recorded, const struct gg_policy* pol, struct gg_ioctl_enter* e) {
  struct gg_replay_src s = {recorded, 0};

  /* a non-zero argument: whether it was readable is the record's to say */
  gg_replay_capture(&s, pol, e, recorded->request, 1);
}

void gg_replay_decide_c(const struct gg_raw* recorded, const struct gg_policy* pol, struct gg_ioctl_enter* e,
                        unsigned grant_id, int recorded_ok, int thread_state) {
  struct gg_replay_src s = {recorded, grant_id};

  gg_replay_decide(&s, pol, e, recorded_ok, thread_state);
}

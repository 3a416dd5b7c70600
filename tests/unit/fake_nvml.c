/*
 * A stand-in for NVIDIA's NVML (libnvidia-ml.so.1) for the unit suite and the
 * watcher's benchmark: exactly the entry points gpugate's watcher binds
 * (userspace/lib/watch/nvml.cpp), with NVML's ABI as published in nvml.h
 * (NVIDIA/go-nvml gen/nvml/nvml.h): the same return codes, struct layouts and
 * enum values. It simulates FAKE_NVML_GPUS GPUs (default 2, at most 16) with
 * H200-like values, and exports fake_nvml_* functions for tests to change
 * them, queue XIDs and count calls. Tests reach those through dlopen of this
 * same file: a second dlopen of one path returns the loaded copy, so state
 * is shared with the watcher's handle.
 *
 * Environment, read by nvmlInit_v2 when NVML is not initialized yet:
 *   FAKE_NVML_GPUS=N      GPUs to report (0 to 16)
 *   FAKE_NVML_FAIL_INIT=1 nvmlInit_v2 returns NVML_ERROR_NOT_SUPPORTED
 *   FAKE_NVML_IOCTL=1     every device query and event wait issues one
 *                         harmless ioctl (see model_rm_call)
 * and at every call:
 *   FAKE_NVML_CONTROL=FILE  lines "GPU FIELD VALUE" applied whenever FILE
 *                         changes: another process (make run's demo) changes
 *                         the simulated GPUs behind the daemon that loaded it
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

/* nvml.h: return codes, as published. */
typedef int nvmlReturn_t;
enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_TIMEOUT = 10,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_ERROR_UNKNOWN = 999,
};
/* nvmlClockType_t, nvmlTemperatureSensors_t, nvmlPstates_t (enums: int). */
enum { NVML_CLOCK_GRAPHICS = 0, NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2 };
enum { NVML_TEMPERATURE_GPU = 0 };
enum { NVML_PSTATE_0 = 0 };
#define NVML_EVENT_TYPE_XID_CRITICAL_ERROR 0x8ULL /* nvmlEventTypeXidCriticalError */
#define NVML_DEVICE_UUID_V2_BUFFER_SIZE 96

typedef struct nvmlPciInfo_st {
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

struct nvmlDevice_st;
typedef struct nvmlDevice_st* nvmlDevice_t;
struct nvmlEventSet_st;
typedef struct nvmlEventSet_st* nvmlEventSet_t;

typedef struct nvmlEventData_st {
  nvmlDevice_t device;
  unsigned long long eventType;
  unsigned long long eventData;
  unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t as in nvml.h");
_Static_assert(sizeof(nvmlEventData_t) == 32, "nvmlEventData_t as in nvml.h");

#define MAX_GPUS 16
#define MAX_SETS 8
#define MAX_QUEUED 64

/* The fields, named as the watcher names what it reads from them. */
enum field {
  F_POWER_LIMIT,
  F_ENFORCED_LIMIT,
  F_DEFAULT_LIMIT,
  F_POWER_USAGE,
  F_SM,
  F_MEM,
  F_SM_MAX,
  F_APP_SM,
  F_APP_MEM,
  F_P0_MIN,
  F_P0_MAX,
  F_REASONS,
  F_PSTATE,
  F_TEMP,
  F_ECC_CURRENT,
  F_ECC_PENDING,
  F_MIG_CURRENT,
  F_MIG_PENDING,
  F_PERSISTENCE,
  F_COMPUTE_MODE,
  F_PCIE_GEN,
  F_PCIE_WIDTH,
  F_LOST, /* every query of the GPU returns NVML_ERROR_GPU_IS_LOST */
  F_COUNT,
};

static const char* const field_names[F_COUNT] = {
    [F_POWER_LIMIT] = "power.limit_mw",
    [F_ENFORCED_LIMIT] = "power.enforced_limit_mw",
    [F_DEFAULT_LIMIT] = "power.default_limit_mw",
    [F_POWER_USAGE] = "power.usage_mw",
    [F_SM] = "clocks.sm_mhz",
    [F_MEM] = "clocks.mem_mhz",
    [F_SM_MAX] = "clocks.sm_max_mhz",
    [F_APP_SM] = "clocks.applications_sm_mhz",
    [F_APP_MEM] = "clocks.applications_mem_mhz",
    [F_P0_MIN] = "clocks.p0_sm_min_mhz",
    [F_P0_MAX] = "clocks.p0_sm_max_mhz",
    [F_REASONS] = "clocks.event_reasons",
    [F_PSTATE] = "perf.pstate",
    [F_TEMP] = "temperature.gpu_c",
    [F_ECC_CURRENT] = "ecc.current",
    [F_ECC_PENDING] = "ecc.pending",
    [F_MIG_CURRENT] = "mig.current",
    [F_MIG_PENDING] = "mig.pending",
    [F_PERSISTENCE] = "persistence",
    [F_COMPUTE_MODE] = "compute_mode",
    [F_PCIE_GEN] = "pcie.generation",
    [F_PCIE_WIDTH] = "pcie.width",
    [F_LOST] = "lost",
};

/* An idle H200 SXM (141 GB) with persistence on, as nvidia-smi shows one. */
static const unsigned long long field_defaults[F_COUNT] = {
    [F_POWER_LIMIT] = 700000,
    [F_ENFORCED_LIMIT] = 700000,
    [F_DEFAULT_LIMIT] = 700000,
    [F_POWER_USAGE] = 76000,
    [F_SM] = 345,
    [F_MEM] = 3201,
    [F_SM_MAX] = 1980,
    [F_APP_SM] = 1980,
    [F_APP_MEM] = 3201,
    [F_P0_MIN] = 345,
    [F_P0_MAX] = 1980,
    [F_REASONS] = 0x1,
    [F_PSTATE] = NVML_PSTATE_0,
    [F_TEMP] = 31,
    [F_ECC_CURRENT] = 1,
    [F_ECC_PENDING] = 1,
    [F_MIG_CURRENT] = 0,
    [F_MIG_PENDING] = 0,
    [F_PERSISTENCE] = 1,
    [F_COMPUTE_MODE] = 0,
    [F_PCIE_GEN] = 5,
    [F_PCIE_WIDTH] = 16,
    [F_LOST] = 0,
};

/* The buses of an eight-GPU HGX board, then more of the same form. */
static const unsigned gpu_bus[MAX_GPUS] = {0x1a, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb,
                                           0x1b, 0x2b, 0x3b, 0x5e, 0x9b, 0xac, 0xbb, 0xdc};

struct nvmlDevice_st {
  unsigned long long value[F_COUNT];
  unsigned char unsupported[F_COUNT];
};

struct nvmlEventSet_st {
  int live;
  unsigned long long registered[MAX_GPUS]; /* event types, per GPU */
  unsigned long long queue_xid[MAX_QUEUED];
  unsigned queue_gpu[MAX_QUEUED];
  unsigned head, len;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct nvmlDevice_st gpus[MAX_GPUS];
static struct nvmlEventSet_st sets[MAX_SETS];
static unsigned gpu_count;
static unsigned init_count;
static unsigned long long calls;
static int defaults_loaded;
static int rm_fd = -1;

static void load_defaults(void) {
  for (unsigned g = 0; g < MAX_GPUS; g++) {
    memcpy(gpus[g].value, field_defaults, sizeof(field_defaults));
    memset(gpus[g].unsupported, 0, sizeof(gpus[g].unsupported));
    gpus[g].value[F_POWER_USAGE] += 1000ULL * g; /* GPUs differ a little, as real ones do */
    gpus[g].value[F_TEMP] += g % 4;
  }
  memset(sets, 0, sizeof(sets));
  calls = 0;
  defaults_loaded = 1;
}

static int field_index(const char* name);

/* FAKE_NVML_CONTROL: applies the file's lines when its size or mtime moved. */
static void apply_control_file(void) {
  static struct timespec seen_mtime;
  static off_t seen_size = -1;
  const char* path = getenv("FAKE_NVML_CONTROL");
  struct stat st;
  if (!path || stat(path, &st) != 0) return;
  if (st.st_size == seen_size && st.st_mtim.tv_sec == seen_mtime.tv_sec && st.st_mtim.tv_nsec == seen_mtime.tv_nsec)
    return;
  seen_size = st.st_size;
  seen_mtime = st.st_mtim;
  FILE* f = fopen(path, "r");
  if (!f) return;
  unsigned gpu;
  char field[64];
  unsigned long long value;
  while (fscanf(f, "%u %63s %llu", &gpu, field, &value) == 3) {
    int i = field_index(field);
    if (gpu < MAX_GPUS && i >= 0) gpus[gpu].value[i] = value;
  }
  fclose(f);
}

/* Takes the lock and counts the call; the caller unlocks. */
static void enter(void) {
  pthread_mutex_lock(&lock);
  if (!defaults_loaded) load_defaults();
  apply_control_file();
  calls++;
}

static int env_flag(const char* name) {
  const char* v = getenv(name);
  return v && strcmp(v, "1") == 0;
}

/*
 * Real NVML issues at least one RM control ioctl on /dev/nvidiactl per
 * query; the benchmark sets FAKE_NVML_IOCTL=1 so that each query here pays
 * one syscall too (TCGETS, 0x5401, on /dev/null: ENOTTY, no side effect).
 * What real NVML costs per query is measured on a GPU (tests/gpu).
 */
static void model_rm_call(void) {
  if (rm_fd >= 0) {
    char arg[64];
    (void)ioctl(rm_fd, 0x5401, arg);
  }
}

static struct nvmlDevice_st* device(nvmlDevice_t d) {
  struct nvmlDevice_st* g = (struct nvmlDevice_st*)d;
  if (!init_count || g < gpus || g >= gpus + gpu_count) return NULL;
  return g;
}

static int field_index(const char* name) {
  for (int f = 0; f < F_COUNT; f++)
    if (name && strcmp(name, field_names[f]) == 0) return f;
  return -1;
}

/* The common head of every device query: the lock, the handle, lost, support. */
static nvmlReturn_t query(nvmlDevice_t d, struct nvmlDevice_st** out, int f1, int f2, const void* result) {
  model_rm_call();
  enter();
  if (!init_count) return NVML_ERROR_UNINITIALIZED;
  struct nvmlDevice_st* g = device(d);
  if (!g || !result) return NVML_ERROR_INVALID_ARGUMENT;
  if (g->value[F_LOST]) return NVML_ERROR_GPU_IS_LOST;
  if ((f1 >= 0 && g->unsupported[f1]) || (f2 >= 0 && g->unsupported[f2])) return NVML_ERROR_NOT_SUPPORTED;
  *out = g;
  return NVML_SUCCESS;
}

static nvmlReturn_t get_u32(nvmlDevice_t d, int f, unsigned int* v) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, f, -1, v);
  if (r == NVML_SUCCESS) *v = (unsigned int)g->value[f];
  pthread_mutex_unlock(&lock);
  return r;
}

static nvmlReturn_t get_int(nvmlDevice_t d, int f, int* v) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, f, -1, v);
  if (r == NVML_SUCCESS) *v = (int)g->value[f];
  pthread_mutex_unlock(&lock);
  return r;
}

/* A query with an argument NVML rejects (a clock domain or sensor not simulated). */
static nvmlReturn_t invalid_argument(void) {
  model_rm_call();
  enter();
  nvmlReturn_t r = init_count ? NVML_ERROR_INVALID_ARGUMENT : NVML_ERROR_UNINITIALIZED;
  pthread_mutex_unlock(&lock);
  return r;
}

static int clock_field(int type, int graphics, int mem) {
  if (type == NVML_CLOCK_GRAPHICS || type == NVML_CLOCK_SM) return graphics;
  if (type == NVML_CLOCK_MEM) return mem;
  return -1;
}

/* ---- NVML ---- */

API nvmlReturn_t nvmlInit_v2(void) {
  enter();
  nvmlReturn_t r = NVML_SUCCESS;
  if (env_flag("FAKE_NVML_FAIL_INIT")) {
    r = NVML_ERROR_NOT_SUPPORTED;
  } else if (init_count++ == 0) {
    const char* n = getenv("FAKE_NVML_GPUS");
    gpu_count = n ? (unsigned)strtoul(n, NULL, 10) : 2;
    if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
    if (env_flag("FAKE_NVML_IOCTL")) rm_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlShutdown(void) {
  enter();
  nvmlReturn_t r = NVML_SUCCESS;
  if (!init_count) {
    r = NVML_ERROR_UNINITIALIZED;
  } else if (--init_count == 0 && rm_fd >= 0) {
    close(rm_fd);
    rm_fd = -1;
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
  }
}

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  enter();
  nvmlReturn_t r = NVML_SUCCESS;
  if (!init_count)
    r = NVML_ERROR_UNINITIALIZED;
  else if (!count)
    r = NVML_ERROR_INVALID_ARGUMENT;
  else
    *count = gpu_count;
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  enter();
  nvmlReturn_t r = NVML_SUCCESS;
  if (!init_count)
    r = NVML_ERROR_UNINITIALIZED;
  else if (!device || index >= gpu_count)
    r = NVML_ERROR_INVALID_ARGUMENT;
  else
    *device = (nvmlDevice_t)&gpus[index];
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t* pci) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, -1, -1, pci);
  if (r == NVML_SUCCESS) {
    unsigned i = (unsigned)(g - gpus);
    memset(pci, 0, sizeof(*pci));
    pci->domain = 0;
    pci->bus = gpu_bus[i];
    pci->device = 0;
    pci->pciDeviceId = 0x233510de; /* H200 SXM: device 0x2335, vendor 0x10de */
    pci->pciSubSystemId = 0x18be10de;
    /* nvml.h's NVML_DEVICE_PCI_BUS_ID_FMT and _LEGACY_FMT: upper case, 8- and 4-digit domain */
    snprintf(pci->busId, sizeof(pci->busId), "%08X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char* uuid, unsigned int length) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, -1, -1, uuid);
  if (r == NVML_SUCCESS) {
    unsigned i = (unsigned)(g - gpus);
    char buf[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    int n = snprintf(buf, sizeof(buf), "GPU-5f3c%04x-6e1a-4b7d-9c2e-8a41d07f%04x", 0x1a00 + i, 0xb200 + i);
    if (n < 0 || (unsigned)n >= length)
      r = NVML_ERROR_INSUFFICIENT_SIZE;
    else
      memcpy(uuid, buf, (size_t)n + 1);
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int* limit) {
  return get_u32(d, F_POWER_LIMIT, limit);
}
API nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int* limit) {
  return get_u32(d, F_ENFORCED_LIMIT, limit);
}
API nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t d, unsigned int* limit) {
  return get_u32(d, F_DEFAULT_LIMIT, limit);
}
API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int* power) {
  return get_u32(d, F_POWER_USAGE, power);
}

API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int* clock) {
  int f = clock_field(type, F_SM, F_MEM);
  if (f < 0) return invalid_argument();
  return get_u32(d, f, clock);
}

API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, int type, unsigned int* clock) {
  int f = clock_field(type, F_SM_MAX, F_MEM); /* HBM runs at its maximum */
  if (f < 0) return invalid_argument();
  return get_u32(d, f, clock);
}

API nvmlReturn_t nvmlDeviceGetApplicationsClock(nvmlDevice_t d, int type, unsigned int* clock) {
  int f = clock_field(type, F_APP_SM, F_APP_MEM);
  if (f < 0) return invalid_argument();
  return get_u32(d, f, clock);
}

/* Only the SM (graphics) clock range of P0 is simulated. */
API nvmlReturn_t nvmlDeviceGetMinMaxClockOfPState(nvmlDevice_t d, int type, int pstate, unsigned int* min,
                                                  unsigned int* max) {
  if (clock_field(type, F_P0_MIN, -1) < 0 || pstate != NVML_PSTATE_0) return invalid_argument();
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, F_P0_MIN, F_P0_MAX, min);
  if (r == NVML_SUCCESS && !max) r = NVML_ERROR_INVALID_ARGUMENT;
  if (r == NVML_SUCCESS) {
    *min = (unsigned int)g->value[F_P0_MIN];
    *max = (unsigned int)g->value[F_P0_MAX];
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long* reasons) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, F_REASONS, -1, reasons);
  if (r == NVML_SUCCESS) *reasons = g->value[F_REASONS];
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t d, int* pstate) { return get_int(d, F_PSTATE, pstate); }

API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int* temp) {
  if (sensor != NVML_TEMPERATURE_GPU) return invalid_argument();
  return get_u32(d, F_TEMP, temp);
}

API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t d, int* current, int* pending) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, F_ECC_CURRENT, F_ECC_PENDING, current);
  if (r == NVML_SUCCESS && !pending) r = NVML_ERROR_INVALID_ARGUMENT;
  if (r == NVML_SUCCESS) {
    *current = (int)g->value[F_ECC_CURRENT];
    *pending = (int)g->value[F_ECC_PENDING];
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int* current, unsigned int* pending) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, F_MIG_CURRENT, F_MIG_PENDING, current);
  if (r == NVML_SUCCESS && !pending) r = NVML_ERROR_INVALID_ARGUMENT;
  if (r == NVML_SUCCESS) {
    *current = (unsigned int)g->value[F_MIG_CURRENT];
    *pending = (unsigned int)g->value[F_MIG_PENDING];
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t d, int* mode) { return get_int(d, F_PERSISTENCE, mode); }
API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t d, int* mode) { return get_int(d, F_COMPUTE_MODE, mode); }
API nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t d, unsigned int* gen) {
  return get_u32(d, F_PCIE_GEN, gen);
}
API nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t d, unsigned int* width) {
  return get_u32(d, F_PCIE_WIDTH, width);
}

API nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t* set) {
  enter();
  nvmlReturn_t r = NVML_ERROR_UNKNOWN;
  if (!init_count) {
    r = NVML_ERROR_UNINITIALIZED;
  } else if (!set) {
    r = NVML_ERROR_INVALID_ARGUMENT;
  } else {
    for (unsigned s = 0; s < MAX_SETS; s++) {
      if (sets[s].live) continue;
      memset(&sets[s], 0, sizeof(sets[s]));
      sets[s].live = 1;
      *set = (nvmlEventSet_t)&sets[s];
      r = NVML_SUCCESS;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return r;
}

static struct nvmlEventSet_st* event_set(nvmlEventSet_t set) {
  struct nvmlEventSet_st* s = (struct nvmlEventSet_st*)set;
  if (s < sets || s >= sets + MAX_SETS || !s->live) return NULL;
  return s;
}

API nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
  struct nvmlDevice_st* g = NULL;
  nvmlReturn_t r = query(d, &g, -1, -1, set);
  struct nvmlEventSet_st* s = event_set(set);
  if (r == NVML_SUCCESS && !s) r = NVML_ERROR_INVALID_ARGUMENT;
  if (r == NVML_SUCCESS && (types & ~NVML_EVENT_TYPE_XID_CRITICAL_ERROR)) r = NVML_ERROR_NOT_SUPPORTED;
  if (r == NVML_SUCCESS) s->registered[g - gpus] |= types;
  pthread_mutex_unlock(&lock);
  return r;
}

/* Never blocks: with nothing queued it returns NVML_ERROR_TIMEOUT at once. */
API nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t* data, unsigned int timeoutms) {
  (void)timeoutms;
  model_rm_call();
  enter();
  nvmlReturn_t r = NVML_SUCCESS;
  struct nvmlEventSet_st* s = event_set(set);
  if (!init_count) {
    r = NVML_ERROR_UNINITIALIZED;
  } else if (!s || !data) {
    r = NVML_ERROR_INVALID_ARGUMENT;
  } else if (!s->len) {
    r = NVML_ERROR_TIMEOUT;
  } else {
    memset(data, 0, sizeof(*data));
    data->device = (nvmlDevice_t)&gpus[s->queue_gpu[s->head]];
    data->eventType = NVML_EVENT_TYPE_XID_CRITICAL_ERROR;
    data->eventData = s->queue_xid[s->head];
    data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFFu; /* not attributable to a MIG instance */
    s->head = (s->head + 1) % MAX_QUEUED;
    s->len--;
  }
  pthread_mutex_unlock(&lock);
  return r;
}

API nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  enter();
  struct nvmlEventSet_st* s = event_set(set);
  nvmlReturn_t r = s ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
  if (s) s->live = 0;
  pthread_mutex_unlock(&lock);
  return r;
}

/* ---- test control: 0 on success, -1 for an unknown GPU or field ---- */

/* Restores every GPU's defaults, drops event sets and queued XIDs, zeroes the call count. */
API void fake_nvml_reset(void) {
  pthread_mutex_lock(&lock);
  load_defaults();
  pthread_mutex_unlock(&lock);
}

/* A field by the watcher's name ("power.limit_mw", "clocks.event_reasons" as
 * the bitmask, "perf.pstate" as N of PN, modes as 0/1), or "lost". */
API int fake_nvml_set(unsigned gpu, const char* field, unsigned long long value) {
  int f = field_index(field);
  if (gpu >= MAX_GPUS || f < 0) return -1;
  pthread_mutex_lock(&lock);
  if (!defaults_loaded) load_defaults();
  gpus[gpu].value[f] = value;
  pthread_mutex_unlock(&lock);
  return 0;
}

/* The query behind a field answers NVML_ERROR_NOT_SUPPORTED (supported = 0),
 * as on GPUs that lack it; pairs read by one call (ecc, mig, p0) go together. */
API int fake_nvml_set_supported(unsigned gpu, const char* field, int supported) {
  int f = field_index(field);
  if (gpu >= MAX_GPUS || f < 0 || f == F_LOST) return -1;
  pthread_mutex_lock(&lock);
  if (!defaults_loaded) load_defaults();
  gpus[gpu].unsupported[f] = !supported;
  pthread_mutex_unlock(&lock);
  return 0;
}

/* Queues an XID critical error on every event set that registered the GPU
 * for it; returns how many sets got it (0: none registered), -1 if full. */
API int fake_nvml_xid(unsigned gpu, unsigned long long xid) {
  if (gpu >= MAX_GPUS) return -1;
  int queued = 0;
  pthread_mutex_lock(&lock);
  for (unsigned i = 0; i < MAX_SETS; i++) {
    struct nvmlEventSet_st* s = &sets[i];
    if (!s->live || !(s->registered[gpu] & NVML_EVENT_TYPE_XID_CRITICAL_ERROR)) continue;
    if (s->len == MAX_QUEUED) {
      queued = -1;
      break;
    }
    unsigned tail = (s->head + s->len) % MAX_QUEUED;
    s->queue_gpu[tail] = gpu;
    s->queue_xid[tail] = xid;
    s->len++;
    queued++;
  }
  pthread_mutex_unlock(&lock);
  return queued;
}

/* NVML entry points called since load or the last reset. */
API unsigned long long fake_nvml_calls(void) {
  pthread_mutex_lock(&lock);
  unsigned long long n = calls;
  pthread_mutex_unlock(&lock);
  return n;
}

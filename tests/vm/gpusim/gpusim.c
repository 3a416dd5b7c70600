// SPDX-License-Identifier: GPL-2.0
/*
 * gpusim: a test-only stand-in for the NVIDIA driver's ioctl interface.
 *
 * It registers the driver's device numbers (195:255 nvidiactl, 195:0
 * nvidia0), speaks its escape numbers and struct layouts, and has the glue
 * of nvidia.ko with its names, prototypes and order, so that gpugate.ko's
 * NVIDIA hook table attaches here unchanged:
 *   nvidia_unlocked_ioctl()  the file operation (static, as in 595.45.04);
 *   nvidia_ioctl()           looks the escape up by _IOC_NR and requires the
 *                            exact _IOC_SIZE (type and direction bits are
 *                            ignored), unwraps NV_ESC_IOCTL_XFER_CMD, copies
 *                            the top-level struct in, calls rm_ioctl(),
 *                            maps its status to 0 or -EINVAL and copies the
 *                            struct back;
 *   rm_ioctl()               the RM core's entry, built notrace as nv-kernel.o
 *                            is (no ftrace site: a kprobe is an int3 there);
 *                            for RM_CONTROL it copies the params block through
 *                            os_memcpy_from_user() before the control runs,
 *                            and a failed copy's status lands in NVOS54.status
 *                            with the ioctl returning 0, as RM does;
 *   os_memcpy_from_user()    the glue's one user copy (traceable).
 * A small simulated GPU state is changed by the gated commands and read back
 * by queries and in sysfs (/sys/class/gpusim/nvidiactl/state).
 *
 * It also plays the driver's knobs on a real PCI function (module parameter
 * pci, the guest's display adapter by default): NVIDIA's procfs files
 * /proc/driver/nvidia/suspend and /proc/driver/nvidia/gpus/<pci>/unbindLock
 * (kernel-open/nvidia/nv-procfs.c: what is written, what reads back), and
 * a hwmon device under the function with power1_cap in microwatts
 * (Documentation/hwmon/sysfs-interface.rst), each holding what was written.
 *
 * Facts: ../shared/reference/nvidia-abi.md sections 2 and 3 and
 * kmod-hooks.md sections 1-3, from NVIDIA/open-gpu-kernel-modules 595.45.04
 * kernel-open/nvidia/nv.c (nvidia_unlocked_ioctl, nvidia_ioctl,
 * nv_validate_ioctls), kernel-open/common/inc/nv.h (rm_ioctl),
 * kernel-open/common/inc/os-interface.h (os_memcpy_from_user),
 * src/nvidia/arch/nvalloc/unix/src/escape.c and
 * src/common/sdk/nvidia/inc/nvstatuscodes.h.
 * The power-limit command is unpublished: gpusim gives the root-only legacy
 * PMGR id 0x2080E601 the meaning "set the power limit to params[0] mW".
 */
#include <linux/capability.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/hwmon.h>
#include <linux/ioctl.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>

#define GPUSIM_MAJOR 195
#define GPUSIM_CTL_MINOR 255
#define GPUSIM_GPU_MINOR 0
#define GPUSIM_MAX_IOCTL 16384 /* NV_ABSOLUTE_MAX_IOCTL_SIZE */
#define GPUSIM_MAX_PARAMS 4096

#define NV_ESC_RM_FREE 0x29
#define NV_ESC_RM_CONTROL 0x2A
#define NV_ESC_RM_ALLOC 0x2B
#define NV_ESC_IOCTL_XFER_CMD 0xD3

#define NV_OK 0x00
#define NV_ERR_INSUFFICIENT_PERMISSIONS 0x1B
#define NV_ERR_INVALID_ADDRESS 0x1E
#define NV_ERR_INVALID_ARGUMENT 0x1F
#define NV_ERR_INVALID_PARAM_STRUCT 0x3A
#define NV_ERR_NOT_SUPPORTED 0x56

struct nvos54 { /* NV_ESC_RM_CONTROL, 32 bytes */
  u32 h_client, h_object, cmd, flags;
  u64 params;
  u32 params_size, status;
};

struct nvos21 { /* NV_ESC_RM_ALLOC, 32 bytes */
  u32 h_root, h_parent, h_new, h_class;
  u64 alloc_params;
  u32 params_size, status;
};

struct nvos00 { /* NV_ESC_RM_FREE, 16 bytes */
  u32 h_root, h_parent, h_old, status;
};

struct nv_xfer { /* NV_ESC_IOCTL_XFER_CMD, 16 bytes */
  u32 cmd, size;
  u64 ptr;
};

static_assert(sizeof(struct nvos54) == 32);
static_assert(sizeof(struct nvos21) == 32);
static_assert(sizeof(struct nvos00) == 16);
static_assert(sizeof(struct nv_xfer) == 16);

/* The simulated GPU. */
static struct {
  struct mutex lock;
  u32 powered; /* 1 on, 0 off (GPU_SET_POWER level >= 4) */
  u32 power_level;
  u32 power_limit_mw;
  u32 rated_tdp_action;
  u32 boost_flags;
  u32 perf_state;
  u32 drained;
  u32 removed; /* drained with REMOVE_DEVICE */
  u32 ecc_pending;
  u32 mig_pending;
  u32 reset_pending; /* marked for reset (GPU_MARK_DEVICE_FOR_RESET) */
  u64 controls;      /* RM controls dispatched */
  u64 allocs;
  u64 power_sets;        /* GPU_SET_POWER calls that took effect */
  u32 power_levels_seen; /* bit per level GPU_SET_POWER ever set (levels 0-31) */
  u64 perf_state_sets;   /* PERF_SET_POWERSTATE calls that took effect */
  /* What firmware sets on its own (the firmware test knob): clocks and NVML's clock-event reason bits. */
  u32 sm_clock_mhz;
  u32 sm_clock_max_mhz;
  u64 clock_event_reasons;
} gpu = {
    .powered = 1,
    .power_limit_mw = 700000,
    .ecc_pending = 1,
    .sm_clock_mhz = 1980,
    .sm_clock_max_mhz = 1980,
};

static dev_t gpusim_ctl_dev = MKDEV(GPUSIM_MAJOR, GPUSIM_CTL_MINOR);
static dev_t gpusim_gpu_dev = MKDEV(GPUSIM_MAJOR, GPUSIM_GPU_MINOR);
#define GPUSIM_EXTRA_GPUS 4
static struct cdev gpusim_ctl_cdev, gpusim_gpu_cdev, gpusim_extra_cdev[GPUSIM_EXTRA_GPUS];
static struct class* gpusim_class;
static struct device *gpusim_ctl_device, *gpusim_gpu_device, *gpusim_extra_device[GPUSIM_EXTRA_GPUS];
static int gpusim_extra_gpus;

static u32 u32_at(const u8* p, size_t size, size_t off) {
  u32 v = 0;

  if (off + sizeof(v) <= size) memcpy(&v, p + off, sizeof(v));
  return v;
}

/* Query: a fixed name, like NV2080_CTRL_CMD_GPU_GET_NAME_STRING. */
static void gpusim_name(u8* params, u32 size) {
  static const char name[] = "gpusim simulated GPU";

  memset(params, 0, size);
  if (size > 4) memcpy(params + 4, name, min_t(size_t, sizeof(name), size - 4));
}

/* One RM control, on the kernel copy of its params block. */
static u32 gpusim_control(u32 cmd, u8* p, u32 size) {
  switch (cmd) {
    case 0x20800112: /* GPU_SET_POWER {target, newLevel, oldLevel} */
      if (size != 12) return NV_ERR_INVALID_PARAM_STRUCT;
      memcpy(p + 8, &gpu.power_level, 4);
      gpu.power_level = u32_at(p, size, 4);
      gpu.powered = gpu.power_level < 4;
      gpu.power_sets++;
      if (gpu.power_level < 32) gpu.power_levels_seen |= 1u << gpu.power_level;
      return NV_OK;
    case 0x2080206F: /* PERF_RATED_TDP_SET_CONTROL {client, input, vPstateType} */
      if (size != 12) return NV_ERR_INVALID_PARAM_STRUCT;
      gpu.rated_tdp_action = u32_at(p, size, 4);
      return NV_OK;
    case 0x2080E601: /* legacy PMGR, root only (0xC000): power limit in mW */
      if (!capable(CAP_SYS_ADMIN)) return NV_ERR_INSUFFICIENT_PERMISSIONS;
      if (size < 4) return NV_ERR_INVALID_PARAM_STRUCT;
      gpu.power_limit_mw = u32_at(p, size, 0);
      return NV_OK;
    case 0x2080200A: /* PERF_BOOST {flags, duration} */
      if (size != 8) return NV_ERR_INVALID_PARAM_STRUCT;
      gpu.boost_flags = u32_at(p, size, 0);
      return NV_OK;
    case 0x2080205B: /* PERF_SET_POWERSTATE {powerState} */
      if (size != 4) return NV_ERR_INVALID_PARAM_STRUCT;
      gpu.perf_state = u32_at(p, size, 0);
      gpu.perf_state_sets++;
      return NV_OK;
    case 0x00000278: /* GPU_MODIFY_DRAIN_STATE {gpuId, newState, flags}: PRIVILEGED */
      if (size != 12) return NV_ERR_INVALID_PARAM_STRUCT;
      if (!capable(CAP_SYS_ADMIN)) return NV_ERR_INSUFFICIENT_PERMISSIONS;
      gpu.drained = u32_at(p, size, 4);
      gpu.removed = gpu.drained && (u32_at(p, size, 8) & 1);
      return NV_OK;
    case 0x00000279: /* GPU_QUERY_DRAIN_STATE {gpuId, drainState, flags} */
      if (size != 12) return NV_ERR_INVALID_PARAM_STRUCT;
      memcpy(p + 4, &gpu.drained, 4);
      memcpy(p + 8, &gpu.removed, 4);
      return NV_OK;
    case 0x20800134: /* GPU_SET_ECC_CONFIGURATION {newConfiguration}: PRIVILEGED */
      if (size != 4) return NV_ERR_INVALID_PARAM_STRUCT;
      if (!capable(CAP_SYS_ADMIN)) return NV_ERR_INSUFFICIENT_PERMISSIONS;
      gpu.ecc_pending = u32_at(p, size, 0);
      return NV_OK;
    case 0x20800133: /* GPU_QUERY_ECC_CONFIGURATION {current, default} */
      if (size != 8) return NV_ERR_INVALID_PARAM_STRUCT;
      memcpy(p, &gpu.ecc_pending, 4);
      memset(p + 4, 0, 4);
      p[4] = 1;
      return NV_OK;
    case 0x20800183: /* GPU_SET_PARTITIONING_MODE {mode}: PRIVILEGED */
      if (size != 4) return NV_ERR_INVALID_PARAM_STRUCT;
      if (!capable(CAP_SYS_ADMIN)) return NV_ERR_INSUFFICIENT_PERMISSIONS;
      gpu.mig_pending = u32_at(p, size, 0) & 3;
      return NV_OK;
    case 0x208001A9: /* GPU_MARK_DEVICE_FOR_RESET (no params) */
      if (size != 0) return NV_ERR_INVALID_PARAM_STRUCT;
      gpu.reset_pending = 1;
      return NV_OK;
    case 0x2080205A: /* PERF_GET_POWERSTATE {powerState} */
      if (size != 4) return NV_ERR_INVALID_PARAM_STRUCT;
      memcpy(p, &gpu.perf_state, 4);
      return NV_OK;
    case 0x20800110: /* GPU_GET_NAME_STRING */
      if (size != 68) return NV_ERR_INVALID_PARAM_STRUCT;
      gpusim_name(p, size);
      return NV_OK;
    default: return NV_ERR_NOT_SUPPORTED;
  }
}

typedef u32 NV_STATUS;

/* The node a request came through: what nvidia.ko's nv_state_t says. */
struct gpusim_node {
  bool ctl;
};
static struct gpusim_node gpusim_ctl_node = {.ctl = true}, gpusim_gpu_node = {.ctl = false};

/*
 * The glue's user copy, with its prototype (os-interface.h): every params
 * block RM uses arrives through here. Traceable, not inlined: gpugate.ko's
 * ftrace wrapper decides on the bytes it copies.
 */
noinline NV_STATUS os_memcpy_from_user(void* to, const void* from, u32 n);
noinline NV_STATUS os_memcpy_from_user(void* to, const void* from, u32 n) {
  return copy_from_user(to, (const void __user*)from, n) ? NV_ERR_INVALID_ADDRESS : NV_OK;
}

/* An RM control on the kernel copy of its NVOS54. */
static void gpusim_rm_control(struct nvos54* c) {
  u8* params = NULL;
  NV_STATUS st;

  if (c->params_size > GPUSIM_MAX_PARAMS) {
    c->status = NV_ERR_INVALID_PARAM_STRUCT;
    return;
  }
  if (c->params_size) {
    /* The params block is a second user pointer, copied only now. */
    params = kmalloc(c->params_size, GFP_KERNEL);
    if (!params) {
      c->status = NV_ERR_INVALID_ARGUMENT;
      return;
    }
    st = os_memcpy_from_user(params, u64_to_user_ptr(c->params), c->params_size);
    if (st != NV_OK) {
      kfree(params);
      c->status = st; /* a refused copy is the control's status */
      return;
    }
  }
  mutex_lock(&gpu.lock);
  gpu.controls++;
  c->status = gpusim_control(c->cmd, params, c->params_size);
  mutex_unlock(&gpu.lock);
  if (params && c->status == NV_OK && copy_to_user(u64_to_user_ptr(c->params), params, c->params_size))
    c->status = NV_ERR_INVALID_ADDRESS;
  kfree(params);
}

/*
 * The RM core's entry, with nvidia.ko's prototype (nv.h): the request's
 * top-level struct is already in kernel memory. notrace, as nv-kernel.o is
 * built without -mfentry: only a kprobe (int3) can sit here.
 */
noinline notrace NV_STATUS rm_ioctl(void* sp, void* nv, void* nvfp, u32 cmd, void* data, u32 size);
noinline notrace NV_STATUS rm_ioctl(void* sp, void* nv, void* nvfp, u32 cmd, void* data, u32 size) {
  bool on_ctl = ((struct gpusim_node*)nv)->ctl;

  switch (cmd) {
    case NV_ESC_RM_CONTROL:
      if (size != sizeof(struct nvos54) || !on_ctl) return NV_ERR_INVALID_ARGUMENT;
      gpusim_rm_control(data);
      return NV_OK;
    case NV_ESC_RM_ALLOC: {
      struct nvos21* a = data;

      if (size != sizeof(struct nvos21) || !on_ctl) return NV_ERR_INVALID_ARGUMENT;
      mutex_lock(&gpu.lock);
      gpu.allocs++;
      mutex_unlock(&gpu.lock);
      switch (a->h_class) {
        case 0x0:
        case 0x1:
        case 0x41:   /* root client */
        case 0x80:   /* NV01_DEVICE_0 */
        case 0x2080: /* NV20_SUBDEVICE_0 */
        case 0x2081: /* NV2081_BINAPI */
        case 0x2082: /* NV2082_BINAPI_PRIVILEGED */ a->status = NV_OK; break;
        default: a->status = NV_ERR_NOT_SUPPORTED;
      }
      return NV_OK;
    }
    case NV_ESC_RM_FREE: {
      struct nvos00* f = data;

      if (size != sizeof(struct nvos00) || !on_ctl) return NV_ERR_INVALID_ARGUMENT;
      f->status = NV_OK;
      return NV_OK;
    }
    default: return NV_ERR_INVALID_ARGUMENT;
  }
}

/* nv.c's nvidia_ioctl: validate, unwrap XFER, copy in, rm_ioctl, copy back. */
static noinline int nvidia_ioctl(struct inode* inode, struct file* file, unsigned int cmd, unsigned long i_arg) {
  struct gpusim_node* node = iminor(inode) == GPUSIM_CTL_MINOR ? &gpusim_ctl_node : &gpusim_gpu_node;
  u32 nr = _IOC_NR(cmd), size = _IOC_SIZE(cmd);
  void __user* ptr = (void __user*)i_arg;
  void* copy;
  int ret;

  /* nv_validate_ioctls: by nr and exact size; type and direction ignored. */
  switch (nr) {
    case NV_ESC_RM_CONTROL:
    case NV_ESC_RM_ALLOC:
      if (size != 32) return -EINVAL;
      break;
    case NV_ESC_RM_FREE:
      if (size != 16) return -EINVAL;
      break;
    case NV_ESC_IOCTL_XFER_CMD: {
      struct nv_xfer x;

      if (size != sizeof(x)) return -EINVAL;
      if (copy_from_user(&x, ptr, sizeof(x))) return -EFAULT;
      if (x.size > GPUSIM_MAX_IOCTL) return -EINVAL;
      /* the inner request is not validated again, as in nv.c */
      nr = x.cmd;
      size = x.size;
      ptr = u64_to_user_ptr(x.ptr);
      break;
    }
    default: return -EINVAL;
  }

  copy = memdup_user(ptr, size);
  if (IS_ERR(copy)) return PTR_ERR(copy);
  ret = rm_ioctl(NULL, node, NULL, nr, copy, size) == NV_OK ? 0 : -EINVAL;
  if (copy_to_user(ptr, copy, size)) ret = -EFAULT;
  kfree(copy);
  return ret;
}

/* The file operation, static as in nv.c: address-taken, so out of line, with an ftrace site. */
static long nvidia_unlocked_ioctl(struct file* file, unsigned int cmd, unsigned long i_arg) {
  return nvidia_ioctl(file_inode(file), file, cmd, i_arg);
}

static int gpusim_open(struct inode* inode, struct file* filp) { return 0; }

static const struct file_operations gpusim_fops = {
    .owner = THIS_MODULE,
    .open = gpusim_open,
    .unlocked_ioctl = nvidia_unlocked_ioctl,
    .compat_ioctl = nvidia_unlocked_ioctl,
};

static ssize_t state_show(struct device* dev, struct device_attribute* attr, char* buf) {
  ssize_t n;

  mutex_lock(&gpu.lock);
  n = sysfs_emit(buf,
                 "powered %u\npower_level %u\npower_limit_mw %u\nrated_tdp_action %u\n"
                 "boost_flags %u\nperf_state %u\ndrained %u\nremoved %u\necc_pending %u\n"
                 "mig_pending %u\nreset_pending %u\ncontrols %llu\nallocs %llu\npower_sets %llu\n"
                 "perf_state_sets %llu\npower_levels_seen %u\nsm_clock_mhz %u\nsm_clock_max_mhz %u\n"
                 "clock_event_reasons %llu\n",
                 gpu.powered, gpu.power_level, gpu.power_limit_mw, gpu.rated_tdp_action, gpu.boost_flags,
                 gpu.perf_state, gpu.drained, gpu.removed, gpu.ecc_pending, gpu.mig_pending, gpu.reset_pending,
                 gpu.controls, gpu.allocs, gpu.power_sets, gpu.perf_state_sets, gpu.power_levels_seen, gpu.sm_clock_mhz,
                 gpu.sm_clock_max_mhz, gpu.clock_event_reasons);
  mutex_unlock(&gpu.lock);
  return n;
}
static DEVICE_ATTR_RO(state);

/*
 * Test knob: the GPU's firmware changes its own state behind the driver's
 * ioctls, as a kill switch in the chip would ("KEY VALUE": power_limit_mw,
 * sm_clock_max_mhz, sm_clock_mhz, powered, clock_event_reasons: NVML's bits). No
 * ioctl and no GPU knob is involved: only the state watcher can see it.
 */
static ssize_t firmware_store(struct device* dev, struct device_attribute* attr, const char* buf, size_t len) {
  char key[32];
  unsigned long long value;
  ssize_t ret = len;

  if (sscanf(buf, "%31s %llu", key, &value) != 2) return -EINVAL;
  mutex_lock(&gpu.lock);
  if (!strcmp(key, "power_limit_mw"))
    gpu.power_limit_mw = value;
  else if (!strcmp(key, "sm_clock_max_mhz"))
    gpu.sm_clock_max_mhz = value;
  else if (!strcmp(key, "sm_clock_mhz"))
    gpu.sm_clock_mhz = value;
  else if (!strcmp(key, "powered"))
    gpu.powered = !!value;
  else if (!strcmp(key, "clock_event_reasons"))
    gpu.clock_event_reasons = value;
  else
    ret = -EINVAL;
  mutex_unlock(&gpu.lock);
  return ret;
}
static DEVICE_ATTR_WO(firmware);

static int gpusim_add(struct cdev* cdev, dev_t devt, const char* name, struct device** out);

/* Test knob: one more GPU node (195:1, then 195:2, ... /dev/nvidiaN) appears, as on a hot-plug. */
static ssize_t add_gpu_store(struct device* dev, struct device_attribute* attr, const char* buf, size_t len) {
  int n, err = -ENOSPC;
  char name[16];
  dev_t devt;

  mutex_lock(&gpu.lock);
  n = gpusim_extra_gpus;
  if (n < GPUSIM_EXTRA_GPUS) {
    devt = MKDEV(GPUSIM_MAJOR, n + 1);
    snprintf(name, sizeof(name), "nvidia%d", n + 1);
    err = register_chrdev_region(devt, 1, "nvidia");
    if (!err) {
      err = gpusim_add(&gpusim_extra_cdev[n], devt, name, &gpusim_extra_device[n]);
      if (err)
        unregister_chrdev_region(devt, 1);
      else
        gpusim_extra_gpus++;
    }
  }
  mutex_unlock(&gpu.lock);
  return err ? err : (ssize_t)len;
}
static DEVICE_ATTR_WO(add_gpu);

static int gpusim_add(struct cdev* cdev, dev_t devt, const char* name, struct device** out) {
  int err;

  cdev_init(cdev, &gpusim_fops);
  cdev->owner = THIS_MODULE;
  err = cdev_add(cdev, devt, 1);
  if (err) return err;
  *out = device_create(gpusim_class, NULL, devt, NULL, name);
  if (IS_ERR(*out)) {
    cdev_del(cdev);
    return PTR_ERR(*out);
  }
  return 0;
}

/* The driver's knobs, on the PCI function named by pci. */
static char* pci = "0000:00:02.0";
module_param(pci, charp, 0444);
MODULE_PARM_DESC(pci, "PCI function whose NVIDIA procfs knobs and hwmon power cap gpusim plays");

static struct pci_dev* gpusim_pdev;
static struct device* gpusim_hwmon;
static struct proc_dir_entry* gpusim_proc_root;
static DEFINE_MUTEX(gpusim_knob_lock);
static unsigned long gpusim_power_cap_uw = 300000000;
static char gpusim_suspend_state[16] = "resume";
static int gpusim_unbind_lock;

enum gpusim_proc_file { GPUSIM_PROC_SUSPEND = 1, GPUSIM_PROC_UNBIND_LOCK = 2 };

static int gpusim_proc_show(struct seq_file* m, void* v) {
  long which = (long)m->private;

  mutex_lock(&gpusim_knob_lock);
  if (which == GPUSIM_PROC_SUSPEND)
    seq_printf(m, "%s\n", gpusim_suspend_state);
  else
    seq_printf(m, "Unbind Lock: %s\n", gpusim_unbind_lock ? "Locked" : "Unlocked");
  mutex_unlock(&gpusim_knob_lock);
  return 0;
}

static int gpusim_proc_open(struct inode* inode, struct file* file) {
  return single_open(file, gpusim_proc_show, pde_data(inode));
}

/* suspend: "suspend", "hibernate" or "resume"; unbindLock: "1" or "0". */
static ssize_t gpusim_proc_write(struct file* file, const char __user* ubuf, size_t len, loff_t* off) {
  long which = (long)pde_data(file_inode(file));
  char buf[16] = {};
  size_t n = min(len, sizeof(buf) - 1);

  if (copy_from_user(buf, ubuf, n)) return -EFAULT;
  strim(buf);
  mutex_lock(&gpusim_knob_lock);
  if (which == GPUSIM_PROC_SUSPEND) {
    if (strcmp(buf, "suspend") && strcmp(buf, "hibernate") && strcmp(buf, "resume")) {
      mutex_unlock(&gpusim_knob_lock);
      return -EINVAL;
    }
    strscpy(gpusim_suspend_state, buf, sizeof(gpusim_suspend_state));
  } else {
    gpusim_unbind_lock = buf[0] == '1';
  }
  mutex_unlock(&gpusim_knob_lock);
  return len;
}

static const struct proc_ops gpusim_proc_ops = {
    .proc_open = gpusim_proc_open,
    .proc_read = seq_read,
    .proc_write = gpusim_proc_write,
    .proc_lseek = seq_lseek,
    .proc_release = single_release,
};

static ssize_t power1_cap_show(struct device* dev, struct device_attribute* attr, char* buf) {
  return sysfs_emit(buf, "%lu\n", READ_ONCE(gpusim_power_cap_uw));
}

static ssize_t power1_cap_store(struct device* dev, struct device_attribute* attr, const char* buf, size_t len) {
  unsigned long uw;
  int err = kstrtoul(buf, 10, &uw);

  if (err) return err;
  WRITE_ONCE(gpusim_power_cap_uw, uw);
  return len;
}
static DEVICE_ATTR_RW(power1_cap);

static struct attribute* gpusim_hwmon_attrs[] = {&dev_attr_power1_cap.attr, NULL};
ATTRIBUTE_GROUPS(gpusim_hwmon);

static void gpusim_knobs_exit(void) {
  if (gpusim_proc_root) proc_remove(gpusim_proc_root);
  gpusim_proc_root = NULL;
  if (gpusim_hwmon) hwmon_device_unregister(gpusim_hwmon);
  gpusim_hwmon = NULL;
  pci_dev_put(gpusim_pdev);
  gpusim_pdev = NULL;
}

/* Without the PCI function there are no knobs: the tests that need them fail. */
static void gpusim_knobs_init(void) {
  unsigned int domain, bus, slot, fn;
  struct proc_dir_entry *gpus, *dir;
  char path[48];

  if (sscanf(pci, "%x:%x:%x.%x", &domain, &bus, &slot, &fn) != 4) {
    pr_warn("gpusim: pci=%s is not a PCI address: no knobs\n", pci);
    return;
  }
  gpusim_pdev = pci_get_domain_bus_and_slot(domain, bus, PCI_DEVFN(slot, fn));
  if (!gpusim_pdev) {
    pr_warn("gpusim: no PCI function %s: no knobs\n", pci);
    return;
  }
  gpusim_hwmon = hwmon_device_register_with_groups(&gpusim_pdev->dev, "gpusim", NULL, gpusim_hwmon_groups);
  if (IS_ERR(gpusim_hwmon)) {
    pr_warn("gpusim: hwmon: %ld\n", PTR_ERR(gpusim_hwmon));
    gpusim_hwmon = NULL;
  }
  gpusim_proc_root = proc_mkdir("driver/nvidia", NULL);
  if (!gpusim_proc_root) {
    pr_warn("gpusim: cannot make /proc/driver/nvidia\n");
    return;
  }
  proc_create_data("suspend", 0644, gpusim_proc_root, &gpusim_proc_ops, (void*)GPUSIM_PROC_SUSPEND);
  gpus = proc_mkdir("gpus", gpusim_proc_root);
  snprintf(path, sizeof(path), "%04x:%02x:%02x.%x", domain, bus, slot, fn);
  dir = gpus ? proc_mkdir(path, gpus) : NULL;
  if (dir) proc_create_data("unbindLock", 0644, dir, &gpusim_proc_ops, (void*)GPUSIM_PROC_UNBIND_LOCK);
  pr_info("gpusim: NVIDIA procfs knobs and hwmon power1_cap on %s\n", path);
}

static int __init gpusim_init(void) {
  int err;

  mutex_init(&gpu.lock);
  err = register_chrdev_region(gpusim_ctl_dev, 1, "nvidiactl");
  if (err) return err;
  err = register_chrdev_region(gpusim_gpu_dev, 1, "nvidia");
  if (err) goto out_ctl_region;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
  gpusim_class = class_create("gpusim");
#else
  gpusim_class = class_create(THIS_MODULE, "gpusim");
#endif
  if (IS_ERR(gpusim_class)) {
    err = PTR_ERR(gpusim_class);
    goto out_gpu_region;
  }
  err = gpusim_add(&gpusim_ctl_cdev, gpusim_ctl_dev, "nvidiactl", &gpusim_ctl_device);
  if (err) goto out_class;
  err = gpusim_add(&gpusim_gpu_cdev, gpusim_gpu_dev, "nvidia0", &gpusim_gpu_device);
  if (err) goto out_ctl;
  err = device_create_file(gpusim_ctl_device, &dev_attr_state);
  if (err) goto out_gpu;
  err = device_create_file(gpusim_ctl_device, &dev_attr_add_gpu);
  if (err) goto out_state;
  err = device_create_file(gpusim_ctl_device, &dev_attr_firmware);
  if (err) goto out_add_gpu;
  pr_info("gpusim: simulated NVIDIA driver on 195:255 and 195:0\n");
  gpusim_knobs_init();
  return 0;

out_add_gpu:
  device_remove_file(gpusim_ctl_device, &dev_attr_add_gpu);
out_state:
  device_remove_file(gpusim_ctl_device, &dev_attr_state);
out_gpu:
  device_destroy(gpusim_class, gpusim_gpu_dev);
  cdev_del(&gpusim_gpu_cdev);
out_ctl:
  device_destroy(gpusim_class, gpusim_ctl_dev);
  cdev_del(&gpusim_ctl_cdev);
out_class:
  class_destroy(gpusim_class);
out_gpu_region:
  unregister_chrdev_region(gpusim_gpu_dev, 1);
out_ctl_region:
  unregister_chrdev_region(gpusim_ctl_dev, 1);
  return err;
}

static void __exit gpusim_exit(void) {
  int i;

  gpusim_knobs_exit();
  for (i = 0; i < gpusim_extra_gpus; i++) {
    device_destroy(gpusim_class, MKDEV(GPUSIM_MAJOR, i + 1));
    cdev_del(&gpusim_extra_cdev[i]);
    unregister_chrdev_region(MKDEV(GPUSIM_MAJOR, i + 1), 1);
  }
  device_remove_file(gpusim_ctl_device, &dev_attr_firmware);
  device_remove_file(gpusim_ctl_device, &dev_attr_add_gpu);
  device_remove_file(gpusim_ctl_device, &dev_attr_state);
  device_destroy(gpusim_class, gpusim_gpu_dev);
  cdev_del(&gpusim_gpu_cdev);
  device_destroy(gpusim_class, gpusim_ctl_dev);
  cdev_del(&gpusim_ctl_cdev);
  class_destroy(gpusim_class);
  unregister_chrdev_region(gpusim_gpu_dev, 1);
  unregister_chrdev_region(gpusim_ctl_dev, 1);
}

module_init(gpusim_init);
module_exit(gpusim_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("gpugate test-only simulated NVIDIA driver ioctl interface");

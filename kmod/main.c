// SPDX-License-Identifier: GPL-2.0
/*
 * gpugate.ko: the driver-level gate of gpugate. It decides GPU control
 * commands where the driver has already copied them into kernel memory
 * (NVIDIA rm_ioctl and os_memcpy_from_user, DRM drm_ioctl_kernel), with
 * the decision code the BPF programs and user space share
 * (kmod/common/gg_gate.h), and hands its records to gpugated through
 * /dev/gpugate. docs/kernel-module.md is its manual.
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/ktime.h>

#include "gpugate.h"

/* docs/kernel-module.md describes both parameters at length */
static unsigned int ring_kib = 8192;
module_param(ring_kib, uint, 0444);
MODULE_PARM_DESC(ring_kib,
		 "record ring in KiB, a power of two (8192); full: gated commands denied");

static char *mode = "enforce";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "until gpugated pushes a policy: enforce (default), monitor or observe");

atomic_t gg_inflight = ATOMIC_INIT(0);
u64 gg_instance;
u64 gg_loaded_boot_ns;

static DEFINE_MUTEX(gg_hold_lock);
static bool gg_holding;

/* Held against unload while enforcing, until gpugated --unload lets go. */
int gg_hold(bool hold)
{
	int err = 0;

	mutex_lock(&gg_hold_lock);
	if (hold && !gg_holding) {
		if (try_module_get(THIS_MODULE))
			gg_holding = true;
		else
			err = -EBUSY;
	} else if (!hold && gg_holding) {
		module_put(THIS_MODULE);
		gg_holding = false;
	} else {
		mutex_unlock(&gg_hold_lock);
		return 0;
	}
	if (!err)
		gg_config_event(GG_KCFG_HOLD, hold, NULL);
	mutex_unlock(&gg_hold_lock);
	return err;
}

bool gg_held(void)
{
	return READ_ONCE(gg_holding);
}

static int gg_initial_mode(void)
{
	struct gg_policy p;

	gg_get_policy(&p);
	if (!strcmp(mode, "monitor"))
		p.mode = GG_MODE_MONITOR;
	else if (!strcmp(mode, "observe"))
		p.mode = GG_MODE_OBSERVE;
	else if (strcmp(mode, "enforce"))
		return -EINVAL;
	return gg_set_policy(&p);
}

static int __init gg_init(void)
{
	int err;

	gg_instance = get_random_u64();
	gg_loaded_boot_ns = ktime_get_boot_fast_ns();
	err = gg_tables_init();
	if (err)
		return err;
	err = gg_initial_mode();
	if (err) {
		pr_err("gpugate: mode=%s: use enforce, monitor or observe\n", mode);
		goto out_tables;
	}
	err = gg_ring_init((size_t)ring_kib * 1024);
	if (err)
		goto out_tables;
	err = gg_chardev_init();
	if (err)
		goto out_ring;
	err = gg_hooks_init();
	if (err)
		goto out_chardev;
	pr_info("gpugate: loaded (%s, ring %llu KiB, mode %s)\n", GG_KMOD_VERSION,
		gg_ring_size() >> 10, mode);
	return 0;

out_chardev:
	gg_chardev_exit();
out_ring:
	gg_ring_exit();
out_tables:
	gg_tables_exit();
	return err;
}

static void __exit gg_exit(void)
{
	gg_hooks_exit();
	/*
	 * No call may still be in a wrapper or a stub of this module: wrappers
	 * count themselves; a call between a redirect and the wrapper's first
	 * instruction, or in a stub, is a task that has not switched
	 * voluntarily since, which synchronize_rcu_tasks waits for.
	 */
	synchronize_rcu_tasks();
	while (atomic_read(&gg_inflight))
		usleep_range(1000, 2000);
	synchronize_rcu_tasks();
	gg_chardev_exit();
	gg_ring_exit();
	rcu_barrier();
	gg_tables_exit();
	pr_info("gpugate: unloaded\n");
}

module_init(gg_init);
module_exit(gg_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("gpugate");
MODULE_DESCRIPTION("GPU control-plane gate: decides GPU driver commands on the driver's own copy");
MODULE_VERSION(GG_KMOD_VERSION);

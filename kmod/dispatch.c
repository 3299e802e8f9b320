// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate dispatch: the per-device table that routes a device's
 * accesses, and the slow paths taken when that table is not the
 * pass-through one.
 *
 * The pattern is KVM's I/O bus: readers srcu_dereference() an immutable
 * table (or, for a quick decision, rcu_dereference_sched() its rules);
 * a writer (open, live apply, close) publishes a new one, waits for an
 * SRCU grace period, closes the old one's mediator and frees the table
 * after an RCU grace period. Readers take no lock and never wait for a
 * writer; every reader copes with the table being swapped while the
 * device is open.
 *
 * Every way a VFIO user reaches the device's registers goes through here
 * or vfio-pci-core's own emulation: read/write on the device fd (all
 * regions, ROM and VGA included), mmap (refused on any page a rule
 * touches), VFIO_DEVICE_IOEVENTFD (refused while any BAR write is
 * mediated, since vfio-pci-core would write the device directly when the
 * eventfd fires), VFIO_DEVICE_SET_IRQS (refused while ro, deny or ignore
 * guards a byte of the MSI or MSI-X capability it programs) and
 * VFIO_DEVICE_FEATURE (low-power entry refused while PMCSR is guarded,
 * unknown features refused). Resets are not byte accesses: they stay
 * allowed, and mediators hear of them (vfm_reset_notify()).
 */
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "vfmediate_core.h"

static const struct vfm_rules vfm_no_rules;

const struct vfm_table vfm_passthrough_table = {
	.rules = &vfm_no_rules,
};

void vfm_table_init(struct vfm_device *vd)
{
	RCU_INIT_POINTER(vd->table, &vfm_passthrough_table);
	RCU_INIT_POINTER(vd->quick, &vfm_no_rules);
}

/*
 * Make @tbl (NULL: the pass-through table) the table of @vd and return
 * the one it replaces, for vfm_table_retire(). The caller holds
 * @vd->cfg_lock, which serializes the publishers (open, live apply,
 * close). Never waits: callers may hold vfm_config_lock.
 *
 * *@handover tells whether @tbl took over the running table's mediator
 * instance; from now on @tbl owns it.
 */
const struct vfm_table *vfm_table_replace(struct vfm_device *vd,
					  struct vfm_table *tbl, bool *handover)
{
	const struct vfm_table *new = tbl ?: &vfm_passthrough_table;
	const struct vfm_table *old;

	*handover = tbl && tbl->borrowed;
	if (tbl)
		tbl->borrowed = false;
	old = rcu_replace_pointer(vd->table, new,
				  lockdep_is_held(&vd->cfg_lock));
	/* @old's rules go with @old, after a grace period (retire). */
	rcu_assign_pointer(vd->quick, new->rules);
	return old;
}

/*
 * Release @old, replaced by vfm_table_replace(), once no reader can hold
 * it. Three kinds of reader, none of which takes a lock:
 *
 *  - the pass-through fast path (vfm_passthrough()) reads only the
 *    pointer, never the table: it runs vfio-pci-core code alone, so the
 *    static pass-through table needs no wait;
 *  - quick decisions (vfm_rw_quick()) read the rules (@vd->quick, which
 *    follows @vd->table) under rcu_read_lock_sched() and act after it
 *    without the table: @old holds its rules until its memory goes, after
 *    an RCU grace period (call_rcu() in vfm_table_release(); since v5.0 a
 *    grace period covers sched readers);
 *  - everything that may sleep or call the mediator (traps, mmap,
 *    ioctls, reset, show()) holds @vd->srcu: synchronize_srcu() before the
 *    mediator is closed.
 *
 * An access decided on @old just before the swap still completes as @old
 * said: it is ordered before the change, as if it had started earlier.
 * The caller must not hold a lock a reader may take, vfio-pci-core's
 * memory_lock included, nor vfm_config_lock.
 */
void vfm_table_retire(struct vfm_device *vd, const struct vfm_table *old,
		      bool handover)
{
	struct vfm_table *t = (struct vfm_table *)old;

	if (old == &vfm_passthrough_table)
		return;
	synchronize_srcu(&vd->srcu);
	if (handover)
		t->borrowed = true;	/* the new table owns the mediator */
	vfm_table_release(vd, old);
}

static void vfm_table_free_rcu(struct rcu_head *head)
{
	vfm_table_free(container_of(head, struct vfm_table, rcu));
}

/*
 * Close the mediator @tbl opened, unless it is borrowed, and drop its
 * module. @tbl is not, or no longer, reachable by SRCU readers. Its
 * memory goes after an RCU grace period: vfm_rw_quick() reads the filters
 * of a table under rcu_read_lock_sched() alone.
 */
void vfm_table_release(struct vfm_device *vd, const struct vfm_table *tbl)
{
	struct vfm_table *t = (struct vfm_table *)tbl;

	if (!tbl || tbl == &vfm_passthrough_table)
		return;
	if (tbl->mops && !tbl->borrowed) {
		if (tbl->mops->close)
			tbl->mops->close(vd, tbl->mpriv);
		module_put(tbl->mops->owner);
	}
	call_rcu(&t->rcu, vfm_table_free_rcu);
}

/* vfio-pci-core's handling of @count bytes at @off of region @index. */
static ssize_t vfm_core_rw(struct vfm_device *vd, unsigned int index,
			   char __user *buf, size_t count, u64 off,
			   bool iswrite)
{
	loff_t pos = VFIO_PCI_INDEX_TO_OFFSET(index) + off;

	if (iswrite)
		return vfio_pci_core_write(&vd->core.vdev, buf, count, &pos);
	return vfio_pci_core_read(&vd->core.vdev, buf, count, &pos);
}

/*
 * One piece of a trapped access, through a kernel buffer: the user's
 * bytes are copied once, before the handler sees them, and the handler's
 * once, after.
 */
static ssize_t vfm_handler_rw(struct vfm_device *vd,
			      const struct vfm_table *tbl, unsigned int index,
			      u8 *kbuf, char __user *buf, size_t count,
			      u64 off, bool iswrite)
{
	const struct vfm_mediator_ops *ops = tbl->mops;
	ssize_t n;

	if (iswrite) {
		if (copy_from_user(kbuf, buf, count))
			return -EFAULT;
		n = ops->write(vd, tbl->mpriv, index, kbuf, count, off);
	} else {
		n = ops->read(vd, tbl->mpriv, index, kbuf, count, off);
	}
	if (n > (ssize_t)count) {
		/* A mediator bug; do not let it move *ppos. */
		pr_warn_once("vfmediate: mediator %s returned %zd for %zu bytes\n",
			     ops->name, n, count);
		return -EIO;
	}
	if (!iswrite && n > 0 && copy_to_user(buf, kbuf, n))
		return -EFAULT;
	return n;
}

/* @count bytes at @off, VFM_HANDLER_MAX at a time, to the handler. */
static ssize_t vfm_handler_split(struct vfm_device *vd,
				 const struct vfm_table *tbl,
				 unsigned int index, char __user *buf,
				 size_t count, u64 off, bool iswrite)
{
	u8 small[16], *kbuf = small;
	size_t done = 0;
	ssize_t n = 0;

	if (count > sizeof(small)) {
		kbuf = kmalloc(min_t(size_t, count, VFM_HANDLER_MAX), GFP_KERNEL);
		if (!kbuf)
			return -ENOMEM;
	}
	while (done < count) {
		size_t len = min_t(size_t, count - done, VFM_HANDLER_MAX);

		n = vfm_handler_rw(vd, tbl, index, kbuf, buf + done, len,
				   off + done, iswrite);
		if (n <= 0)
			break;
		done += n;
		if (n < len)
			break;
	}
	if (kbuf != small)
		kfree(kbuf);
	return done ? done : n;
}

/*
 * @count bytes at @off trapped for the mediator: its handler takes them,
 * or vfio-pci-core does and the mediator's observe() hears of it. Outside
 * the BARs there is no kernel-buffer accessor for a handler to pass an
 * access on with, so there observe() is preferred where the mediator has
 * both.
 */
static ssize_t vfm_trap_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			   unsigned int index, char __user *buf, size_t count,
			   u64 off, bool iswrite)
{
	const struct vfm_mediator_ops *ops = tbl->mops;
	bool handler = iswrite ? !!ops->write : !!ops->read;
	ssize_t n;

	if (handler && (index <= VFIO_PCI_BAR5_REGION_INDEX || !ops->observe))
		return vfm_handler_split(vd, tbl, index, buf, count, off,
					 iswrite);
	n = vfm_core_rw(vd, index, buf, count, off, iswrite);
	ops->observe(vd, tbl->mpriv, index, off, count, iswrite, n);
	return n;
}

/* @count bytes at @off handled as @action says; @tbl only for traps. */
static ssize_t vfm_action_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			     u8 action, unsigned int index, char __user *buf,
			     size_t count, u64 off, bool iswrite)
{
	switch (action) {
	case VFM_RO:
		if (iswrite)
			return -EPERM;
		fallthrough;
	case VFM_PASS:
		return vfm_core_rw(vd, index, buf, count, off, iswrite);
	case VFM_TRAP:
		return vfm_trap_rw(vd, tbl, index, buf, count, off, iswrite);
	case VFM_IGNORE:
		if (!iswrite && clear_user(buf, count))
			return -EFAULT;
		return count;
	default:
		return -EACCES;
	}
}

/* An access that @iv holds whole: count its hit, then handle it. */
static ssize_t vfm_interval_rw(struct vfm_device *vd,
			       const struct vfm_table *tbl,
			       const struct vfm_interval *iv, unsigned int index,
			       char __user *buf, size_t count, u64 off,
			       bool iswrite)
{
	vfm_count(iv, off, count, iswrite);
	return vfm_action_rw(vd, tbl, iv->action, index, buf, count, off,
			     iswrite);
}

/*
 * A rule split by a narrower one inside it has several intervals sharing
 * its counter: count it once per access.
 */
static bool vfm_counted(const struct vfm_interval *first,
			const struct vfm_interval *iv)
{
	for (; first < iv; first++)
		if (first->ctr == iv->ctr)
			return true;
	return false;
}

/*
 * Before touching anything, count the hit of every rule the access
 * [off, end) meets and refuse it whole if any of them refuses: a write
 * that is partly read-only changes no byte.
 */
static int vfm_check(const struct vfm_region_table *rt,
		     const struct vfm_interval *iv, u64 off, u64 end,
		     bool iswrite)
{
	const struct vfm_interval *last = rt->iv[iswrite] + rt->nr[iswrite];
	const struct vfm_interval *first = iv;
	int ret = 0;

	for (; iv < last && iv->start < end; iv++) {
		u64 lo = max(off, iv->start), hi = min(end, iv->end);

		if (!vfm_counted(first, iv))
			vfm_count(iv, lo, hi - lo, iswrite);
		if (iv->action == VFM_DENY)
			ret = -EACCES;
		else if (iv->action == VFM_RO && iswrite && !ret)
			ret = -EPERM;
	}
	return ret;
}

/*
 * An access that meets several intervals, or an interval and a gap, is
 * split at their boundaries so that each byte is handled by its own rule;
 * the gaps go to vfio-pci-core.
 */
static ssize_t vfm_split_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			    unsigned int index, const struct vfm_interval *iv,
			    char __user *buf, size_t count, u64 off,
			    bool iswrite)
{
	const struct vfm_region_table *rt = &tbl->rules->region[index];
	const struct vfm_interval *last = rt->iv[iswrite] + rt->nr[iswrite];
	u64 pos = off, end = off + count;
	ssize_t n, done = 0;

	while (pos < end) {
		u64 stop = end;
		u8 action = VFM_PASS;

		if (iv < last && iv->start <= pos) {
			stop = min(end, iv->end);
			action = iv->action;
			iv++;
		} else if (iv < last && iv->start < end) {
			stop = iv->start;
		}
		n = vfm_action_rw(vd, tbl, action, index, buf + done,
				  stop - pos, pos, iswrite);
		if (n <= 0)
			return done ? done : n;
		done += n;
		pos += n;
		if (pos < stop)		/* short: stop here, as core does */
			break;
	}
	return done;
}

/*
 * Route an access that meets the table's intervals. The usual case, one
 * interval holding the whole access, is handled without splitting.
 */
static ssize_t vfm_table_rw(struct vfm_device *vd, const struct vfm_table *tbl,
			    char __user *buf, size_t count, loff_t *ppos,
			    bool iswrite)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	u64 off = *ppos & VFIO_PCI_OFFSET_MASK, end = off + count;
	const struct vfm_region_table *rt = &tbl->rules->region[index];
	const struct vfm_interval *iv;
	ssize_t ret;

	iv = vfm_table_find(rt, iswrite, off);
	if (!iv || iv->start >= end) {
		ret = vfm_core_rw(vd, index, buf, count, off, iswrite);
	} else if (iv->start <= off && end <= iv->end) {
		ret = vfm_interval_rw(vd, tbl, iv, index, buf, count, off,
				      iswrite);
	} else {
		ret = vfm_check(rt, iv, off, end, iswrite);
		if (ret)
			return ret;
		ret = vfm_split_rw(vd, tbl, index, iv, buf, count, off,
				   iswrite);
	}
	if (ret > 0)
		*ppos += ret;
	return ret;
}

/*
 * An access that needs the table while it is handled: a trap, whose
 * handler may sleep, or an access over several intervals.
 */
static noinline ssize_t vfm_rw_mediated(struct vfm_device *vd,
					char __user *buf, size_t count,
					loff_t *ppos, bool iswrite)
{
	const struct vfm_table *tbl;
	ssize_t ret;
	int idx;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	ret = vfm_table_rw(vd, tbl, buf, count, ppos, iswrite);
	srcu_read_unlock(&vd->srcu, idx);
	return ret;
}

/* What vfio-pci-core is not asked for: a refusal, or an ignored access. */
static noinline ssize_t vfm_rw_withheld(struct vfm_device *vd,
					char __user *buf, size_t count,
					loff_t *ppos, bool iswrite, u8 action)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	u64 off = *ppos & VFIO_PCI_OFFSET_MASK;
	ssize_t ret;

	ret = vfm_action_rw(vd, NULL, action, index, buf, count, off, iswrite);
	if (ret > 0)
		*ppos += ret;
	return ret;
}

/*
 * The interval of @rt that [off, end) meets first in that direction, or
 * NULL. The caller found [off, end) within the span of the direction's
 * intervals. @small: there are at most VFM_LINEAR_MAX of them, and a
 * linear search needs no bound (the last interval ends where the span
 * does). Else the filter's bitmap mostly tells without a search that the
 * access meets none.
 */
static __always_inline const struct vfm_interval *
vfm_quick_find(const struct vfm_region_table *rt, u64 off, u64 end,
	       bool iswrite, bool small)
{
	const struct vfm_interval *iv;

	if (small) {
		iv = rt->iv[iswrite];
		while (iv->end <= off)
			iv++;
	} else {
		if (!vfm_filter_hit(&rt->filter[iswrite], off, end))
			return NULL;
		iv = vfm_table_find(rt, iswrite, off);
	}
	return iv && iv->start < end ? iv : NULL;
}

/* Carry out a decided access: pass, read-only, deny or ignore. */
static __always_inline ssize_t vfm_rw_decided(struct vfm_device *vd,
					      char __user *buf, size_t count,
					      loff_t *ppos, bool iswrite,
					      u8 action)
{
	/* What passes goes to vfio-pci-core, which moves *@ppos itself. */
	if (action == VFM_PASS || (action == VFM_RO && !iswrite)) {
		if (iswrite)
			return vfio_pci_core_write(&vd->core.vdev, buf, count,
						   ppos);
		return vfio_pci_core_read(&vd->core.vdev, buf, count, ppos);
	}
	return vfm_rw_withheld(vd, buf, count, ppos, iswrite, action);
}

/*
 * The quick decision's ways out for an access of @iv to report, entered
 * within its rcu_read_lock_sched() section: vfm_rw_report() counts and
 * reports it as any other path does (vfm_count()); vfm_*_flush(), for an
 * access already counted as suppressed, has the suppressed counts summed
 * up. Out of line, so that the decision itself makes no call but tail
 * calls: it then saves fewer registers, which under emulation is much of
 * its cost.
 */
static __always_inline ssize_t vfm_rw_out(struct vfm_device *vd,
					  char __user *buf, size_t count,
					  loff_t *ppos, bool iswrite,
					  const struct vfm_interval *iv,
					  bool flush)
	__releases(RCU_SCHED)
{
	u8 action = iv->action;

	if (flush)
		vfm_ev_flush_later(iv->ctr);
	else
		vfm_count(iv, *ppos & VFIO_PCI_OFFSET_MASK, count, iswrite);
	rcu_read_unlock_sched();
	return vfm_rw_decided(vd, buf, count, ppos, iswrite, action);
}

static noinline ssize_t vfm_rw_report(struct vfm_device *vd,
				      char __user *buf, size_t count,
				      loff_t *ppos, bool iswrite,
				      const struct vfm_interval *iv)
	__releases(RCU_SCHED)
{
	return vfm_rw_out(vd, buf, count, ppos, iswrite, iv, false);
}

/*
 * One for each direction: passed @iswrite as well, the call would take
 * more arguments than registers and would not be a tail call.
 */
static noinline ssize_t vfm_read_flush(struct vfm_device *vd,
				       char __user *buf, size_t count,
				       loff_t *ppos,
				       const struct vfm_interval *iv)
	__releases(RCU_SCHED)
{
	return vfm_rw_out(vd, buf, count, ppos, false, iv, true);
}

static noinline ssize_t vfm_write_flush(struct vfm_device *vd,
					char __user *buf, size_t count,
					loff_t *ppos,
					const struct vfm_interval *iv)
	__releases(RCU_SCHED)
{
	return vfm_rw_out(vd, buf, count, ppos, true, iv, true);
}

/*
 * Decide and carry out an access at @off of region table @rt, within the
 * rcu_read_lock_sched() section it was read in, which this ends. Counts
 * the hit of the interval that holds the access whole; one that meets a
 * trap or several intervals is left to vfm_rw_mediated(). @small as for
 * vfm_quick_find().
 */
static __always_inline ssize_t
vfm_rw_decide(struct vfm_device *vd, char __user *buf, size_t count,
	      loff_t *ppos, const struct vfm_region_table *rt, u64 off,
	      bool iswrite, bool small)
	__releases(RCU_SCHED)
{
	u64 end = off + count;
	const struct vfm_interval *iv;
	unsigned long state;
	bool refused;
	u8 action;

	iv = vfm_quick_find(rt, off, end, iswrite, small);
	if (!iv)
		goto pass;
	action = iv->action;
	if (iv->start > off || end > iv->end || action == VFM_TRAP) {
		rcu_read_unlock_sched();
		return vfm_rw_mediated(vd, buf, count, ppos, iswrite);
	}
	if (!iv->pcpu)
		goto decided;
	refused = vfm_refuses(action, iswrite);
	if (!refused && !iv->audit) {
		vfm_count_hit(iv->pcpu, count, false);
		goto decided;
	}
	/* As vfm_count() does it, but what needs a call goes out of line. */
	state = READ_ONCE(vfm_nl_monitor_state);
	if (!vfm_nl_state_valid(state) ||
	    ((state & VFM_NL_ON) && !vfm_ev_busy(iv->ctr)))
		return vfm_rw_report(vd, buf, count, ppos, iswrite, iv);
	vfm_count_hit(iv->pcpu, count, refused);
	if ((state & VFM_NL_ON) &&
	    vfm_ev_suppressed(iv->ctr, vfm_ev_kind(action, iswrite)))
		return iswrite ? vfm_write_flush(vd, buf, count, ppos, iv) :
				 vfm_read_flush(vd, buf, count, ppos, iv);
decided:
	rcu_read_unlock_sched();
	return vfm_rw_decided(vd, buf, count, ppos, iswrite, action);
pass:
	rcu_read_unlock_sched();
	return vfm_rw_decided(vd, buf, count, ppos, iswrite, VFM_PASS);
}

/* The general decision, for a direction with more than a few intervals. */
static noinline ssize_t
vfm_read_searched(struct vfm_device *vd, char __user *buf, size_t count,
		  loff_t *ppos, const struct vfm_region_table *rt)
	__releases(RCU_SCHED)
{
	return vfm_rw_decide(vd, buf, count, ppos, rt,
			     *ppos & VFIO_PCI_OFFSET_MASK, false, false);
}

static noinline ssize_t
vfm_write_searched(struct vfm_device *vd, char __user *buf, size_t count,
		   loff_t *ppos, const struct vfm_region_table *rt)
	__releases(RCU_SCHED)
{
	return vfm_rw_decide(vd, buf, count, ppos, rt,
			     *ppos & VFIO_PCI_OFFSET_MASK, true, false);
}

/*
 * A device that mediates something. Handlers may sleep, so a trapped
 * access holds the table under SRCU; every other access is decided under
 * rcu_read_lock_sched(), a preempt_disable(), which costs much less, and
 * performed after it: pass, read-only, deny and ignore need nothing of
 * the table once decided.
 *
 * As with vfm_passthrough(), an access decided that way may race with the
 * publication of a new table; it is then ordered before the change, as if
 * it had started a moment earlier.
 *
 * Made for each direction. An access outside the span of the region's
 * intervals that way passes at once; among at most VFM_LINEAR_MAX of them
 * it is decided by a short linear search; among more, by the general
 * form (vfm_*_searched()), entered by a tail call within the same
 * section. Whatever follows a decision is a tail call too, and what needs
 * a call goes out of line (vfm_rw_report()): under emulation, where each
 * return costs a lookup and each saved register a memory access, that is
 * most of what a decision costs.
 */
static __always_inline ssize_t vfm_rw_quick(struct vfm_device *vd,
					    char __user *buf, size_t count,
					    loff_t *ppos, bool iswrite)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	u64 off = *ppos & VFIO_PCI_OFFSET_MASK, end = off + count;
	const struct vfm_region_table *rt;
	const struct vfm_filter *f;

	if (index >= VFM_NUM_REGIONS || !count)
		return vfm_rw_decided(vd, buf, count, ppos, iswrite, VFM_PASS);
	rcu_read_lock_sched();
	rt = &rcu_dereference_sched(vd->quick)->region[index];
	f = &rt->filter[iswrite];
	if (end <= f->lo || off >= f->hi) {
		rcu_read_unlock_sched();
		return vfm_rw_decided(vd, buf, count, ppos, iswrite, VFM_PASS);
	}
	if (rt->nr[iswrite] > VFM_LINEAR_MAX)
		return iswrite ? vfm_write_searched(vd, buf, count, ppos, rt) :
				 vfm_read_searched(vd, buf, count, ppos, rt);
	return vfm_rw_decide(vd, buf, count, ppos, rt, off, iswrite, true);
}

noinline ssize_t vfm_read_slow(struct vfm_device *vd, char __user *buf,
			       size_t count, loff_t *ppos)
{
	BUILD_BUG_ON(VFM_LINEAR_MAX > VFM_FILTER_MIN);
	return vfm_rw_quick(vd, buf, count, ppos, false);
}

noinline ssize_t vfm_write_slow(struct vfm_device *vd, char __user *buf,
				size_t count, loff_t *ppos)
{
	return vfm_rw_quick(vd, buf, count, ppos, true);
}

/* May [start, start + len) of a region be mmap'ed under @rt? */
bool vfm_mmap_allowed(const struct vfm_region_table *rt, u64 start, u64 len)
{
	u32 i;

	if (!rt->ruled)
		return true;
	for (i = 0; i < rt->nr_areas; i++) {
		if (start >= rt->areas[i].offset &&
		    start + len <= rt->areas[i].offset + rt->areas[i].size)
			return true;
	}
	return false;
}

/* An mmap() must lie inside one area the table left mmap-able. */
static int vfm_table_mmap(struct vfm_device *vd, const struct vfm_table *tbl,
			  struct vm_area_struct *vma)
{
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	u64 start, len;

	start = ((u64)vma->vm_pgoff << PAGE_SHIFT) & VFIO_PCI_OFFSET_MASK;
	len = vma->vm_end - vma->vm_start;
	if (index < VFM_NUM_REGIONS &&
	    !vfm_mmap_allowed(&tbl->rules->region[index], start, len)) {
		dev_dbg(&vd->core.pdev->dev, "mmap of trapped range %#llx+%#llx refused\n",
			start, len);
		return -EINVAL;
	}
	if (tbl->mops && tbl->mops->mmap)
		return tbl->mops->mmap(vd, tbl->mpriv, vma);
	return vfio_pci_core_mmap(&vd->core.vdev, vma);
}

noinline int vfm_mmap_slow(struct vfm_device *vd, struct vm_area_struct *vma)
{
	const struct vfm_table *tbl;
	int idx, ret;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	ret = vfm_table_mmap(vd, tbl, vma);
	srcu_read_unlock(&vd->srcu, idx);

	return ret;
}

static int vfm_add_sparse_cap(const struct vfm_region_table *rt,
			      struct vfio_info_cap *caps)
{
	struct vfio_region_info_cap_sparse_mmap *sparse;
	size_t size = struct_size(sparse, areas, rt->nr_areas);
	int ret;

	sparse = kzalloc(size, GFP_KERNEL);
	if (!sparse)
		return -ENOMEM;
	sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sparse->header.version = 1;
	sparse->nr_areas = rt->nr_areas;
	memcpy(sparse->areas, rt->areas, rt->nr_areas * sizeof(*rt->areas));
	ret = vfio_info_add_capability(caps, &sparse->header, size);
	kfree(sparse);
	return ret;
}

/* Copy @info and its capability chain out, as vfio-pci-core does. */
static int vfm_region_info_put(struct vfio_region_info __user *arg,
			       struct vfio_region_info *info,
			       struct vfio_info_cap *caps)
{
	size_t minsz = offsetofend(struct vfio_region_info, offset);

	if (caps->size) {
		info->flags |= VFIO_REGION_INFO_FLAG_CAPS;
		if (info->argsz < sizeof(*info) + caps->size) {
			info->argsz = sizeof(*info) + caps->size;
			info->cap_offset = 0;
		} else {
			vfio_info_cap_shift(caps, sizeof(*info));
			if (copy_to_user(arg + 1, caps->buf, caps->size))
				return -EFAULT;
			info->cap_offset = sizeof(*info);
		}
	}
	return copy_to_user(arg, info, minsz) ? -EFAULT : 0;
}

/*
 * REGION_INFO of a BAR that rules touch: mmap-able only where the table
 * left areas, advertised as sparse-mmap areas. Returns 1 when the region
 * is none of ours and vfio-pci-core should answer. vfio-pci-core then
 * reads the index again: a racing thread can make it describe a ruled
 * BAR as vfio-pci would. That misleads only the racer, since mmap() is
 * checked against the table on the kernel's own copy of its arguments.
 */
static int vfm_table_region_info(struct vfm_device *vd,
				 const struct vfm_table *tbl,
				 struct vfio_region_info __user *arg)
{
	size_t minsz = offsetofend(struct vfio_region_info, offset);
	struct vfio_info_cap caps = { .buf = NULL, .size = 0 };
	const struct vfm_region_table *rt;
	struct vfio_region_info info;
	int ret;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz || info.index > VFIO_PCI_BAR5_REGION_INDEX)
		return 1;
	rt = &tbl->rules->region[info.index];
	if (!rt->ruled && !(tbl->mops && tbl->mops->region_info))
		return 1;

	ret = vfm_default_region_info(vd, &info, &caps);
	if (!ret && rt->ruled) {
		if (!rt->nr_areas)
			info.flags &= ~VFIO_REGION_INFO_FLAG_MMAP;
		else if (info.flags & VFIO_REGION_INFO_FLAG_MMAP)
			ret = vfm_add_sparse_cap(rt, &caps);
	}
	if (!ret && tbl->mops && tbl->mops->region_info)
		ret = tbl->mops->region_info(vd, tbl->mpriv, &info, &caps);
	if (!ret)
		ret = vfm_region_info_put(arg, &info, &caps);
	kfree(caps.buf);
	return ret;
}

/*
 * vfio-pci-core reads the arguments of an ioctl from user memory itself,
 * after any check made here: a second thread can change them in between.
 * So no decision below looks at the user's arguments; each depends on the
 * table alone.
 */

/* Does a rule keep the VFIO user from writing any byte of [start, end)? */
bool vfm_write_guarded(const struct vfm_region_table *rt, u64 start, u64 end)
{
	const struct vfm_interval *iv = vfm_table_find(rt, true, start);
	const struct vfm_interval *last = rt->iv[1] + rt->nr[1];

	for (; iv && iv < last && iv->start < end; iv++)
		if (iv->action == VFM_RO || iv->action == VFM_DENY ||
		    iv->action == VFM_IGNORE)
			return true;
	return false;
}

/*
 * An ioeventfd makes vfio-pci-core write a BAR or the VGA region itself
 * when the eventfd fires, past the table. Where any write there is
 * anything but a plain pass (an interval exists), refuse
 * VFIO_DEVICE_IOEVENTFD whatever it names.
 */
static bool vfm_bar_writes_mediated(const struct vfm_table *tbl)
{
	unsigned int i;

	for (i = VFIO_PCI_BAR0_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX; i++)
		if (tbl->rules->region[i].nr[1])
			return true;
	return tbl->rules->region[VFIO_PCI_VGA_REGION_INDEX].nr[1];
}

/* Length of the MSI capability at @cap, as its Message Control tells. */
static u64 vfm_msi_cap_len(struct pci_dev *pdev, u8 cap)
{
	u16 flags;
	u64 len;

	if (pci_read_config_word(pdev, cap + PCI_MSI_FLAGS, &flags))
		return 24;	/* the largest: 64-bit, per-vector masking */
	len = flags & PCI_MSI_FLAGS_64BIT ? 14 : 10;
	if (flags & PCI_MSI_FLAGS_MASKBIT)
		len += 10;
	return len;
}

/*
 * Enabling MSI or MSI-X makes vfio-pci-core program the capability
 * itself. Where ro, deny or ignore guards a byte of either capability,
 * every VFIO_DEVICE_SET_IRQS is refused: which interrupt a call sets up
 * is in user memory, read again by vfio-pci-core. Counting and trapping
 * rules do not refuse it: they observe the user's own accesses, which
 * this is not.
 */
static bool vfm_irqs_guarded(struct vfm_device *vd,
			     const struct vfm_table *tbl)
{
	const struct vfm_region_table *rt =
		&tbl->rules->region[VFIO_PCI_CONFIG_REGION_INDEX];
	struct pci_dev *pdev = vd->core.pdev;

	if (!rt->nr[1])
		return false;
	if (pdev->msi_cap &&
	    vfm_write_guarded(rt, pdev->msi_cap,
			      pdev->msi_cap + vfm_msi_cap_len(pdev, pdev->msi_cap)))
		return true;
	return pdev->msix_cap &&
	       vfm_write_guarded(rt, pdev->msix_cap,
				 pdev->msix_cap + PCI_CAP_MSIX_SIZEOF);
}

/* Is PMCSR, which low-power entry changes, guarded against writes? */
static bool vfm_pm_guarded(struct vfm_device *vd, const struct vfm_table *tbl)
{
	const struct vfm_region_table *rt =
		&tbl->rules->region[VFIO_PCI_CONFIG_REGION_INDEX];
	u8 pm = vd->core.pdev->pm_cap;

	return pm && vfm_write_guarded(rt, pm + PCI_PM_CTRL, pm + PCI_PM_CTRL + 2);
}

noinline long vfm_ioctl_slow(struct vfm_device *vd, unsigned int cmd,
			     unsigned long arg)
{
	const struct vfm_table *tbl;
	int idx, ret = 1;

	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	if (cmd == VFIO_DEVICE_GET_REGION_INFO) {
		ret = vfm_table_region_info(vd, tbl, (void __user *)arg);
	} else if (cmd == VFIO_DEVICE_IOEVENTFD && vfm_bar_writes_mediated(tbl)) {
		dev_dbg(&vd->core.pdev->dev, "ioeventfd refused: BAR writes are mediated\n");
		ret = -EPERM;
	} else if (cmd == VFIO_DEVICE_SET_IRQS && vfm_irqs_guarded(vd, tbl)) {
		dev_dbg(&vd->core.pdev->dev, "interrupt setup refused: MSI/MSI-X guarded\n");
		ret = -EPERM;
	}
	srcu_read_unlock(&vd->srcu, idx);

	if (ret <= 0)
		return ret;
	return vfm_core_ioctl(vd, cmd, arg);
}

/*
 * The function was reset, by vfio-pci-core or the PCI core; possibly with
 * vfio-pci-core's memory_lock held for writing, which no table writer
 * waits for.
 */
void vfm_reset_notify(struct vfm_device *vd)
{
	const struct vfm_table *tbl;
	int idx;

	atomic64_inc(&vd->resets);
	idx = srcu_read_lock(&vd->srcu);
	tbl = srcu_dereference(vd->table, &vd->srcu);
	if (tbl->mops && tbl->mops->reset)
		tbl->mops->reset(vd, tbl->mpriv);
	srcu_read_unlock(&vd->srcu, idx);
}

/*
 * VFIO_DEVICE_FEATURE: @flags is the kernel's copy. Forward only the
 * features vfio-pci-core implements on every kernel we build for; entering
 * a low-power state writes PMCSR, so it is refused where a rule guards it.
 */
int vfm_device_feature(struct vfio_device *core_vdev, u32 flags,
		       void __user *arg, size_t argsz)
{
	struct vfm_device *vd = to_vfm(core_vdev);
	const struct vfm_table *tbl;
	bool guarded;
	int idx;

	switch (flags & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
	case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP:
		idx = srcu_read_lock(&vd->srcu);
		tbl = srcu_dereference(vd->table, &vd->srcu);
		guarded = vfm_pm_guarded(vd, tbl);
		srcu_read_unlock(&vd->srcu, idx);
		if (guarded)
			return -EPERM;
		fallthrough;
	case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
	case VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:
		return vfio_pci_core_ioctl_feature(core_vdev, flags, arg, argsz);
	default:
		return -ENOTTY;
	}
}

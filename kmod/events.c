// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate events: what the netlink "monitor" group reports.
 *
 * Every event goes through one queue, drained in order by one work item,
 * so that a listener sees the accesses to a device between its "opened"
 * and its "closed". Lifecycle events (bind, open, mediator, configuration)
 * are allocated and queued by the task making the change.
 *
 * Access events come from the access path, in any context (under
 * rcu_read_lock_sched() too, PREEMPT_RT included), so they allocate
 * nothing and take no lock. Each rule's counter holds one record of an
 * access: the access that finds it free, within the rule's budget of
 * VFM_EV_BURST records per VFM_EV_WINDOW, fills it and queues the counter;
 * the worker sends it and frees it. Every other access is counted as
 * suppressed. The next record of the rule carries that count, or, if none
 * comes, a summary event once the window is over. So a VFIO user
 * hammering an audited register reaches a listener with at most
 * VFM_EV_BURST + 1 events per rule and window, and every access it made
 * while someone listened is accounted for: by an event of its own or in
 * a SUPPRESSED count. Nothing reaches the kernel log (R3).
 */
#include <linux/jiffies.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "vfmediate_core.h"

/* Lifecycle events waiting; more are dropped (an open/close loop). */
#define VFM_EV_MAX_QUEUED	1024

struct vfm_event {
	struct vfm_ev_item item;
	u32 type;
	int err;
	u64 generation;
	char dev[VFM_DEV_NAME_LEN];
	char mediator[VFM_NAME_LEN];
	char error[VFM_ERR_LEN];
};

static LLIST_HEAD(vfm_ev_queue);	/* of struct vfm_ev_item */
static LLIST_HEAD(vfm_flush_list);	/* of vfm_counter.flush_node */
static atomic_t vfm_ev_queued = ATOMIC_INIT(0);	/* lifecycle events */

static void vfm_ev_work_fn(struct work_struct *work);
static void vfm_flush_work_fn(struct work_struct *work);
static DECLARE_WORK(vfm_ev_work, vfm_ev_work_fn);
static DECLARE_DELAYED_WORK(vfm_flush_work, vfm_flush_work_fn);

void vfm_events_counter_init(struct vfm_counter *c)
{
	c->ev_item.counter = true;
	c->ev_window = jiffies - VFM_EV_WINDOW;
}

static void vfm_ev_queue_item(struct vfm_ev_item *item)
{
	llist_add(&item->node, &vfm_ev_queue);
	queue_work(system_wq, &vfm_ev_work);
}

/* Queue @c for the worker, once; the queue holds a reference. */
static void vfm_ev_enqueue(struct vfm_counter *c)
{
	if (test_and_set_bit(VFM_CTR_QUEUED, &c->ev_flags))
		return;
	vfm_counter_get(c);
	vfm_ev_queue_item(&c->ev_item);
}

/*
 * Have the suppressed accesses of @c summed up once the window is over,
 * unless that is pending already (vfm_ev_suppress() tests first).
 */
void vfm_ev_flush_later(struct vfm_counter *c)
{
	if (test_and_set_bit(VFM_CTR_FLUSH, &c->ev_flags))
		return;
	vfm_counter_get(c);
	llist_add(&c->flush_node, &vfm_flush_list);
	schedule_delayed_work(&vfm_flush_work, VFM_EV_WINDOW);
}

/*
 * May @c take another record in its window? Racing accesses may each
 * start a new window; that lets a few more records through, never an
 * unbounded number.
 */
static bool vfm_ev_allow(struct vfm_counter *c)
{
	unsigned long now = jiffies, start = READ_ONCE(c->ev_window);

	if (time_after_eq(now, start + VFM_EV_WINDOW) &&
	    cmpxchg(&c->ev_window, start, now) == start)
		atomic_set(&c->ev_sent, 0);
	return atomic_inc_return(&c->ev_sent) <= VFM_EV_BURST;
}

/*
 * Report an access that @c's rule audits or refuses, while someone
 * listens, unless vfm_event_access() found its record taken or its budget
 * spent; from the access path, in any context. The record is the
 * accessing task's to fill once it holds VFM_CTR_BUSY; VFM_CTR_READY
 * hands it to the worker.
 */
void vfm_event_record(struct vfm_counter *c, u8 action, u64 off, u32 size,
		      bool iswrite)
{
	u8 kind = vfm_ev_kind(action, iswrite);
	struct vfm_access_rec *rec = &c->rec;

	if (test_and_set_bit_lock(VFM_CTR_BUSY, &c->ev_flags)) {
		vfm_ev_suppress(c, kind);
		return;
	}
	if (!vfm_ev_allow(c)) {
		clear_bit_unlock(VFM_CTR_BUSY, &c->ev_flags);
		vfm_ev_suppress(c, kind);
		return;
	}
	rec->off = off;
	rec->size = size;
	rec->kind = kind;
	rec->action = action;
	rec->write = iswrite;
	rec->pid = task_tgid_nr(current);
	/* Not get_task_comm(): its task_lock() may sleep on PREEMPT_RT. */
	memcpy(rec->comm, current->comm, sizeof(rec->comm));
	rec->comm[sizeof(rec->comm) - 1] = '\0';
	/* The record before READY: pairs with vfm_ev_counter()'s smp_rmb(). */
	smp_mb__before_atomic();
	set_bit(VFM_CTR_READY, &c->ev_flags);
	vfm_ev_enqueue(c);
}

/*
 * Send @c's record, if filled, then free it. QUEUED is cleared first: an
 * access that fills the record after the test below queues @c again.
 */
static void vfm_ev_counter(struct vfm_counter *c)
{
	struct vfm_access_rec rec;
	int kind;

	clear_bit(VFM_CTR_QUEUED, &c->ev_flags);
	/* QUEUED clear before READY is read: see vfm_ev_enqueue()'s test. */
	smp_mb__after_atomic();
	if (test_bit(VFM_CTR_READY, &c->ev_flags)) {
		/* READY before the record: pairs with vfm_event_record(). */
		smp_rmb();
		rec = c->rec;
		clear_bit(VFM_CTR_READY, &c->ev_flags);
		clear_bit_unlock(VFM_CTR_BUSY, &c->ev_flags);
		vfm_nl_access_event(c, &rec, rec.kind,
				    atomic64_xchg(&c->suppressed[rec.kind], 0));
	}
	if (test_and_clear_bit(VFM_CTR_SUMMARY, &c->ev_flags)) {
		for (kind = 0; kind < VFM_EV_KINDS; kind++) {
			u64 n = atomic64_xchg(&c->suppressed[kind], 0);

			if (n)
				vfm_nl_access_event(c, NULL, kind, n);
		}
	}
}

static void vfm_ev_work_fn(struct work_struct *work)
{
	struct llist_node *list = llist_del_all(&vfm_ev_queue);
	struct vfm_ev_item *item, *next;

	/* llist_add() pushes at the head: oldest first again. */
	list = llist_reverse_order(list);
	llist_for_each_entry_safe(item, next, list, node) {
		if (item->counter) {
			struct vfm_counter *c =
				container_of(item, struct vfm_counter, ev_item);

			vfm_ev_counter(c);
			vfm_counter_put(c);
		} else {
			struct vfm_event *ev =
				container_of(item, struct vfm_event, item);

			atomic_dec(&vfm_ev_queued);
			vfm_nl_event(ev->type, ev->dev, ev->mediator,
				     ev->generation, ev->err, ev->error);
			kfree(ev);
		}
	}
}

/* Counters with suppressed accesses: their summary goes through the queue. */
static void vfm_flush_work_fn(struct work_struct *work)
{
	struct llist_node *list = llist_del_all(&vfm_flush_list);
	struct vfm_counter *c, *next;

	llist_for_each_entry_safe(c, next, list, flush_node) {
		clear_bit(VFM_CTR_FLUSH, &c->ev_flags);
		set_bit(VFM_CTR_SUMMARY, &c->ev_flags);
		vfm_ev_enqueue(c);
		vfm_counter_put(c);
	}
}

/**
 * vfm_event_post() - queue a lifecycle event for the monitor group
 * @type: VFMEDIATE_EVENT_*
 * @dev: the function's address
 * @mediator: the mediator concerned, or NULL
 * @generation: the table's generation, or 0
 * @err: a negative errno, or 0
 * @error: what went wrong, or NULL
 *
 * Process context only. Nothing is queued while no one listens, nor
 * beyond VFM_EV_MAX_QUEUED events waiting.
 */
void vfm_event_post(u32 type, const char *dev, const char *mediator,
		    u64 generation, int err, const char *error)
{
	struct vfm_event *ev;

	might_sleep();
	if (!vfm_nl_listening())
		return;
	if (atomic_inc_return(&vfm_ev_queued) > VFM_EV_MAX_QUEUED)
		goto drop;
	ev = kzalloc(sizeof(*ev), GFP_KERNEL);
	if (!ev)
		goto drop;
	ev->type = type;
	ev->err = err;
	ev->generation = generation;
	strscpy(ev->dev, dev, sizeof(ev->dev));
	if (mediator)
		strscpy(ev->mediator, mediator, sizeof(ev->mediator));
	if (error)
		strscpy(ev->error, error, sizeof(ev->error));
	vfm_ev_queue_item(&ev->item);
	return;
drop:
	atomic_dec(&vfm_ev_queued);
}

/*
 * Send what is queued and summarize what was suppressed, now; at module
 * exit, once no device is bound and no table is left (so no access can
 * queue anything any more).
 */
void vfm_events_exit(void)
{
	cancel_delayed_work_sync(&vfm_flush_work);
	vfm_flush_work_fn(NULL);
	flush_work(&vfm_ev_work);
}

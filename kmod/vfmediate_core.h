/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmediate core: per-device state, the staged configuration and the
 * compiled dispatch table.
 *
 * Locking, outermost first:
 *
 *  vfm_device.cfg_lock (per device)
 *	Serializes the publishers of vfm_device.table: the device's open,
 *	close and live apply (policy.c), each held across building the
 *	table, the mediator's open() and close(), and waiting for readers.
 *  vfm_config_lock (global mutex, policy.c)
 *	The staged configuration: everything under configfs devices/, the
 *	mediator attached to each, the rules a device compiled last, and the
 *	link between a configuration and the bound device of the same name.
 *	Taken by configfs callbacks, by probe/remove and by open, close and
 *	apply to compile a table. Never held across request_module() (the
 *	mediator's init takes vfm_registry_lock, and modprobe may wait on
 *	us), a mediator's hooks, or a wait for readers.
 *  vfm_device.maps_lock (per device, maps.c)
 *	The user's current mmaps; taken under vfm_config_lock to check a new
 *	table against them and publish it, by mmap() and by faults of its
 *	mappings (under the mm's mmap_lock or the vma's lock) to check and
 *	record a mapping or serve a fault, and by a revocation's zap (after
 *	the mm's mmap_lock, as vfio-pci-core's own zap takes it).
 *  vfm_registry_lock (global mutex, registry.c)
 *	The list of registered mediators; never held with the others.
 *
 * The hot path takes none of them, and a table may be replaced while the
 * device is open (live apply), so every reader copes with a swap at any
 * moment. Three kinds of reader:
 *  - the pass-through fast path (vfm_passthrough()) compares the pointer
 *    and runs vfio-pci-core code, never reading a table;
 *  - an access decided from the table's rules alone (pass, read-only,
 *    deny, ignore) reads them (vfm_device.quick) under
 *    rcu_read_lock_sched() and acts after it;
 *  - one handled by a mediator, whose handler may sleep, and the other
 *    slow paths (mmap, ioctls, reset, show()) hold the device's SRCU
 *    read lock.
 * An access decided on a table just replaced completes as that table
 * said: it is ordered before the change. A replaced table's mediator is
 * closed after synchronize_srcu() and the table freed after an RCU grace
 * period (vfm_table_retire()). Nobody waits for readers with a lock a
 * reader may need (vfio-pci-core's memory_lock included).
 */
#ifndef _VFMEDIATE_CORE_H
#define _VFMEDIATE_CORE_H

#include <linux/configfs.h>
#include <linux/bitops.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/llist.h>
#include <linux/minmax.h>
#include <linux/mm_types.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/srcu.h>
#include <linux/types.h>
#include <linux/workqueue.h>
#include <linux/vfio_pci_core.h>
#include <linux/vfmediate.h>
#include <uapi/linux/vfmediate.h>

#define VFM_NUM_REGIONS		VFIO_PCI_NUM_REGIONS	/* bar0-5 rom config vga */
#define VFM_MAX_RULES		1024	/* per region */
#define VFM_MAX_TRAPS		64	/* vfm_trap_range() calls per open */
#define VFM_ERR_LEN		160

/* What a rule does with the accesses it matches; netlink's numbers. */
enum vfm_action {
	VFM_PASS = VFMEDIATE_ACTION_PASS,	/* vfio-pci-core */
	VFM_TRAP = VFMEDIATE_ACTION_TRAP,	/* the mediator's handler */
	VFM_RO = VFMEDIATE_ACTION_RO,		/* reads pass, writes -EPERM */
	VFM_DENY = VFMEDIATE_ACTION_DENY,	/* fail -EACCES */
	VFM_IGNORE = VFMEDIATE_ACTION_IGNORE,	/* read zeros, drop writes */
	VFM_NR_ACTIONS = __VFMEDIATE_ACTION_MAX
};

/* A rule's counts, per CPU: the access path takes no atomic for them. */
struct vfm_counts {
	u64 hits;	/* accesses that met the rule */
	u64 bytes;	/* bytes of them inside it */
	u64 refused;	/* of them, refused by it (deny, ro write) */
};

#define VFM_DEV_NAME_LEN	20	/* DDDDDDDD:BB:DD.F */
#define VFM_RULE_NAME_LEN	64

/* Kinds of access event (events.c). */
enum {
	VFM_EV_AUDITED,
	VFM_EV_REFUSED,
	VFM_EV_KINDS
};

/* The last access of a rule waiting to be reported (events.c). */
struct vfm_access_rec {
	u64 off;
	u32 size;
	u32 pid;
	u8 kind;
	u8 action;
	bool write;
	char comm[TASK_COMM_LEN];
};

/* A queued event: a lifecycle event, or a rule's counter (events.c). */
struct vfm_ev_item {
	struct llist_node node;
	bool counter;
};

/*
 * A rule's counters, shared by the rule and the tables compiled from it,
 * and the state of its access events: it names the rule, so that events
 * need nothing else. The event fields belong to events.c (and its inline
 * access-path part below: vfm_event_access()).
 */
struct vfm_counter {
	refcount_t ref;
	struct vfm_counts __percpu *pcpu;
	u8 region;
	char dev[VFM_DEV_NAME_LEN];
	char name[VFM_RULE_NAME_LEN];
	unsigned long ev_flags;
	unsigned long ev_window;	/* jiffies: start of the window */
	atomic_t ev_sent;		/* records taken in the window */
	atomic64_t suppressed[VFM_EV_KINDS];
	struct vfm_access_rec rec;
	struct vfm_ev_item ev_item;	/* on the event queue */
	struct llist_node flush_node;	/* waiting for a summary */
};

struct vfm_counter *vfm_counter_new(const char *dev, unsigned int region,
				    const char *name);
struct vfm_counter *vfm_counter_get(struct vfm_counter *c);
void vfm_counter_put(struct vfm_counter *c);
void vfm_counter_read(const struct vfm_counter *c, struct vfm_counts *sum);

/*
 * One byte range of one region and one direction, compiled: [start, end)
 * is handled by @action; @ctr counts hits when set.
 */
struct vfm_interval {
	u64 start;
	u64 end;
	u8 action;
	bool audit;	/* report the accesses it takes (events.c) */
	struct vfm_counter *ctr;
	/* @ctr's: counting a hit needs no other memory than the interval */
	struct vfm_counts __percpu *pcpu;
};

/*
 * Which parts of a region one direction's intervals touch, coarsely: all
 * of them lie in [lo, hi), and bit g of @bits is set when an interval
 * meets [lo + g << shift, lo + (g + 1) << shift). Lets an access that
 * meets no interval go to vfio-pci-core without searching the table.
 * Empty (lo == hi) when there is no interval. Only the span, no @bits,
 * when there are at most VFM_FILTER_MIN intervals: a search of so few
 * costs less than the bitmap's test.
 */
struct vfm_filter {
	u64 lo;
	u64 hi;
	unsigned int shift;
	unsigned long *bits;
};

#define VFM_FILTER_BITS		4096
#define VFM_FILTER_MIN		8

static inline u64 vfm_filter_bits(const struct vfm_filter *f)
{
	return ((f->hi - f->lo - 1) >> f->shift) + 1;
}

/*
 * Could [off, end) meet an interval? False only if it surely does not.
 * An access over more than two granules is left to the table.
 */
static inline bool vfm_filter_hit(const struct vfm_filter *f, u64 off, u64 end)
{
	u64 first, last;

	if (end <= f->lo || off >= f->hi)
		return false;
	if (!f->bits)
		return true;
	first = off > f->lo ? (off - f->lo) >> f->shift : 0;
	last = (min(end, f->hi) - 1 - f->lo) >> f->shift;
	return last - first > 1 || test_bit(first, f->bits) ||
	       test_bit(last, f->bits);
}

/*
 * The compiled form of one region, for reads ([0]) and writes ([1]).
 * Intervals of plain pass rules (no audit) are left out: no interval
 * means vfio-pci-core.
 */
struct vfm_region_table {
	u32 nr[2];
	struct vfm_interval *iv[2];
	struct vfm_filter filter[2];
	/* Set when any rule touches the region: region info is ours. */
	bool ruled;
	/* Pages left mmap-able, in VFIO's sparse-mmap form. */
	u32 nr_areas;
	struct vfio_region_sparse_mmap_area *areas;
};

/* A registered mediator (registry.c). */
struct vfm_mediator {
	const struct vfm_mediator_ops *ops;
	struct list_head node;
	struct config_group group;	/* mediators/<name> */
	atomic_t users;			/* devices it is attached to */
	bool live;			/* registered in configfs too */
};

/* A range a mediator asked to trap from its open(). */
struct vfm_trap {
	u32 index;
	u32 access;
	u64 start;
	u64 end;
};

/*
 * What the rules of a configuration, and the traps of its mediator's
 * open(), compile to for every region. Immutable once built, and shared
 * by the tables of successive opens (and live applies) of a device while
 * neither changes: reopening a device does not compile again.
 */
struct vfm_rules {
	refcount_t ref;
	u64 config_seq;		/* the staged configuration it came from */
	u32 nr_traps;		/* and the traps */
	bool packed;		/* @iv holds the regions' intervals */
	struct vfm_trap *traps;
	size_t bytes;		/* memory it holds, for the benchmarks */
	u64 compile_ns;		/* how long compiling it took */
	struct vfm_region_table region[VFM_NUM_REGIONS];
	struct vfm_interval iv[];
};

/*
 * A compiled, immutable description of how to route one device's
 * accesses. Built when the device is opened or a configuration is applied
 * live, published with rcu_replace_pointer() and replaced as a whole,
 * never changed in place once published.
 *
 * It owns the open mediator instance (@mops, @mpriv) and a reference on
 * its module, except while @borrowed: a table built by a live apply that
 * keeps the running mediator (same mediator, same arguments) borrows the
 * running table's instance, and takes it over when it is published.
 */
struct vfm_table {
	struct rcu_head rcu;
	u64 generation;		/* 0: the pass-through table */
	const struct vfm_mediator_ops *mops;
	void *mpriv;
	char *margs;		/* the arguments @mpriv was opened with */
	bool borrowed;		/* @mpriv belongs to the running table */
	const struct vfm_rules *rules;	/* never NULL once published */
};

/*
 * The table of a device that mediates nothing. vfm_device.table is never
 * NULL: "no mediation" is this table, so the hot path tests one pointer
 * and the slow path may dereference whatever it finds.
 */
extern const struct vfm_table vfm_passthrough_table;

struct vfm_cfg_dev;

/**
 * struct vfm_device - a PCI device bound to vfmediate
 * @core: vfio-pci-core's device; first, as vfio_alloc_device() requires.
 * @cfg_lock: serializes publishers of @table (open, live apply, close).
 *	Readers never take it.
 * @table: the dispatch table, never NULL. Written under @cfg_lock, read
 *	under @srcu (see the top of this file).
 * @quick: @table's rules, published after it, for the decisions made
 *	under rcu_read_lock_sched() alone (vfm_rw_quick()), which need
 *	nothing else of the table: one memory access fewer for each.
 * @srcu: protects @table. Handlers copy to and from user memory, so they
 *	may sleep (page faults, even userfaultfd), which plain RCU forbids.
 *	It is per device so that a reader stalled by one device's user
 *	cannot delay a table update of another device.
 * @cfg: the configuration of the same name, or NULL; under vfm_config_lock.
 * @node: in the list of bound devices; under vfm_config_lock.
 * @open: the device is open; under vfm_config_lock.
 * @mmapped: BARs a VFIO user has mmap'ed since the device was bound
 *	(bit per BAR index), for @warning.
 * @warning: what the running table cannot guard; under vfm_config_lock.
 * @enabled: vfio-pci-core enabled the device for an open (has_vga and the
 *	like are valid); written by open and close only.
 * @generation: tables compiled so far; under vfm_config_lock.
 * @table_gen: generation of the running table, 0 for pass-through.
 * @table_seq: the configuration sequence number it was compiled from.
 * @table_bytes: memory the running table holds.
 * @compile_ns: time its compilation took, mediator open() included.
 * @traps: ranges the opening mediator asked for; only while a table is
 *	built, under @cfg_lock.
 * @open_ops: the mediator being opened; only during its open().
 * @nowait_task: the task running the mediator's open() or show(), whose
 *	BAR accesses must not wait for memory_lock (io.c); under @nowait_lock.
 * @rules: the rules of the last table compiled, for the next open or
 *	apply to reuse if nothing changed; under vfm_config_lock.
 * @io_lock: serializes mapping @bar_io.
 * @bar_io: the core's own mapping of each BAR, for mediators' kernel-buffer
 *	accesses (io.c); made on first use, dropped at close.
 * @resets: resets of the function seen so far (vfm_reset_count()).
 * @maps_lock: the mappings in @maps; makes mmap() and a live apply's
 *	check and publication exclusive (maps.c).
 * @maps: what the VFIO user holds mmap'ed now (maps.c).
 * @maps_lost: a mapping could not be recorded: all count as mapped.
 * @revoke_gen: revocations so far, under @maps_lock (maps.c).
 * @retrap_work: runs the mediator's retrap() it asked for (policy.c).
 * @migratable: the mediator attached at bind could migrate the device:
 *	vfio migration is offered (migrate.c).
 * @mig_lock: serializes migration transitions; @mig_state, the data
 *	files and @mig_error are under it.
 * @mig_reset_lock: @mig_reset, a reset seen while @mig_lock was held.
 * @restore_task: the task running the mediator's load_state(), whose
 *	default writes the running table's rules bound (api.c).
 */
struct vfm_mig_file;

struct vfm_device {
	struct vfio_pci_core_device core;
	struct mutex cfg_lock;		/* publishers of @table */
	const struct vfm_table __rcu *table;
	const struct vfm_rules __rcu *quick;
	struct srcu_struct srcu;
	struct vfm_cfg_dev *cfg;
	struct list_head node;
	bool open;
	bool enabled;
	unsigned long mmapped;
	char warning[VFM_ERR_LEN];
	u64 generation;
	u64 table_gen;
	u64 table_seq;
	size_t table_bytes;
	u64 compile_ns;
	struct vfm_trap *traps;
	u32 nr_traps;
	const struct vfm_mediator_ops *open_ops;
	struct mutex nowait_lock;	/* one @nowait_task at a time */
	struct task_struct *nowait_task;
	struct vfm_rules *rules;
	struct mutex io_lock;		/* mapping @bar_io */
	void __iomem *bar_io[PCI_STD_NUM_BARS];
	atomic64_t resets;
	struct mutex maps_lock;		/* @maps; mmap() against apply */
	struct list_head maps;
	bool maps_lost;
	u64 revoke_gen;
	struct work_struct retrap_work;
	bool migratable;
	struct task_struct *restore_task;
	struct mutex mig_lock;		/* migration transitions */
	enum vfio_device_mig_state mig_state;
	struct vfm_mig_file *mig_save;
	struct vfm_mig_file *mig_resume;
	char mig_error[VFM_ERR_LEN];
	spinlock_t mig_reset_lock;	/* @mig_reset */
	bool mig_reset;
};

static inline struct vfm_device *to_vfm(struct vfio_device *core_vdev)
{
	return container_of(core_vdev, struct vfm_device, core.vdev);
}

static inline const char *vfm_name(struct vfm_device *vd)
{
	return pci_name(vd->core.pdev);
}

/*
 * True when @vd mediates nothing. Compares the pointer without
 * dereferencing it, so no SRCU read section is needed. A caller that sees
 * true may race with the publication of a real table; its access is then
 * ordered before the change, as if it had started a moment earlier: a
 * live apply returns without waiting for it, and needs not, since the
 * pass-through table is static and the access reads nothing of a table.
 */
static inline bool vfm_passthrough(struct vfm_device *vd)
{
	return rcu_access_pointer(vd->table) == &vfm_passthrough_table;
}

/* A rule as the compiler sees it: configured or trapped by a mediator. */
struct vfm_rule_spec {
	u64 start;
	u64 end;		/* exclusive */
	u8 access;		/* VFM_ACCESS_* */
	u8 action;
	bool audit;
	const char *name;	/* for ordering ties and messages */
	struct vfm_counter *ctr;
};

/* dispatch.c */
void vfm_table_init(struct vfm_device *vd);
const struct vfm_table *vfm_table_replace(struct vfm_device *vd,
					  struct vfm_table *tbl, bool *handover);
void vfm_table_retire(struct vfm_device *vd, const struct vfm_table *old,
		      bool handover);
void vfm_table_release(struct vfm_device *vd, const struct vfm_table *tbl);
bool vfm_mmap_allowed(const struct vfm_region_table *rt, u64 start, u64 len);
ssize_t vfm_read_slow(struct vfm_device *vd, char __user *buf, size_t count,
		      loff_t *ppos);
ssize_t vfm_write_slow(struct vfm_device *vd, char __user *buf, size_t count,
		       loff_t *ppos);
int vfm_mmap_slow(struct vfm_device *vd, struct vm_area_struct *vma);
long vfm_ioctl_slow(struct vfm_device *vd, unsigned int cmd,
		    unsigned long arg);
void vfm_reset_notify(struct vfm_device *vd);
bool vfm_write_guarded(const struct vfm_region_table *rt, u64 start,
		       u64 end);
int vfm_device_feature(struct vfio_device *core_vdev, u32 flags,
		       void __user *arg, size_t argsz);

/* table.c */
u64 vfm_region_len(struct vfm_device *vd, unsigned int index);
struct vfm_table *vfm_table_alloc(void);
void vfm_table_free(const struct vfm_table *tbl);
struct vfm_rules *vfm_rules_alloc(void);
struct vfm_rules *vfm_rules_get(struct vfm_rules *rules);
void vfm_rules_put(const struct vfm_rules *rules);
struct vfm_rules *vfm_rules_pack(struct vfm_rules *rules);
int vfm_rules_build_region(struct vfm_device *vd, struct vfm_rules *rules,
			   unsigned int index, struct vfm_rule_spec *specs,
			   u32 n, bool mmap_off);

/* Up to this many intervals, a linear search is the shorter one. */
#define VFM_LINEAR_MAX		4

/* The interval holding @off, or the first one after it; NULL if none. */
static inline const struct vfm_interval *
vfm_table_find(const struct vfm_region_table *rt, bool iswrite, u64 off)
{
	const struct vfm_interval *iv = rt->iv[iswrite];
	u32 lo = 0, hi = rt->nr[iswrite];

	if (hi <= VFM_LINEAR_MAX) {
		while (lo < hi && iv[lo].end <= off)
			lo++;
		return lo < hi ? &iv[lo] : NULL;
	}
	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (iv[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rt->nr[iswrite] ? &iv[lo] : NULL;
}

/* events.c */
#define VFM_EV_WINDOW		HZ
#define VFM_EV_BURST		10

/* vfm_counter.ev_flags */
enum {
	VFM_CTR_BUSY,		/* the record is being filled or waits */
	VFM_CTR_READY,		/* the record is filled */
	VFM_CTR_QUEUED,		/* on vfm_ev_queue */
	VFM_CTR_FLUSH,		/* on vfm_flush_list */
	VFM_CTR_SUMMARY,	/* report suppressed accesses when dequeued */
};

void vfm_events_counter_init(struct vfm_counter *c);
void vfm_event_record(struct vfm_counter *c, u8 action, u64 off, u32 size,
		      bool iswrite);
void vfm_ev_flush_later(struct vfm_counter *c);
void vfm_event_post(u32 type, const char *dev, const char *mediator,
		    u64 generation, int err, const char *error);
void vfm_events_exit(void);

/* netlink.c */
int vfm_nl_init(void);
void vfm_nl_exit(void);
bool vfm_nl_listening(void);
extern unsigned long vfm_nl_monitor_state;
bool vfm_nl_monitored_slow(void);

#define VFM_NL_ON	BIT(0)
#define VFM_NL_VALID	BIT(1)
#define VFM_NL_FLAGS	(VFM_NL_VALID | VFM_NL_ON)
/* Above the flags: the tick of the answer, or the count of changes. */
#define VFM_NL_SHIFT	2

/* vfm_nl_monitor_state's stamp of the current tick (netlink.c). */
static inline unsigned long vfm_nl_stamp(void)
{
	unsigned long tick = jiffies;

	return tick << VFM_NL_SHIFT | VFM_NL_VALID;
}

/* Is @state, read from vfm_nl_monitor_state, an answer for now? */
static inline bool vfm_nl_state_valid(unsigned long state)
{
	return VFM_GENL_BIND ? state & VFM_NL_VALID :
			       (state & ~VFM_NL_ON) == vfm_nl_stamp();
}

/* Does anyone listen to the monitor group? For the access path. */
static inline bool vfm_monitored(void)
{
	unsigned long state = READ_ONCE(vfm_nl_monitor_state);

	return vfm_nl_state_valid(state) ? state & VFM_NL_ON :
					   vfm_nl_monitored_slow();
}

void vfm_nl_event(u32 type, const char *dev, const char *mediator,
		  u64 generation, int err, const char *error);
void vfm_nl_access_event(const struct vfm_counter *c,
			 const struct vfm_access_rec *rec, int kind,
			 u64 suppressed);

/* Does @action refuse an access in that direction? */
static inline bool vfm_refuses(u8 action, bool iswrite)
{
	return action == VFM_DENY || (action == VFM_RO && iswrite);
}

static inline u8 vfm_ev_kind(u8 action, bool iswrite)
{
	return vfm_refuses(action, iswrite) ? VFM_EV_REFUSED : VFM_EV_AUDITED;
}

/*
 * Is the record of @c taken, or its budget of the window spent? Plain
 * reads: a stale answer only lets one access more try, or suppresses one
 * of the window's first, which is then counted all the same.
 */
static inline bool vfm_ev_busy(const struct vfm_counter *c)
{
	return test_bit(VFM_CTR_BUSY, &c->ev_flags) ||
	       (atomic_read(&c->ev_sent) >= VFM_EV_BURST &&
		time_before(jiffies, READ_ONCE(c->ev_window) + VFM_EV_WINDOW));
}

/*
 * Count an access of @c's rule as suppressed, and have the count summed
 * up once the window is over. A summary already pending will count it:
 * the worker clears FLUSH before it takes the count. The plain test
 * spares the atomic operation to every access of a hammered rule.
 * vfm_ev_suppressed() leaves the scheduling of the summary to its caller:
 * true when vfm_ev_flush_later() is needed.
 */
static inline bool vfm_ev_suppressed(struct vfm_counter *c, u8 kind)
{
	atomic64_inc(&c->suppressed[kind]);
	smp_mb__after_atomic();		/* the count before the test */
	return !test_bit(VFM_CTR_FLUSH, &c->ev_flags);
}

static inline void vfm_ev_suppress(struct vfm_counter *c, u8 kind)
{
	if (vfm_ev_suppressed(c, kind))
		vfm_ev_flush_later(c);
}

/*
 * Report an access that @c's rule audits or refuses, while someone
 * listens (vfm_monitored()); from the access path, in any context. Inline
 * for a hammered rule: most of its accesses are only counted.
 */
static inline void vfm_event_access(struct vfm_counter *c, u8 action, u64 off,
				    u32 size, bool iswrite)
{
	if (vfm_ev_busy(c))
		vfm_ev_suppress(c, vfm_ev_kind(action, iswrite));
	else
		vfm_event_record(c, action, off, size, iswrite);
}

/* The per-CPU counts of a hit of @size bytes. */
static inline void vfm_count_hit(struct vfm_counts __percpu *pcpu, u32 size,
				 bool refused)
{
	this_cpu_inc(pcpu->hits);
	this_cpu_add(pcpu->bytes, size);
	if (refused)
		this_cpu_inc(pcpu->refused);
}

/*
 * Count an access of @size bytes at @off that met @iv, and report it when
 * its rule audits or refuses it and someone listens: only then does the
 * out-of-line event path run.
 */
static inline void vfm_count(const struct vfm_interval *iv, u64 off, u32 size,
			     bool iswrite)
{
	struct vfm_counts __percpu *pcpu = iv->pcpu;
	bool refused = vfm_refuses(iv->action, iswrite);

	if (!pcpu)
		return;
	vfm_count_hit(pcpu, size, refused);
	if ((refused || iv->audit) && vfm_monitored())
		vfm_event_access(iv->ctr, iv->action, off, size, iswrite);
}

/* registry.c */
struct vfm_med_info {
	char name[VFM_NAME_LEN];
	char module[MODULE_NAME_LEN];
	u32 users;
};

int vfm_registry_info(const char *name, unsigned long pos,
		      struct vfm_med_info *info);
struct vfm_mediator *vfm_mediator_get(const char *name);
void vfm_mediator_put(struct vfm_mediator *m);
bool vfm_valid_name(const char *name);
int vfm_registry_init(struct config_group *parent);
void vfm_registry_exit(void);

/* cfs.c: configfs, and what netlink reports of it; policy.c: names */
#define VFM_ARGS_LEN		256

/* A device as netlink reports it. */
struct vfm_dev_info {
	char name[VFM_DEV_NAME_LEN];
	u8 state;		/* VFMEDIATE_DEV_* */
	bool configured;
	bool pending;
	char mediator[VFM_NAME_LEN];
	char args[VFM_ARGS_LEN];
	u64 generation;
	u64 table_bytes;
	u64 resets;
	bool migratable;	/* offers VFIO migration */
	u8 mig_state;		/* enum vfio_device_mig_state */
	char error[VFM_ERR_LEN];
	char warning[VFM_ERR_LEN];
};

/* A configured rule and its counts, as netlink reports them. */
struct vfm_rule_info {
	char name[VFM_RULE_NAME_LEN];
	u64 start;
	u64 end;
	u8 access;
	u8 action;
	bool audit;
	struct vfm_counts counts;
};

u32 vfm_cfs_seq(void);
int vfm_cfs_dev_info(const char *name, unsigned long pos,
		     struct vfm_dev_info *info);
int vfm_cfs_rule_info(const char *name, unsigned int index, u32 pos,
		      struct vfm_rule_info *ri, u32 max);
const char *vfm_region_name(unsigned int index);

int vfm_cfs_init(void);
void vfm_cfs_exit(void);

/* policy.c: compile and publish the staged configuration */
void vfm_policy_bind(struct vfm_device *vd);
void vfm_policy_unbind(struct vfm_device *vd);
int vfm_policy_open(struct vfm_device *vd);
void vfm_policy_close(struct vfm_device *vd);
int vfm_policy_apply(struct vfm_device *vd, bool revoke);
void vfm_retrap_work(struct work_struct *work);
void vfm_policy_set_error(struct vfm_device *vd, const char *text);

/* migrate.c */
bool vfm_mig_capable(const struct vfm_mediator_ops *ops);
const char *vfm_mig_state_name(enum vfio_device_mig_state state);
void vfm_mig_init(struct vfm_device *vd);
void vfm_mig_enable(struct vfm_device *vd);
void vfm_mig_destroy(struct vfm_device *vd);
void vfm_mig_reset_state(struct vfm_device *vd);
void vfm_mig_reset_done(struct vfm_device *vd);

/* maps.c */
int vfm_maps_mmap(struct vfm_device *vd, struct vm_area_struct *vma,
		  int (*do_mmap)(struct vfm_device *vd,
				 struct vm_area_struct *vma));
bool vfm_maps_conflict(struct vfm_device *vd, const struct vfm_rules *rules,
		       u32 *index, u64 *start, u64 *len, bool *revocable);
bool vfm_ruled_run(const struct vfm_region_table *rt, u64 *pos, u64 end,
		   u64 *stop);
void vfm_maps_revoking(struct vfm_device *vd);
void vfm_maps_revoke(struct vfm_device *vd, const struct vfm_rules *rules);
void vfm_maps_clear(struct vfm_device *vd);
void vfm_maps_exit(void);

/* main.c */
long vfm_core_ioctl(struct vfm_device *vd, unsigned int cmd, unsigned long arg);

/* compat.c */
vm_fault_t vfm_core_fault(const struct vm_operations_struct *ops,
			  struct vm_fault *vmf, unsigned int order);

/* io.c */
bool vfm_memory_enabled(struct vfio_pci_core_device *core);
ssize_t vfm_bar_rw(struct vfm_device *vd, unsigned int bar, void *buf,
		   size_t count, u64 off, bool iswrite);
void vfm_bar_unmap_all(struct vfm_device *vd);

#endif /* _VFMEDIATE_CORE_H */

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmediate: in-kernel API for mediator modules.
 *
 * A mediator is a small module holding vendor logic for devices bound to
 * the vfmediate VFIO PCI variant driver. It depends on vfmediate only; the
 * device's own driver and vfio-pci never depend on it. The core routes to
 * it exactly the byte ranges it traps (or that an admin's "trap" rules
 * give it) through a dispatch table compiled when the device is opened;
 * everything else goes straight to vfio-pci-core. A mediator is never
 * asked "is this access yours?".
 *
 * Lifetime. The core holds a reference on the mediator's module for every
 * device it is attached to and for every open device using it, so a
 * mediator cannot be unloaded while in use; it needs no refcount of its
 * own. Per-device state is the opaque pointer its open() returns.
 *
 * See vfmediate-mediator(9) for a worked example.
 */
#ifndef _LINUX_VFMEDIATE_H
#define _LINUX_VFMEDIATE_H

#include <linux/module.h>
#include <linux/types.h>
#include <linux/vfio.h>

struct pci_dev;
struct vfio_pci_core_device;
struct vm_area_struct;

/* A device bound to vfmediate; opaque to mediators. */
struct vfm_device;

/* Longest mediator name, terminating NUL included. */
#define VFM_NAME_LEN		32

/* Access directions, for vfm_trap_range(). */
#define VFM_ACCESS_READ		0x1
#define VFM_ACCESS_WRITE	0x2
#define VFM_ACCESS_RW		(VFM_ACCESS_READ | VFM_ACCESS_WRITE)

/**
 * struct vfm_mediator_ops - what a mediator provides
 * @name: unique name, 1 to VFM_NAME_LEN - 1 characters of [a-z0-9_-]; it
 *	is what an admin writes to a device's configfs "mediator" attribute
 *	and the suffix of the module alias (MODULE_ALIAS_VFM_MEDIATOR()).
 * @owner: THIS_MODULE. Required: registration fails without it.
 * @check_args: optional. Validate an argument string when an admin writes
 *	it to "mediator_args" (without echo's newline), so a bad value is
 *	refused at once rather than at the next open. Return 0 or a negative
 *	errno (-EINVAL, -ERANGE).
 * @open: optional. Called when a device the mediator is attached to is
 *	opened, before its dispatch table is compiled, and when a live apply
 *	attaches the mediator to an open device or changes its arguments
 *	(the running instance, if any, stays until the new table is
 *	published, then is closed: two instances may exist for a moment). @args is the device's
 *	"mediator_args" string (never NULL, possibly empty). Declare the
 *	ranges to trap with vfm_trap_range() here and return per-device
 *	state in @priv. May sleep. A negative errno fails the open; the
 *	ranges trapped are then dropped and @close is not called.
 * @close: optional. The last user of the device is gone, or a live apply
 *	replaced or detached this instance, and no handler of it runs any
 *	more; free @priv. May sleep.
 * @region_info: optional. Adjust the answer to VFIO_DEVICE_GET_REGION_INFO
 *	for a BAR: @info comes filled in by the core (vfm_default_region_info()
 *	plus the sparse-mmap areas the table leaves mmap-able); a mediator
 *	may clear flags or add capabilities to @caps.
 * @read: a read of a trapped range: fill the kernel buffer @buf with
 *	@count bytes at @off within region @index. The range never crosses
 *	the trapped range, nor holds more than VFM_HANDLER_MAX bytes (the
 *	core splits longer accesses). Return the bytes read or a negative
 *	errno; vfm_default_read() reads a BAR's own data. The core copies
 *	@buf to the VFIO user afterwards, once.
 * @write: as @read, for writes: @buf holds the bytes the VFIO user wrote,
 *	copied once by the core; vfm_default_write() writes them to a BAR.
 *	What the handler checks or records of @buf is therefore exactly
 *	what it passes on.
 * @observe: optional. For a direction of a trapped range that the
 *	mediator has no @read (@write) handler for: the core made the access
 *	as vfio-pci would, straight from and to user memory, and reports
 *	@count bytes at @off of region @index and the result @ret (bytes or
 *	a negative errno). Sees no data: for counting and tracing, and the
 *	only way to follow config space, ROM and VGA accesses without
 *	emulating them. vfm_trap_range() needs @read or @observe to trap
 *	reads, @write or @observe to trap writes.
 * @reset: optional. The function was reset (VFIO_DEVICE_RESET, a hot
 *	reset, an FLR started through config space, error recovery): its
 *	registers are back to their reset values. Called while the device is
 *	open and vfio-pci-core may hold its memory_lock for writing: must
 *	not sleep on anything a handler holds across a default accessor,
 *	nor access the device. Use it to mark emulated or shadowed state
 *	stale; see vfm_reset_count().
 * @mmap: optional. Called for an mmap() that the table allows (it touches
 *	no trapped page); return vfm_default_mmap() or a negative errno to
 *	veto it.
 * @show: optional. Print the mediator's per-device state (counters, a
 *	shadow of registers...) into @buf (PAGE_SIZE) for the device's
 *	configfs "mediator_state" attribute. Called with the device open
 *	only; may sleep.
 * @retrap: optional. Called after the mediator asked for it with
 *	vfm_request_retrap(), on the running instance (@priv), and by a live
 *	apply that keeps the instance: declare with vfm_trap_range() the
 *	ranges to trap from now on, all of them (none: trap nothing). The
 *	core compiles and publishes a table with them as a live apply does;
 *	the instance and its state stay. May sleep and access the device. A
 *	negative errno keeps the running table.
 * @state_size: with @save_state and @load_state, makes the mediator
 *	migration-capable: a function it is attached to when bound to
 *	vfmediate offers VFIO migration (STOP_COPY), and the core runs the
 *	uAPI (state machine, data files, resets). Return the most bytes
 *	@save_state may produce (at most 16 MiB); the destination's
 *	instance, opened with the same arguments, must answer the same.
 * @save_state: the device is stopped (STOP -> STOP_COPY): write the
 *	device state into the kernel buffer @buf of @size bytes and return
 *	its length, or a negative errno. The core adds a header naming the
 *	mediator, the length and a CRC, and serves the stream to the VMM.
 * @load_state: RESUMING -> STOP on the destination: @buf holds the @len
 *	bytes @save_state produced, already checked against the header (a
 *	truncated, corrupted or foreign stream never gets here). Validate
 *	what only the mediator can (its own version, its window), then
 *	restore the device, through the default accessors, and the
 *	instance's state. A negative errno keeps the device in RESUMING.
 * @stop: optional. RUNNING -> STOP: stop the device changing its state
 *	and memory (DMA, interrupts) until @run; a negative errno fails the
 *	transition.
 * @run: optional. STOP -> RUNNING: let the device run again.
 *
 * Handlers work on kernel buffers and may sleep. They run under the
 * core's SRCU read lock, never under a lock the core's writers hold, and
 * may run concurrently with each other and with @show. @check_args runs
 * under the core's configuration mutex: it must not access the device,
 * wait for configfs or call request_module(). @open, @show and @close
 * run without it and may access the device; the configuration may change
 * while @open runs, and the core then closes the mediator and opens it
 * again. The migration hooks run one at a time per device, under the
 * core's SRCU read lock like handlers, and may access the device; they
 * use the instance of the running table, so a live apply that replaces
 * the mediator during a migration leaves the new instance without the
 * state (see vfmediate-mediator(9)).
 */
struct vfm_mediator_ops {
	const char *name;
	struct module *owner;
	int (*check_args)(const char *args);
	int (*open)(struct vfm_device *vd, const char *args, void **priv);
	void (*close)(struct vfm_device *vd, void *priv);
	int (*region_info)(struct vfm_device *vd, void *priv,
			   struct vfio_region_info *info,
			   struct vfio_info_cap *caps);
	ssize_t (*read)(struct vfm_device *vd, void *priv, unsigned int index,
			void *buf, size_t count, loff_t off);
	ssize_t (*write)(struct vfm_device *vd, void *priv, unsigned int index,
			 const void *buf, size_t count, loff_t off);
	void (*observe)(struct vfm_device *vd, void *priv, unsigned int index,
			loff_t off, size_t count, bool iswrite, ssize_t ret);
	void (*reset)(struct vfm_device *vd, void *priv);
	int (*mmap)(struct vfm_device *vd, void *priv,
		    struct vm_area_struct *vma);
	ssize_t (*show)(struct vfm_device *vd, void *priv, char *buf);
	int (*retrap)(struct vfm_device *vd, void *priv);
	size_t (*state_size)(struct vfm_device *vd, void *priv);
	ssize_t (*save_state)(struct vfm_device *vd, void *priv, void *buf,
			      size_t size);
	int (*load_state)(struct vfm_device *vd, void *priv, const void *buf,
			  size_t len);
	int (*stop)(struct vfm_device *vd, void *priv);
	int (*run)(struct vfm_device *vd, void *priv);
};

int vfm_register_mediator(const struct vfm_mediator_ops *ops);
void vfm_unregister_mediator(const struct vfm_mediator_ops *ops);

/* Only from a mediator's open() and retrap(). */
int vfm_trap_range(struct vfm_device *vd, unsigned int index, u64 start,
		   u64 len, unsigned int access);
/* Ask for retrap() to run: starting or stopping traps while open. */
void vfm_request_retrap(struct vfm_device *vd);

/* Accessors. */
struct pci_dev *vfm_pdev(struct vfm_device *vd);
struct vfio_pci_core_device *vfm_core_device(struct vfm_device *vd);
u64 vfm_region_size(struct vfm_device *vd, unsigned int index);

/* Most bytes a read or write handler gets at once. */
#define VFM_HANDLER_MAX		4096

/*
 * The default handlers: what vfio-pci would do, on kernel buffers. @off is
 * within @index. Reads and writes: BARs only (-EOPNOTSUPP elsewhere).
 */
ssize_t vfm_default_read(struct vfm_device *vd, unsigned int index,
			 void *buf, size_t count, loff_t off);
ssize_t vfm_default_write(struct vfm_device *vd, unsigned int index,
			  const void *buf, size_t count, loff_t off);
u64 vfm_reset_count(struct vfm_device *vd);
int vfm_default_mmap(struct vfm_device *vd, struct vm_area_struct *vma);
int vfm_default_region_info(struct vfm_device *vd,
			    struct vfio_region_info *info,
			    struct vfio_info_cap *caps);

/* The alias by which the core demand-loads a mediator module. */
#define MODULE_ALIAS_VFM_MEDIATOR(name) \
	MODULE_ALIAS("vfmediate-mediator:" name)

/**
 * module_vfm_mediator() - a mediator module that only registers its ops
 * @__ops: the struct vfm_mediator_ops
 *
 * Registers in module init and unregisters in module exit. Declare the
 * alias with MODULE_ALIAS_VFM_MEDIATOR() next to it.
 */
#define module_vfm_mediator(__ops) \
	module_driver(__ops, vfm_register_mediator, vfm_unregister_mediator)

#endif /* _LINUX_VFMEDIATE_H */

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernel APIs vfmediate builds against.
 *
 * Force-included into every vfmediate source by Kbuild, so the code itself
 * is written against one API and carries no #if. Where distribution kernels
 * backport features, a version number says little: Kbuild probes the target
 * kernel's headers instead and defines VFM_HAVE_<feature> (see Kbuild).
 */
#ifndef _VFM_COMPAT_H
#define _VFM_COMPAT_H

/*
 * iommufd device ops of a physical VFIO device: .bind_iommufd,
 * .unbind_iommufd and .attach_ioas arrived in v6.2, .detach_ioas in v6.6.
 * Without CONFIG_IOMMUFD, <linux/vfio.h> defines the
 * vfio_iommufd_physical_*() helpers as NULL, which is still right to
 * assign. VFM_IOMMUFD_PHYSICAL_OPS goes at the end of a vfio_device_ops
 * initializer and expands to nothing where the members do not exist.
 */
#ifdef VFM_HAVE_DETACH_IOAS
#define VFM_DETACH_IOAS_OP .detach_ioas = vfio_iommufd_physical_detach_ioas,
#else
#define VFM_DETACH_IOAS_OP
#endif

#ifdef VFM_HAVE_BIND_IOMMUFD
#define VFM_IOMMUFD_PHYSICAL_OPS					\
	.bind_iommufd = vfio_iommufd_physical_bind,			\
	.unbind_iommufd = vfio_iommufd_physical_unbind,			\
	.attach_ioas = vfio_iommufd_physical_attach_ioas,		\
	VFM_DETACH_IOAS_OP
#else
#define VFM_IOMMUFD_PHYSICAL_OPS
#endif

/*
 * The attributes of a dump request: v6.7 made a genl_info of them
 * (genl_info_dump()); before, genl_dumpit_info() held them directly.
 */
#ifdef VFM_HAVE_GENL_INFO_DUMP
#define vfm_genl_dump_attrs(cb)	(genl_info_dump(cb)->attrs)
#else
#define vfm_genl_dump_attrs(cb)	(genl_dumpit_info(cb)->attrs)
#endif

/*
 * A multicast group only CAP_NET_ADMIN may join: GENL_MCAST_CAP_NET_ADMIN,
 * v6.7, backported to the stable series (6.1.69 and later). Without it
 * any user could join the monitor group, so its events leave out which
 * task made an access (VFM_MONITOR_PRIVATE false).
 */
#ifdef VFM_HAVE_GENL_MCAST_CAP
#define VFM_MONITOR_FLAGS	GENL_MCAST_CAP_NET_ADMIN
#define VFM_MONITOR_PRIVATE	true
#else
#define VFM_MONITOR_FLAGS	0
#define VFM_MONITOR_PRIVATE	false
#endif

/*
 * genl_family.bind and .unbind (v6.7) tell a family when a socket joins
 * or leaves one of its multicast groups, which lets the access path keep
 * whether anyone listens in a variable of its own (netlink.c). Without
 * them it asks genetlink at every access it could report.
 */
#ifdef VFM_HAVE_GENL_BIND
#define VFM_GENL_BIND_OPS	.bind = vfm_nl_bind, .unbind = vfm_nl_unbind,
#define VFM_GENL_BIND		true
#else
#define VFM_GENL_BIND_OPS
#define VFM_GENL_BIND		false
#endif

/*
 * Where a BAR mapping vfio-pci-core made points. Up to v6.11 its mmap
 * rewrote vm_pgoff to the BAR's physical page number and remapped it at
 * once; v6.12 (the series that gave each VFIO device its own inode)
 * keeps VFIO's region offset form and maps at fault time.
 */
#ifdef VFM_HAVE_VFIO_DEVICE_INODE
#define VFM_CORE_VMA_PGOFF_PHYS	false
#else
#define VFM_CORE_VMA_PGOFF_PHYS	true
#endif

/*
 * Taking ruled pages away from the user's mappings (maps.c). v6.12 gives
 * each VFIO device an inode of its own: unmap_mapping_range() on it
 * reaches every mapping of the device, fork copies included. Before, the
 * file of a mapping has the anonymous inode that every VFIO device and
 * other anonymous files share, whose offsets are physical page numbers:
 * the recorded mappings are zapped one by one under their mm's lock.
 */
#ifdef VFM_HAVE_VFIO_DEVICE_INODE
#define VFM_ZAP_BY_INODE	true
#define vfm_device_mapping(vd)	((vd)->core.vdev.inode->i_mapping)
#else
#define VFM_ZAP_BY_INODE	false
#define vfm_device_mapping(vd)	((struct address_space *)NULL)
#endif

/*
 * vm_operations_struct.huge_fault takes the page order since v6.7
 * (before, an enum page_entry_size), and vfio-pci-core has one since
 * v6.12: wrap it where it is there.
 */
#ifdef VFM_HAVE_HUGE_FAULT_ORDER
#define vfm_huge_fault_of(fn)	(fn)
#else
#define vfm_huge_fault_of(fn)	NULL
#endif

/*
 * VFIO_DEVICE_FEATURE_MIG_DATA_SIZE and its op, mandatory with migration
 * where it exists, came in v6.3.
 */
#ifdef VFM_HAVE_MIG_DATA_SIZE
#define VFM_MIG_DATA_SIZE_OP(fn)	.migration_get_data_size = (fn),
#else
#define VFM_MIG_DATA_SIZE_OP(fn)
#endif

/*
 * How vfio-pci-core serves a fault of a BAR mapping differs in kind, not
 * only in names: compat.c has vfm_core_fault() for each.
 */

#endif /* _VFM_COMPAT_H */

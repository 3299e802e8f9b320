/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vfmediate: in-kernel API for mediator modules.
 *
 * A mediator is a small module that takes over part of the accesses to a
 * device bound to the vfmediate VFIO PCI variant driver. The mediator ops
 * and their registration are added here together with the first
 * mediator; for now the core only needs the type names.
 */
#ifndef _LINUX_VFMEDIATE_H
#define _LINUX_VFMEDIATE_H

/* A device bound to vfmediate; opaque to mediators. */
struct vfm_device;

/* What a mediator provides; defined with the mediator API. */
struct vfm_mediator_ops;

#endif /* _LINUX_VFMEDIATE_H */

/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vfmediate generic netlink family: state, statistics and events of the
 * functions bound to the vfmediate VFIO PCI variant driver.
 *
 * configfs (/sys/kernel/config/vfmediate) is where configuration lives;
 * this family only reads. Every command is a plain read open to any user
 * except the "monitor" multicast group, whose events name the tasks that
 * touched a device: subscribing to it needs CAP_NET_ADMIN.
 *
 * Commands (family "vfmediate", version 1):
 *
 *   DEV_GET    doit: VFMEDIATE_A_DEV_NAME -> one device
 *              dump: every device bound to vfmediate or configured
 *   MED_GET    doit: VFMEDIATE_A_MED_NAME -> one mediator
 *              dump: every registered mediator
 *   STATS_GET  dump only: the counters of every configured device, or
 *              with VFMEDIATE_A_DEV_NAME of that one. One message per
 *              region with rules (DEV_NAME and a REGION nest); a region
 *              whose rules do not fit one message goes on in the next
 *              ones, with the same DEV_NAME and REGION_INDEX. The first
 *              message of a region holds its ACTION_STATS.
 *   EVENT      sent by the kernel on the "monitor" group only
 *
 * Every attribute is in the one space of enum vfmediate_attr; a message
 * carries those listed for it below. Unknown attributes in a request are
 * refused (strict validation); replies may gain attributes in later
 * versions, so readers skip what they do not know.
 */
#ifndef _UAPI_LINUX_VFMEDIATE_H
#define _UAPI_LINUX_VFMEDIATE_H

#define VFMEDIATE_GENL_NAME		"vfmediate"
#define VFMEDIATE_GENL_VERSION		1
#define VFMEDIATE_GENL_MCGRP_MONITOR	"monitor"

enum vfmediate_cmd {
	VFMEDIATE_CMD_UNSPEC,
	VFMEDIATE_CMD_DEV_GET,
	VFMEDIATE_CMD_MED_GET,
	VFMEDIATE_CMD_STATS_GET,
	VFMEDIATE_CMD_EVENT,

	__VFMEDIATE_CMD_MAX,
	VFMEDIATE_CMD_MAX = __VFMEDIATE_CMD_MAX - 1
};

/* What a rule does with the accesses it matches (configfs "action"). */
enum vfmediate_action {
	VFMEDIATE_ACTION_PASS,
	VFMEDIATE_ACTION_TRAP,
	VFMEDIATE_ACTION_RO,
	VFMEDIATE_ACTION_DENY,
	VFMEDIATE_ACTION_IGNORE,

	__VFMEDIATE_ACTION_MAX,
	VFMEDIATE_ACTION_MAX = __VFMEDIATE_ACTION_MAX - 1
};

/* Directions a rule applies to (configfs "access"), a bit mask. */
#define VFMEDIATE_ACCESS_READ		0x1
#define VFMEDIATE_ACCESS_WRITE		0x2

/*
 * Device state (configfs "state"): ABSENT, a configuration whose function
 * is not bound to vfmediate; BOUND, bound and closed; OPEN, bound and
 * opened by a VFIO user.
 */
enum vfmediate_dev_state {
	VFMEDIATE_DEV_ABSENT,
	VFMEDIATE_DEV_BOUND,
	VFMEDIATE_DEV_OPEN,
};

/* VFMEDIATE_A_EVENT: what a VFMEDIATE_CMD_EVENT message reports. */
enum vfmediate_event {
	VFMEDIATE_EVENT_UNSPEC,
	VFMEDIATE_EVENT_BOUND,		/* DEV_NAME */
	VFMEDIATE_EVENT_UNBOUND,	/* DEV_NAME */
	VFMEDIATE_EVENT_OPENED,		/* DEV_NAME, DEV_GENERATION */
	VFMEDIATE_EVENT_CLOSED,		/* DEV_NAME */
	VFMEDIATE_EVENT_MED_ATTACHED,	/* DEV_NAME, MED_NAME */
	VFMEDIATE_EVENT_MED_DETACHED,	/* DEV_NAME, MED_NAME */
	/* A configuration compiled and running: DEV_NAME, DEV_GENERATION. */
	VFMEDIATE_EVENT_CONFIG_APPLIED,
	/* A configuration that failed to apply: DEV_NAME, ERRNO, DEV_ERROR. */
	VFMEDIATE_EVENT_CONFIG_REFUSED,
	/*
	 * An access matched an audited rule (AUDITED) or was refused by a
	 * deny or read-only rule (REFUSED): DEV_NAME, REGION_INDEX,
	 * REGION_NAME, OFFSET, SIZE, WRITE, RULE_NAME, RULE_ACTION, PID,
	 * COMM, and SUPPRESSED. Rate-limited per rule: SUPPRESSED counts the
	 * accesses of that rule and kind not reported since its previous
	 * event. An event without OFFSET is a summary: it only reports, in
	 * SUPPRESSED, accesses that were not reported when they happened.
	 * PID and COMM are left out where the kernel cannot restrict the
	 * monitor group to CAP_NET_ADMIN.
	 */
	VFMEDIATE_EVENT_ACCESS_AUDITED,
	VFMEDIATE_EVENT_ACCESS_REFUSED,

	__VFMEDIATE_EVENT_MAX,
	VFMEDIATE_EVENT_MAX = __VFMEDIATE_EVENT_MAX - 1
};

enum vfmediate_attr {
	VFMEDIATE_A_UNSPEC,
	VFMEDIATE_A_PAD,

	/* Devices: DEV_GET replies, STATS_GET requests and replies. */
	VFMEDIATE_A_DEV_NAME,		/* string: DDDD:BB:DD.F */
	VFMEDIATE_A_DEV_STATE,		/* u8: enum vfmediate_dev_state */
	VFMEDIATE_A_DEV_CONFIGURED,	/* u8: has a configfs directory */
	VFMEDIATE_A_DEV_GENERATION,	/* u64: running table, 0: none */
	VFMEDIATE_A_DEV_PENDING,	/* u8: staged changes wait for open */
	VFMEDIATE_A_DEV_ERROR,		/* string: why the last open failed */
	VFMEDIATE_A_DEV_WARNING,	/* string: what cannot be guarded */
	VFMEDIATE_A_DEV_TABLE_BYTES,	/* u64 */
	VFMEDIATE_A_DEV_RESETS,		/* u64: resets of the function seen */

	/* Mediators: MED_GET, and DEV_GET for the attached one. */
	VFMEDIATE_A_MED_NAME,		/* string */
	VFMEDIATE_A_MED_MODULE,		/* string: the module providing it */
	VFMEDIATE_A_MED_USERS,		/* u32: devices it is attached to */
	VFMEDIATE_A_MED_ARGS,		/* string: DEV_GET, "" for none */

	/* Statistics: STATS_GET replies hold REGION nests. */
	VFMEDIATE_A_REGION,		/* nest: one region of a device */
	VFMEDIATE_A_REGION_INDEX,	/* u32: VFIO region index */
	VFMEDIATE_A_REGION_NAME,	/* string: config, bar0..bar5, rom, vga */
	VFMEDIATE_A_ACTION_STATS,	/* nest in REGION: one action's sums */
	VFMEDIATE_A_RULE,		/* nest in REGION: one rule */
	VFMEDIATE_A_RULE_NAME,		/* string */
	VFMEDIATE_A_RULE_ACTION,	/* u8: enum vfmediate_action */
	VFMEDIATE_A_RULE_ACCESS,	/* u8: VFMEDIATE_ACCESS_* */
	VFMEDIATE_A_RULE_START,		/* u64: first byte */
	VFMEDIATE_A_RULE_END,		/* u64: last byte + 1 */
	VFMEDIATE_A_RULE_AUDIT,		/* u8 */
	VFMEDIATE_A_HITS,		/* u64: accesses that met the rule(s) */
	VFMEDIATE_A_BYTES,		/* u64: bytes of them inside the rule */
	VFMEDIATE_A_REFUSED,		/* u64: of them, refused */

	/* Events (VFMEDIATE_CMD_EVENT). */
	VFMEDIATE_A_EVENT,		/* u32: enum vfmediate_event */
	VFMEDIATE_A_ERRNO,		/* u32: a positive errno */
	VFMEDIATE_A_OFFSET,		/* u64: in the region */
	VFMEDIATE_A_SIZE,		/* u32 */
	VFMEDIATE_A_WRITE,		/* u8: 1 write, 0 read */
	VFMEDIATE_A_PID,		/* u32: thread group id of the task */
	VFMEDIATE_A_COMM,		/* string */
	VFMEDIATE_A_SUPPRESSED,		/* u64 */

	/* Devices, added later: DEV_GET replies. */
	VFMEDIATE_A_DEV_MIGRATION,	/* u8: enum vfio_device_mig_state,
					 * only when the function offers
					 * VFIO migration
					 */

	__VFMEDIATE_A_MAX,
	VFMEDIATE_A_MAX = __VFMEDIATE_A_MAX - 1
};

#endif /* _UAPI_LINUX_VFMEDIATE_H */

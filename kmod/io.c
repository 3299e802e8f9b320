// SPDX-License-Identifier: GPL-2.0
/*
 * vfmediate: a mediator's access to its device's BARs, on kernel buffers.
 *
 * The accesses are made as vfio-pci-core makes those of read() and
 * write() on the device fd (vfio_pci_bar_rw() and do_io_rw() in
 * drivers/vfio/pci/vfio_pci_rdwr.c): naturally aligned, 4, 2 or 1 bytes
 * wide; the MSI-X table reads as 0xff and drops writes; a memory BAR is
 * accessed only under memory_lock and while memory decoding is on as the
 * VFIO user sees it, since vfio-pci-core zaps and restores the user's
 * mappings around the same condition. Neither kernel exports those
 * helpers on kernel buffers, so the core keeps its own mapping of each
 * BAR, made on first use and dropped when the device closes.
 */
#include <linux/io.h>
#include <linux/pci.h>

#include "vfmediate_core.h"

/* __vfio_pci_memory_enabled(), private to vfio-pci-core. */
bool vfm_memory_enabled(struct vfio_pci_core_device *core)
{
	struct pci_dev *pdev = core->pdev;
	u16 cmd = le16_to_cpu(*(__le16 *)&core->vconfig[PCI_COMMAND]);

	/* pci_power_t is ordered, D0 first; sparse wants that said. */
	return (__force int)pdev->current_state < (__force int)PCI_D3hot &&
	       (pdev->no_command_memory || (cmd & PCI_COMMAND_MEMORY));
}

static void __iomem *vfm_bar_map(struct vfm_device *vd, unsigned int bar)
{
	/* Pairs with the release below: a mapping seen is a mapping made. */
	void __iomem *io = smp_load_acquire(&vd->bar_io[bar]);

	if (io)
		return io;
	mutex_lock(&vd->io_lock);
	io = vd->bar_io[bar];
	if (!io) {
		io = pci_iomap(vd->core.pdev, bar, 0);
		/* Lock-free readers above see it only once it is made. */
		smp_store_release(&vd->bar_io[bar], io);
	}
	mutex_unlock(&vd->io_lock);
	return io;
}

/* The device is closing: no handler, open() or show() can run. */
void vfm_bar_unmap_all(struct vfm_device *vd)
{
	unsigned int bar;

	for (bar = 0; bar < PCI_STD_NUM_BARS; bar++) {
		if (!vd->bar_io[bar])
			continue;
		pci_iounmap(vd->core.pdev, vd->bar_io[bar]);
		vd->bar_io[bar] = NULL;
	}
}

/* One access of @n bytes, 4, 2 or 1, at an address aligned to it. */
static void vfm_io_one(void __iomem *addr, u8 *buf, size_t n, bool iswrite)
{
	__le32 v32;
	__le16 v16;

	if (n == 4 && iswrite) {
		memcpy(&v32, buf, 4);
		iowrite32(le32_to_cpu(v32), addr);
	} else if (n == 4) {
		v32 = cpu_to_le32(ioread32(addr));
		memcpy(buf, &v32, 4);
	} else if (n == 2 && iswrite) {
		memcpy(&v16, buf, 2);
		iowrite16(le16_to_cpu(v16), addr);
	} else if (n == 2) {
		v16 = cpu_to_le16(ioread16(addr));
		memcpy(buf, &v16, 2);
	} else if (iswrite) {
		iowrite8(*buf, addr);
	} else {
		*buf = ioread8(addr);
	}
}

/* The widest access vfio-pci-core would make at @pos with @left bytes. */
static size_t vfm_io_width(u64 pos, u64 left)
{
	if (left >= 4 && !(pos % 4))
		return 4;
	if (left >= 2 && !(pos % 2))
		return 2;
	return 1;
}

static void vfm_bar_loop(struct vfm_device *vd, unsigned int bar,
			 void __iomem *io, u8 *buf, u64 off, u64 end,
			 bool iswrite)
{
	struct vfio_pci_core_device *core = &vd->core;
	u64 x_start = 0, x_end = 0, pos, n;

	if (bar == core->msix_bar) {
		x_start = core->msix_offset;
		x_end = x_start + core->msix_size;
	}
	for (pos = off; pos < end; pos += n, buf += n) {
		if (pos >= x_start && pos < x_end) {
			n = min(end, x_end) - pos;
			if (!iswrite)
				memset(buf, 0xff, n);
			continue;
		}
		n = vfm_io_width(pos, (pos < x_start ? min(end, x_start) : end) - pos);
		vfm_io_one(io + pos, buf, n, iswrite);
	}
}

/**
 * vfm_bar_rw() - access a BAR of an open device from kernel memory
 * @vd: the device
 * @bar: BAR number, 0 to 5
 * @buf: @count bytes, the data to write or room for the data read
 * @count: bytes
 * @off: offset within the BAR
 * @iswrite: write @buf to the device, or read into it
 *
 * Return: @count; -EINVAL outside the BAR; -EIO while memory decoding is
 * off or the function is in a low-power state; -EBUSY from a mediator's
 * open() or show() while vfio-pci-core holds memory_lock (see above);
 * -ENOMEM.
 */
ssize_t vfm_bar_rw(struct vfm_device *vd, unsigned int bar, void *buf,
		   size_t count, u64 off, bool iswrite)
{
	struct vfio_pci_core_device *core = &vd->core;
	struct pci_dev *pdev = core->pdev;
	bool mem;
	void __iomem *io;

	if (bar >= PCI_STD_NUM_BARS || !pci_resource_start(pdev, bar) ||
	    off > pci_resource_len(pdev, bar) ||
	    count > pci_resource_len(pdev, bar) - off)
		return -EINVAL;
	io = vfm_bar_map(vd, bar);
	if (!io)
		return -ENOMEM;

	mem = pci_resource_flags(pdev, bar) & IORESOURCE_MEM;
	if (mem) {
		/*
		 * A PF's sriov_configure holds its memory_lock while it waits
		 * for vfio's device set lock (its new VFs join the set). A
		 * mediator's open() runs under that lock, and close waits under
		 * it for show() to finish: neither may wait for memory_lock.
		 */
		if (READ_ONCE(vd->nowait_task) != current)
			down_read(&core->memory_lock);
		else if (!down_read_trylock(&core->memory_lock))
			return -EBUSY;
		if (!vfm_memory_enabled(core)) {
			up_read(&core->memory_lock);
			return -EIO;
		}
	}
	vfm_bar_loop(vd, bar, io, buf, off, off + count, iswrite);
	if (mem)
		up_read(&core->memory_lock);
	return count;
}

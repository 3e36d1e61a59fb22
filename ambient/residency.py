"""Which memory of this process is resident, and handing back pages whose contents cost nothing to get back.

Two kinds of pages can leave RSS without any data being lost:

* pages of a mapped file that were only read (a checkpoint's weights): the
  page cache still holds them, so the next read maps them again;
* anonymous pages that hold only zeros: the next read maps the kernel's shared
  zero page, which holds zeros too.

:func:`file_pages` / :func:`mapping_pages` find the first under a tensor (only
in a mapping none of whose pages was ever written, so nothing is lost) and
:func:`release` hands them back; :func:`release_zero_pages` does the second for
a range the caller owns. All of it is Linux-only (``/proc/self``, ``madvise``)
and does nothing elsewhere.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os

import numpy as np
import torch

PAGE = mmap.PAGESIZE
MADV_DONTNEED = 4  # Linux
ZERO_CHECK_BYTES = 8 << 20  # memory read at a time when checking that a range holds only zeros


@dataclasses.dataclass(frozen=True)
class Region:
    """One mapping of this process (a line of /proc/self/maps)."""

    start: int
    end: int
    readable: bool
    writable: bool
    path: str  # "" for anonymous memory

    @property
    def size(self) -> int:
        return self.end - self.start


def regions() -> list[Region]:
    """This process's mappings, lowest address first (empty where /proc is not there)."""
    found = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                start, end = (int(x, 16) for x in fields[0].split("-"))
                path = fields[5].strip() if len(fields) > 5 else ""
                found.append(Region(start, end, fields[1][0] == "r", fields[1][1] == "w", path))
    except OSError:
        return []
    return found


def _file_mapping(address: int) -> tuple[Region, int] | None:
    """The file mapping that holds ``address`` and its private (copied-on-write) kB, or None."""
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
            current: Region | None = None
            for line in smaps:
                head = line.split(maxsplit=1)[0]
                if not head.endswith(":"):  # a mapping's first line: "start-end perms offset dev inode path"
                    fields = line.split(maxsplit=5)
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    path = fields[5].strip() if len(fields) > 5 else ""
                    current = Region(start, end, fields[1][0] == "r", fields[1][1] == "w", path)
                    if current.start > address:
                        return None
                elif current is not None and head == "Anonymous:" and current.start <= address < current.end:
                    if not current.path.startswith("/"):
                        return None
                    return current, int(line.split()[1])
    except OSError:
        return None
    return None


def file_pages(tensor: torch.Tensor) -> tuple[int, int] | None:
    """The whole pages under ``tensor`` where it lies in a mapped file none of whose pages was ever
    written (so :func:`release` loses nothing there), else None."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return None
    found = _file_mapping(tensor.data_ptr())
    if found is None or found[1] != 0:
        return None
    start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size()
    lo, hi = -(-start // PAGE) * PAGE, min(end, found[0].end) // PAGE * PAGE
    return (lo, hi) if hi > lo else None


def mapping_pages(tensor: torch.Tensor) -> tuple[int, int] | None:
    """The whole file mapping ``tensor`` lies in, where none of its pages was ever written, else None."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return None
    found = _file_mapping(tensor.data_ptr())
    if found is None or found[1] != 0:
        return None
    return found[0].start, found[0].end


def release(pages: tuple[int, int]) -> bool:
    """Drop the resident pages ``[start, end)`` of a mapped file (see :func:`file_pages`)."""
    return _dont_need(*pages)


def release_file_pages(tensor: torch.Tensor) -> int:
    """Drop the resident pages of the whole file mapping under ``tensor``; returns the bytes advised.

    Only where no page of the mapping was ever written (its private copies are
    0 kB): then every page reads back from the file exactly as it was.
    """
    pages = mapping_pages(tensor)
    return pages[1] - pages[0] if pages is not None and release(pages) else 0


def discard(tensor: torch.Tensor) -> int:
    """Hand back the whole pages inside ``tensor``'s anonymous memory: **their contents become zeros**.

    For a cache whose copies can be made again. Returns the bytes handed back.
    """
    start = tensor.data_ptr()
    lo, hi = -(-start // PAGE) * PAGE, (start + tensor.numel() * tensor.element_size()) // PAGE * PAGE
    return hi - lo if hi > lo and _dont_need(lo, hi) else 0


def release_zero_pages(start: int, end: int) -> int:
    """Hand back the whole pages inside ``[start, end)`` of anonymous memory, if all of it reads zero.

    The caller must own the range (it stays mapped) and nothing may write to it
    meanwhile; a page handed back reads as zeros again. Returns the bytes handed back.
    """
    lo, hi = -(-start // PAGE) * PAGE, end // PAGE * PAGE
    if hi <= lo:
        return 0
    for at in range(lo, hi, ZERO_CHECK_BYTES):
        size = min(ZERO_CHECK_BYTES, hi - at)
        if np.frombuffer(memoryview((ctypes.c_uint8 * size).from_address(at)), dtype=np.uint64).any():
            return 0
    return hi - lo if _dont_need(lo, hi) else 0


def read(address: int, nbytes: int) -> bytes | None:
    """``nbytes`` of this process's memory at ``address``, or None where it is not mapped (never faults).

    Through ``/proc/self/mem``: safe on memory another thread may unmap meanwhile.
    """
    try:
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            data = os.pread(mem.fileno(), nbytes, address)
    except (OSError, OverflowError):
        return None
    return data if len(data) == nbytes else None


def allocated(address: int) -> bool:
    """Whether ``address`` is the start of a block glibc's ``malloc`` gave out and that is not freed.

    glibc's chunk layout: the block's size (flags in the low bits) sits 8 bytes
    before it; a block with a mapping of its own (flag 2) is live while mapped;
    otherwise the next chunk's lowest size bit says whether this one is in use
    (exact for blocks this large: small ones may sit freed in a cache).
    """
    head = read(address - 8, 8)
    if head is None:
        return False
    size = int.from_bytes(head, "little")
    if size & 2:
        return True
    following = read(address - 16 + (size & ~7) + 8, 8)
    return following is not None and bool(int.from_bytes(following, "little") & 1)


def heap_address() -> int:
    """An address in the heap this thread's ``malloc`` takes from now, or 0 (not glibc).

    glibc gives each thread an arena: the mapping holding this address is where
    the thread's small allocations have been going, whether it grew or not.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return 0
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    probe = libc.malloc(256)
    libc.free(probe)
    return int(probe or 0)


def _dont_need(start: int, end: int) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: leave the pages where they are
        return False
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return int(libc.madvise(start, end - start, MADV_DONTNEED)) == 0

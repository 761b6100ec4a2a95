//! The memory a ring lives in: private heap memory or a shared file mapping.
//!
//! This module holds the crate's only `unsafe` code: turning a mapped byte
//! range into references to the atomics of [`crate::layout`]. The ring
//! algorithm itself (in `ring.rs`) is safe code over `&Header`,
//! `&[CachePadded<ReaderEntry>]` and `&[AtomicU64]`.

use crossbeam_utils::CachePadded;

use crate::layout::{Header, Layout, ReaderEntry};
use crate::sync::AtomicU64;

/// Owner of the ring's memory.
#[derive(Debug)]
pub(crate) enum Region {
    /// Heap memory, one process. Used by loom (whose atomics cannot live in a
    /// mapping) and by in-process rings.
    Private {
        header: Box<Header>,
        readers: Box<[CachePadded<ReaderEntry>]>,
        slots: Box<[AtomicU64]>,
    },
    /// A shared file mapping (e.g. in `/dev/shm`).
    #[cfg(not(loom))]
    Mapped(mapped::Mapped),
}

impl Region {
    /// Memory for a ring used within one process: an anonymous mapping, whose pages
    /// the kernel zero-fills on first touch, so a ring sized for its largest message
    /// costs resident memory only for the bytes messages really use (a 16384-slot
    /// ring of 16 KiB slots reserves 256 MiB; 64-byte messages touch 64 MiB of it).
    /// Falls back to the heap if the mapping fails.
    pub(crate) fn private(layout: &Layout) -> Self {
        #[cfg(not(loom))]
        if let Ok(m) = mapped::Mapped::anonymous(*layout) {
            return Region::Mapped(m);
        }
        Self::boxed(layout)
    }

    fn boxed(layout: &Layout) -> Self {
        let readers = (0..layout.config.max_readers)
            .map(|_| CachePadded::new(ReaderEntry::new_zeroed()))
            .collect();
        let slots = (0..layout.slot_words).map(|_| AtomicU64::new(0)).collect();
        let header = Box::new(Header::new_zeroed());
        layout.init_header(&header);
        Region::Private {
            header,
            readers,
            slots,
        }
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        match self {
            Region::Private { header, .. } => header,
            #[cfg(not(loom))]
            Region::Mapped(m) => m.header(),
        }
    }

    #[inline]
    pub(crate) fn readers(&self) -> &[CachePadded<ReaderEntry>] {
        match self {
            Region::Private { readers, .. } => readers,
            #[cfg(not(loom))]
            Region::Mapped(m) => m.readers(),
        }
    }

    #[inline]
    pub(crate) fn slots(&self) -> &[AtomicU64] {
        match self {
            Region::Private { slots, .. } => slots,
            #[cfg(not(loom))]
            Region::Mapped(m) => m.slots(),
        }
    }
}

#[cfg(not(loom))]
pub(crate) mod mapped {
    use std::fs::{File, OpenOptions};
    use std::path::{Path, PathBuf};
    use std::ptr::NonNull;

    use crossbeam_utils::CachePadded;
    use memmap2::MmapMut;

    use crate::RingError;
    use crate::layout::{Header, Layout, ReaderEntry};
    use crate::sync::AtomicU64;

    /// A validated shared mapping.
    ///
    /// Invariants (established by [`Mapped::create`] / [`Mapped::open`] /
    /// [`Mapped::anonymous`] and
    /// relied on by the accessors):
    /// - `base` is the start of `_map`, page aligned, valid for `_map.len()`
    ///   bytes for as long as `_map` lives (the mapping does not move when the
    ///   `MmapMut` value moves);
    /// - `_map.len() >= layout.total_bytes`, and the header, reader table and
    ///   slot array lie at the offsets computed by `layout`, each suitably
    ///   aligned;
    /// - no `&mut` to the mapped bytes is ever created; all access goes
    ///   through atomics (interior mutability), so concurrent access by other
    ///   threads and processes is not a data race, and every bit pattern
    ///   another process may write is a valid `AtomicU64`.
    #[derive(Debug)]
    pub(crate) struct Mapped {
        /// Owns the mapping `base` points into; unmapped on drop.
        _map: MmapMut,
        base: NonNull<u8>,
        layout: Layout,
        /// The ring file (`None`: an anonymous mapping, private to this process).
        path: Option<PathBuf>,
    }

    // SAFETY: `Mapped` only hands out shared references to atomics inside the
    // mapping it owns; the raw pointer is just a cached `_map.as_mut_ptr()`.
    unsafe impl Send for Mapped {}
    // SAFETY: as above: all access through `&Mapped` is via atomics.
    unsafe impl Sync for Mapped {}

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RingError + '_ {
        move |source| RingError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn map_file(path: &Path, file: &File) -> Result<(MmapMut, NonNull<u8>), RingError> {
        // SAFETY: mapping a file is unsafe because another process may
        // modify or truncate it. Modification is fine: we only access the
        // bytes through atomics. Truncation would raise SIGBUS on access; the
        // crate documents that ring files must not be truncated while mapped
        // (docs/rings.md, "Failure modes").
        let map = unsafe { MmapMut::map_mut(file) }.map_err(io(path))?;
        checked_base(map)
    }

    /// The mapping and its base pointer, checked to be non-null and aligned for the
    /// header, reader table and slots.
    fn checked_base(mut map: MmapMut) -> Result<(MmapMut, NonNull<u8>), RingError> {
        let base = NonNull::new(map.as_mut_ptr())
            .ok_or(RingError::InvalidConfig("mapping returned a null pointer"))?;
        if base
            .as_ptr()
            .align_offset(core::mem::align_of::<CachePadded<ReaderEntry>>().max(128))
            != 0
        {
            return Err(RingError::InvalidConfig("mapping is not suitably aligned"));
        }
        Ok((map, base))
    }

    impl Mapped {
        /// Create a new ring file at `path` (fails if it exists).
        pub(crate) fn create(path: &Path, layout: Layout) -> Result<Self, RingError> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(io(path))?;
            file.set_len(layout.total_bytes as u64).map_err(io(path))?;
            let (map, base) = map_file(path, &file)?;
            let m = Mapped {
                _map: map,
                base,
                layout,
                path: Some(path.to_path_buf()),
            };
            // The file was just created and extended with zeros: all atomics
            // hold 0 (reader entries FREE, stamps "never written").
            layout.init_header(m.header());
            Ok(m)
        }

        /// An anonymous, process-private mapping for the ring (zero-filled on first
        /// touch).
        pub(crate) fn anonymous(layout: Layout) -> Result<Self, RingError> {
            let anon = Path::new("(anonymous mapping)");
            let map = MmapMut::map_anon(layout.total_bytes).map_err(io(anon))?;
            let (map, base) = checked_base(map)?;
            let m = Mapped {
                _map: map,
                base,
                layout,
                path: None,
            };
            // A fresh anonymous mapping reads as zeros: all atomics hold 0.
            layout.init_header(m.header());
            Ok(m)
        }

        /// Attach to an existing ring file, validating its header.
        pub(crate) fn open(
            path: &Path,
            expect: Option<&crate::RingConfig>,
        ) -> Result<Self, RingError> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io(path))?;
            let len = file.metadata().map_err(io(path))?.len();
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len < Layout::header_bytes() {
                return Err(RingError::TooSmall {
                    len,
                    needed: Layout::header_bytes(),
                });
            }
            let (map, base) = map_file(path, &file)?;
            if map.len() < Layout::header_bytes() {
                return Err(RingError::TooSmall {
                    len: map.len(),
                    needed: Layout::header_bytes(),
                });
            }
            // SAFETY: the mapping is at least `size_of::<Header>()` bytes and
            // aligned (checked above); `Header` is `repr(C)` and made only of
            // atomics, valid for any bit pattern.
            let header = unsafe { base.cast::<Header>().as_ref() };
            let layout = Layout::from_header(header, map.len(), expect)?;
            Ok(Mapped {
                _map: map,
                base,
                layout,
                path: Some(path.to_path_buf()),
            })
        }

        pub(crate) fn layout(&self) -> &Layout {
            &self.layout
        }

        pub(crate) fn path(&self) -> Option<&Path> {
            self.path.as_deref()
        }

        #[inline]
        pub(crate) fn header(&self) -> &Header {
            // SAFETY: struct invariants: the mapping starts with a `Header`,
            // is aligned and large enough, lives as long as `self`, and is
            // only accessed through atomics.
            unsafe { self.base.cast::<Header>().as_ref() }
        }

        #[inline]
        pub(crate) fn readers(&self) -> &[CachePadded<ReaderEntry>] {
            let n = self.layout.config.max_readers;
            // SAFETY: struct invariants: `readers_off + n * size_of::<entry>`
            // lies within the mapping, `readers_off` is a multiple of the
            // entry's alignment and the base is page aligned; entries are
            // atomics only.
            unsafe {
                let p = self
                    .base
                    .add(self.layout.readers_off)
                    .cast::<CachePadded<ReaderEntry>>();
                core::slice::from_raw_parts(p.as_ptr(), n)
            }
        }

        #[inline]
        pub(crate) fn slots(&self) -> &[AtomicU64] {
            // SAFETY: struct invariants: `slots_off + slot_words * 8` lies
            // within the mapping and `slots_off` is a multiple of 128.
            unsafe {
                let p = self.base.add(self.layout.slots_off).cast::<AtomicU64>();
                core::slice::from_raw_parts(p.as_ptr(), self.layout.slot_words)
            }
        }
    }
}

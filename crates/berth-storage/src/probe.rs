//! The never-format guard: what is on a block device, judged from its first and last bytes.
//!
//! Formatting a volume that holds data is the one mistake berth must never make, so "blank" is defined
//! conservatively: every byte of the probed regions is zero. The regions are the first [`HEAD_BYTES`] and the
//! last [`TAIL_BYTES`] of the device, which contain every signature recognised here (and those of most other
//! formats: ZFS labels, MD superblocks, ISO 9660, FAT/NTFS boot sectors). Known signatures are named so that a
//! refusal says what was found where; an unknown format is still refused by its first non-zero byte.
//!
//! The judgement ([`probe_regions`]) is pure so the property test can feed it arbitrary buffers;
//! [`probe_device`] streams the two regions through a small buffer and keeps only the signature windows, so the
//! guard does not raise berth's peak memory by the 9 MiB it scans (a property test holds both to the same verdict).

use std::fmt;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::StorageError;

/// Bytes probed at the start of the device (covers LUKS2's secondary header copies up to 4 MiB).
pub const HEAD_BYTES: u64 = 8 << 20;
/// Bytes probed at the end of the device (covers the backup GPT, MD 0.90/1.0 superblocks, ZFS end labels).
pub const TAIL_BYTES: u64 = 1 << 20;

/// Offsets (from the device start) of LUKS2's secondary header copies.
const LUKS2_SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];
/// Page sizes at whose end a swap signature may sit.
const SWAP_PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// Offset of `sb_inprogress` in the XFS superblock.
const XFS_INPROGRESS: u64 = 126;
/// The MD RAID superblock magic 0xa92b4efc, little-endian.
const MD_MAGIC: [u8; 4] = [0xfc, 0x4e, 0x2b, 0xa9];

/// A recognised on-disk signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signature {
    /// XFS superblock (`XFSB` at 0).
    Xfs,
    /// ext2 superblock (0xEF53 at 1080, no journal).
    Ext2,
    /// ext3 superblock (0xEF53 at 1080, journal, no ext4-only features).
    Ext3,
    /// ext4 superblock (0xEF53 at 1080 with ext4-only features).
    Ext4,
    /// Btrfs superblock (`_BHRfS_M` at 65600).
    Btrfs,
    /// DOS/MBR boot signature (0x55 0xAA at 510), also carried by FAT/NTFS boot sectors.
    Mbr,
    /// GPT header (`EFI PART` at LBA 1 for 512 or 4096-byte sectors, or the backup at the last LBA).
    Gpt,
    /// LVM2 physical volume label (`LABELONE` in one of the first four sectors).
    Lvm2,
    /// LUKS1 header (`LUKS\xba\xbe`, version 1).
    Luks1,
    /// LUKS2 header (`LUKS\xba\xbe` version 2, or a secondary `SKUL\xba\xbe` copy).
    Luks2,
    /// Linux swap (`SWAPSPACE2`/`SWAP-SPACE` at the end of the first page).
    Swap,
    /// Linux MD RAID superblock (versions 0.90, 1.0, 1.1, 1.2).
    MdRaid,
    /// ISO 9660 (`CD001` at 32769).
    Iso9660,
}

impl Signature {
    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            Signature::Xfs => "xfs",
            Signature::Ext2 => "ext2",
            Signature::Ext3 => "ext3",
            Signature::Ext4 => "ext4",
            Signature::Btrfs => "btrfs",
            Signature::Mbr => "MBR boot signature",
            Signature::Gpt => "GPT header",
            Signature::Lvm2 => "LVM2 PV label",
            Signature::Luks1 => "LUKS1 header",
            Signature::Luks2 => "LUKS2 header",
            Signature::Swap => "swap signature",
            Signature::MdRaid => "MD RAID superblock",
            Signature::Iso9660 => "ISO 9660 descriptor",
        }
    }

    /// True for the filesystems berth may mount (when they match the configuration).
    pub fn is_filesystem(self) -> bool {
        matches!(
            self,
            Signature::Xfs | Signature::Ext2 | Signature::Ext3 | Signature::Ext4 | Signature::Btrfs
        )
    }
}

/// One signature found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What.
    pub signature: Signature,
    /// Byte offset of its magic from the start of the device.
    pub offset: u64,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.signature.name(), self.offset)
    }
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Device size in bytes.
    pub size: u64,
    /// Bytes probed at the start.
    pub head_len: u64,
    /// Bytes probed at the end (0 when the head covers the whole device).
    pub tail_len: u64,
    /// Recognised signatures, by offset.
    pub findings: Vec<Finding>,
    /// The first non-zero byte in the probed regions: offset and value.
    pub first_nonzero: Option<(u64, u8)>,
    /// The XFS superblock at 0 has `sb_inprogress` set: mkfs.xfs sets it first and clears it last, so this is
    /// a format that was interrupted (berth killed an abandoned mkfs, or the instance died), never a filesystem
    /// that held data. The kernel refuses to mount it.
    pub xfs_format_interrupted: bool,
}

/// The judgement of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Every probed byte is zero: the only state in which formatting is allowed.
    Blank,
    /// Exactly one filesystem signature and nothing else recognised.
    Filesystem(Finding),
    /// An XFS superblock left by an interrupted mkfs.xfs (see [`Probe::xfs_format_interrupted`]): no data was
    /// ever written to it, so it may be formatted again, like a blank device.
    InterruptedFormat(Finding),
    /// Anything else: partition table, LVM, LUKS, swap, several signatures, or unknown non-zero data.
    Other,
}

impl Probe {
    /// Blank, one filesystem, or something to refuse.
    pub fn content(&self) -> Content {
        if self.first_nonzero.is_none() {
            return Content::Blank;
        }
        match self.findings.as_slice() {
            [only] if only.signature == Signature::Xfs && self.xfs_format_interrupted => {
                Content::InterruptedFormat(only.clone())
            }
            [only] if only.signature.is_filesystem() => Content::Filesystem(only.clone()),
            _ => Content::Other,
        }
    }

    /// True only when every probed byte is zero.
    pub fn is_blank(&self) -> bool {
        self.content() == Content::Blank
    }

    /// What was found where, for messages.
    pub fn describe(&self) -> String {
        match (&self.findings[..], self.first_nonzero) {
            (_, None) => format!(
                "all zeros in the first {} and last {} bytes",
                self.head_len, self.tail_len
            ),
            ([], Some((offset, byte))) => {
                format!("no known signature, but non-zero byte 0x{byte:02x} at offset {offset}")
            }
            (findings, _) => findings
                .iter()
                .map(Finding::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Judges a device from its first bytes (`head`, from offset 0) and last bytes (`tail`, ending at `size`).
/// Pure. `head` and `tail` must not overlap; when the device is small, pass it all as `head` and an empty tail.
pub fn probe_regions(size: u64, head: &[u8], tail: &[u8]) -> Probe {
    let tail_start = size.saturating_sub(tail.len() as u64);
    let first_nonzero = first_nonzero(head, 0).or_else(|| first_nonzero(tail, tail_start));
    let windows = [
        Window {
            start: 0,
            bytes: head,
        },
        Window {
            start: tail_start,
            bytes: tail,
        },
    ];
    judge(
        size,
        head.len() as u64,
        tail.len() as u64,
        &windows,
        first_nonzero,
    )
}

/// Bytes read from the device at `start`.
struct Window<'a> {
    start: u64,
    bytes: &'a [u8],
}

/// The judgement itself, from the windows that hold the signatures' offsets and the first non-zero byte of the
/// probed regions (which the device reader finds by streaming, so a probe never holds the regions in memory).
fn judge(
    size: u64,
    head_len: u64,
    tail_len: u64,
    windows: &[Window<'_>],
    first_nonzero: Option<(u64, u8)>,
) -> Probe {
    let regions = Regions { windows };
    let mut findings = Vec::new();
    let mut found =
        |signature: Signature, offset: u64| findings.push(Finding { signature, offset });
    filesystem_signatures(&regions, &mut found);
    container_signatures(&regions, size, &mut found);
    findings.sort_by_key(|finding| finding.offset);
    findings.dedup();
    Probe {
        size,
        head_len,
        tail_len,
        findings,
        first_nonzero,
        xfs_format_interrupted: regions.is(0, b"XFSB")
            && regions.at(XFS_INPROGRESS, 1).is_some_and(|b| b[0] != 0),
    }
}

/// The bytes read, by device offset.
struct Regions<'a> {
    windows: &'a [Window<'a>],
}

impl<'a> Regions<'a> {
    /// `len` bytes at `offset`, when a window holds all of them.
    fn at(&self, offset: u64, len: usize) -> Option<&'a [u8]> {
        let end = offset.checked_add(len as u64)?;
        self.windows.iter().find_map(|window| {
            let window_end = window.start + window.bytes.len() as u64;
            (offset >= window.start && end <= window_end).then(|| {
                let from = (offset - window.start) as usize;
                &window.bytes[from..from + len]
            })
        })
    }

    /// Whether `magic` stands at `offset`.
    fn is(&self, offset: u64, magic: &[u8]) -> bool {
        self.at(offset, magic.len()) == Some(magic)
    }
}

/// The filesystems' superblocks near the start: XFS, ext2/3/4, Btrfs.
fn filesystem_signatures(regions: &Regions<'_>, found: &mut impl FnMut(Signature, u64)) {
    if regions.is(0, b"XFSB") {
        found(Signature::Xfs, 0);
    }
    if regions.is(1080, &[0x53, 0xEF]) {
        found(ext_variant(&|offset, len| regions.at(offset, len)), 1080);
    }
    if regions.is(0x1_0040, b"_BHRfS_M") {
        found(Signature::Btrfs, 0x1_0040);
    }
}

/// Everything else berth knows: partition tables, LVM, LUKS, swap, MD RAID, ISO 9660.
fn container_signatures(regions: &Regions<'_>, size: u64, found: &mut impl FnMut(Signature, u64)) {
    let is = |offset: u64, magic: &[u8]| regions.is(offset, magic);
    if is(510, &[0x55, 0xAA]) {
        found(Signature::Mbr, 510);
    }
    for offset in [
        512,
        4096,
        size.saturating_sub(512),
        size.saturating_sub(4096),
    ] {
        if offset >= 512 && is(offset, b"EFI PART") {
            found(Signature::Gpt, offset);
        }
    }
    if let Some(offset) = (0..4u64)
        .map(|sector| sector * 512)
        .find(|&offset| is(offset, b"LABELONE"))
    {
        found(Signature::Lvm2, offset);
    }
    if is(0, b"LUKS\xba\xbe") {
        let version = regions.at(6, 2).map(|v| u16::from_be_bytes([v[0], v[1]]));
        found(
            if version == Some(1) {
                Signature::Luks1
            } else {
                Signature::Luks2
            },
            0,
        );
    } else if let Some(&offset) = LUKS2_SECONDARY_OFFSETS
        .iter()
        .find(|&&offset| is(offset, b"SKUL\xba\xbe"))
    {
        found(Signature::Luks2, offset);
    }
    for page in SWAP_PAGE_SIZES {
        if is(page - 10, b"SWAPSPACE2") || is(page - 10, b"SWAP-SPACE") {
            found(Signature::Swap, page - 10);
        }
    }
    let md_offsets = [
        0,
        4096,
        (size & !0xFFFF).saturating_sub(0x1_0000),
        (size.saturating_sub(8192)) & !4095,
    ];
    if let Some(&offset) = md_offsets.iter().find(|&&offset| is(offset, &MD_MAGIC)) {
        found(Signature::MdRaid, offset);
    }
    if is(0x8001, b"CD001") {
        found(Signature::Iso9660, 0x8001);
    }
}

/// Where [`judge`] looks for signatures on a device of `size` bytes, as `(start, end)` byte ranges: the first
/// 68 KiB (every signature near the start, Btrfs at 64 KiB + 64 the farthest), LUKS2's secondary headers, the
/// last 4 KiB (backup GPT headers) and the two MD superblock positions near the end.
fn signature_ranges(size: u64) -> Vec<(u64, u64)> {
    let mut ranges = vec![(0, 0x1_1000), (size.saturating_sub(4096), size)];
    ranges.extend(
        LUKS2_SECONDARY_OFFSETS
            .iter()
            .map(|&offset| (offset, offset + 8)),
    );
    for offset in [
        (size & !0xFFFF).saturating_sub(0x1_0000),
        (size.saturating_sub(8192)) & !4095,
    ] {
        ranges.push((offset, offset + MD_MAGIC.len() as u64));
    }
    ranges
}

/// ext2, ext3 or ext4 from the superblock's feature flags (superblock at 1024).
fn ext_variant<'a>(at: &impl Fn(u64, usize) -> Option<&'a [u8]>) -> Signature {
    let word = |offset: u64| {
        at(offset, 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    let compat = word(1024 + 0x5C);
    let incompat = word(1024 + 0x60);
    let ro_compat = word(1024 + 0x64);
    // ext3 knows FILETYPE, RECOVER, JOURNAL_DEV and META_BG (incompat), SPARSE_SUPER, LARGE_FILE and
    // BTREE_DIR (ro_compat); anything beyond those (extents, 64bit, flex_bg, huge_file, ...) is ext4.
    const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x8 | 0x10;
    const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
    const HAS_JOURNAL: u32 = 0x4;
    if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        Signature::Ext4
    } else if compat & HAS_JOURNAL != 0 {
        Signature::Ext3
    } else {
        Signature::Ext2
    }
}

fn first_nonzero(bytes: &[u8], base: u64) -> Option<(u64, u8)> {
    bytes
        .iter()
        .position(|&byte| byte != 0)
        .map(|index| (base + index as u64, bytes[index]))
}

/// Bytes read per request while looking for the first non-zero byte.
const SCAN_CHUNK: usize = 64 << 10;

/// Reads the probed regions of an open device (dropping its cached pages first, so what was written through
/// another path is seen) and judges them. The regions are streamed through one small buffer and only the
/// signature windows are kept: a probe costs ~200 KiB of memory, not the 9 MiB it scans.
pub fn probe_file(file: &mut File, path: &Path) -> Result<Probe, StorageError> {
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| StorageError::io("seek", path, e))?;
    // Best effort: a device without a page cache (or a kernel refusing the advice) is read as it is.
    let _ = nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let head_len = size.min(HEAD_BYTES);
    let tail_len = size.saturating_sub(head_len).min(TAIL_BYTES);
    let tail_start = size - tail_len;
    let mut chunk = vec![0u8; SCAN_CHUNK];
    let mut first = None;
    for (start, end) in [(0, head_len), (tail_start, size)] {
        let mut offset = start;
        while first.is_none() && offset < end {
            let len = (end - offset).min(SCAN_CHUNK as u64) as usize;
            read_at(file, path, offset, &mut chunk[..len])?;
            first = first_nonzero(&chunk[..len], offset);
            offset += len as u64;
        }
    }
    // Each signature range, clipped to the probed regions: nothing outside them is judged.
    let mut kept = Vec::new();
    for (start, end) in signature_ranges(size) {
        for (region_start, region_end) in [(0, head_len), (tail_start, size)] {
            let (from, to) = (start.max(region_start), end.min(region_end));
            if from < to {
                let mut bytes = vec![0u8; (to - from) as usize];
                read_at(file, path, from, &mut bytes)?;
                kept.push((from, bytes));
            }
        }
    }
    let windows: Vec<Window<'_>> = kept
        .iter()
        .map(|(start, bytes)| Window {
            start: *start,
            bytes,
        })
        .collect();
    Ok(judge(size, head_len, tail_len, &windows, first))
}

/// Opens a device read-only and exclusively (the kernel refuses when it is mounted or held) and probes it.
pub fn probe_device(path: &Path) -> Result<Probe, StorageError> {
    let mut file = crate::open_exclusive(path)?;
    probe_file(&mut file, path)
}

fn read_at(file: &File, path: &Path, offset: u64, buffer: &mut [u8]) -> Result<(), StorageError> {
    file.read_exact_at(buffer, offset)
        .map_err(|e| StorageError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(size: usize) -> Vec<u8> {
        vec![0; size]
    }

    #[test]
    fn zeros_are_blank_and_anything_else_is_not() {
        let zeros = blank(1 << 20);
        assert!(probe_regions(1 << 20, &zeros, &[]).is_blank());
        let mut one = zeros.clone();
        one[700_000] = 1;
        let probe = probe_regions(1 << 20, &one, &[]);
        assert_eq!(probe.content(), Content::Other);
        assert_eq!(probe.first_nonzero, Some((700_000, 1)));
        assert!(
            probe.describe().contains("offset 700000"),
            "{}",
            probe.describe()
        );
    }

    #[test]
    fn an_xfs_superblock_marked_in_progress_is_an_interrupted_format() {
        let mut head = blank(1 << 20);
        head[..4].copy_from_slice(b"XFSB");
        let finished = probe_regions(1 << 20, &head, &[]);
        assert!(matches!(finished.content(), Content::Filesystem(_)));
        head[XFS_INPROGRESS as usize] = 1;
        let interrupted = probe_regions(1 << 20, &head, &[]);
        assert!(matches!(
            interrupted.content(),
            Content::InterruptedFormat(Finding {
                signature: Signature::Xfs,
                offset: 0
            })
        ));
        // Beside another signature it is no format of berth's: refused like anything else.
        head[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(probe_regions(1 << 20, &head, &[]).content(), Content::Other);
    }

    #[test]
    fn tail_bytes_count() {
        let head = blank(4096);
        let mut tail = blank(4096);
        tail[4095] = 9;
        let probe = probe_regions(1 << 30, &head, &tail);
        assert_eq!(probe.first_nonzero, Some(((1 << 30) - 1, 9)));
        assert!(!probe.is_blank());
    }

    #[test]
    fn recognises_planted_signatures() {
        let size = 16 << 20;
        let cases: Vec<(Signature, u64, Vec<u8>)> = vec![
            (Signature::Xfs, 0, b"XFSB".to_vec()),
            (Signature::Btrfs, 0x10040, b"_BHRfS_M".to_vec()),
            (Signature::Mbr, 510, vec![0x55, 0xAA]),
            (Signature::Gpt, 512, b"EFI PART".to_vec()),
            (Signature::Gpt, 4096, b"EFI PART".to_vec()),
            (Signature::Lvm2, 512, b"LABELONE".to_vec()),
            (Signature::Luks2, 0x4000, b"SKUL\xba\xbe".to_vec()),
            (Signature::Swap, 4086, b"SWAPSPACE2".to_vec()),
            (Signature::MdRaid, 4096, MD_MAGIC.to_vec()),
            (Signature::Iso9660, 0x8001, b"CD001".to_vec()),
        ];
        for (signature, offset, magic) in cases {
            let mut head = blank(HEAD_BYTES as usize);
            head[offset as usize..offset as usize + magic.len()].copy_from_slice(&magic);
            let probe = probe_regions(size, &head, &blank(TAIL_BYTES as usize));
            assert!(
                probe.findings.contains(&Finding { signature, offset }),
                "{signature:?}: {probe:?}"
            );
            assert!(!probe.is_blank());
        }
    }

    #[test]
    fn luks_versions_and_ext_variants() {
        let mut head = blank(1 << 17);
        head[..8].copy_from_slice(b"LUKS\xba\xbe\x00\x01");
        assert_eq!(
            probe_regions(1 << 17, &head, &[]).findings[0].signature,
            Signature::Luks1
        );
        head[..8].copy_from_slice(b"LUKS\xba\xbe\x00\x02");
        assert_eq!(
            probe_regions(1 << 17, &head, &[]).findings[0].signature,
            Signature::Luks2
        );

        let mut ext = blank(1 << 17);
        ext[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        assert_eq!(
            probe_regions(1 << 17, &ext, &[]).content(),
            Content::Filesystem(Finding {
                signature: Signature::Ext2,
                offset: 1080
            })
        );
        ext[1024 + 0x5C] = 0x4;
        assert_eq!(
            probe_regions(1 << 17, &ext, &[]).findings[0].signature,
            Signature::Ext3
        );
        ext[1024 + 0x60] = 0x40;
        assert_eq!(
            probe_regions(1 << 17, &ext, &[]).findings[0].signature,
            Signature::Ext4
        );
    }

    #[test]
    fn backup_gpt_at_the_end_is_found() {
        let size = 64u64 << 20;
        let mut tail = blank(TAIL_BYTES as usize);
        let at = tail.len() - 512;
        tail[at..at + 8].copy_from_slice(b"EFI PART");
        let probe = probe_regions(size, &blank(HEAD_BYTES as usize), &tail);
        assert_eq!(
            probe.findings,
            vec![Finding {
                signature: Signature::Gpt,
                offset: size - 512
            }]
        );
    }

    #[test]
    fn a_filesystem_with_a_partition_table_is_ambiguous() {
        let mut head = blank(1 << 17);
        head[..4].copy_from_slice(b"XFSB");
        head[510..512].copy_from_slice(&[0x55, 0xAA]);
        let probe = probe_regions(1 << 17, &head, &[]);
        assert_eq!(probe.content(), Content::Other);
        assert_eq!(
            probe.describe(),
            "xfs at offset 0, MBR boot signature at offset 510"
        );
    }
}

//! Property test of the never-format guard: no buffer with a non-zero byte is ever called blank, and a planted
//! signature is always found where it was planted, whatever surrounds it.

use berth_storage::probe::{probe_regions, Content, Finding, Signature};
use proptest::prelude::*;

/// Head length used here: covers every head signature (btrfs at 65600 is the farthest besides LUKS2 copies).
const HEAD: usize = 72 << 10;
/// Tail length and device size: the tail holds the backup GPT header.
const TAIL: usize = 8 << 10;
const SIZE: u64 = 1 << 30;

fn signatures() -> Vec<(Signature, u64, &'static [u8])> {
    vec![
        (Signature::Xfs, 0, b"XFSB"),
        (Signature::Ext2, 1080, &[0x53, 0xEF]),
        (Signature::Btrfs, 0x1_0040, b"_BHRfS_M"),
        (Signature::Mbr, 510, &[0x55, 0xAA]),
        (Signature::Gpt, 512, b"EFI PART"),
        (Signature::Gpt, SIZE - 512, b"EFI PART"),
        (Signature::Lvm2, 1024, b"LABELONE"),
        (Signature::Luks2, 0, b"LUKS\xba\xbe\x00\x02"),
        (Signature::Luks1, 0, b"LUKS\xba\xbe\x00\x01"),
        (Signature::Swap, 4086, b"SWAPSPACE2"),
        (Signature::MdRaid, 4096, &[0xfc, 0x4e, 0x2b, 0xa9]),
        (Signature::Iso9660, 0x8001, b"CD001"),
    ]
}

/// Noise in an ext superblock's feature words can turn ext2 into ext3/ext4: same family.
fn family(signature: Signature) -> Signature {
    match signature {
        Signature::Ext3 | Signature::Ext4 => Signature::Ext2,
        other => other,
    }
}

/// Zeros with a few random bytes at random places (possibly none, possibly zero-valued).
fn sparse_buffer(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0..len, any::<u8>()), 0..8).prop_map(move |writes| {
        let mut buffer = vec![0u8; len];
        for (index, byte) in writes {
            buffer[index] = byte;
        }
        buffer
    })
}

fn plant(head: &mut [u8], tail: &mut [u8], offset: u64, magic: &[u8]) {
    let tail_start = SIZE - tail.len() as u64;
    if offset >= tail_start {
        let at = (offset - tail_start) as usize;
        tail[at..at + magic.len()].copy_from_slice(magic);
    } else {
        head[offset as usize..offset as usize + magic.len()].copy_from_slice(magic);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn blank_only_when_every_byte_is_zero(head in sparse_buffer(HEAD), tail in sparse_buffer(TAIL)) {
        let probe = probe_regions(SIZE, &head, &tail);
        let all_zero = head.iter().chain(&tail).all(|&byte| byte == 0);
        prop_assert_eq!(probe.is_blank(), all_zero);
        if !all_zero {
            prop_assert!(probe.first_nonzero.is_some());
        }
    }

    #[test]
    fn dense_random_data_is_never_blank(head in prop::collection::vec(any::<u8>(), HEAD), tail in prop::collection::vec(any::<u8>(), TAIL)) {
        let probe = probe_regions(SIZE, &head, &tail);
        prop_assert_eq!(probe.is_blank(), head.iter().chain(&tail).all(|&byte| byte == 0));
    }

    #[test]
    fn planted_signatures_are_found_and_never_blank(
        which in 0usize..12,
        mut head in sparse_buffer(HEAD),
        mut tail in sparse_buffer(TAIL),
        noisy in any::<bool>(),
    ) {
        let (signature, offset, magic) = signatures()[which];
        if !noisy {
            head.iter_mut().chain(tail.iter_mut()).for_each(|byte| *byte = 0);
        }
        plant(&mut head, &mut tail, offset, magic);
        let probe = probe_regions(SIZE, &head, &tail);
        prop_assert!(!probe.is_blank());
        prop_assert!(probe.findings.iter().any(|f| family(f.signature) == signature && f.offset == offset),
            "{:?} at {} not in {:?}", signature, offset, probe.findings);
        if !noisy {
            let expected = Finding { signature, offset };
            if signature.is_filesystem() {
                prop_assert_eq!(probe.content(), Content::Filesystem(expected));
            } else {
                prop_assert_eq!(probe.content(), Content::Other);
                prop_assert_eq!(probe.findings, vec![expected]);
            }
        }
    }
}

/// Device sizes for the reader test: smaller than the head, head plus part of a tail, head plus a full tail.
const DEVICE_SIZES: [u64; 3] = [(5 << 20) + 512, (8 << 20) + (200 << 10), 24 << 20];

/// Offsets worth writing at on a device of `size`: every place a signature can sit (near the start, LUKS2's
/// secondary headers, the backup GPT and MD positions near the end) and the head/tail boundaries.
fn interesting_offsets(size: u64) -> Vec<u64> {
    let mut offsets = vec![0, 510, 512, 1024, 1080, 4086, 4096, 0x8001, 0x1_0040];
    offsets.extend([
        0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
    ]);
    offsets.extend([
        size - 512,
        size - 4096,
        (size & !0xFFFF) - 0x1_0000,
        (size - 8192) & !4095,
        (8 << 20) - 4,
        size - (1 << 20) - 4,
        size - 16,
    ]);
    // The longest magic is 10 bytes: nothing written may grow the device.
    offsets.retain(|&offset| offset + 16 <= size);
    offsets
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The device reader streams the regions and keeps only signature windows; it must judge exactly as the
    /// whole-buffer judgement does on the same bytes.
    #[test]
    fn streaming_reader_judges_like_the_whole_regions(
        size_index in 0usize..3,
        writes in prop::collection::vec((0usize..64, 0usize..13, any::<bool>()), 0..6),
    ) {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::fs::FileExt;

        let size = DEVICE_SIZES[size_index];
        let offsets = interesting_offsets(size);
        let mut file = tempfile::tempfile().expect("temp file");
        file.set_len(size).expect("size");
        for (place, which, magic) in writes {
            let offset = offsets[place % offsets.len()];
            // Index 12: a LUKS2 secondary header, which only counts at its own offsets.
            let bytes: &[u8] = match (magic, which) {
                (false, _) => &[0x5a],
                (true, 12) => b"SKUL\xba\xbe",
                (true, which) => signatures()[which].2,
            };
            file.write_all_at(bytes, offset).expect("write");
        }
        file.flush().expect("flush");
        let head_len = size.min(berth_storage::probe::HEAD_BYTES);
        let tail_len = (size - head_len).min(berth_storage::probe::TAIL_BYTES);
        let mut head = vec![0u8; head_len as usize];
        let mut tail = vec![0u8; tail_len as usize];
        file.read_exact_at(&mut head, 0).expect("head");
        file.read_exact_at(&mut tail, size - tail_len).expect("tail");
        let expected = probe_regions(size, &head, &tail);
        file.seek(SeekFrom::Start(0)).expect("rewind");
        let probed = berth_storage::probe::probe_file(&mut file, std::path::Path::new("test-device"))
            .expect("probe");
        prop_assert_eq!(probed, expected);
    }
}

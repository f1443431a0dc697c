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

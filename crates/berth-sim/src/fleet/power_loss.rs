//! A host's death as power loss: its volumes keep only what had reached the device when it died.
//!
//! Why this is not just SIGKILL: killing the processes leaves the page cache, and when the container's last
//! process exits its mounts go with it, and the kernel writes every dirty page to the volume as it unmounts. A
//! real instance that loses power loses those pages (Kafka does not fsync its log by default; it relies on
//! replication). So the host is first frozen (SIGSTOP to every process in its namespace: nothing more is written,
//! and nothing is unmounted), each of its volumes' backing files is copied as it stands (what the filesystem had
//! already written through the loop device, as a crash leaves it), the host is killed and its devices unplugged,
//! and the copy is put back in place of the backing file. What the unmount flushed after the death is counted
//! (4 KiB blocks that differ) and dropped. The kernel's own writeback may still land a few pages between the freeze
//! and the copy, as it would in the last instant before a real power cut.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_error, lock, FleetError, Host, Inner};
use crate::sys;

/// How long freezing a host may take before its death goes on regardless.
const FREEZE_LIMIT: Duration = Duration::from_secs(5);
/// The unit in which a lost write is counted (a page).
const BLOCK: usize = 4096;

/// A volume as it stood when its host died, until the copy is put back.
pub(super) struct AtDeath {
    backing: PathBuf,
    copy: PathBuf,
}

impl Host {
    /// Stops every process of the host where it stands (SIGSTOP; a stopped process cannot fork), repeating until
    /// a pass finds none it had not stopped, so nothing more reaches the host's volumes.
    pub(super) fn freeze(&self) {
        let deadline = Instant::now() + FREEZE_LIMIT;
        let mut stopped = std::collections::BTreeSet::new();
        loop {
            let fresh: Vec<i32> = sys::netns_pids(&self.ns)
                .into_iter()
                .filter(|pid| !stopped.contains(pid))
                .collect();
            if fresh.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in fresh {
                sys::signal(pid, nix::sys::signal::Signal::SIGSTOP);
                stopped.insert(pid);
            }
        }
    }
}

impl Inner {
    /// Copies the backing file of every volume plugged into host `index`, as it stands now.
    pub(super) fn volumes_at_death(&self, index: usize) -> Result<Vec<AtDeath>, FleetError> {
        let volume_ids = lock(&self.plugged).volumes_on(index);
        volume_ids
            .iter()
            .map(|volume_id| {
                let backing = self.volume_backing(volume_id);
                let copy = backing.with_extension("img.at-death");
                std::fs::copy(&backing, &copy)
                    .map_err(io_error(format!("copy of {} at death", backing.display())))?;
                Ok(AtDeath { backing, copy })
            })
            .collect()
    }

    /// Puts each volume back as it stood at the death (its host unplugged), recording for host `index` the bytes
    /// written after it, which a dead machine loses.
    pub(super) fn restore_at_death(
        &self,
        index: usize,
        volumes: Vec<AtDeath>,
    ) -> Result<(), FleetError> {
        let mut lost = 0;
        for volume in volumes {
            lost += differing_bytes(&volume.backing, &volume.copy)
                .map_err(io_error(format!("compare {}", volume.backing.display())))?;
            std::fs::rename(&volume.copy, &volume.backing)
                .map_err(io_error(format!("restore {}", volume.backing.display())))?;
        }
        lock(&self.plugged).record_death(index, lost);
        Ok(())
    }
}

/// The bytes (whole 4 KiB blocks) in which two files of one volume differ.
fn differing_bytes(a: &Path, b: &Path) -> std::io::Result<u64> {
    let (mut a, mut b) = (File::open(a)?, File::open(b)?);
    let (mut block_a, mut block_b) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
    let mut differing = 0;
    loop {
        let read_a = read_block(&mut a, &mut block_a)?;
        let read_b = read_block(&mut b, &mut block_b)?;
        if read_a == 0 && read_b == 0 {
            return Ok(differing);
        }
        if read_a != read_b || block_a[..read_a] != block_b[..read_b] {
            differing += BLOCK as u64;
        }
    }
}

/// Fills `block` from `file` as far as it goes; the bytes read (less than a block only at the end).
fn read_block(file: &mut File, block: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < block.len() {
        match file.read(&mut block[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_bytes_counts_whole_blocks_that_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let mut data = vec![7u8; BLOCK * 4 + 100];
        std::fs::write(&a, &data).unwrap();
        data[BLOCK + 1] = 0;
        data[BLOCK * 3 + 5] = 0;
        data[BLOCK * 3 + 6] = 0;
        data[BLOCK * 4 + 50] = 1;
        std::fs::write(&b, &data).unwrap();
        assert_eq!(differing_bytes(&a, &b).unwrap(), 3 * BLOCK as u64);
        assert_eq!(differing_bytes(&a, &a).unwrap(), 0);
    }
}

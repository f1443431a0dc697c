//! What the kernel says is mounted where, from `/proc/self/mountinfo`.
//!
//! mountinfo (not `/proc/mounts`) because it carries the device number, which identifies the volume whatever
//! name it was mounted under (by-id link, `/dev/nvme1n1`, a loop device), and because it is per mount
//! namespace: the view of the thread that asks, which is what the mount and unmount calls act on.

use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Device number (major, minor) of the mounted filesystem.
    pub dev: (u64, u64),
    /// Mount point (octal escapes decoded).
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source as given to mount(2) (usually the device path).
    pub source: String,
    /// Per-mount options (`rw,noatime`).
    pub options: String,
}

impl MountEntry {
    /// True when this mount is of `device` (same device number, or the same canonical source path).
    pub fn is_device(&self, device: &Path, dev: (u64, u64)) -> bool {
        self.dev == dev || Path::new(&self.source) == device
    }
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let mount_point = unescape(fields.get(4)?);
    let options = fields.get(5)?.to_string();
    let mut rest = after.split(' ');
    let fstype = rest.next()?.to_owned();
    let source = unescape(rest.next()?);
    Some(MountEntry {
        dev: (major.parse().ok()?, minor.parse().ok()?),
        mount_point: PathBuf::from(mount_point),
        fstype,
        source,
        options,
    })
}

/// Decodes the `\ooo` octal escapes mountinfo uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes
            .get(index + 1..index + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[index], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |value, digit| {
                    value.wrapping_mul(8).wrapping_add(digit - b'0')
                }));
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The calling thread's mount table.
pub fn read() -> Result<Vec<MountEntry>, StorageError> {
    let path = Path::new("/proc/thread-self/mountinfo");
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .map_err(|error| StorageError::io("read", path, error))
}

/// The mount visible at `path` (the last one stacked there), if any.
pub fn top_at<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|entry| entry.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    97 22 7:3 / /var/lib/my\\040kafka rw,noatime - xfs /dev/loop3 rw,attr2\n\
                    bad line\n";
        let entries = parse(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].dev, (7, 3));
        assert_eq!(entries[1].mount_point, PathBuf::from("/var/lib/my kafka"));
        assert_eq!(entries[1].fstype, "xfs");
        assert_eq!(entries[1].source, "/dev/loop3");
        assert_eq!(entries[1].options, "rw,noatime");
        assert_eq!(
            top_at(&entries, Path::new("/")).map(|e| e.dev),
            Some((253, 0))
        );
    }
}

//! From an attached volume id to its block device, never an instance-store disk or another volume.
//!
//! EC2 names the device the instance asked for (`/dev/xvdf`) but on Nitro instances the kernel calls it
//! `/dev/nvmeXn1` in attach order, so the requested name is only the last resort. In order:
//! 1. udev's Nitro symlink `<device_root>/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash>`;
//! 2. the NVMe controllers in `<sys_root>/class/nvme/*`, whose `model` is `Amazon Elastic Block Store` and whose
//!    `serial` is the volume id without its dash (space padded), giving the namespace `nvmeXnY`;
//! 3. the requested Xen-style name (`/dev/sdf` is also looked for as `xvdf`, and the reverse).
//!
//! Every candidate is vetted: each NVMe name met along its symlink chain must belong to an EBS controller with
//! this volume's serial, so an instance-store disk (model `Amazon EC2 NVMe Instance Storage`) or another
//! volume is never chosen even when a by-name link points at it; such candidates are skipped and named in the
//! timeout error. The result is canonical (symlinks resolved) so mountinfo names the same device.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// The NVMe model string of an EBS volume.
pub const EBS_MODEL: &str = "Amazon Elastic Block Store";
/// The NVMe model string of an instance-store disk (never chosen).
pub const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";

/// Where a device was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The udev by-id symlink.
    ById(PathBuf),
    /// The sysfs scan, naming the controller.
    Sysfs(String),
    /// The requested (Xen-style) name.
    Requested(PathBuf),
}

/// A resolved device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical block device path.
    pub device: PathBuf,
    /// How it was found.
    pub route: Route,
}

/// One look at the device tree: found, or not (yet), with candidates refused on the way.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    pub(crate) resolved: Option<Resolved>,
    pub(crate) skipped: Vec<String>,
}

/// Looks for a volume's device under a device root and a sysfs root.
#[derive(Debug, Clone)]
pub struct Resolver {
    device_root: PathBuf,
    sys_root: PathBuf,
}

/// The NVMe serial of a volume: its id without the dash (`vol-0abc` -> `vol0abc`).
pub fn volume_serial(volume_id: &str) -> Result<String, StorageError> {
    let hex = volume_id
        .strip_prefix("vol-")
        .filter(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    match hex {
        Some(hex) => Ok(format!("vol{hex}")),
        None => Err(StorageError::InvalidVolumeId {
            volume_id: volume_id.to_owned(),
        }),
    }
}

impl Resolver {
    /// A resolver over these roots (`/dev` and `/sys` in production).
    pub fn new(device_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> Self {
        Self {
            device_root: device_root.into(),
            sys_root: sys_root.into(),
        }
    }

    /// The udev by-id path of a volume on Nitro.
    pub fn by_id_path(&self, serial: &str) -> PathBuf {
        self.device_root
            .join("disk/by-id")
            .join(format!("nvme-Amazon_Elastic_Block_Store_{serial}"))
    }

    /// The requested name and its Xen twin (`sdf` <-> `xvdf`), under the device root.
    pub fn requested_paths(&self, requested: &str) -> Vec<PathBuf> {
        let name = requested.trim().trim_start_matches("/dev/");
        let mut names = Vec::new();
        if let Some(letters) = name.strip_prefix("sd") {
            names.push(format!("xvd{letters}"));
            names.push(name.to_owned());
        } else if let Some(letters) = name.strip_prefix("xvd") {
            names.push(name.to_owned());
            names.push(format!("sd{letters}"));
        } else if !name.is_empty() {
            names.push(name.to_owned());
        }
        names
            .into_iter()
            .map(|name| self.device_root.join(name))
            .collect()
    }

    /// What the resolver looks at, for messages.
    pub(crate) fn looked_at(&self, serial: &str, requested: &str) -> String {
        let mut places = vec![
            self.by_id_path(serial).display().to_string(),
            format!("{}/class/nvme/*/{{model,serial}}", self.sys_root.display()),
        ];
        places.extend(
            self.requested_paths(requested)
                .iter()
                .map(|path| path.display().to_string()),
        );
        places.join(", ")
    }

    /// One look, no waiting.
    pub(crate) fn attempt(&self, serial: &str, requested: &str) -> Attempt {
        let mut attempt = Attempt::default();
        let by_id = self.by_id_path(serial);
        if let Some(device) = self.vet(&by_id, serial, &mut attempt.skipped) {
            attempt.resolved = Some(Resolved {
                device,
                route: Route::ById(by_id),
            });
            return attempt;
        }
        for (controller, namespace) in self.scan_sysfs(serial) {
            if let Some(device) = self.vet(
                &self.device_root.join(&namespace),
                serial,
                &mut attempt.skipped,
            ) {
                attempt.resolved = Some(Resolved {
                    device,
                    route: Route::Sysfs(controller),
                });
                return attempt;
            }
        }
        for path in self.requested_paths(requested) {
            if let Some(device) = self.vet(&path, serial, &mut attempt.skipped) {
                attempt.resolved = Some(Resolved {
                    device,
                    route: Route::Requested(path),
                });
                return attempt;
            }
        }
        attempt
    }

    /// EBS controllers carrying this serial, with their namespace device names (lowest namespace first).
    fn scan_sysfs(&self, serial: &str) -> Vec<(String, String)> {
        let Ok(entries) = fs::read_dir(self.sys_root.join("class/nvme")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let controller = entry.file_name().to_string_lossy().into_owned();
            let Some((model, controller_serial)) = self.controller_identity(&controller) else {
                continue;
            };
            if model != EBS_MODEL || controller_serial != serial {
                continue;
            }
            let Ok(children) = fs::read_dir(entry.path()) else {
                continue;
            };
            let mut namespaces: Vec<(u32, String)> = children
                .flatten()
                .filter_map(|child| {
                    let name = child.file_name().to_string_lossy().into_owned();
                    let (parsed_controller, namespace) = parse_nvme_namespace(&name)?;
                    (parsed_controller == controller).then_some((namespace, name))
                })
                .collect();
            namespaces.sort();
            found.extend(
                namespaces
                    .into_iter()
                    .map(|(_, name)| (controller.clone(), name)),
            );
        }
        found.sort();
        found
    }

    /// A controller's trimmed model and serial from sysfs.
    fn controller_identity(&self, controller: &str) -> Option<(String, String)> {
        let dir = self.sys_root.join("class/nvme").join(controller);
        let model = fs::read_to_string(dir.join("model")).ok()?;
        let serial = fs::read_to_string(dir.join("serial")).ok()?;
        Some((model.trim().to_owned(), serial.trim().to_owned()))
    }

    /// The canonical block device behind `path`, if it exists and nothing on its symlink chain is an NVMe
    /// device of another kind or another volume. Refusals are recorded in `skipped`.
    fn vet(&self, path: &Path, serial: &str, skipped: &mut Vec<String>) -> Option<PathBuf> {
        let canonical = fs::canonicalize(path).ok()?;
        for name in chain_names(path).into_iter().chain(file_name(&canonical)) {
            let Some((controller, _)) = parse_nvme_namespace(&name) else {
                continue;
            };
            let Some((model, controller_serial)) = self.controller_identity(&controller) else {
                continue;
            };
            let refusal = if model == INSTANCE_STORE_MODEL {
                Some(format!(
                    "{} is an instance-store disk ({name}, model {model:?})",
                    path.display()
                ))
            } else if model != EBS_MODEL {
                Some(format!(
                    "{} is {name} with model {model:?}, not an EBS volume",
                    path.display()
                ))
            } else if controller_serial != serial {
                Some(format!(
                    "{} is {name}, EBS volume {controller_serial}, not {serial}",
                    path.display()
                ))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                if !skipped.contains(&refusal) {
                    skipped.push(refusal);
                }
                return None;
            }
        }
        match fs::metadata(&canonical) {
            Ok(metadata) if metadata.file_type().is_block_device() => Some(canonical),
            Ok(_) => {
                skipped.push(format!(
                    "{} -> {} is not a block device",
                    path.display(),
                    canonical.display()
                ));
                None
            }
            Err(_) => None,
        }
    }
}

/// `nvme<c>n<n>` -> (`nvme<c>`, n). Partitions (`p1`) and multipath names (`c<m>`) are not namespaces.
fn parse_nvme_namespace(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix("nvme")?;
    let (controller, namespace) = rest.split_once('n')?;
    let all_digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(controller) || !all_digits(namespace) {
        return None;
    }
    Some((format!("nvme{controller}"), namespace.parse().ok()?))
}

/// The file names met following `path`'s symlinks (the path itself first), at most 40 hops.
fn chain_names(path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        names.extend(file_name(&current));
        match fs::read_link(&current) {
            Ok(target) => {
                current = current
                    .parent()
                    .map(|parent| parent.join(&target))
                    .unwrap_or(target)
            }
            Err(_) => break,
        }
    }
    names
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_the_id_without_dash() {
        assert_eq!(
            volume_serial("vol-0123456789abcdef0").unwrap(),
            "vol0123456789abcdef0"
        );
        assert!(volume_serial("vol0123").is_err());
        assert!(volume_serial("vol-").is_err());
        assert!(volume_serial("vol-xyz").is_err());
    }

    #[test]
    fn xen_twins() {
        let resolver = Resolver::new("/dev", "/sys");
        assert_eq!(
            resolver.requested_paths("/dev/sdf"),
            vec![PathBuf::from("/dev/xvdf"), PathBuf::from("/dev/sdf")]
        );
        assert_eq!(
            resolver.requested_paths("xvdg"),
            vec![PathBuf::from("/dev/xvdg"), PathBuf::from("/dev/sdg")]
        );
    }

    #[test]
    fn namespace_names() {
        assert_eq!(parse_nvme_namespace("nvme1n1"), Some(("nvme1".into(), 1)));
        assert_eq!(parse_nvme_namespace("nvme12n3"), Some(("nvme12".into(), 3)));
        assert_eq!(parse_nvme_namespace("nvme1n1p1"), None);
        assert_eq!(parse_nvme_namespace("nvme1c1n1"), None);
        assert_eq!(parse_nvme_namespace("loop3"), None);
    }
}

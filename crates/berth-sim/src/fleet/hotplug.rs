//! The hot-plug: what makes EC2's attachments real inside the hosts. It follows moto's attachments (the simulator
//! may poll moto; berth may not) and, after the configured delay, plugs a veth carrying the ENI's MAC, or a loop
//! device over the volume's backing file ([`crate::devices`]), into the live host the resource is attached to;
//! a detach, a termination or the host's death undoes it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_testkit::aws::ImdsInterface;

use super::{lock, Fleet, Host, Inner};
use crate::devices::{self, PluggedVolume};
use crate::ec2::{Attachments, BrokerResources};
use crate::sys;

#[derive(Debug, Clone)]
struct PluggedEni {
    host: usize,
    port: String,
    mac: String,
    ip: Ipv4Addr,
}

#[derive(Debug, Default)]
pub(super) struct Plugged {
    enis: HashMap<String, PluggedEni>,
    volumes: HashMap<String, (usize, PluggedVolume)>,
    pending: HashMap<String, (usize, Instant)>,
    /// Per dead host: the bytes its volumes lost with it (written after its death, see [`super::power_loss`]).
    lost_at_death: HashMap<usize, u64>,
}

impl Plugged {
    /// The volumes plugged into host `index`.
    pub(super) fn volumes_on(&self, index: usize) -> Vec<String> {
        self.volumes
            .iter()
            .filter(|(_, (host, _))| *host == index)
            .map(|(volume_id, _)| volume_id.clone())
            .collect()
    }

    pub(super) fn record_death(&mut self, index: usize, lost_bytes: u64) {
        self.lost_at_death.insert(index, lost_bytes);
    }
}

impl Fleet {
    /// The region's loop devices and links currently plugged into host `index`: (ENI MACs, loop devices).
    pub fn plugged_into(&self, index: usize) -> (Vec<String>, Vec<PathBuf>) {
        let plugged = lock(&self.inner.plugged);
        let enis = plugged
            .enis
            .values()
            .filter(|p| p.host == index)
            .map(|p| p.mac.clone())
            .collect();
        let volumes = plugged
            .volumes
            .values()
            .filter(|(h, _)| *h == index)
            .map(|(_, v)| v.loop_device.clone())
            .collect();
        (enis, volumes)
    }

    /// The bytes host `index`'s volumes lost when it died (written to its page cache, not yet to the device);
    /// `None` while it lives.
    pub fn lost_at_death(&self, index: usize) -> Option<u64> {
        lock(&self.inner.plugged).lost_at_death.get(&index).copied()
    }
}

impl Inner {
    pub(super) fn volume_backing(&self, volume_id: &str) -> PathBuf {
        self.work.join("volumes").join(format!("{volume_id}.img"))
    }

    fn live_host_of(&self, instance: &str) -> Option<Arc<Host>> {
        lock(&self.hosts)
            .iter()
            .find(|h| h.instance.id == instance && h.alive())
            .cloned()
    }

    pub(super) fn host(&self, index: usize) -> Option<Arc<Host>> {
        lock(&self.hosts).get(index).cloned()
    }

    /// Makes the hosts' devices follow moto's attachments (after the configured delays).
    fn reconcile(&self, attachments: &Attachments) {
        let now = Instant::now();
        for resource in &self.resources {
            let eni_host = self.live_holder(&attachments.enis, &resource.eni_id);
            self.follow(
                &resource.eni_id,
                eni_host,
                self.options.eni_delay,
                now,
                |host| self.plug_eni(resource, host),
            );
            let volume_host = self.live_holder(&attachments.volumes, &resource.volume_id);
            self.follow(
                &resource.volume_id,
                volume_host,
                self.options.volume_delay,
                now,
                |host| self.plug_volume(resource, host),
            );
        }
    }

    /// The index of the live host that moto says holds `id` (an ENI or a volume), if any.
    fn live_holder(&self, holders: &HashMap<String, Option<String>>, id: &str) -> Option<usize> {
        let instance = holders.get(id)?.as_deref()?;
        self.live_host_of(instance).map(|h| h.index)
    }

    fn current_host(&self, key: &str) -> Option<usize> {
        let plugged = lock(&self.plugged);
        plugged
            .enis
            .get(key)
            .map(|p| p.host)
            .or_else(|| plugged.volumes.get(key).map(|(h, _)| *h))
    }

    fn follow(
        &self,
        key: &str,
        desired: Option<usize>,
        delay: Duration,
        now: Instant,
        plug: impl FnOnce(usize),
    ) {
        let current = self.current_host(key);
        if current == desired {
            lock(&self.plugged).pending.remove(key);
            return;
        }
        if current.is_some() {
            self.unplug(key);
        }
        let Some(host) = desired else {
            lock(&self.plugged).pending.remove(key);
            return;
        };
        let due = {
            let mut plugged = lock(&self.plugged);
            match plugged.pending.get(key) {
                Some(&(pending_host, due)) if pending_host == host => due,
                _ => {
                    plugged.pending.insert(key.to_owned(), (host, now + delay));
                    now + delay
                }
            }
        };
        if now >= due {
            lock(&self.plugged).pending.remove(key);
            plug(host);
        }
    }

    fn plug_eni(&self, resource: &BrokerResources, index: usize) {
        let Some(host) = self.host(index) else { return };
        let suffix = &resource.eni_id[resource.eni_id.len().saturating_sub(8)..];
        let port = format!("e{suffix}");
        let link = format!("ens{}", 5 + host.next_slot());
        let region_ns = self.region.ns();
        let result = (|| {
            let _ = sys::ip_in(region_ns, &["link", "del", &port]);
            sys::ip_in(
                region_ns,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", &link, "netns", &host.ns,
                ],
            )?;
            sys::ip_in(&host.ns, &["link", "set", &link, "address", &resource.mac])?;
            self.region.join_bridge(&port, host.az)?;
            self.region.allow_source(&port, resource.ip)
        })();
        match result {
            Ok(()) => {
                host.with_imds(|imds| {
                    imds.add_interface(&ImdsInterface {
                        mac: resource.mac.clone(),
                        device_number: 1,
                        interface_id: resource.eni_id.clone(),
                    })
                });
                lock(&self.plugged).enis.insert(
                    resource.eni_id.clone(),
                    PluggedEni {
                        host: index,
                        port,
                        mac: resource.mac.clone(),
                        ip: resource.ip,
                    },
                );
            }
            Err(error) => eprintln!(
                "berth-sim: hot-plug of {} into host {index} failed: {error}",
                resource.eni_id
            ),
        }
    }

    fn plug_volume(&self, resource: &BrokerResources, index: usize) {
        let Some(host) = self.host(index) else { return };
        let backing = self.volume_backing(&resource.volume_id);
        let slot = host.next_slot();
        match devices::plug(
            &backing,
            &resource.volume_id,
            slot,
            &host.tree,
            host.container(),
        ) {
            Ok(plugged) => {
                lock(&self.plugged)
                    .volumes
                    .insert(resource.volume_id.clone(), (index, plugged));
            }
            Err(error) => eprintln!(
                "berth-sim: hot-plug of {} into host {index} failed: {error}",
                resource.volume_id
            ),
        }
    }

    fn unplug(&self, key: &str) {
        let (eni, volume) = {
            let mut plugged = lock(&self.plugged);
            (plugged.enis.remove(key), plugged.volumes.remove(key))
        };
        if let Some(eni) = eni {
            let _ = sys::ip_in(self.region.ns(), &["link", "del", &eni.port]);
            self.region.deny_source(&eni.port, eni.ip);
            if let Some(host) = self.host(eni.host) {
                host.with_imds(|imds| imds.remove_interface(&eni.mac));
            }
        }
        if let Some((index, volume)) = volume {
            let host = self.host(index);
            devices::unplug(&volume, host.as_ref().map(|h| h.container()));
        }
    }

    pub(super) fn unplug_host(&self, index: usize) {
        let keys: Vec<String> = {
            let plugged = lock(&self.plugged);
            let enis = plugged
                .enis
                .iter()
                .filter(|(_, p)| p.host == index)
                .map(|(k, _)| k.clone());
            let volumes = plugged
                .volumes
                .iter()
                .filter(|(_, (h, _))| *h == index)
                .map(|(k, _)| k.clone());
            enis.chain(volumes).collect()
        };
        for key in keys {
            self.unplug(&key);
        }
    }

    pub(super) fn unplug_all(&self) {
        let keys: Vec<String> = {
            let plugged = lock(&self.plugged);
            plugged
                .enis
                .keys()
                .chain(plugged.volumes.keys())
                .cloned()
                .collect()
        };
        for key in keys {
            self.unplug(&key);
        }
    }
}

/// Follows moto's attachments until the fleet stops it.
pub(super) async fn hotplug_loop(inner: Arc<Inner>) {
    // Woken by every API call the proxy answered (an attach or detach takes effect then, as in EC2), with the
    // poll as a backstop for changes made behind the proxy (terminations driven through moto's control port).
    let mut answered = inner.proxy.answered();
    loop {
        match inner.ec2.attachments().await {
            Ok(attachments) => {
                let worker = inner.clone();
                let _ = tokio::task::spawn_blocking(move || worker.reconcile(&attachments)).await;
            }
            Err(error) => eprintln!("berth-sim: hot-plug cannot read attachments: {error}"),
        }
        // Plug exactly when the earliest pending delay runs out, not on the next poll after it.
        let next_due = lock(&inner.plugged)
            .pending
            .values()
            .map(|&(_, due)| due)
            .min();
        let poll = tokio::time::Instant::now() + inner.options.hotplug_poll;
        let wake = next_due.map_or(poll, |due| poll.min(due.into()));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = answered.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

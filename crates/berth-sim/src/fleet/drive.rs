//! Driving a host's berth as an operator does: start it (installed from its package the first time, then through
//! `systemctl`), signal it, wait for it to exit, and read its `/state` until it says what a test waits for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::config::HostSettings;
use super::{Fleet, FleetError};
use crate::state::{self, StateView};
use crate::systemd_host;

impl Fleet {
    /// Host `index`'s configuration files: berth's (validated by berth's parser) and Kafka's server.properties.
    fn host_files(&self, host: &super::Host) -> Result<(String, String), FleetError> {
        let index = host.index;
        let settings = HostSettings {
            index,
            az: host.az,
            role: host.role,
            options: self.options(),
            zookeeper: self.zookeeper().map(|zk| zk.connect_string()),
            endpoint_url: self.proxy().url(),
            security: self.security(),
        };
        let berth_toml = settings.berth_toml().map_err(|source| FleetError::Config {
            host: index,
            source,
        })?;
        Ok((berth_toml, settings.server_properties()))
    }

    /// Starts (or restarts) berth on host `index`.
    pub fn start_berth(&self, index: usize) -> Result<u32, FleetError> {
        self.start_berth_with_env(index, &[])
    }

    /// [`Fleet::start_berth`] with extra environment for this start only (e.g. `FAILPOINTS` for a berth built
    /// with the `failpoints` feature). It stays for systemd's restarts until the next start without it.
    pub fn start_berth_with_env(
        &self,
        index: usize,
        extra_env: &[(&str, &str)],
    ) -> Result<u32, FleetError> {
        let host = self.host(index)?;
        let failed = |source| FleetError::Systemd {
            host: index,
            source,
        };
        systemd_host::set_start_environment(host.container(), extra_env)
            .map_err(|source| failed(source.into()))?;
        self.install_berth(&host)?;
        systemd_host::start_again(host.container()).map_err(|source| failed(source.into()))?;
        Ok(host.berth_pid().unwrap_or(0))
    }

    /// Boots host `index` as an instance of the shipped template's launch template does: berth installed as its
    /// AMI has it (not enabled, no environment file), the instance role's credentials and `user_data` (None: the
    /// instance has none) in its IMDS, then the cloud-init stand-in run as its first boot runs it
    /// ([`crate::cloud_init`]), which runs the script (the shipped one writes `/etc/berth/environment` and
    /// enables and starts berth). Called again, it runs the stand-in as a later boot does: the script does not run
    /// again. A script that fails is in the returned run's `errors`, not an `Err`.
    pub fn boot_with_user_data(
        &self,
        index: usize,
        user_data: Option<&str>,
    ) -> Result<crate::cloud_init::UserDataRun, FleetError> {
        let host = self.host(index)?;
        let failed = |source: systemd_host::InstallError| FleetError::Systemd {
            host: index,
            source,
        };
        self.install(&host, true)?;
        host.with_imds(|imds| {
            imds.set_instance_role(
                crate::ec2::INSTANCE_ROLE,
                &berth_testkit::aws::RoleCredentials {
                    access_key_id: crate::ec2::ACCESS_KEY.into(),
                    secret_access_key: crate::ec2::SECRET_KEY.into(),
                    token: format!("sim-session-{}", host.instance.id),
                },
            );
            imds.set_user_data(user_data);
        })
        .ok_or(FleetError::NoHost(index))?;
        crate::cloud_init::install(host.container()).map_err(|e| failed(e.into()))?;
        crate::cloud_init::run(host.container()).map_err(|e| failed(e.into()))
    }

    /// Installs berth on `host` (enabled, not started) unless it has it ([`systemd_host::install`]).
    fn install_berth(&self, host: &super::Host) -> Result<(), FleetError> {
        self.install(host, false)
    }

    /// [`systemd_host::install`] on `host`, by an operator or (`for_user_data`) as the template's AMI has it.
    fn install(&self, host: &super::Host, for_user_data: bool) -> Result<(), FleetError> {
        let (berth_toml, server_properties) = self.host_files(host)?;
        systemd_host::install(
            host.container(),
            self.options(),
            systemd_host::Configured {
                berth_toml,
                server_properties,
                security: self.security(),
                for_user_data,
            },
            &self.options().berth.berth()?,
            self.kafka(),
        )
        .map_err(|source| FleetError::Systemd {
            host: host.index,
            source,
        })
    }

    /// Starts the berths of `indexes`, never started before, at one instant: every host is installed first, then
    /// one thread per host waits at a barrier and runs only `systemctl start` (which returns on berth's READY).
    pub async fn start_berths_together(&self, indexes: &[usize]) -> Result<(), FleetError> {
        let mut hosts = Vec::new();
        for &index in indexes {
            let host = self.host(index)?;
            self.install_berth(&host)?;
            hosts.push(host);
        }
        let started = tokio::task::spawn_blocking(move || {
            let barrier = std::sync::Barrier::new(hosts.len());
            std::thread::scope(|scope| {
                let threads: Vec<_> = hosts
                    .iter()
                    .map(|host| {
                        let barrier = &barrier;
                        scope.spawn(move || {
                            barrier.wait();
                            systemd_host::start_installed(host.container()).map_err(|source| {
                                FleetError::Systemd {
                                    host: host.index,
                                    source: source.into(),
                                }
                            })
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|thread| thread.join().expect("a start thread panicked"))
                    .collect::<Result<Vec<()>, FleetError>>()
            })
        });
        started.await.map_err(|error| FleetError::Io {
            what: "starting berths together".into(),
            source: std::io::Error::other(error),
        })??;
        Ok(())
    }

    /// Sends `signal` to host `index`'s berth (`systemctl kill --kill-whom=main`).
    pub fn signal_berth(
        &self,
        index: usize,
        signal: nix::sys::signal::Signal,
    ) -> Result<(), FleetError> {
        let host = self.host(index)?;
        systemd_host::signal_berth(host.container(), signal).map_err(|e| FleetError::Systemd {
            host: index,
            source: e.into(),
        })
    }

    /// Waits for host `index`'s berth to exit and returns its exit code (None when killed by a signal).
    pub async fn wait_berth_exit(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<Option<i32>, FleetError> {
        let host = self.host(index)?;
        let started = Instant::now();
        loop {
            match systemd_host::berth_exit(host.container()) {
                Ok(code) => return Ok(code),
                Err(running) if started.elapsed() > timeout => {
                    return Err(FleetError::Timeout {
                        host: index,
                        what: "berth exit".into(),
                        waited: timeout,
                        last: format!("{running}\n{}", host.log_tail()),
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// SIGKILLs berth alone on host `index` (its Kafka keeps running, as after a daemon crash) and waits until
    /// systemd has seen it end.
    pub async fn crash_berth(&self, index: usize) -> Result<(), FleetError> {
        self.signal_berth(index, nix::sys::signal::Signal::SIGKILL)?;
        self.wait_berth_exit(index, Duration::from_secs(5))
            .await
            .map(drop)
    }

    /// berth's `/state` on host `index`.
    pub async fn state(&self, index: usize) -> Result<StateView, state::StateError> {
        let address = self
            .host(index)
            .map(|h| h.state_address())
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        state::fetch_state(address).await
    }

    /// Polls host `index`'s `/state` until `accept` holds, up to `timeout`; gives up early when berth's unit
    /// has stopped for good.
    pub async fn wait_for(
        &self,
        index: usize,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&StateView) -> bool,
    ) -> Result<StateView, FleetError> {
        let host = self.host(index)?;
        let started = Instant::now();
        let mut last;
        loop {
            match state::fetch_state(host.state_address()).await {
                Ok(state) if accept(&state) => return Ok(state),
                Ok(state) => last = format!("{} (last error: {:?})", state.state, state.last_error),
                Err(error) => {
                    last = error.to_string();
                    if let Some(stopped) = systemd_host::stopped(host.container()) {
                        return Err(FleetError::Timeout {
                            host: index,
                            what: what.into(),
                            waited: started.elapsed(),
                            last: format!("{stopped}\n--- journal tail ---\n{}", host.log_tail()),
                        });
                    }
                }
            }
            if started.elapsed() > timeout {
                return Err(FleetError::Timeout {
                    host: index,
                    what: what.into(),
                    waited: timeout,
                    last: format!("{last}\n--- journal tail ---\n{}", host.log_tail()),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until host `index` reports Healthy.
    pub async fn wait_healthy(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<StateView, FleetError> {
        self.wait_for(index, "Healthy", timeout, |s| {
            s.state.eq_ignore_ascii_case("healthy")
        })
        .await
    }
}

//! Storage adapter for berth: volume to block device, never-format probe, mount, meta.properties identity check

//! Kafka adapter for berth: settings overlay, start/stop through systemd or as a child, serving checks

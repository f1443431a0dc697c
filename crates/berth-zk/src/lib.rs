//! ZooKeeper adapter for berth: broker id claims as ephemeral lock nodes, session expiry, Kafka registration watch

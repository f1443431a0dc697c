//! The volume's attach request sent beside the ENI's, as `/state` shows it (`volume_request`): when the AttachEni
//! step sent it and what EC2 answered. The step writes it, the view reads it; nothing decides on it (AttachEbs
//! observes the volume again whatever the answer).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::ports::VolumeRequest;
use berth_core::StepError;

/// The request: when it went out and what it answered (times since the daemon started).
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyVolume {
    /// Sent.
    pub requested: Duration,
    /// Answered, with the answer (None while in flight).
    pub answer: Option<(Duration, Result<VolumeRequest, StepError>)>,
}

/// The shared record of the request; cheap to clone.
#[derive(Debug, Clone)]
pub struct EarlyVolumeRecord {
    origin: Instant,
    request: Arc<Mutex<Option<EarlyVolume>>>,
}

impl EarlyVolumeRecord {
    /// An empty record whose times count from `origin` (the daemon's start).
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            request: Arc::default(),
        }
    }

    /// The request, once it was sent.
    pub fn get(&self) -> Option<EarlyVolume> {
        self.lock().clone()
    }

    /// The request goes out now.
    pub(super) fn requested(&self) {
        *self.lock() = Some(EarlyVolume {
            requested: self.origin.elapsed(),
            answer: None,
        });
    }

    /// The request was answered now.
    pub(super) fn answered(&self, answer: Result<VolumeRequest, StepError>) {
        let at = self.origin.elapsed();
        if let Some(request) = self.lock().as_mut() {
            request.answer = Some((at, answer));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<EarlyVolume>> {
        self.request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

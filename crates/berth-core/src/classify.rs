//! How an adapter's error reaches the state machine: each error type says once whether retrying can help
//! ([`Classify::kind`]), and every conversion into a [`StepError`] goes through that one answer, with the
//! error's whole source chain in the message.

use crate::ports::chain_message;
use crate::{ErrorKind, StepError};

/// An adapter's error that knows whether retrying can help.
pub trait Classify: std::error::Error + 'static {
    /// Retryable (waiting can change it) or Fatal (it cannot).
    fn kind(&self) -> ErrorKind;
}

impl<E: Classify> From<E> for StepError {
    fn from(error: E) -> Self {
        StepError::new(error.kind(), chain_message(&error))
    }
}

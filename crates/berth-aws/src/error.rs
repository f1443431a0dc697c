//! The adapter's errors, and the one place where each becomes Retryable or Fatal for the state machine.
//!
//! The rule: anything that can change by waiting (throttling, 5xx, timeouts, a resource held by another
//! instance, an attachment still in progress, IMDS not answering yet) is Retryable, so the state machine backs
//! off until its deadline; only what no amount of waiting fixes (wrong AZ, missing permissions, bad
//! parameters, a resource that does not exist, missing CloudFormation/Auto Scaling names) is Fatal.

// Codes that mean "slow down", and transient ones (a request timed out): the SDK's own classifier lists, so a
// code AWS adds (EC2's `EC2ThrottledException`, say) is known here as soon as the SDK knows it.
use aws_config::imds::client::error::ImdsError;
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use berth_core::{Classify, ErrorKind};

/// A cause of any type, kept as the error's source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Client-side codes where waiting can help: someone else's attachment is still letting go, a resource we
/// just caused to change is not there yet, or EC2's eventual consistency has not caught up with a new instance.
const WAITABLE_CODES: [&str; 6] = [
    "InvalidInstanceID.NotFound",
    "InvalidNetworkInterface.InUse",
    "VolumeInUse",
    "IncorrectState",
    "InvalidAttachmentID.NotFound",
    "ScalingActivityInProgress",
];

/// Everything that can go wrong in the AWS adapter, with the ids involved.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The configuration cannot be used (caught before any call).
    #[error("aws configuration {key}")]
    Config {
        /// Dotted key.
        key: &'static str,
        /// What is wrong with it.
        #[source]
        source: BoxError,
    },
    /// An IMDS request failed (transport, token, or a status other than 404).
    #[error("IMDS {path}")]
    Imds {
        /// The metadata path.
        path: String,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<ImdsError>,
    },
    /// A required IMDS path answered 404.
    #[error("IMDS {path} is missing (404)")]
    ImdsMissing {
        /// The metadata path.
        path: String,
    },
    /// An IMDS value could not be parsed.
    #[error("IMDS {path}: unusable value {value:?}")]
    ImdsValue {
        /// The metadata path.
        path: String,
        /// The value.
        value: String,
        /// Why it is unusable.
        #[source]
        source: BoxError,
    },
    /// An AWS API call failed.
    #[error("{operation} {resource}: {}{message}{}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(), status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Api {
        /// The API operation, e.g. `AttachNetworkInterface`.
        operation: &'static str,
        /// The resource(s) concerned.
        resource: String,
        /// The AWS error code, when the service sent one.
        code: Option<String>,
        /// The message.
        message: String,
        /// The HTTP status, when a response arrived.
        status: Option<u16>,
        /// Whether retrying may help (throttling, 5xx, timeouts, resources in transition).
        retryable: bool,
        /// The SDK's error when no service answered it (dispatch, timeout, an undecodable response); a service's
        /// answer is all in `code` and `message`.
        #[source]
        source: Option<BoxError>,
    },
    /// A describe answer lacks a field berth needs.
    #[error("{operation} {resource}: the answer has no usable {field}")]
    Malformed {
        /// The operation.
        operation: &'static str,
        /// The resource.
        resource: String,
        /// The missing or unparsable field.
        field: &'static str,
    },
    /// The resource does not exist (any more).
    #[error("{resource} does not exist")]
    NotFound {
        /// The ENI or volume id.
        resource: String,
    },
    /// The resource is in another AZ than this instance: refused before any call.
    #[error("{resource} is in {resource_az}, this instance {instance_id} is in {instance_az}: EC2 cannot attach across zones")]
    WrongZone {
        /// The ENI or volume id.
        resource: String,
        /// Its zone.
        resource_az: String,
        /// This instance.
        instance_id: String,
        /// This instance's zone.
        instance_az: String,
    },
    /// The resource is attached to another instance that is not in a takeover state: never touched.
    #[error("{resource} is attached to instance {owner} which is {owner_state}; berth never detaches from a live instance, waiting for it to let go")]
    OwnerAlive {
        /// The ENI or volume id.
        resource: String,
        /// The owner instance.
        owner: String,
        /// Its state (`running`, `pending`, `stopping`, ...).
        owner_state: String,
    },
    /// The resource must not be used as it stands (multi-attach, DeleteOnTermination): what and why.
    #[error("refusing {resource}: {reason}")]
    Unsafe {
        /// The ENI or volume id.
        resource: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The attachment did not reach the wanted state by the deadline.
    #[error("{resource}: still {state} at the deadline while waiting for {wanted}")]
    WaitTimeout {
        /// The ENI or volume id.
        resource: String,
        /// Last observed state.
        state: String,
        /// What we waited for.
        wanted: &'static str,
    },
    /// `ec2` claim backend: every candidate id's ENI is held by a live instance, still at the deadline.
    #[error("no broker id could be claimed: {detail}")]
    AllHeld {
        /// Which instances hold which ids.
        detail: String,
    },
    /// `ec2` claim backend: the plan has no candidate id.
    #[error("no broker id can be claimed from this instance's zone")]
    NoCandidates,
    /// CloudFormation or Auto Scaling names could not be found in config or instance tags.
    #[error("{what}: not configured ({key}) and instance {instance_id} has no {tag} tag")]
    MissingName {
        /// What was needed (e.g. `stack name`).
        what: &'static str,
        /// The configuration key that could name it.
        key: &'static str,
        /// The instance tag that could name it.
        tag: &'static str,
        /// This instance.
        instance_id: String,
    },
}

impl AwsError {
    /// An API error from an SDK error, classified.
    pub fn api<E>(
        operation: &'static str,
        resource: impl Into<String>,
        error: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.into();
        let (code, message, status, retryable) = match &error {
            SdkError::ServiceError(context) => {
                let status = context.raw().status().as_u16();
                let code = context.err().code().map(str::to_owned);
                let message = context.err().message().unwrap_or("no message").to_owned();
                let retryable = status >= 500
                    || status == 429
                    || code.as_deref().is_some_and(|c| {
                        THROTTLING_ERRORS.contains(&c)
                            || TRANSIENT_ERRORS.contains(&c)
                            || WAITABLE_CODES.contains(&c)
                    });
                (code, message, Some(status), retryable)
            }
            SdkError::ResponseError(context) => {
                // An answer the SDK could not decode (e.g. an HTML error page from a proxy): treat like a 5xx.
                let status = context.raw().status().as_u16();
                (
                    None,
                    format!("undecodable response: {error}"),
                    Some(status),
                    true,
                )
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                (None, error.to_string(), None, true)
            }
            _ => (None, error.to_string(), None, false),
        };
        // The service's own answer is whole in code and message; any other failure keeps the SDK's error.
        let source = match error {
            SdkError::ServiceError(_) => None,
            other => Some(Box::new(other) as BoxError),
        };
        Self::Api {
            operation,
            resource,
            code,
            message,
            status,
            retryable,
            source,
        }
    }

    /// A describe answer for `resource` that lacks `field`.
    pub fn malformed(operation: &'static str, resource: &str, field: &'static str) -> Self {
        Self::Malformed {
            operation,
            resource: resource.to_owned(),
            field,
        }
    }

    /// The AWS error code, when this is an API error that carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether the error is throttling (for logs and metrics).
    pub fn is_throttling(&self) -> bool {
        self.code()
            .is_some_and(|code| THROTTLING_ERRORS.contains(&code))
    }
}

impl Classify for AwsError {
    /// Retryable when waiting may help (after a backoff), else Fatal.
    fn kind(&self) -> ErrorKind {
        match self {
            AwsError::Imds { .. } | AwsError::ImdsMissing { .. } => ErrorKind::Retryable,
            AwsError::Api {
                retryable: true, ..
            } => ErrorKind::Retryable,
            AwsError::Api {
                retryable: false, ..
            } => ErrorKind::Fatal,
            AwsError::OwnerAlive { .. }
            | AwsError::WaitTimeout { .. }
            | AwsError::AllHeld { .. }
            | AwsError::NoCandidates => ErrorKind::Retryable,
            AwsError::Config { .. }
            | AwsError::ImdsValue { .. }
            | AwsError::Malformed { .. }
            | AwsError::NotFound { .. }
            | AwsError::WrongZone { .. }
            | AwsError::Unsafe { .. }
            | AwsError::MissingName { .. } => ErrorKind::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::attach_volume::AttachVolumeError;
    use aws_smithy_types::body::SdkBody;
    use berth_core::ports::ErrorKind;
    use berth_core::StepError;

    use super::*;

    fn service_error(status: u16, code: &str) -> AwsError {
        let error =
            AttachVolumeError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        AwsError::api("AttachVolume", "vol-1", SdkError::service_error(error, raw))
    }

    #[test]
    fn throttling_5xx_and_transitions_are_retryable() {
        for (status, code) in [
            (503, "RequestLimitExceeded"),
            (400, "Throttling"),
            (500, "InternalError"),
            (503, "Unavailable"),
            (400, "VolumeInUse"),
            (400, "InvalidInstanceID.NotFound"),
        ] {
            let error = service_error(status, code);
            assert_eq!(error.kind(), ErrorKind::Retryable, "{code}");
            assert_eq!(StepError::from(error).kind, ErrorKind::Retryable, "{code}");
        }
        assert!(service_error(503, "RequestLimitExceeded").is_throttling());
    }

    #[test]
    fn every_code_the_sdk_classifies_as_throttling_or_transient_is_retryable() {
        // Codes the SDK's own classifier knows that a hand-kept list lacked; a 400 status, so only the code
        // can make them retryable.
        for code in [
            "EC2ThrottledException",
            "PriorRequestNotComplete",
            "BandwidthLimitExceeded",
            "ProvisionedThroughputExceededException",
        ] {
            let error = service_error(400, code);
            assert!(error.is_throttling(), "{code}");
            assert_eq!(error.kind(), ErrorKind::Retryable, "{code}");
        }
        for code in ["RequestTimeout", "RequestTimeoutException"] {
            assert_eq!(
                service_error(400, code).kind(),
                ErrorKind::Retryable,
                "{code}"
            );
        }
    }

    #[test]
    fn permission_and_parameter_errors_are_fatal() {
        for code in [
            "UnauthorizedOperation",
            "InvalidParameterValue",
            "InvalidVolume.ZoneMismatch",
            "IncorrectInstanceState",
        ] {
            let error = service_error(400, code);
            let step = StepError::from(error);
            assert_eq!(step.kind, ErrorKind::Fatal, "{code}");
            assert!(
                step.message.contains(code) && step.message.contains("vol-1"),
                "{}",
                step.message
            );
        }
    }

    #[test]
    fn a_live_owner_is_retryable_and_named() {
        let step = StepError::from(AwsError::OwnerAlive {
            resource: "eni-1".into(),
            owner: "i-owner".into(),
            owner_state: "running".into(),
        });
        assert_eq!(step.kind, ErrorKind::Retryable);
        assert!(step.message.contains("i-owner") && step.message.contains("running"));
    }
}

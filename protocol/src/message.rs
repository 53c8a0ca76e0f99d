//! Messages exchanged on the agent ↔ collector stream.
//!
//! Every connection opens one bidirectional stream. The agent speaks first with
//! [`Hello`]; the collector answers [`Welcome`] (or [`ErrorMessage`]), and from
//! then on batches flow up and acks, jobs and renewals flow down. Variants are
//! only ever appended so older peers keep decoding what they know.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::identity::{AgentId, TenantId};
use crate::observation::Record;

/// One frame's payload.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Message {
    /// Agent → collector: first message, offers a version range.
    Hello(Hello),
    /// Collector → agent: version accepted, delivery state.
    Welcome(Welcome),
    /// Anonymous agent → collector: exchange a token and CSR for a certificate.
    Enroll(EnrollRequest),
    /// Collector → agent: the signed client certificate.
    Enrolled(EnrollResponse),
    /// Enrolled agent → collector: a fresh CSR before its certificate expires.
    Renew(RenewRequest),
    /// Collector → agent: the renewed certificate.
    Renewed(RenewResponse),
    /// Collector → agent: the complete scan configuration for this agent.
    Jobs(JobPush),
    /// Agent → collector: a signed batch of results.
    Batch(SignedBatch),
    /// Collector → agent: everything up to `sequence` is durably stored.
    Ack(Ack),
    /// Either side: liveness probe; the peer answers with its own heartbeat.
    Heartbeat(Heartbeat),
    /// Either side: a refusal; the sender closes the stream afterwards.
    Error(ErrorMessage),
    /// Collector → agent (protocol ≥ [`RUN_REQUESTS_SINCE`]): run one scheduled job now.
    RunJob(RunRequest),
    /// Agent → collector (protocol ≥ [`RUN_REQUESTS_SINCE`]): how a requested run ended.
    RunReport(RunReport),
}

/// First protocol version in which the collector sends [`Message::RunJob`].
pub const RUN_REQUESTS_SINCE: u16 = 2;

/// First message of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Hello {
    /// Lowest protocol version the agent speaks.
    pub min_version: u16,
    /// Highest protocol version the agent speaks.
    pub max_version: u16,
    /// Agent software version, for the fleet inventory.
    pub software: String,
}

/// The collector's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Welcome {
    /// Version both sides now speak.
    pub version: u16,
    /// Highest batch sequence already stored for this agent (0 when none or anonymous).
    pub last_acked: u64,
    /// Collector wall clock, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
    /// How often the agent should send a heartbeat when idle.
    pub heartbeat_interval_ms: u64,
}

/// Enrolment request sent over an unauthenticated connection.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EnrollRequest {
    /// Single-use enrolment token created by an administrator.
    pub token: String,
    /// PKCS#10 certificate signing request (DER) for the agent's TLS key.
    pub csr_der: Vec<u8>,
    /// Ed25519 public key the agent will sign result batches with.
    pub signing_key: [u8; 32],
    /// Human-friendly name (usually the host name) for the inventory.
    pub hostname: String,
}

/// Result of a successful enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EnrollResponse {
    /// Tenant the token belonged to.
    pub tenant: TenantId,
    /// Identifier the collector assigned to the agent.
    pub agent: AgentId,
    /// The agent's client certificate (DER), signed by the tenant CA.
    pub certificate_der: Vec<u8>,
    /// The tenant CA certificate (DER).
    pub tenant_ca_der: Vec<u8>,
    /// The collector's server CA certificate (DER), the agent's trust anchor from now on.
    pub server_ca_der: Vec<u8>,
}

/// Certificate renewal request over an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RenewRequest {
    /// CSR (DER) for a freshly generated TLS key.
    pub csr_der: Vec<u8>,
}

/// Renewed client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RenewResponse {
    /// The new client certificate (DER).
    pub certificate_der: Vec<u8>,
}

/// An inclusive TCP/UDP port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct PortRange {
    /// First port of the range.
    pub start: u16,
    /// Last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

/// What an agent is authorised to scan, assigned by the collector per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Scope {
    /// Address blocks in CIDR notation (`10.0.0.0/24`, `::1/128`).
    pub cidrs: Vec<String>,
    /// Host names (exact, or `*.example.com` for subdomains).
    pub hostnames: Vec<String>,
    /// Port ranges; empty means no port is allowed.
    pub ports: Vec<PortRange>,
}

/// Which scanner a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect scan with banner grabbing.
    Ports,
    /// TLS certificate, protocol and cipher checks.
    Tls,
    /// HTTP security headers.
    Http,
    /// DNS and mail security records.
    Dns,
}

/// One scan job the collector assigns to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct JobSpec {
    /// Stable job identifier.
    pub job_id: String,
    /// Hosts, addresses or CIDRs to scan; each must lie in the scope.
    pub targets: Vec<String>,
    /// Ports to probe for port-based checks.
    pub ports: Vec<PortRange>,
    /// Checks to run on every target.
    pub checks: Vec<CheckKind>,
    /// Run every this many seconds; `None` runs once per push.
    pub every_secs: Option<u64>,
}

/// The complete scan configuration for one agent; replaces any earlier push.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct JobPush {
    /// The tenant's authorised scope.
    pub scope: Scope,
    /// Jobs to run.
    pub jobs: Vec<JobSpec>,
}

/// The signed part of a batch: identity, ordering and the records.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct BatchBody {
    /// Tenant claimed by the agent; must match its certificate.
    pub tenant: TenantId,
    /// Agent claimed by the agent; must match its certificate.
    pub agent: AgentId,
    /// Per-agent sequence number, strictly increasing from 1.
    pub sequence: u64,
    /// When the batch was sealed, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The results.
    pub records: Vec<Record>,
}

/// A batch as sent: the exact encoded body and the Ed25519 signature over its digest.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SignedBatch {
    /// bincode-encoded [`BatchBody`]; signatures cover these exact bytes.
    pub body: Vec<u8>,
    /// Ed25519 signature over [`crate::batch_digest`] of `body`.
    pub signature: [u8; 64],
}

/// Acknowledges every batch up to and including `sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Ack {
    /// Highest contiguous sequence durably stored.
    pub sequence: u64,
}

/// Liveness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Heartbeat {
    /// Sender's wall clock, milliseconds since the Unix epoch.
    pub sent_ms: u64,
}

/// Why a peer refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ErrorCode {
    /// No common protocol version.
    UnsupportedVersion,
    /// The request needs a client certificate.
    Unauthenticated,
    /// Token unknown, expired or already used.
    InvalidToken,
    /// A batch signature did not verify.
    BadSignature,
    /// A batch claims another tenant or agent than the certificate.
    IdentityMismatch,
    /// The message is not allowed in this state.
    BadRequest,
    /// The agent has been revoked.
    Revoked,
    /// The collector failed internally; retry later.
    Internal,
}

/// A refusal with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ErrorMessage {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Explanation for logs and operators.
    pub message: String,
}

/// A collector-scheduled run of one job, identified so that resends are idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RunRequest {
    /// Collector-assigned run identifier; the agent runs each id at most once.
    pub run_id: String,
    /// The job to run (`every_secs` is ignored: the collector schedules it).
    pub job: JobSpec,
    /// The tenant's authorised scope; targets outside it are refused.
    pub scope: Scope,
    /// When the run fell due, milliseconds since the Unix epoch.
    pub scheduled_ms: u64,
}

/// How a requested run ended on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum RunOutcome {
    /// The scan ran and its results are spooled.
    Succeeded,
    /// The scan was refused or its results could not be spooled.
    Failed,
}

/// The agent's account of a finished run, sent after its results are spooled.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RunReport {
    /// The [`RunRequest::run_id`] this answers.
    pub run_id: String,
    /// The job that ran.
    pub job_id: String,
    /// Success or failure.
    pub outcome: RunOutcome,
    /// When the scan started, agent clock, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When the results were spooled (or the run failed), agent clock.
    pub finished_ms: u64,
    /// Observations produced.
    pub records: u64,
    /// Spool batches the observations were sealed into.
    pub batches: u64,
    /// Sequence of the last of those batches (0 when none): the run's results
    /// are stored once the collector holds every batch up to it.
    pub last_sequence: u64,
    /// Why the run failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod run_message_tests {
    use super::*;
    use crate::{DEFAULT_MAX_FRAME, decode_frame, encode_frame};

    fn request() -> Message {
        Message::RunJob(RunRequest {
            run_id: "r-0000019a-1f2e3d4c".into(),
            job: JobSpec {
                job_id: "nightly".into(),
                targets: vec!["10.0.0.0/30".into(), "www.example.com".into()],
                ports: vec![
                    PortRange { start: 22, end: 22 },
                    PortRange {
                        start: 8000,
                        end: 8100,
                    },
                ],
                checks: vec![CheckKind::Ports, CheckKind::Tls],
                every_secs: None,
            },
            scope: Scope {
                cidrs: vec!["10.0.0.0/24".into()],
                hostnames: vec!["*.example.com".into()],
                ports: vec![PortRange {
                    start: 1,
                    end: 65535,
                }],
            },
            scheduled_ms: 1_767_225_600_000,
        })
    }

    fn report(outcome: RunOutcome, error: Option<String>) -> Message {
        Message::RunReport(RunReport {
            run_id: "r-0000019a-1f2e3d4c".into(),
            job_id: "nightly".into(),
            outcome,
            started_ms: 1_767_225_601_000,
            finished_ms: 1_767_225_661_500,
            records: 1234,
            batches: 3,
            last_sequence: u64::MAX - 1,
            error,
        })
    }

    #[test]
    fn run_messages_round_trip_through_frames() {
        for msg in [
            request(),
            report(RunOutcome::Succeeded, None),
            report(
                RunOutcome::Failed,
                Some("target \"8.8.8.8\" refused".into()),
            ),
        ] {
            let frame = encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap();
            let (back, used) = decode_frame(&frame, DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(used, frame.len());
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn run_variants_are_appended_after_the_original_ones() {
        // The first payload byte is the variant index: older peers must keep
        // decoding indices 0..=10 exactly as before.
        let tag = |m: &Message| encode_frame(m, DEFAULT_MAX_FRAME).unwrap()[4];
        assert_eq!(
            tag(&Message::Error(ErrorMessage {
                code: ErrorCode::Internal,
                message: String::new()
            })),
            10
        );
        assert_eq!(tag(&request()), 11);
        assert_eq!(tag(&report(RunOutcome::Succeeded, None)), 12);
    }
}

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
}

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

//! What the outbox holds: endpoints, messages, deliveries and attempts.

use std::fmt;

use align_core::Environment;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::rotation::EndpointSecrets;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses the text form.
            pub fn parse(text: &str) -> Option<Self> {
                let raw = text.strip_prefix($prefix).unwrap_or(text);
                Uuid::parse_str(raw).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }
    };
}

uuid_id!(
    /// Identifies an endpoint (`ep_<uuid>`).
    EndpointId,
    "ep_"
);
uuid_id!(
    /// Identifies one delivery of a message to an endpoint (`dlv_<uuid>`).
    DeliveryId,
    "dlv_"
);

/// The `webhook-id` of a message: stable across every retry and endpoint, so receivers
/// de-duplicate on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub String);

impl MessageId {
    /// A fresh `msg_<32 hex>` id.
    pub fn new() -> Self {
        Self(format!("msg_{}", Uuid::new_v4().simple()))
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which event types an endpoint wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventFilter {
    /// Every event.
    #[default]
    All,
    /// Only these types; an entry ending in `.*` matches a family (`api_key.*`).
    Only(Vec<String>),
}

impl EventFilter {
    /// Whether an event of `event_type` passes.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => event_type.starts_with(prefix),
                None => t == event_type,
            }),
        }
    }
}

/// A registered receiver of webhooks.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Live endpoints receive only live events, sandbox endpoints only sandbox events.
    pub environment: Environment,
    /// Where deliveries go; checked by [`UrlPolicy`](crate::UrlPolicy) before it is stored.
    pub url: String,
    /// Which events it receives.
    pub filter: EventFilter,
    /// Disabled endpoints get no new deliveries and their pending ones wait.
    pub enabled: bool,
    /// Why it was disabled, when it was disabled by the dispatcher.
    pub disabled_reason: Option<String>,
    /// The signing keys.
    pub secrets: EndpointSecrets,
    /// At most this many delivery attempts per second (`None`: the dispatcher's default).
    pub max_per_second: Option<u32>,
    /// Start of the current run of failed attempts, if the latest attempt failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Whose endpoint it is; messages of other owners never reach it.
    pub owner: Owner,
}

/// Who an endpoint or a message belongs to: an organisation and, optionally, one project.
///
/// Messages fan out only to endpoints of the same organisation; an endpoint of a project gets
/// only that project's messages, an organisation-wide endpoint (no project) gets all of its
/// organisation's. The default owner (empty organisation) is for single-tenant embedders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The organisation's id (opaque to this crate).
    pub organization: String,
    /// The project's id, for project endpoints and project events.
    pub project: Option<String>,
}

impl Owner {
    /// An organisation-wide owner.
    pub fn organization(id: impl Into<String>) -> Self {
        Self {
            organization: id.into(),
            project: None,
        }
    }

    /// Whether an endpoint owned by `self` may receive a message owned by `message`.
    pub fn receives(&self, message: &Self) -> bool {
        self.organization == message.organization
            && (self.project.is_none() || self.project == message.project)
    }
}

impl Endpoint {
    /// A new enabled endpoint. Check `url` with [`UrlPolicy`](crate::UrlPolicy) first.
    pub fn new(environment: Environment, url: String, secrets: EndpointSecrets) -> Self {
        Self {
            id: EndpointId::new(),
            environment,
            url,
            filter: EventFilter::All,
            enabled: true,
            disabled_reason: None,
            secrets,
            max_per_second: None,
            failing_since: None,
            created_at: Utc::now(),
            owner: Owner::default(),
        }
    }

    /// The same endpoint, belonging to `owner`.
    #[must_use]
    pub fn owned_by(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }

    /// Whether `message` should fan out to this endpoint: enabled, same owner (see
    /// [`Owner::receives`]), same environment, and an event type its filter accepts (or, for
    /// a message meant for one endpoint, this endpoint).
    pub fn wants(&self, message: &NewMessage) -> bool {
        Route {
            id: self.id,
            environment: self.environment,
            filter: &self.filter,
            enabled: self.enabled,
            owner: &self.owner,
        }
        .wants(message)
    }
}

/// What fan-out needs to know of an endpoint, without its keys: enqueueing (which may run in
/// a caller's transaction, where no [`Sealer`](crate::Sealer) is at hand) reads only this.
pub(crate) struct Route<'a> {
    pub(crate) id: EndpointId,
    pub(crate) environment: Environment,
    pub(crate) filter: &'a EventFilter,
    pub(crate) enabled: bool,
    pub(crate) owner: &'a Owner,
}

impl Route<'_> {
    /// See [`Endpoint::wants`].
    pub(crate) fn wants(&self, message: &NewMessage) -> bool {
        self.enabled
            && self.owner.receives(&message.owner)
            && self.environment == message.environment
            && match message.endpoint {
                Some(id) => id == self.id,
                None => self.filter.matches(&message.event_type),
            }
    }
}

/// An event to deliver, as the caller describes it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The caller's id for the event; enqueueing the same id again does nothing.
    pub event_id: String,
    /// The event type, e.g. `api_key.revoked`.
    pub event_type: String,
    /// Which endpoints may see it.
    pub environment: Environment,
    /// When the event happened.
    pub timestamp: DateTime<Utc>,
    /// The event's `data` object.
    pub data: Value,
    /// Whose event it is; it reaches only endpoints of the same owner.
    pub owner: Owner,
    /// `Some`: for this endpoint only, whatever its event filter (a test event).
    pub endpoint: Option<EndpointId>,
}

impl NewMessage {
    /// An event happening now.
    pub fn new(
        event_id: impl Into<String>,
        event_type: impl Into<String>,
        environment: Environment,
        data: Value,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            event_type: event_type.into(),
            environment,
            timestamp: Utc::now(),
            data,
            owner: Owner::default(),
            endpoint: None,
        }
    }

    /// The same message, belonging to `owner`.
    #[must_use]
    pub fn owned_by(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }

    /// The same message, for `endpoint` only (its filter is not applied).
    #[must_use]
    pub fn only_to(mut self, endpoint: EndpointId) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// The message stored for it at `now` (a new `webhook-id`, the payload fixed).
    pub(crate) fn stored(&self, now: DateTime<Utc>) -> Message {
        Message {
            id: MessageId::new(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            environment: self.environment,
            payload: self.payload(),
            created_at: now,
        }
    }

    /// The exact body every delivery sends: `{"type","timestamp","data"}`.
    pub fn payload(&self) -> String {
        serde_json::json!({
            "type": self.event_type,
            "timestamp": self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `webhook-id`.
    pub id: MessageId,
    /// The caller's event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// Its environment.
    pub environment: Environment,
    /// The body sent to every endpoint, byte for byte.
    pub payload: String,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx was received.
    Succeeded,
    /// The retry schedule ran out, or the endpoint said 410 Gone.
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses [`DeliveryStatus::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One message on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
    /// The message.
    pub message_id: MessageId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is next due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A record of one HTTP attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// How long it took, in milliseconds.
    pub latency_ms: u64,
    /// The start of the response body, at most [`MAX_RECORDED_BODY`] bytes.
    pub response_body: Option<String>,
    /// What went wrong without a response (timeout, refused address, connection error).
    pub error: Option<String>,
}

/// How much of a response body an [`Attempt`] keeps.
pub const MAX_RECORDED_BODY: usize = 1024;

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done: it succeeded.
    Succeeded,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Give up.
    Failed,
}

/// A due delivery with everything needed to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery.
    pub delivery: Delivery,
    /// Its message.
    pub message: Message,
    /// Its endpoint.
    pub endpoint: Endpoint,
}

/// What [`WebhookStore::enqueue`](crate::WebhookStore::enqueue) did.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The stored message (the existing one if the event id was seen before).
    pub message: Message,
    /// The deliveries created now (empty on a repeat).
    pub deliveries: Vec<DeliveryId>,
    /// Whether this call stored the message.
    pub created: bool,
}

impl Enqueued {
    /// An event enqueued before: its stored `message`, no new deliveries.
    pub(crate) fn repeat(message: Message) -> Self {
        Self {
            message,
            deliveries: Vec::new(),
            created: false,
        }
    }
}

/// `t` cut to whole milliseconds, the precision stores keep.
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

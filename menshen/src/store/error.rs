//! The one error of the store's operations. Each variant says what went
//! wrong in words an operator or the API can pass on; the API turns each
//! into its status (see `From<StoreError> for ApiError`).

/// Why a store operation did not happen. A refused write changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What the operation names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Refused because of the state of things, e.g. a location still in
    /// use (409).
    #[error("{0}")]
    Conflict(String),
    /// A field refers to something that does not exist (422).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// An agent's push from a token that is not (or no longer) its current
    /// one, or from an unknown or revoked agent (401).
    #[error("the agent is unknown or revoked, or its token was replaced")]
    NotAuthorized,
    /// A pushed host belongs to another agent or is defined by hand (403).
    #[error("host {0:?} belongs to someone else")]
    HostTaken(String),
    /// An agent would have more gateways and bridges than it may (422).
    #[error("the agent would have {count} gateways and bridges, more than {max}")]
    TooMany {
        kind: super::ResourceKind,
        count: usize,
        max: usize,
    },
    /// The store holds something that cannot be read back (500).
    #[error("{0}")]
    Unreadable(String),
    /// The database failed or cannot be reached (503 when unreachable,
    /// else 500).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn invalid(field: &str, message: &str) -> StoreError {
        StoreError::Invalid {
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }

    /// The database error behind this one, if it is one.
    pub fn database(&self) -> Option<&sqlx::Error> {
        match self {
            StoreError::Database(err) => Some(err),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Unreadable(format!("a stored value is not the JSON expected: {err}"))
    }
}

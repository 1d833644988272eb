//! [`Limits`]: the connection limits both listeners apply (the `limits:` block of the
//! configuration file, which `config` parses into this type).

/// Connection limits of both listeners (the `limits:` block). The defaults need no tuning; the
/// reasoning behind each number is in SECURITY.md and the module docs of [`crate::listener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's head, from its first byte (or from the
    /// accept, on a new connection) to its last.
    pub header_timeout: std::time::Duration,
    /// How long a kept-alive connection may sit between requests. Longer than the 90 s after
    /// which Traefik's forwardAuth client and the shim close their idle connections, so the
    /// client closes first and never sends a request into a connection the sidecar is closing.
    pub idle_timeout: std::time::Duration,
    /// Open connections on the auth listener; `None` derives it from the open-file limit.
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(120),
            max_connections: None,
        }
    }
}

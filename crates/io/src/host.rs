//! This machine's hostname, the default `--host` of `daemon` and `check`. A module of its
//! own so that `daemon` and `commands` both use it without importing each other.

/// This machine's hostname, or `localhost` when it has none that is valid UTF-8.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

//! Who is acting: recorded as applied_by / ran_by / confirmed_by, and shown
//! to other operators through application_name.

/// `$ORCH_OPERATOR`, else `<os user>@<host>`.
pub fn actor() -> String {
    if let Ok(name) = std::env::var("ORCH_OPERATOR")
        && !name.trim().is_empty()
    {
        return name.trim().to_string();
    }
    format!("{}@{}", crate::connect::os_user_name(), host())
}

/// This machine's host name (`localhost` when it has none that reads).
pub fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// application_name for a command's connections, e.g. `orch migrate up (alice@web1)`.
pub fn application_name(command: &str, actor: &str) -> String {
    format!("orch {command} ({actor})")
}

//! What orch keeps secret, process-wide: the configured API keys and the
//! values of secret-looking environment variables. Their values are
//! redacted from tool outputs, transcripts and records; their names are
//! removed from the environment of every process orch starts.
//!
//! A variable is secret when a word of its name (split at `_`) ends in
//! `KEY` or `KEYS` or contains `SECRET`, `TOKEN`, `PASSWORD`, `PASSWD` or
//! `CREDENTIAL`; `sandbox.env_keep` keeps names anyway and
//! `sandbox.env_remove` removes more.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// Values shorter than this are not redacted: `1` or `true` would blank
/// out ordinary text, and no real key is that short.
const MIN_SECRET_LEN: usize = 8;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

#[derive(Debug, Default)]
struct Policy {
    /// Secret values, longest first (a key containing another is replaced whole).
    values: Vec<String>,
    keep: Vec<String>,
    remove: Vec<String>,
}

static POLICY: RwLock<Option<Arc<Policy>>> = RwLock::new(None);

fn policy() -> Option<Arc<Policy>> {
    POLICY.read().expect("secrets lock").clone()
}

/// Install the policy for this process: `keys` (configured API keys),
/// the name lists from config, and the secret values among `env`.
pub fn install<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    keep: &[String],
    remove: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) {
    let keep: Vec<String> = keep.iter().map(|name| name.to_ascii_uppercase()).collect();
    let remove: Vec<String> = remove
        .iter()
        .map(|name| name.to_ascii_uppercase())
        .collect();
    let mut values: Vec<String> = keys.into_iter().map(str::to_string).collect();
    for (name, value) in env {
        if name_is_secret(&name, &keep, &remove) {
            values.push(value);
        }
    }
    values.retain(|value| value.len() >= MIN_SECRET_LEN);
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    *POLICY.write().expect("secrets lock") = Some(Arc::new(Policy {
        values,
        keep,
        remove,
    }));
}

/// Add `values` to the redacted ones (header values the plugin host reads
/// from the environment for a grant), keeping the installed policy.
pub fn register(values: impl IntoIterator<Item = String>) {
    let mut slot = POLICY.write().expect("secrets lock");
    let mut policy = match slot.as_deref() {
        Some(policy) => Policy {
            values: policy.values.clone(),
            keep: policy.keep.clone(),
            remove: policy.remove.clone(),
        },
        None => Policy::default(),
    };
    let before = policy.values.len();
    policy.values.extend(
        values
            .into_iter()
            .filter(|value| value.len() >= MIN_SECRET_LEN),
    );
    if policy.values.len() == before {
        return;
    }
    policy
        .values
        .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    policy.values.dedup();
    *slot = Some(Arc::new(policy));
}

/// Whether a process orch starts must not see the variable `name`.
pub fn is_secret_name(name: &str) -> bool {
    match policy() {
        Some(policy) => name_is_secret(name, &policy.keep, &policy.remove),
        None => name_is_secret(name, &[], &[]),
    }
}

/// Git configuration passed in the environment (`GIT_CONFIG_COUNT` with
/// its `GIT_CONFIG_KEY_<n>` / `GIT_CONFIG_VALUE_<n>` pairs, and
/// `GIT_CONFIG_PARAMETERS`): one group, kept or removed whole — git refuses
/// to run when a counted key is missing, and a value may be a credential
/// (`http.extraHeader`).
pub fn is_git_config_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper == "GIT_CONFIG_COUNT"
        || upper == "GIT_CONFIG_PARAMETERS"
        || upper.starts_with("GIT_CONFIG_KEY_")
        || upper.starts_with("GIT_CONFIG_VALUE_")
}

fn name_is_secret(name: &str, keep: &[String], remove: &[String]) -> bool {
    let upper = name.to_ascii_uppercase();
    if keep.contains(&upper) {
        return false;
    }
    if remove.contains(&upper) {
        return true;
    }
    if is_git_config_name(&upper) {
        return true;
    }
    upper.split('_').any(|word| {
        word.ends_with("KEY")
            || word.ends_with("KEYS")
            || ["SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL"]
                .iter()
                .any(|mark| word.contains(mark))
    })
}

/// `text` with every secret value replaced by `[redacted]`; borrowed when
/// there was none (the common case costs one substring search per secret).
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(policy) = policy() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for value in &policy.values {
        if out.contains(value.as_str()) {
            out = Cow::Owned(out.replace(value.as_str(), REDACTED));
        }
    }
    out
}

/// [`redact`] in place.
pub fn redact_in(text: &mut String) {
    if let Cow::Owned(clean) = redact(text) {
        *text = clean;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_by_their_words() {
        for name in [
            "OPENAI_API_KEY",
            "groq_api_key",
            "ANTHROPIC_AUTH_TOKEN",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "PGPASSWORD",
            "NPM_TOKEN",
            "APIKEY",
            "MY_API_KEYS",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            assert!(name_is_secret(name, &[], &[]), "{name}");
        }
        for name in ["PATH", "HOME", "KEYBOARD_LAYOUT", "TERM", "CARGO_HOME"] {
            assert!(!name_is_secret(name, &[], &[]), "{name}");
        }
        assert!(!name_is_secret("NPM_TOKEN", &["NPM_TOKEN".into()], &[]));
        assert!(name_is_secret(
            "DATABASE_URL",
            &[],
            &["DATABASE_URL".into()]
        ));
    }

    #[test]
    fn values_are_redacted_whole_and_short_ones_left() {
        let policy = Policy {
            values: vec!["sk-live-0123456789".into()],
            ..Policy::default()
        };
        *POLICY.write().unwrap() = Some(Arc::new(policy));
        assert_eq!(redact("key=sk-live-0123456789."), "key=[redacted].");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
        install(
            ["sk-live-0123456789"],
            &[],
            &[],
            [("X_TOKEN".to_string(), "short".to_string())],
        );
        assert_eq!(redact("short"), "short");
        assert_eq!(redact("sk-live-0123456789"), REDACTED);
        // Values registered later (a plugin grant's header) join the
        // installed ones; short ones are left alone there too.
        register(["ghp_plugin0123456789".to_string(), "tiny".to_string()]);
        assert_eq!(
            redact("sk-live-0123456789 ghp_plugin0123456789 tiny"),
            "[redacted] [redacted] tiny"
        );
    }

    #[test]
    fn git_configuration_in_the_environment_is_one_group() {
        for name in [
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "GIT_CONFIG_VALUE_0",
            "GIT_CONFIG_PARAMETERS",
        ] {
            assert!(is_git_config_name(name), "{name}");
            assert!(name_is_secret(name, &[], &[]), "{name}");
        }
        assert!(!is_git_config_name("GIT_CONFIG_GLOBAL"));
        assert!(!name_is_secret("GIT_AUTHOR_NAME", &[], &[]));
    }
}

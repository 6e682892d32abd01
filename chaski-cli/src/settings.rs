//! The node configuration of every subcommand, from one place: the defaults, then a TOML file
//! (`--config FILE` or `CHASKI_CONFIG`), then `CHASKI_<SETTING>` environment variables (the
//! setting's name in capitals: `CHASKI_MAX_EDGES=64`, `CHASKI_KEEPALIVE_INTERVAL=2.5`); the
//! subcommand's own flags apply last. The result is validated once, when the node is bound
//! (after the flags), with an error naming the setting.

use std::path::Path;

use serde_json::{Map, Value};

use chaski_tokio::Config;

use crate::failure::{Failure, USAGE};

fn usage(message: String) -> Failure {
    Failure {
        code: USAGE,
        message,
    }
}

/// The configuration from `file` (if any) and the environment (validated when bound).
pub fn load(file: Option<&Path>) -> Result<Config, Failure> {
    load_from(file, |name| std::env::var(name).ok())
}

/// [`load`] with the environment given as a lookup (for tests).
pub fn load_from(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, Failure> {
    let mut settings = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--config {}: {e}", path.display())))?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| usage(format!("--config {}: {e}", path.display())))?;
            match serde_json::to_value(table) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            }
        }
        None => Map::new(),
    };
    for name in names() {
        if let Some(raw) = env(&format!("CHASKI_{}", name.to_uppercase())) {
            // A number, a boolean, a list or a quoted string as JSON; anything else is text.
            let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
            settings.insert(name, value);
        }
    }
    let source = file.map_or("the environment".to_string(), |p| {
        format!("{} or the environment", p.display())
    });
    serde_json::from_value(Value::Object(settings))
        .map_err(|e| usage(format!("configuration from {source}: {e}")))
}

/// The `--help` text that lists every setting's environment variable with its default (the
/// same names are the keys of `--config FILE`).
pub fn env_help() -> String {
    let mut out = String::from(
        "Node settings: each from the environment variable below, or the same name in lowercase \
         in --config FILE (durations in seconds); flags override the environment, which \
         overrides the file. Default in brackets.\n",
    );
    if let Ok(Value::Object(m)) = serde_json::to_value(Config::default()) {
        for (name, default) in m {
            let default = match default {
                Value::Null => "none".to_string(),
                Value::String(s) => s,
                v => v.to_string(),
            };
            out.push_str(&format!(
                "  CHASKI_{:<24} [{default}]\n",
                name.to_uppercase()
            ));
        }
    }
    out
}

/// The names of every setting (the fields of `Config`).
fn names() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(Value::Object(m)) => m.into_iter().map(|(k, _)| k).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    /// A file removed when dropped (no extra crate for one test).
    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!(
                    "chaski-settings-{}-{}.toml",
                    std::process::id(),
                    fastrand_like()
                ));
                std::fs::write(&p, text).unwrap();
                TempPath(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        fn fastrand_like() -> u64 {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0u8)
        }
    }

    #[test]
    fn file_then_environment_then_defaults() {
        let f = file("max_edges = 40\nkeepalive_interval = 2.5\nttl = 9\n");
        let env = |name: &str| match name {
            "CHASKI_TTL" => Some("12".to_string()),
            "CHASKI_SLOW_CONSUMER" => Some("drop_oldest".to_string()),
            _ => None,
        };
        let cfg = load_from(Some(&f.0), env).unwrap();
        assert_eq!(cfg.max_edges, 40, "from the file");
        assert_eq!(cfg.keepalive_interval, Duration::from_millis(2500));
        assert_eq!(cfg.ttl, 12, "the environment wins over the file");
        assert_eq!(cfg.slow_consumer, chaski_tokio::SlowConsumer::DropOldest);
        assert_eq!(cfg.max_handshakes, 64, "the rest are defaults");
    }

    #[test]
    fn a_wrong_setting_is_named() {
        let f = file("max_edgez = 40\n");
        let err = load_from(Some(&f.0), |_| None).unwrap_err();
        assert_eq!(err.code, USAGE);
        assert!(err.message.contains("max_edgez"), "{}", err.message);
        let cfg = load_from(None, |n| (n == "CHASKI_MAX_EDGES").then(|| "0".into())).unwrap();
        assert_eq!(cfg.validate().unwrap_err().setting, "max_edges");
        let err = load_from(None, |n| (n == "CHASKI_TTL").then(|| "many".into())).unwrap_err();
        assert!(
            err.message.contains("ttl") || err.message.contains("many"),
            "{}",
            err.message
        );
        let f = file("not toml at all ===");
        assert_eq!(load_from(Some(&f.0), |_| None).unwrap_err().code, USAGE);
    }
}

//! Variables: the process's environment, then `.env` (which never
//! overrides it), and `${NAME}` in the config file's target URLs.

use std::collections::BTreeMap;

/// Where variables are looked up: the real environment first, then `.env`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    dotenv: BTreeMap<String, String>,
    /// Tests: a fixed environment instead of the process's.
    fixed: Option<BTreeMap<String, String>>,
}

impl Environment {
    pub fn new(dotenv: BTreeMap<String, String>) -> Environment {
        Environment {
            dotenv,
            fixed: None,
        }
    }

    /// A fixed process environment (unit tests).
    #[cfg(test)]
    pub fn fixed(real: &[(&str, &str)], dotenv: &[(&str, &str)]) -> Environment {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Environment {
            dotenv: map(dotenv),
            fixed: Some(map(real)),
        }
    }

    /// The real environment only.
    pub fn real(&self, name: &str) -> Option<String> {
        match &self.fixed {
            Some(fixed) => fixed.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// The real environment, else `.env`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.real(name).or_else(|| self.dotenv.get(name).cloned())
    }

    /// `text` with every `${NAME}` replaced; the error says which variable
    /// is not set, or that a `${` is not closed.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err("a `${` is not closed by `}`".to_string());
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{name}}}` is not a variable name"));
            }
            match self.get(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(format!(
                        "${{{name}}} is not set (neither in the environment nor in .env)"
                    ));
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_environment_wins_over_dotenv() {
        let env = Environment::fixed(&[("A", "real")], &[("A", "file"), ("B", "file")]);
        assert_eq!(env.get("A").as_deref(), Some("real"));
        assert_eq!(env.get("B").as_deref(), Some("file"));
        assert_eq!(env.real("B"), None);
        assert_eq!(env.get("C"), None);
    }

    #[test]
    fn expands_variables() {
        let env = Environment::fixed(&[("HOST", "db1")], &[("PASS", "s3cret")]);
        assert_eq!(
            env.expand("postgres://u:${PASS}@${HOST}/app").unwrap(),
            "postgres://u:s3cret@db1/app"
        );
        assert_eq!(
            env.expand("no variables $HOST").unwrap(),
            "no variables $HOST"
        );
        for (text, says) in [
            ("${MISSING}", "${MISSING} is not set"),
            ("${HOST", "not closed"),
            ("${}", "is not a variable name"),
            ("${A-B}", "is not a variable name"),
        ] {
            let error = env.expand(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}

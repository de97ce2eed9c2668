//! How the CLI prints the API's answers: as pretty JSON, or as aligned fields.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

/// Prints `shown` as pretty JSON, its fields by key (through a `serde_json::Value`),
/// as the CLI has always printed the API's answers.
pub fn print_json(shown: &impl Serialize) -> Result<()> {
    let value = serde_json::to_value(shown)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Prints `shown` as aligned `key value` lines, one per field of its JSON object (in
/// the JSON's order: by key), `-` for a null.
pub fn print_fields(shown: &impl Serialize) -> Result<()> {
    let value = serde_json::to_value(shown)?;
    let Some(map) = value.as_object() else {
        println!("{value}");
        return Ok(());
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (key, v) in map {
        let shown = match v {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{key:<width$} {shown}");
    }
    Ok(())
}

/// An error as the CLI prints it: its message, then each cause the message does not
/// already hold. Many of keyledger's errors write their cause into their message and
/// also give it as their source (thiserror's `source` fields), so anyhow's `{:#}`
/// would print it again after every layer that does.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that writes its cause into its message and gives it as its source.
    #[derive(Debug)]
    struct Opening {
        what: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for Opening {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "opening {}: {}", self.what, self.source)
        }
    }

    impl std::error::Error for Opening {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn an_error_prints_each_cause_once() {
        let io = || std::io::Error::other("Is a directory");
        let written_in = anyhow::Error::from(Opening {
            what: "the read model",
            source: io(),
        });
        assert_eq!(
            error_text(&written_in),
            "opening the read model: Is a directory"
        );
        let context = anyhow::Error::from(io()).context("reading sslrootcert");
        assert_eq!(error_text(&context), "reading sslrootcert: Is a directory");
        let both = anyhow::Error::from(Opening {
            what: "the read model",
            source: io(),
        })
        .context("starting the projector");
        assert_eq!(
            error_text(&both),
            "starting the projector: opening the read model: Is a directory"
        );
    }
}

//! Query parameters read as Barbican reads them.

use serde::{Deserialize, Deserializer};

/// A flag: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, `t`/`f`, `y`/`n`, in any
/// case, as Barbican's `bool_from_string` accepts (python-barbicanclient sends
/// `force=1`).
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// What a bad flag says.
pub fn flag_error(name: &str, value: &str) -> String {
    format!("{name}={value:?} is not a flag; use true or false (or 1 or 0, yes or no)")
}

/// Deserializes an optional flag query parameter with [`parse_flag`].
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_flag(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(flag_error("the flag", &text)))
}

/// An optional text parameter: empty (`?recovery_window=`) is the same as absent, as
/// a form leaves an unfilled field.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|t| !t.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_barbican_reads_them() {
        for yes in ["1", "true", "True", "YES", "on", "t", "y"] {
            assert_eq!(parse_flag(yes), Some(true), "{yes}");
        }
        for no in ["0", "false", "No", "off", "f", "n"] {
            assert_eq!(parse_flag(no), Some(false), "{no}");
        }
        assert_eq!(parse_flag("maybe"), None);
        assert_eq!(parse_flag(""), None);
    }
}

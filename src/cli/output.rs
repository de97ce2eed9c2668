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

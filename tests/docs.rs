//! The reference in `docs/` lists what the code defines; these tests keep the lists
//! and the code in step, so a new command or route cannot go undocumented.

use std::collections::BTreeSet;

fn doc(name: &str) -> String {
    std::fs::read_to_string(format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The names in backticks in the first column of the table that follows `heading`.
fn first_column(text: &str, heading: &str) -> BTreeSet<String> {
    let table = text
        .split_once(heading)
        .unwrap_or_else(|| panic!("no {heading:?} section"))
        .1;
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_protocol_reference_lists_every_command_and_no_other() {
    let listed = first_column(&doc("protocol.md"), "## Command protocol");
    let served: BTreeSet<String> = domain::subject::command::ALL
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    assert_eq!(listed, served, "docs/protocol.md's command table");
}

//! The reference in `docs/` and the README list what the code defines; these tests keep the lists
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

fn readme() -> String {
    std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The commands the README's NATS paragraph lists, between "on
/// `keyledger.cmd.<name>` —" and "— with": each a dotted name in backticks, where
/// `a.b.x|y` stands for `a.b.x` and `a.b.y` (a backticked word without a dot, such as
/// `force`, is a field, not a command).
fn readme_commands() -> BTreeSet<String> {
    let readme = readme();
    let list = readme
        .split_once("**NATS**: request/reply on `keyledger.cmd.<name>` —")
        .expect("the README's NATS paragraph")
        .1;
    let list = list
        .split_once("— with")
        .expect("the end of the README's NATS command list")
        .0;
    let mut out = BTreeSet::new();
    for name in list.split('`').skip(1).step_by(2) {
        let Some((prefix, last)) = name.rsplit_once('.') else {
            continue;
        };
        for alternative in last.split('|') {
            out.insert(format!("{prefix}.{alternative}"));
        }
    }
    out
}

#[test]
fn the_readme_lists_every_nats_command_and_no_other() {
    let served: BTreeSet<String> = domain::subject::command::ALL
        .iter()
        .map(|name| {
            domain::subject::CommandName::parse(name)
                .unwrap_or_else(|| panic!("{name} is not served"))
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(readme_commands(), served, "the README's NATS command list");
}

/// The README's route table as (method, path) pairs. A first cell lists methods, each
/// in backticks, the last of a group with its path: "`GET`, `POST /v1/secrets`;
/// `GET`, `DELETE /v1/secrets/{id}`".
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme = readme();
    let table = readme
        .split_once("| route | |")
        .expect("the README's route table")
        .1;
    let mut out = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cell = row.split('|').nth(1).unwrap_or_default();
        let mut methods = Vec::new();
        for token in cell.split('`').skip(1).step_by(2) {
            match token.split_once(' ') {
                None => methods.push(token.to_owned()),
                Some((method, path)) => {
                    methods.push(method.to_owned());
                    for m in methods.drain(..) {
                        out.insert((m, path.to_owned()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_readme_route_table_lists_every_route_and_no_other() {
    let (_, document) = api::routes();
    let mut served = BTreeSet::new();
    for (path, item) in &document.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, operation) in methods {
            if operation.is_some() {
                served.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let listed = readme_routes();
    let missing: Vec<_> = served.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README route table: routes served but not listed: {missing:?}; listed but not \
         served: {extra:?}"
    );
}

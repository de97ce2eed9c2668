//! The writes a PostgreSQL writer ([`super::sql::Pg`]) holds until it sends them: one
//! lane per aggregate, and same-shaped INSERTs of many aggregates sent as one
//! multi-row statement.
//!
//! Statements of different aggregates touch different rows: the key of every table the
//! fold writes per aggregate holds the aggregate's id (secrets, their payloads, stages,
//! metadata, ACL users, consumers; containers and orders likewise) or the commit's
//! sequence (skipped commits), and the shared tables (heads, checkpoint) are written
//! outside any aggregate's lane. So any order that keeps each lane's own order leaves
//! the same rows, and [`Pending::take`] picks one that puts the same INSERT of many
//! aggregates side by side and joins their rows into one `INSERT … VALUES (…), (…)`.
//! PostgreSQL then parses, plans and starts one statement per shape and batch instead of
//! one per row. Two rows of one joined statement are never of one aggregate, so they
//! never share a key, as `ON CONFLICT DO UPDATE` requires.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::sql::{ApplyError, Value, render};

/// An INSERT whose rows can be joined: the text before its VALUES tuple, the tuple,
/// and the text after it.
#[derive(Debug)]
struct Insert {
    head: String,
    row: String,
    tail: String,
}

impl Insert {
    /// `sql` split around its single VALUES tuple, if it is an INSERT of one row with
    /// no parameter after that row (an `ON CONFLICT … DO UPDATE SET a = ?1` would bind
    /// one row's value for all of them).
    fn split(sql: &str) -> Option<Self> {
        if !sql.starts_with("INSERT INTO ") {
            return None;
        }
        let start = sql.find(" VALUES (")? + " VALUES ".len();
        let mut depth = 0_usize;
        let mut end = None;
        for (i, c) in sql[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(start + i + 1);
                        break;
                    }
                }
                // A quoted literal could hold a parenthesis.
                '\'' => return None,
                _ => {}
            }
        }
        let end = end?;
        let (head, tail) = (&sql[..start], &sql[end..]);
        // Only the row is rendered per statement: a parameter anywhere else would be
        // one row's value (or unrendered).
        if head.contains('?') || tail.contains('?') || tail.trim_start().starts_with(',') {
            return None;
        }
        Some(Self {
            head: head.to_owned(),
            row: sql[start..end].to_owned(),
            tail: tail.to_owned(),
        })
    }
}

/// A statement waiting in its lane: its shape, and its text rendered with its
/// parameters (only the VALUES tuple, for an INSERT whose rows can be joined).
#[derive(Debug)]
struct Queued {
    shape: usize,
    text: String,
}

/// Writes rendered and not sent yet.
#[derive(Debug)]
pub struct Pending {
    /// The statements seen, by their text with parameters: index into `inserts`.
    shapes: HashMap<String, usize>,
    /// Per shape, how its rows are joined (`None`: each is sent as it is).
    inserts: Vec<Option<Insert>>,
    /// Lane 0 holds what is written outside any aggregate; the others one aggregate's.
    lanes: Vec<VecDeque<Queued>>,
    /// The lane of each aggregate's subject.
    lane_of: HashMap<String, usize>,
    /// The lanes that hold statements (each once): a batch that flushes before every
    /// read must not scan all its lanes at every flush.
    filled: Vec<usize>,
    /// Where statements go now.
    current: usize,
    /// Bytes of rendered text held.
    bytes: usize,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            shapes: HashMap::new(),
            inserts: Vec::new(),
            lanes: vec![VecDeque::new()],
            lane_of: HashMap::new(),
            filled: Vec::new(),
            current: 0,
            bytes: 0,
        }
    }
}

impl Pending {
    /// The statements that follow write only the rows of the aggregate on `subject`
    /// (`None`: of no aggregate).
    pub fn enter(&mut self, subject: Option<&str>) {
        self.current = match subject {
            None => 0,
            Some(subject) => match self.lane_of.get(subject) {
                Some(lane) => *lane,
                None => {
                    self.lanes.push(VecDeque::new());
                    let lane = self.lanes.len() - 1;
                    self.lane_of.insert(subject.to_owned(), lane);
                    lane
                }
            },
        };
    }

    /// Queues `sql` with `params` in the current lane.
    pub fn push(&mut self, sql: &str, params: &[Value<'_>]) -> Result<(), ApplyError> {
        let shape = match self.shapes.get(sql) {
            Some(shape) => *shape,
            None => {
                self.inserts.push(Insert::split(sql));
                self.shapes.insert(sql.to_owned(), self.inserts.len() - 1);
                self.inserts.len() - 1
            }
        };
        let template = self.inserts[shape].as_ref().map_or(sql, |i| &i.row);
        let mut text = String::with_capacity(template.len() + 64);
        render(template, params, &mut text)?;
        self.bytes += text.len();
        let lane = &mut self.lanes[self.current];
        if lane.is_empty() {
            self.filled.push(self.current);
        }
        lane.push_back(Queued { shape, text });
        Ok(())
    }

    /// Bytes of rendered text held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every queued write as one multi-statement text (empty if none), emptying the
    /// lanes: each lane's statements in its order, the rows of same-shaped INSERTs at
    /// the head of many lanes joined.
    pub fn take(&mut self) -> String {
        let mut out = String::with_capacity(self.bytes + self.bytes / 8);
        // Lanes by the shape at their head; the lowest shape (the first seen) goes
        // first, which keeps the lanes of a batch of like commits in step.
        let mut ready: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for lane in std::mem::take(&mut self.filled) {
            if let Some(q) = self.lanes[lane].front() {
                ready.entry(q.shape).or_default().push(lane);
            }
        }
        while let Some((shape, lanes)) = ready.pop_first() {
            let rows = lanes
                .iter()
                .filter_map(|lane| self.lanes[*lane].pop_front())
                .map(|q| q.text);
            match &self.inserts[shape] {
                Some(insert) => {
                    out.push_str(&insert.head);
                    for (i, row) in rows.enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&row);
                    }
                    out.push_str(&insert.tail);
                    out.push_str(";\n");
                }
                None => {
                    for statement in rows {
                        out.push_str(&statement);
                        out.push_str(";\n");
                    }
                }
            }
            for lane in lanes {
                if let Some(q) = self.lanes[lane].front() {
                    ready.entry(q.shape).or_default().push(lane);
                }
            }
        }
        self.bytes = 0;
        out
    }

    /// Forgets everything (a new transaction).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::sql::params;

    const ROW: &str = "INSERT INTO t (project, id, v) VALUES (?1, ?2, ?3) \
                       ON CONFLICT (project, id) DO UPDATE SET v = excluded.v";
    const BUMP: &str = "UPDATE t SET n = n + 1 WHERE project = ?1 AND id = ?2";

    #[test]
    fn only_single_row_inserts_without_later_parameters_are_joined() {
        assert!(Insert::split(ROW).is_some());
        for sql in [
            BUMP,
            "INSERT INTO t (a) VALUES (?1) ON CONFLICT (a) DO UPDATE SET b = ?2",
            "INSERT INTO t (a) VALUES (?1), (?2)",
            "INSERT INTO t (a) VALUES ('(')",
            "INSERT INTO t (a) SELECT ?1",
            "INSERT INTO t_?1 (a) VALUES (?2)",
            "SELECT pg_notify(?1, ?2)",
        ] {
            assert!(Insert::split(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn inserts_of_many_aggregates_become_one_statement_and_each_lane_keeps_its_order() {
        let mut pending = Pending::default();
        for id in ["a", "b"] {
            pending.enter(Some(id));
            pending.push(ROW, params!["p", id, 1_i64]).unwrap();
            pending.push(BUMP, params!["p", id]).unwrap();
            pending.push(ROW, params!["p", id, 2_i64]).unwrap();
        }
        pending.enter(None);
        pending.push(BUMP, params!["shared", "x"]).unwrap();
        assert!(pending.bytes() > 0);
        let head = "INSERT INTO t (project, id, v) VALUES ";
        let tail = " ON CONFLICT (project, id) DO UPDATE SET v = excluded.v;\n";
        let bump = |id: &str| {
            format!("UPDATE t SET n = n + 1 WHERE project = 'p'::text AND id = '{id}'::text;\n")
        };
        assert_eq!(
            pending.take(),
            format!(
                "{head}('p'::text, 'a'::text, (1)::bigint), ('p'::text, 'b'::text, (1)::bigint)\
                 {tail}UPDATE t SET n = n + 1 WHERE project = 'shared'::text AND id = \
                 'x'::text;\n{}{}{head}('p'::text, 'a'::text, (2)::bigint), \
                 ('p'::text, 'b'::text, (2)::bigint){tail}",
                bump("a"),
                bump("b")
            )
        );
        assert_eq!((pending.take(), pending.bytes()), (String::new(), 0));
    }

    #[test]
    fn one_aggregates_rows_are_never_joined() {
        let mut pending = Pending::default();
        pending.enter(Some("a"));
        pending.push(ROW, params!["p", "a", 1_i64]).unwrap();
        pending.push(ROW, params!["p", "a", 2_i64]).unwrap();
        assert_eq!(pending.take().matches("INSERT").count(), 2);
    }
}

//! Folds an order's commit into the SQL rows of the read model.

use super::sql::{ApplyError, Sql, params};
use domain::commit::Commit;
use domain::order::{OrderEvent, OrderStatus};

use super::{json, run, to_i64};

/// Applies an order's commit stored at `seq`.
pub(super) fn apply(
    conn: &mut dyn Sql,
    seq: u64,
    commit: &Commit<OrderEvent>,
) -> Result<(), ApplyError> {
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        match event {
            OrderEvent::Placed(e) => run(
                conn,
                "INSERT INTO orders (project, id, order_type, status, meta, creator, created, \
                 created_ms, updated, version, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, 0, 0) \
                 ON CONFLICT (project, id) DO NOTHING",
                params![
                    project,
                    id,
                    e.order_type.as_str(),
                    OrderStatus::Pending.as_str(),
                    json(&e.meta)?,
                    e.creator.as_str(),
                    at.to_rfc3339(),
                    at.unix_millis(),
                ],
            )?,
            // The material stays in the log: the read model shows the order, not keys.
            OrderEvent::MaterialRecorded(_) => {}
            OrderEvent::Completed(e) => run(
                conn,
                "UPDATE orders SET status = ?1, secret_id = ?2, container_id = ?3 \
                 WHERE project = ?4 AND id = ?5",
                params![
                    OrderStatus::Active.as_str(),
                    e.secret_id.map(|s| s.to_string()),
                    e.container_id.map(|c| c.to_string()),
                    project,
                    id,
                ],
            )?,
            OrderEvent::Failed(e) => run(
                conn,
                "UPDATE orders SET status = ?1, error_status_code = ?2, error_reason = ?3 \
                 WHERE project = ?4 AND id = ?5",
                params![
                    OrderStatus::Error.as_str(),
                    i64::from(e.error_status_code),
                    e.error_reason,
                    project,
                    id,
                ],
            )?,
            OrderEvent::Deleted => run(
                conn,
                "DELETE FROM orders WHERE project = ?1 AND id = ?2",
                params![project, id],
            )?,
        }
    }
    run(
        conn,
        "UPDATE orders SET updated = ?1, version = ?2, seq = ?3 WHERE project = ?4 AND id = ?5",
        params![
            at.to_rfc3339(),
            to_i64(commit.body.version),
            to_i64(seq),
            project,
            id
        ],
    )
}

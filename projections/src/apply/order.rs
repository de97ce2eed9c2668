//! Folds an order's commit into the SQL rows of the read model.

use domain::commit::Commit;
use domain::order::{OrderEvent, OrderStatus};
use sqlx::SqliteConnection;

use super::{json, to_i64};

/// Applies an order's commit stored at `seq`.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    seq: u64,
    commit: &Commit<OrderEvent>,
) -> Result<(), sqlx::Error> {
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        let query = match event {
            OrderEvent::Placed(e) => sqlx::query(
                "INSERT INTO orders (project, id, order_type, status, meta, creator, created, \
                 created_ms, updated, version, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0) \
                 ON CONFLICT (project, id) DO NOTHING",
            )
            .bind(project)
            .bind(id)
            .bind(e.order_type.as_str())
            .bind(OrderStatus::Pending.as_str())
            .bind(json(&e.meta)?)
            .bind(e.creator.as_str())
            .bind(at.to_rfc3339())
            .bind(at.unix_millis())
            .bind(at.to_rfc3339()),
            // The material stays in the log: the read model shows the order, not keys.
            OrderEvent::MaterialRecorded(_) => continue,
            OrderEvent::Completed(e) => sqlx::query(
                "UPDATE orders SET status = ?, secret_id = ?, container_id = ? \
                 WHERE project = ? AND id = ?",
            )
            .bind(OrderStatus::Active.as_str())
            .bind(e.secret_id.map(|s| s.to_string()))
            .bind(e.container_id.map(|c| c.to_string()))
            .bind(project)
            .bind(id),
            OrderEvent::Failed(e) => sqlx::query(
                "UPDATE orders SET status = ?, error_status_code = ?, error_reason = ? \
                 WHERE project = ? AND id = ?",
            )
            .bind(OrderStatus::Error.as_str())
            .bind(i64::from(e.error_status_code))
            .bind(&e.error_reason)
            .bind(project)
            .bind(id),
            OrderEvent::Deleted => sqlx::query("DELETE FROM orders WHERE project = ? AND id = ?")
                .bind(project)
                .bind(id),
        };
        query.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE orders SET updated = ?, version = ?, seq = ? WHERE project = ? AND id = ?")
        .bind(at.to_rfc3339())
        .bind(to_i64(commit.body.version))
        .bind(to_i64(seq))
        .bind(project)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

//! The one statement of a fleet that is not orch's own: the query of a
//! target group (orch.toml's `databases`) that lists the databases on a
//! server.

use tokio_postgres::SimpleQueryMessage;

use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};

/// The first column of every row `query` returns on the server of
/// `server`, as database names; `what` names the query for errors.
pub async fn list_databases(
    server: &ConnectionSettings,
    query: &str,
    application_name: &str,
    what: &str,
) -> Result<Vec<String>> {
    let client = server.connect(application_name).await?;
    // Read-only: the operator's query lists databases, nothing more.
    let sql = format!("BEGIN READ ONLY; {query}; ROLLBACK");
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::db(format!("{what} did not run"), e))?;
    let mut names = Vec::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            match row.get(0) {
                Some(name) if !name.is_empty() => names.push(name.to_string()),
                _ => {
                    return Err(Error::failed(format!(
                        "{what} returned a row whose first column is not a database name (NULL or empty)"
                    )));
                }
            }
        }
    }
    Ok(names)
}

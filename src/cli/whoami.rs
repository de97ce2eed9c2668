//! `keyledger whoami`: the caller as the API sees it.

use anyhow::Result;
use reqwest::Method;
use serde_json::Value;

use super::ClientArgs;
use super::http::Api;

pub async fn run(client: ClientArgs) -> Result<()> {
    let api = Api::new(&client);
    let value: Value = api
        .send(api.request(Method::GET, "/v1/whoami"))
        .await?
        .json()
        .await?;
    super::secret::print_fields(&value);
    Ok(())
}

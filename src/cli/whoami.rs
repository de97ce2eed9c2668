//! `keyledger whoami`: the caller as the API sees it.

use anyhow::Result;
use api::responses::Whoami;
use reqwest::Method;

use super::ClientArgs;
use super::http::Api;

pub async fn run(client: ClientArgs) -> Result<()> {
    let api = Api::new(&client)?;
    let me: Whoami = api
        .send(api.request(Method::GET, "/v1/whoami"))
        .await?
        .json()
        .await?;
    super::output::print_fields(&me)
}

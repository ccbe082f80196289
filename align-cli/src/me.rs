//! `align me`: the calling key, as a running server sees it.

use crate::common::Common;
use crate::output::Failure;

/// The calling key, from a running server. Example: ALIGN_API_KEY=… align me --api-url http://127.0.0.1:8080
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
}

pub(crate) async fn run(Args { common }: Args) -> Result<(), Failure> {
    let v = common
        .api("align me")?
        .call("GET", "/api/v1/me", None)
        .await?;
    common.out().object(&v)
}

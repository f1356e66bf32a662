//! `flotilla dashboard`: where the dashboard is, and a short-lived view
//! token to sign in with (read-only; it expires by itself, so nothing has
//! to remember to revoke it).

use std::time::Duration;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct DashboardArgs {
    /// How long the printed view token works.
    #[arg(long, default_value = "8h", value_parser = crate::token::parse_ttl)]
    ttl: Duration,
}

pub async fn main(args: DashboardArgs) -> Result<()> {
    let config = crate::config::load()?;
    let client = crate::config::client()?;
    let token = crate::token::create_token(
        &client,
        "view",
        "",
        Some(args.ttl),
        None,
        "flotilla dashboard (read-only)",
    )
    .await?;
    let url = format!("{}/ui/", config.server.trim_end_matches('/'));
    println!("Dashboard: {url}");
    println!(
        "Sign in with this view token (read-only, works for {}):",
        humantime::format_duration(args.ttl)
    );
    println!("  {token}");
    println!(
        "(The server's certificate is from the cluster's own CA, the client config's certificateAuthority: a browser warns until it trusts that CA.)"
    );
    Ok(())
}

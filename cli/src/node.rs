//! `flotilla node revoke NAME`: takes a node out of the cluster for good —
//! every certificate the CA issued it is refused from now on by the API and
//! by every other node (the Node is deleted too). The machine comes back
//! only by joining again with a join token.

use anyhow::Result;
use clap::{Args, Subcommand};
use flotilla_spec::kinds::Kind;

use crate::kinds::Collection;

#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Revoke a node's certificates and delete its Node (as `flotilla
    /// delete node NAME`): a stolen or retired device can no longer reach
    /// the cluster.
    Revoke {
        /// The node's name.
        name: String,
    },
}

pub async fn main(args: NodeArgs) -> Result<()> {
    let client = crate::config::client()?;
    match args.command {
        NodeCommand::Revoke { name } => {
            let path = format!("{}/{name}", Kind::Node.collection(None));
            client.delete(&path).await?;
            println!("node {name}: certificates revoked, node deleted");
        }
    }
    Ok(())
}

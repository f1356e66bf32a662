//! `flotilla kv get|put|delete|list|increment BUCKET [KEY]`: an operator's
//! hands on the `cluster` key-value buckets guests use through
//! `wasi:keyvalue` (`node` buckets stay on their node and are not reached
//! from here). Values are bytes: `get` writes them to stdout as they are.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use flotilla_client::kv::Precondition;

#[derive(Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Args)]
struct Key {
    /// The bucket (as workloads name it in spec.grants.keyValue).
    bucket: String,
    /// The key.
    key: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Print a key's value (its bytes, as they are).
    Get {
        #[command(flatten)]
        key: Key,
        /// Print the value's ETag instead (for `put --if-match`).
        #[arg(long)]
        etag: bool,
    },
    /// Set a key's value.
    Put {
        #[command(flatten)]
        key: Key,
        /// The value; `-` reads it from stdin.
        #[arg(required_unless_present = "from_file")]
        value: Option<String>,
        /// Read the value from a file.
        #[arg(long, conflicts_with = "value")]
        from_file: Option<std::path::PathBuf>,
        /// Only if the value is still the one with this ETag (`get --etag`).
        #[arg(long, conflicts_with = "if_absent")]
        if_match: Option<String>,
        /// Only if the key does not exist yet.
        #[arg(long)]
        if_absent: bool,
    },
    /// Delete a key (an absent key is no error).
    Delete {
        #[command(flatten)]
        key: Key,
    },
    /// Add to the decimal number at a key (0 if absent), atomically; prints
    /// the new number.
    Increment {
        #[command(flatten)]
        key: Key,
        /// How much to add.
        #[arg(long, default_value_t = 1)]
        by: u64,
    },
    /// List a bucket's keys, in order.
    List {
        /// The bucket.
        bucket: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Start after this key.
        #[arg(long)]
        after: Option<String>,
        /// Print at most this many keys (all when not given).
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Runs `flotilla kv`.
pub async fn main(args: KvArgs) -> Result<()> {
    let client = crate::config::client()?;
    match args.command {
        KvCommand::Get { key: k, etag } => {
            let Some((value, tag)) = client.kv_get(&k.namespace, &k.bucket, &k.key).await? else {
                bail!(
                    "key {:?} not found in bucket {}/{} (list its keys with `flotilla kv list {} -n {}`)",
                    k.key,
                    k.namespace,
                    k.bucket,
                    k.bucket,
                    k.namespace
                );
            };
            let mut out = std::io::stdout().lock();
            if etag {
                writeln!(out, "{tag}")?;
            } else {
                out.write_all(&value)?;
            }
            out.flush()?;
        }
        KvCommand::Put {
            key: k,
            value,
            from_file,
            if_match,
            if_absent,
        } => {
            let bytes = match (value.as_deref(), from_file) {
                (_, Some(path)) => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                (Some("-"), None) => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .take(flotilla_kv::MAX_VALUE_BYTES as u64 + 1)
                        .read_to_end(&mut bytes)
                        .context("reading the value from stdin")?;
                    bytes
                }
                (Some(text), None) => text.as_bytes().to_vec(),
                (None, None) => bail!("give a value, `-` for stdin, or --from-file"),
            };
            flotilla_kv::check_value(&k.key, &bytes)?;
            let precondition = match (if_match, if_absent) {
                (Some(tag), _) => Precondition::IfMatch(tag),
                (None, true) => Precondition::IfAbsent,
                (None, false) => Precondition::None,
            };
            client
                .kv_put(&k.namespace, &k.bucket, &k.key, bytes, &precondition)
                .await?;
            eprintln!("set {:?} in bucket {}/{}", k.key, k.namespace, k.bucket);
        }
        KvCommand::Delete { key: k } => {
            client.kv_delete(&k.namespace, &k.bucket, &k.key).await?;
            eprintln!(
                "deleted {:?} from bucket {}/{}",
                k.key, k.namespace, k.bucket
            );
        }
        KvCommand::Increment { key: k, by } => {
            let value = client
                .kv_increment(&k.namespace, &k.bucket, &k.key, by)
                .await?;
            println!("{value}");
        }
        KvCommand::List {
            bucket,
            namespace,
            after,
            limit,
        } => {
            let mut after = after;
            let mut left = limit.unwrap_or(usize::MAX);
            let mut out = std::io::stdout().lock();
            while left > 0 {
                let page_size = left.min(flotilla_kv::LIST_PAGE);
                let page = client
                    .kv_list(&namespace, &bucket, after.as_deref(), page_size)
                    .await?;
                for key in &page.keys {
                    writeln!(out, "{key}")?;
                }
                left -= page.keys.len();
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}

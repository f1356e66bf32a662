//! Which server's controllers run, when several servers share an etcd
//! store: the one whose etcd lease holds the leader key.
//!
//! A server campaigns by creating the key under a lease of its own (a
//! transaction that succeeds only if the key does not exist), renews the
//! lease every third of its TTL, and leads while it does. It stops leading
//! on its own clock *before* etcd could let the lease expire — when a
//! renewal has not been acknowledged for two thirds of the TTL — so a new
//! leader never starts while the old one still believes it leads. On top
//! of that, the leader's writes are fenced (see
//! [`crate::store::EtcdStore::fenced`]): each carries "the leader key is
//! held by my lease", so a leader paused past its lease (a stopped
//! process, a long GC) has its late writes refused by etcd itself.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use crate::store::EtcdStore;

/// How often a follower tries to take the lead.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);

/// Runs `term(lease)` whenever this server leads, until the process ends;
/// a term's future is dropped as soon as the lead is lost.
pub async fn lead<F, Fut>(store: EtcdStore, identity: String, ttl: Duration, mut term: F)
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = ()>,
{
    let ttl = ttl.max(Duration::from_secs(2));
    loop {
        let lease = match campaign(&store, &identity, ttl).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(
                    "campaigning for the controllers' lead in {}: {e}",
                    store.describe()
                );
                tokio::time::sleep(CAMPAIGN_EVERY).await;
                continue;
            }
        };
        tracing::info!("this server leads: its controllers run (lease {lease:x})");
        tokio::select! {
            () = term(lease) => {}
            why = keep(&store, lease, ttl) => {
                tracing::warn!("this server no longer leads ({why}): its controllers stop; another server's take over");
            }
        }
        // Best effort: lets another server lead at once rather than after
        // the TTL (the key goes with the lease).
        let mut leases = store.client().lease_client();
        let _ = tokio::time::timeout(ttl / 3, leases.revoke(lease)).await;
    }
}

/// Waits until this server holds the leader key; its lease.
async fn campaign(
    store: &EtcdStore,
    identity: &str,
    ttl: Duration,
) -> Result<i64, etcd_client::Error> {
    let key = store.leader_key();
    let mut client = store.client();
    let mut announced = false;
    loop {
        let grant = tokio::time::timeout(ttl, client.lease_grant(ttl.as_secs() as i64, None))
            .await
            .map_err(|_| {
                etcd_client::Error::LeaseKeepAliveError("granting a lease timed out".into())
            })??;
        let lease = grant.id();
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key.clone(),
                identity.as_bytes().to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        let response = tokio::time::timeout(ttl, client.txn(txn))
            .await
            .map_err(|_| {
                etcd_client::Error::LeaseKeepAliveError("the campaign timed out".into())
            })??;
        if response.succeeded() {
            return Ok(lease);
        }
        let _ = tokio::time::timeout(ttl, client.lease_revoke(lease)).await;
        if !announced {
            announced = true;
            let holder = response
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => g
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    _ => None,
                })
                .unwrap_or_default();
            tracing::info!(
                "the controllers run on {holder}; this server serves the API and stands by"
            );
        }
        tokio::time::sleep(CAMPAIGN_EVERY).await;
    }
}

/// Renews `lease` until it cannot be renewed in time; why it stopped.
async fn keep(store: &EtcdStore, lease: i64, ttl: Duration) -> String {
    // Stop leading well before etcd could let the lease lapse.
    let deadline = ttl * 2 / 3;
    let mut last_renewed = Instant::now();
    let mut leases = store.client().lease_client();
    let (mut keeper, mut answers) = match leases.keep_alive(lease).await {
        Ok(pair) => pair,
        Err(e) => return format!("cannot renew the lease: {e}"),
    };
    loop {
        let left = deadline.saturating_sub(last_renewed.elapsed());
        if left.is_zero() {
            return format!("the lease was not renewed for {deadline:?}");
        }
        // The lease runs from when the renewal was asked for, not from when
        // its answer came: a late answer must not stretch the lead.
        let asked = Instant::now();
        if let Err(e) = keeper.keep_alive().await {
            return format!("cannot renew the lease: {e}");
        }
        match tokio::time::timeout(left, answers.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => last_renewed = asked,
            Ok(Ok(Some(_))) => return "etcd let the lease expire".into(),
            Ok(Ok(None)) => return "the lease's renewal stream ended".into(),
            Ok(Err(e)) => return format!("cannot renew the lease: {e}"),
            Err(_) => return format!("the lease was not renewed for {deadline:?}"),
        }
        let pause = (ttl / 3).saturating_sub(last_renewed.elapsed());
        tokio::time::sleep(pause).await;
    }
}

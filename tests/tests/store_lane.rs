//! The lane's batch commit against a real redis-server: the reads that ride on a commit see what the
//! commit left, a refused commit returns no reads, and a Redis that lost its scripts (a restart)
//! still commits. Also the edge's batched ack write.

use std::time::Duration;

use vc_shared::store::{BatchCommit, BatchWrites, Op, ReadPlan, Store};
use vc_tests::servers::RedisServer;

const A: &str = "{vc}:test:a";
const H: &str = "{vc}:test:h";
const S: &str = "{vc}:test:s";

fn plan() -> ReadPlan {
    ReadPlan {
        strings: vec![A.into(), "{vc}:test:missing".into()],
        hashes: vec![H.into()],
        counts: vec![(S.into(), true), (H.into(), false)],
        fields: vec![(H.into(), "f".into()), (H.into(), "nope".into())],
    }
}

fn writes(value: &str, member: &str) -> Vec<Op> {
    vec![
        Op::Set {
            key: A.into(),
            value: value.into(),
        },
        Op::Hset {
            key: H.into(),
            field: "f".into(),
            value: value.into(),
        },
        Op::Sadd {
            key: S.into(),
            member: member.into(),
        },
    ]
}

#[tokio::test]
async fn reads_ride_on_the_commit_and_see_what_it_wrote() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url()).await.unwrap();
    let lease = store
        .lane_acquire("test-holder", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the lane is free");
    let rev = store.rev().await.unwrap();
    let ops = writes("1", "m1");
    let first = BatchWrites {
        token: &lease.token,
        expected_rev: rev,
        expected_seq: lease.applied_seq,
        new_seq: lease.applied_seq + 3,
        commands: 3,
        ops: &ops,
    };

    // A fresh server knows no script: the pipelined EVALSHA runs nothing, the commit goes alone.
    let (committed, reads) = store.commit_batch_then_read(&first, &plan()).await.unwrap();
    assert!(
        matches!(committed, BatchCommit::Applied { rev: r, change } if r == rev + 3 && change > 0),
        "{committed:?}"
    );
    assert!(reads.is_none(), "no reads when the commit went alone");
    assert_eq!(store.raw_get(A).await.unwrap().as_deref(), Some("1"));

    // The script is known now: the reads come back, as the commit left the keys.
    let ops = writes("2", "m2");
    let second = BatchWrites {
        expected_rev: rev + 3,
        expected_seq: lease.applied_seq + 3,
        new_seq: lease.applied_seq + 4,
        commands: 1,
        ops: &ops,
        ..first
    };
    let (committed, reads) = store
        .commit_batch_then_read(&second, &plan())
        .await
        .unwrap();
    assert!(
        matches!(committed, BatchCommit::Applied { rev: r, change } if r == rev + 4 && change > 0),
        "{committed:?}"
    );
    let reads = reads.expect("reads made in the commit's round trip");
    assert_eq!(reads.strings, vec![Some("2".to_string()), None]);
    assert_eq!(reads.hashes, vec![vec![("f".to_string(), "2".to_string())]]);
    assert_eq!(reads.counts, vec![2, 1]);
    assert_eq!(reads.fields, vec![Some("2".to_string()), None]);

    // A commit refused (the revision moved) writes nothing and returns no reads.
    let ops = writes("3", "m3");
    let stale = BatchWrites {
        expected_seq: lease.applied_seq + 4,
        new_seq: lease.applied_seq + 5,
        ops: &ops,
        ..second
    };
    let (committed, reads) = store.commit_batch_then_read(&stale, &plan()).await.unwrap();
    assert_eq!(committed, BatchCommit::Conflict);
    assert!(reads.is_none());
    assert_eq!(store.raw_get(A).await.unwrap().as_deref(), Some("2"));

    // Nothing to read: a plain commit.
    let current = BatchWrites {
        expected_rev: rev + 4,
        ..stale
    };
    let (committed, reads) = store
        .commit_batch_then_read(&current, &ReadPlan::default())
        .await
        .unwrap();
    assert!(
        matches!(committed, BatchCommit::Applied { rev: r, change } if r == rev + 5 && change > 0),
        "{committed:?}"
    );
    assert!(reads.is_none());
    assert_eq!(store.raw_get(A).await.unwrap().as_deref(), Some("3"));
}

/// The edge's batched ack write keeps each agent's highest version, across script calls (over 512 acks)
/// and across batches, and counts only the records it moved.
#[tokio::test]
async fn acks_keep_each_agents_highest_version() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url()).await.unwrap();
    let dids: Vec<String> = (0..1_200).map(|i| format!("did:key:test{i}")).collect();
    let first: Vec<(&str, u64)> = dids.iter().map(|d| (d.as_str(), 5)).collect();
    assert_eq!(store.record_acks(&first).await.unwrap(), 1_200);
    // Older acks (a late frame of an earlier session) move nothing; newer ones move theirs.
    let mixed: Vec<(&str, u64)> = dids
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), if i % 2 == 0 { 4 } else { 7 }))
        .collect();
    assert_eq!(store.record_acks(&mixed).await.unwrap(), 600);
    assert_eq!(store.acked_version(&dids[0]).await.unwrap(), Some(5));
    assert_eq!(store.acked_version(&dids[1]).await.unwrap(), Some(7));
    assert_eq!(store.acked_version(&dids[1_199]).await.unwrap(), Some(7));
    assert_eq!(store.acked_version("did:key:none").await.unwrap(), None);
    assert_eq!(store.record_acks(&[]).await.unwrap(), 0);
}

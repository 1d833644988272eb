//! Unit tests of the Redis store (no Redis server: tickets, keys, sealing) (moved out of `store.rs` to keep that file about the code).

use super::*;
use crate::session::redis::{RedisConfig, RedisTarget};

/// A pool that never connects (these tests make no Redis call).
fn pool() -> Arc<RedisPool> {
    let cfg = RedisConfig {
        target: RedisTarget::Url("redis://127.0.0.1:1".into()),
        key_prefix: "p:".into(),
        connect_timeout: Duration::from_millis(50),
        command_timeout: Duration::from_millis(50),
        ca_pem: None,
    };
    Arc::new(RedisPool::new(&cfg).unwrap())
}

pub(super) fn store(master: &[u8]) -> RedisStore {
    RedisStore::new(pool(), master, &[], "P")
}

#[test]
fn tickets_verify_without_redis_and_only_in_their_scope() {
    let s = store(b"scope-a");
    let t = s.ticket(rand::random());
    let v = s.encode(&t).unwrap();
    assert_eq!(v.len(), TICKET_CHARS);
    let cookie = |v: &str| format!("P.ticket={v}");
    let ok = cookie(&v);
    let got = s
        .ticket_of(&RequestCookies::parse([ok.as_str()].into_iter()))
        .unwrap();
    assert_eq!(got.id, t.id);
    let mut flipped = v.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    for bad in [
        cookie(&v[..63]),
        cookie(&format!("{v}A")),
        cookie(std::str::from_utf8(&flipped).unwrap()),
        cookie(&"A".repeat(64)),
        cookie("!".repeat(64).as_str()),
        format!("{}; {}", cookie(&v), cookie(&v)),
    ] {
        assert!(
            s.ticket_of(&RequestCookies::parse([bad.as_str()].into_iter()))
                .is_none(),
            "{bad}"
        );
    }
    // Another scope's store refuses it.
    assert!(
        store(b"scope-b")
            .ticket_of(&RequestCookies::parse([ok.as_str()].into_iter()))
            .is_none()
    );
}

#[test]
fn a_previous_secret_verifies_old_tickets_and_finds_their_records() {
    let old = store(b"scope-a");
    let t = old.ticket(rand::random());
    let cookie = format!("P.ticket={}", old.encode(&t).unwrap());
    let req = RequestCookies::parse([cookie.as_str()].into_iter());
    let session = crate::session::codec::tests::session(10);
    let sealed = old.seal(&t, &session).unwrap();
    let rotated = RedisStore::new(pool(), b"scope-b", &[b"scope-a".to_vec()], "P");
    let got = rotated.ticket_of(&req).unwrap();
    // The same record id (so the same record), opened under the old keys, marked to move.
    assert!(got.is_previous() && got.id == t.id);
    assert!(rotated.open(&got, sealed.clone()) == Some(session.clone()));
    // Its own tickets are current; both index keys are read, only the current one written.
    let mine = rotated.ticket(rand::random());
    assert!(!mine.is_previous());
    assert_ne!(
        rotated.index_key_in(0, "sub", "u1"),
        rotated.index_key_in(1, "sub", "u1")
    );
    assert_eq!(
        rotated.index_key_in(1, "sub", "u1"),
        old.index_key("sub", "u1")
    );
    // Without the old secret the ticket is foreign.
    let dropped = store(b"scope-b");
    assert!(dropped.ticket_of(&req).is_none());
}

#[test]
fn records_open_only_with_their_ticket() {
    let s = store(b"scope-a");
    let t = s.ticket(rand::random());
    let session = crate::session::codec::tests::session(10);
    let sealed = s.seal(&t, &session).unwrap();
    assert!(s.open(&t, sealed.clone()) == Some(session.clone()));
    let other = s.ticket(rand::random());
    assert!(s.open(&other, sealed.clone()).is_none());
    let mut tampered = sealed;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(s.open(&t, tampered).is_none());
    // Keys are one-way and carry nothing of the ticket or the subject.
    let key = s.record_key(&t.id);
    assert!(key.starts_with("p:session:") && !key.contains(&hex(&t.secret)));
    let idx = s.index_key("sub", &session.sub).unwrap();
    assert!(idx.starts_with("p:sub:") && !idx.contains(&session.sub));
}

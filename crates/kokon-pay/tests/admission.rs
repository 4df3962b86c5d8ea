//! Single-use admission: a request id admits one job per channel, for good.

use kokon_money::{Address, SecretKey};
use kokon_pay::PayError;
use kokon_pay::books::proxy::ProxyBooks;

fn open(dir: &std::path::Path) -> ProxyBooks {
    let key = SecretKey::from_bytes([3; 32]);
    let vault = kokon_money::ledger::vault_address(&key.public());
    ProxyBooks::open(&dir.join("proxy.db"), key, vault, 500, 1_000_000).unwrap()
}

#[test]
fn a_request_id_admits_one_job_per_channel_even_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (Address::new(0, [1; 32]), Address::new(0, [2; 32]));
    let mut books = open(tmp.path());
    books
        .register(&a, "req-1")
        .unwrap()
        .wait_blocking()
        .unwrap();
    let again = books.register(&a, "req-1").err();
    assert!(
        matches!(&again, Some(PayError::DuplicateRequest(id)) if id == "req-1"),
        "{again:?}"
    );
    books
        .register(&b, "req-1")
        .unwrap()
        .wait_blocking()
        .unwrap();
    books
        .register(&a, "req-2")
        .unwrap()
        .wait_blocking()
        .unwrap();
    drop(books);
    let mut books = open(tmp.path());
    for (ch, id) in [(&a, "req-1"), (&b, "req-1"), (&a, "req-2")] {
        assert!(
            matches!(books.register(ch, id), Err(PayError::DuplicateRequest(_))),
            "{id} on {ch} is remembered across a restart"
        );
    }
    assert_eq!(
        books.totals().unwrap().billed,
        0,
        "registering bills nothing"
    );
}

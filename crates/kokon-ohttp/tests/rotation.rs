//! A rotation in two halves (staged, published, then handed out), and the
//! check a client makes that the key it was handed is the published one.

use kokon_ohttp::keys::is_published;
use kokon_ohttp::{GatewayKeys, KeyConfig};

#[test]
fn a_staged_key_is_not_handed_out_until_promoted_and_is_what_was_published() {
    let mut keys = GatewayKeys::generate();
    let first = keys.current();
    let publish = keys.stage();
    assert_eq!(keys.current(), first, "staging hands out nothing new");
    assert!(
        keys.find(first.key_id.wrapping_add(1)).is_none(),
        "nor accepts the staged key"
    );
    assert_eq!(keys.stage(), publish, "staging again stages the same key");
    keys.promote();
    assert_eq!(
        keys.encoded(),
        publish,
        "what is served is exactly what was published"
    );
    assert_ne!(keys.current(), first);
    assert!(
        keys.find(first.key_id).is_some(),
        "the previous key is still accepted"
    );
    // Promoting with nothing staged changes nothing.
    let before = keys.encoded();
    keys.promote();
    assert_eq!(keys.encoded(), before);
    // The next rotation forgets the first key.
    keys.stage();
    keys.promote();
    assert!(keys.find(first.key_id).is_none());
}

#[test]
fn only_a_published_configuration_byte_for_byte_is_published() {
    let mut keys = GatewayKeys::generate();
    let published = keys.encoded();
    let mine = keys.current();
    assert!(is_published(&published, &mine));
    // A key made for one client alone: same identifier, another key.
    let other = GatewayKeys::generate().current();
    let tailored = KeyConfig {
        key_id: mine.key_id,
        public: other.public,
    };
    assert!(!is_published(&published, &tailored));
    // The staged key is not published until the rotation's body is.
    let next = keys.stage();
    keys.promote();
    assert!(!is_published(&published, &keys.current()));
    assert!(is_published(&next, &keys.current()));
    // Nothing parses out of garbage or an empty record.
    assert!(!is_published(b"", &mine));
    assert!(!is_published(&[0xff; 40], &mine));
}

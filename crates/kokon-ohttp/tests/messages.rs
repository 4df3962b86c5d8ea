//! Binary HTTP inside the encapsulation: our streamed response reads with
//! the `bhttp` crate, requests round-trip, hostile messages are refused
//! within bounds; key rotation keeps the previous key.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use kokon_ohttp::msg::{self, Part, StreamReader};
use kokon_ohttp::{GatewayKeys, KeyConfig, OhttpError, chunked, encap};

fn streamed(chunks: &[&[u8]]) -> Vec<u8> {
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/octet-stream".parse().unwrap());
    let mut out = msg::stream_head(StatusCode::OK, &h);
    for c in chunks {
        out.extend(msg::stream_chunk(c));
    }
    out.extend(msg::stream_end());
    out
}

#[test]
fn a_streamed_response_reads_with_the_bhttp_crate() {
    let bytes = streamed(&[b"tok1 ", b"", b"tok2"]);
    let m = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&bytes[..])).unwrap();
    assert_eq!(m.control().status().unwrap().code(), 200);
    assert_eq!(
        m.header().get(b"content-type"),
        Some(&b"application/octet-stream"[..])
    );
    assert_eq!(m.content(), b"tok1 tok2");
}

#[test]
fn the_stream_reader_reads_byte_by_byte_and_reads_the_bhttp_crates_output() {
    let mine = streamed(&[b"tok1 ", b"tok2"]);
    let mut theirs_msg = bhttp::Message::response(bhttp::StatusCode::try_from(200u16).unwrap());
    theirs_msg.put_header("content-type", "application/octet-stream");
    theirs_msg.write_content(b"tok1 tok2");
    let mut theirs = Vec::new();
    theirs_msg
        .write_bhttp(bhttp::Mode::IndeterminateLength, &mut theirs)
        .unwrap();
    for bytes in [mine, theirs] {
        let mut r = StreamReader::default();
        let mut parts = Vec::new();
        for b in &bytes {
            parts.extend(r.push(std::slice::from_ref(b)).unwrap());
        }
        assert!(r.is_done());
        let Part::Head(status, h) = &parts[0] else {
            panic!("head first")
        };
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(h["content-type"], "application/octet-stream");
        let data: Vec<u8> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Data(d) => Some(d.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(data, b"tok1 tok2");
        assert_eq!(parts.last(), Some(&Part::End));
    }
}

#[test]
fn hostile_streams_are_refused_before_they_are_buffered() {
    // A content chunk announcing 2^30 bytes.
    let mut bytes = msg::stream_head(StatusCode::OK, &HeaderMap::new());
    bytes.extend([0xc0, 0, 0, 0, 0x40, 0, 0, 0]);
    let mut r = StreamReader::default();
    assert_eq!(
        r.push(&bytes).err(),
        Some(OhttpError::TooLarge(msg::MAX_CONTENT_CHUNK))
    );
    // A header section that never ends.
    let mut r = StreamReader::default();
    let mut bytes = vec![3, 0x40, 200];
    let err = loop {
        bytes.extend([1, b'a', 1, b'b']);
        match r.push(&bytes) {
            Ok(p) => assert!(p.is_empty()),
            Err(e) => break e,
        }
        bytes.clear();
    };
    assert!(matches!(err, OhttpError::BadMessage(_)), "{err:?}");
    // A request where a response should be; an informational status.
    assert!(StreamReader::default().push(&[2]).is_err());
    assert!(StreamReader::default().push(&[3, 0x40, 100]).is_err());
    // Bytes after the end.
    let mut r = StreamReader::default();
    let mut bytes = streamed(&[b"x"]);
    bytes.push(7);
    assert_eq!(r.push(&bytes).err(), Some(OhttpError::AfterFinal));
}

#[test]
fn requests_round_trip_and_bad_ones_are_refused() {
    let mut req = Request::post("/kokon/v1/job?x=1")
        .header("kokon-model", "m")
        .body(Bytes::from_static(b"payload"))
        .unwrap();
    req.headers_mut()
        .append("kokon-model", "n".parse().unwrap());
    let back = msg::decode_request(&msg::encode_request(&req)).unwrap();
    assert_eq!(back.method(), "POST");
    assert_eq!(back.uri(), "/kokon/v1/job?x=1");
    assert_eq!(back.headers().get_all("kokon-model").iter().count(), 2);
    assert_eq!(back.body(), "payload");
    let whole = msg::encode_request(&req);
    for cut in 0..whole.len() {
        // RFC 9292 §3.8 lets a message end before empty content and
        // trailers, so a cut there reads as a request without its body;
        // never as the whole one. (Inside OHTTP only the sender can cut.)
        if let Ok(r) = msg::decode_request(&whole[..cut]) {
            let only_trailer_cut = cut == whole.len() - 1;
            assert!(
                r.body().len() < 7 || only_trailer_cut,
                "cut at {cut} read as whole"
            );
        }
    }
    let resp = msg::encode_response(StatusCode::OK, &HeaderMap::new(), b"x");
    assert!(
        msg::decode_request(&resp).is_err(),
        "a response is not a request"
    );
    // A field that claims more bytes than the message holds.
    assert!(msg::decode_request(&[0, 4, b'P', b'O', b'S', b'T', 0x7f]).is_err());
}

#[test]
fn rotation_keeps_the_previous_key_for_one_period() {
    let mut keys = GatewayKeys::generate();
    let first = keys.current();
    let (old, _) = encap::encapsulate_request(&first, b"r").unwrap();
    keys.rotate();
    assert_ne!(keys.current(), first);
    assert_eq!(keys.current().key_id, first.key_id.wrapping_add(1));
    let listed = KeyConfig::decode_list(&keys.encoded()).unwrap();
    assert_eq!(
        listed,
        vec![keys.current(), first],
        "current first, then the previous"
    );
    assert!(
        encap::decapsulate_request(&keys, &old).is_ok(),
        "the overlap"
    );
    keys.rotate();
    let err = encap::decapsulate_request(&keys, &old).unwrap_err();
    assert_eq!(err, OhttpError::UnknownKey(first.key_id));
    assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err.problem().unwrap()["type"]
            .as_str()
            .unwrap()
            .ends_with("#ohttp-key")
    );
}

#[test]
fn truncated_and_foreign_encapsulations_get_the_rfcs_errors() {
    let keys = GatewayKeys::generate();
    let (whole, _) = encap::encapsulate_request(&keys.current(), b"request").unwrap();
    let (chunky, _) = chunked::encapsulate_request(&keys.current(), b"request").unwrap();
    for cut in 0..whole.len() {
        let e = encap::decapsulate_request(&keys, &whole[..cut]).unwrap_err();
        assert_eq!(
            e.status(),
            StatusCode::BAD_REQUEST,
            "whole cut at {cut}: {e}"
        );
    }
    for cut in 0..chunky.len() {
        let e = chunked::decapsulate_request(&keys, &chunky[..cut]).unwrap_err();
        assert_eq!(
            e.status(),
            StatusCode::BAD_REQUEST,
            "chunked cut at {cut}: {e}"
        );
    }
    // A whole request is not a chunked one, nor the reverse (the labels differ).
    assert_eq!(
        chunked::decapsulate_request(&keys, &whole)
            .err()
            .map(|e| e.status()),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(
        encap::decapsulate_request(&keys, &chunky).err(),
        Some(OhttpError::Decrypt)
    );
    // Another suite.
    let mut other = whole.clone();
    other[5..7].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(
        encap::decapsulate_request(&keys, &other)
            .unwrap_err()
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[test]
fn a_chunked_response_cut_anywhere_never_opens_as_whole() {
    let keys = GatewayKeys::generate();
    let (enc, client_key) = chunked::encapsulate_request(&keys.current(), b"q").unwrap();
    let (_, key) = chunked::decapsulate_request(&keys, &enc).unwrap();
    let (mut sealer, mut out) = chunked::ResponseSealer::new(&key);
    out.extend(sealer.chunk(b"one"));
    out.extend(sealer.chunk(b"two"));
    out.extend(sealer.finish());
    let _ = client_key;
    for cut in 0..out.len() {
        let (_, k) = chunked::decapsulate_request(&keys, &enc).unwrap();
        let mut opener = chunked::ResponseOpener::new(k);
        let pushed = opener.push(&out[..cut]);
        assert!(
            pushed.is_err() || opener.finish().is_err(),
            "cut at {cut} opened as complete"
        );
    }
}

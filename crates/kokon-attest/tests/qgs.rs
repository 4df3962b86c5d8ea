//! The QGS protocol against a fake quoting service on a Unix socket pair,
//! and the TD report ioctl's error on a file that is not the device.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use kokon_attest::qgs::{QgsError, exchange, parse_quote_response, quote_request};
use kokon_attest::tdx_guest::{GuestError, qgs_port, td_report};

/// A response message (without its length prefix).
fn response(version: u16, kind: u32, code: u32, id: &[u8], quote: &[u8]) -> Vec<u8> {
    let size = (16 + 8 + id.len() + quote.len()) as u32;
    let mut m = Vec::new();
    m.extend_from_slice(&version.to_le_bytes());
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(&kind.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(&code.to_le_bytes());
    m.extend_from_slice(&(id.len() as u32).to_le_bytes());
    m.extend_from_slice(&(quote.len() as u32).to_le_bytes());
    m.extend_from_slice(id);
    m.extend_from_slice(quote);
    m
}

/// Serves one request: checks it is a well-formed GET_QUOTE_REQ for a
/// 1024-byte report, and answers with `reply` (length-prefixed).
fn fake_qgs(mut s: UnixStream, reply: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut msg).unwrap();
        assert_eq!(&msg[0..2], &1u16.to_le_bytes(), "major version");
        assert_eq!(&msg[4..8], &0u32.to_le_bytes(), "GET_QUOTE_REQ");
        assert_eq!(
            u32::from_le_bytes(msg[8..12].try_into().unwrap()) as usize,
            msg.len()
        );
        assert_eq!(u32::from_le_bytes(msg[16..20].try_into().unwrap()), 1024);
        assert_eq!(u32::from_le_bytes(msg[20..24].try_into().unwrap()), 0);
        s.write_all(&(reply.len() as u32).to_be_bytes()).unwrap();
        s.write_all(&reply).unwrap();
        msg[24..].to_vec()
    })
}

#[test]
fn a_report_becomes_a_quote() {
    let (a, b) = UnixStream::pair().unwrap();
    let report = [0x5a; 1024];
    let server = fake_qgs(b, response(1, 1, 0, b"id", b"THE QUOTE"));
    assert_eq!(exchange(a, &report).unwrap(), b"THE QUOTE");
    assert_eq!(
        server.join().unwrap(),
        report.to_vec(),
        "the report reached the service"
    );
}

#[test]
fn refusals_and_malformed_answers_are_named() {
    let (a, b) = UnixStream::pair().unwrap();
    fake_qgs(b, response(1, 1, 0x11001, b"", b"q"));
    assert!(matches!(
        exchange(a, &[0; 1024]),
        Err(QgsError::Service(0x11001))
    ));

    assert!(matches!(
        parse_quote_response(&response(2, 1, 0, b"", b"q")),
        Err(QgsError::Version(2))
    ));
    assert!(matches!(
        parse_quote_response(&response(1, 3, 0, b"", b"q")),
        Err(QgsError::WrongType(3))
    ));
    assert!(matches!(
        parse_quote_response(&response(1, 1, 0, b"", b"")),
        Err(QgsError::Malformed(_))
    ));
    assert!(matches!(
        parse_quote_response(&[1, 0, 1]),
        Err(QgsError::Malformed(_))
    ));
    let mut lying = response(1, 1, 0, b"", b"quote");
    lying[20] = 99; // quote_size beyond the message
    assert!(matches!(
        parse_quote_response(&lying),
        Err(QgsError::Malformed(_))
    ));
    let mut short = response(1, 1, 0, b"", b"quote");
    short.pop();
    assert!(matches!(
        parse_quote_response(&short),
        Err(QgsError::Malformed(_))
    ));
}

#[test]
fn an_oversized_answer_is_refused_before_it_is_read() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let _ = b.read(&mut buf);
        b.write_all(&u32::MAX.to_be_bytes()).unwrap();
    });
    let err = exchange(&mut a, &[0; 1024]).unwrap_err();
    assert!(matches!(err, QgsError::TooLarge(u32::MAX)), "{err}");
}

#[test]
fn request_layout_is_the_documented_one() {
    let req = quote_request(&[7; 1024]);
    assert_eq!(&req[..4], &(16u32 + 8 + 1024).to_be_bytes());
    assert_eq!(req.len(), 4 + 16 + 8 + 1024);
}

#[test]
fn the_qgs_port_comes_from_the_config_file() {
    assert_eq!(qgs_port(""), 4050);
    assert_eq!(qgs_port("# comment\nport=4051\n"), 4051);
    assert_eq!(qgs_port("port = 5000"), 5000);
    assert_eq!(qgs_port("port=abc"), 4050);
}

#[test]
fn the_report_ioctl_on_a_file_that_is_not_the_device_fails_cleanly() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let err = td_report(f.path(), &[0; 64]).unwrap_err();
    assert!(matches!(&err, GuestError::Device { .. }), "{err}");
    let missing = td_report(std::path::Path::new("/nonexistent/tdx_guest"), &[0; 64]).unwrap_err();
    assert!(matches!(missing, GuestError::Device { .. }));
}

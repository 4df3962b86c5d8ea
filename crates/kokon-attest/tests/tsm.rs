//! configfs-tsm against a directory that behaves as the kernel's does: the
//! entry's `provider` and `generation` are files, and `outblob` is a FIFO
//! whose read blocks until a "kernel" thread has read `inblob`, bumped
//! `generation` and written the quote, as the real read blocks while the
//! host's quoting service answers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kokon_attest::tsm::{ConfigfsTsm, TsmError};
use kokon_attest::{EvidenceKind, EvidenceSource};

/// Makes `root/kokon` as the kernel would on mkdir, and serves `n` quotes.
/// Each quote is `"QUOTE" ‖ inblob`; `bump` is added to `generation` per
/// quote (1 as the kernel does, 2 to simulate another writer racing us).
fn fake_kernel(root: &Path, provider: &str, n: usize, bump: u64) -> PathBuf {
    let entry = root.join("kokon");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("provider"), format!("{provider}\n")).unwrap();
    std::fs::write(entry.join("generation"), "0\n").unwrap();
    let fifo = entry.join("outblob");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let e = entry.clone();
    std::thread::spawn(move || {
        for _ in 0..n {
            // Wait for the next request (the fake consumes `inblob`, so a
            // writer never reopens the FIFO before the reader saw EOF).
            let inblob = loop {
                match std::fs::read(e.join("inblob")) {
                    Ok(b) if b.len() == 64 => break b,
                    _ => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            };
            std::fs::remove_file(e.join("inblob")).unwrap();
            let mut out = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let g: u64 = std::fs::read_to_string(e.join("generation"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            std::fs::write(e.join("generation"), format!("{}\n", g + bump)).unwrap();
            out.write_all(b"QUOTE").unwrap();
            out.write_all(&inblob).unwrap();
        }
    });
    entry
}

#[test]
fn a_quote_carries_the_report_data() {
    let dir = tempfile::tempdir().unwrap();
    fake_kernel(dir.path(), "tdx_guest", 2, 1);
    let tsm = ConfigfsTsm::open(dir.path()).unwrap();
    assert_eq!(EvidenceSource::kind(&tsm), EvidenceKind::Tdx);
    for fill in [7u8, 9] {
        let quote = tsm.quote(&[fill; 64]).unwrap();
        assert_eq!(&quote[..5], b"QUOTE");
        assert_eq!(&quote[5..], &[fill; 64]);
    }
}

#[test]
fn a_racing_writer_makes_it_retry_then_give_up() {
    let dir = tempfile::tempdir().unwrap();
    fake_kernel(dir.path(), "tdx_guest", 8, 2);
    let tsm = ConfigfsTsm::open(dir.path()).unwrap();
    assert!(matches!(tsm.quote(&[1; 64]), Err(TsmError::Contended(8))));
}

#[test]
fn other_providers_and_missing_interfaces_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fake_kernel(dir.path(), "sev_guest", 0, 1);
    let err = ConfigfsTsm::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, TsmError::WrongProvider(p) if p == "sev_guest"),
        "{err}"
    );

    let err = ConfigfsTsm::open(&dir.path().join("nope")).unwrap_err();
    // This machine is not a TD (and has no /dev/tdx_guest).
    assert!(matches!(err, TsmError::NotATd(_)), "{err}");
    assert!(err.to_string().contains("not inside a TDX guest"));
}

#[test]
fn a_bad_generation_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let entry = fake_kernel(dir.path(), "tdx_guest", 0, 1);
    std::fs::write(entry.join("generation"), "many\n").unwrap();
    let tsm = ConfigfsTsm::open(dir.path()).unwrap();
    assert!(matches!(
        tsm.quote(&[0; 64]),
        Err(TsmError::BadGeneration { .. })
    ));
}

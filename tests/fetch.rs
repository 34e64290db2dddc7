//! `enas data fetch` against a loopback HTTP server serving a tarball built here.
mod common;

use enas::data::cifar::Variant;
use enas::data::fetch::{fetch, Source};
use enas::data::{Dataset, DatasetKind};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::net::TcpListener;

fn tarball() -> Vec<u8> {
    let staging = tempfile::tempdir().unwrap();
    common::write_cifar10(&staging.path().join("cifar-10-batches-bin"), 4);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("cifar-10-batches-bin", staging.path().join("cifar-10-batches-bin")).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// Serves `body` to `requests` HTTP GETs on 127.0.0.1, then stops.
fn serve(body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        }
    });
    format!("http://{addr}/cifar-10-binary.tar.gz")
}

#[test]
fn fetch_checks_md5_extracts_and_loads() {
    let body = tarball();
    let md5 = format!("{:x}", Md5::digest(&body));
    let url = serve(body, 1);
    let cache = tempfile::tempdir().unwrap();
    let at = fetch(Variant::Cifar10, &Source { url, md5 }, cache.path(), false).unwrap();
    assert!(at.join("test_batch.bin").is_file());
    let d = Dataset::load(DatasetKind::Cifar10, Some(cache.path()), None, 2, 0).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (18, 4));
    // Already there: no second download (the server would refuse it).
    fetch(Variant::Cifar10, &Source { url: "http://127.0.0.1:9/none".into(), md5: "x".into() }, cache.path(), false).unwrap();
}

#[test]
fn fetch_with_wrong_md5_leaves_nothing_behind() {
    let url = serve(tarball(), 1);
    let cache = tempfile::tempdir().unwrap();
    let e = fetch(Variant::Cifar10, &Source { url, md5: "0".repeat(32) }, cache.path(), false).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("does not match the published"), "{msg}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn cifar_loads_from_the_cache_directory_by_default() {
    let body = tarball();
    let md5 = format!("{:x}", Md5::digest(&body));
    let url = serve(body, 1);
    let cache = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_enas");
    let out = std::process::Command::new(bin).args(["data", "fetch", "cifar10", "--url", &url, "--md5", &md5]).env("ENAS_DATA", cache.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // With no --data-dir, CIFAR is looked for in $ENAS_DATA (no other test here reads it).
    std::env::set_var("ENAS_DATA", cache.path());
    let d = Dataset::load(DatasetKind::Cifar10, None, None, 2, 0).unwrap();
    assert_eq!(d.test.len(), 4);
}

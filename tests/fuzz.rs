//! Every parser fed random bytes and random token strings: architecture
//! strings of each space, IDX and CIFAR files, images, checkpoints. Each may
//! refuse its input; none may panic (a panic fails the test), and each
//! refusal must be an error value.
use candle_core::Device;
use enas::data::cifar::{read_records, Variant};
use enas::data::folder::{decode, Shape};
use enas::data::idx::{read_images, read_labels};
use enas::space::{Arch, SpaceKind};
use std::path::Path;

/// xorshift64*: enough randomness for inputs, seeded so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Random bytes, sometimes behind a valid header, so parsers get past their first check.
fn inputs(rng: &mut Rng, headers: &[&[u8]]) -> Vec<Vec<u8>> {
    (0..400)
        .map(|i| {
            let len = [0, 1, 4, 8, 16, 64, 300, 3073, 5000][rng.below(9)];
            let mut v = if i % 2 == 0 { headers[rng.below(headers.len())].to_vec() } else { Vec::new() };
            v.extend(rng.bytes(len));
            v
        })
        .collect()
}

#[test]
fn architecture_strings_of_every_space() {
    let tokens = [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "9",
        "-1",
        "18446744073709551616",
        "999999999",
        " ",
        "  ",
        "\n",
        "C(",
        "P(",
        "FC(",
        "(",
        ")",
        ",",
        "GAP",
        "SM",
        "|",
        "+",
        "~",
        "nor_conv_3x3",
        "skip_connect",
        "none",
        "avg_pool_3x3",
        "|nor_conv_1x1~0|",
        "x",
        "é",
        "\u{0}",
        "1e9",
        "0.5",
    ];
    let mut rng = Rng(0x5eed);
    for space in [SpaceKind::Micro, SpaceKind::Macro, SpaceKind::Metaqnn, SpaceKind::Nb201] {
        for _ in 0..3000 {
            let n = rng.below(40);
            let text: String = (0..n).map(|_| tokens[rng.below(tokens.len())]).collect::<Vec<_>>().join(if rng.below(2) == 0 { " " } else { "" });
            let _ = Arch::parse(space, &text);
        }
        for _ in 0..500 {
            let n = rng.below(64);
            let raw = rng.bytes(n);
            let _ = Arch::parse(space, &String::from_utf8_lossy(&raw));
        }
    }
}

fn each_file(dir: &Path, inputs: Vec<Vec<u8>>, mut read: impl FnMut(&Path)) {
    for (i, bytes) in inputs.into_iter().enumerate() {
        let path = dir.join(format!("input-{i}"));
        std::fs::write(&path, bytes).unwrap();
        read(&path);
    }
}

#[test]
fn dataset_files_images_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xda7a);
    // IDX headers: images (magic 0x803, and counts from tiny to huge) and labels (0x801).
    let idx_headers: [&[u8]; 4] = [
        &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28],
        &[0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255],
        &[0, 0, 8, 1, 0, 0, 0, 5],
        &[0, 0, 8, 1, 255, 255, 255, 255],
    ];
    each_file(tmp.path(), inputs(&mut rng, &idx_headers), |p| {
        let (images, labels) = (read_images(p), read_labels(p, 10));
        // A header promising 2^32 - 1 items is refused, not allocated for.
        let bytes = std::fs::read(p).unwrap();
        if bytes.starts_with(idx_headers[1]) {
            assert!(images.is_err(), "{}: accepted", p.display());
        }
        if bytes.starts_with(idx_headers[3]) {
            assert!(labels.is_err(), "{}: accepted", p.display());
        }
    });
    each_file(tmp.path(), inputs(&mut rng, &[&[3], &[250]]), |p| {
        let _ = read_records(p, Variant::Cifar10);
        let _ = read_records(p, Variant::Cifar100);
    });
    // Image files: PNG and JPEG signatures, and a real PNG's first bytes.
    let mut png = Vec::new();
    image::GrayImage::from_pixel(5, 3, image::Luma([7])).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let headers: [&[u8]; 3] = [b"\x89PNG\r\n\x1a\n", &[0xFF, 0xD8, 0xFF, 0xE0], &png[..png.len() / 2]];
    for bytes in inputs(&mut rng, &headers) {
        for shape in [Shape { channels: 1, size: 4 }, Shape { channels: 3, size: 7 }] {
            // Random bytes are never an image, whatever signature they start with.
            assert!(decode(&bytes, shape).is_err());
        }
    }
    // safetensors checkpoints: a header length, then random JSON-ish bytes.
    let headers: [&[u8]; 3] = [&[16, 0, 0, 0, 0, 0, 0, 0, b'{', b'"'], &[255, 255, 255, 255, 255, 255, 255, 255], &[2, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']];
    each_file(tmp.path(), inputs(&mut rng, &headers), |p| {
        assert!(enas::train::checkpoint::load(p, &Device::Cpu).is_err(), "{}: random bytes read as a checkpoint", p.display());
    });
}

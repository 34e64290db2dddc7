//! The real Fashion-MNIST that `scripts/setup.sh` installs (Debian's dataset-fashion-mnist).
use enas::data::{Dataset, DatasetKind};

#[test]
fn debian_fashion_mnist_loads_with_the_default_directory() {
    let d = Dataset::load(DatasetKind::FashionMnist, None, None, 5000, 0).expect("run scripts/setup.sh to install dataset-fashion-mnist");
    assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (55_000, 5_000, 10_000));
    assert_eq!((d.train.height, d.train.width), (28, 28));
    let mut counts = [0usize; 10];
    for &l in &d.test.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [1000; 10], "the test set is balanced");
    assert!((d.mean[0] - 0.286).abs() < 0.01, "mean pixel {}", d.mean[0]);
}

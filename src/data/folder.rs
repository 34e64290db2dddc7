//! Image-folder datasets, the layout of torchvision's `ImageFolder` and Keras'
//! `image_dataset_from_directory`: `DIR/train/<class>/*.png|jpg|jpeg`, and
//! optionally `DIR/test/<class>/...`. Classes are the folder names, in order.
use super::DataError;
use std::path::{Path, PathBuf};

/// The file names read as images (any case).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The files of a folder dataset, each with its class's index.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    pub classes: Vec<String>,
    pub train: Vec<(PathBuf, u8)>,
    /// None where the dataset has no `test/` folder.
    pub test: Option<Vec<(PathBuf, u8)>>,
    /// Files in class folders whose names are not PNG or JPEG, left out.
    pub not_images: Vec<PathBuf>,
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    let mut paths = std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>().map_err(io)?;
    paths.sort();
    Ok(paths)
}

fn is_image_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// The class folders of one split, in name order, with their image files.
fn split(dir: &Path, not_images: &mut Vec<PathBuf>) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let mut classes = Vec::new();
    for class_dir in entries(dir)?.into_iter().filter(|p| p.is_dir() && !hidden(p)) {
        let name = class_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (images, others): (Vec<PathBuf>, Vec<PathBuf>) =
            entries(&class_dir)?.into_iter().filter(|p| p.is_file() && !hidden(p)).partition(|p| is_image_name(p));
        if images.is_empty() {
            return Err(DataError::Invalid { path: class_dir, what: "an empty class folder: no PNG or JPEG images in it".into() });
        }
        not_images.extend(others);
        classes.push((name, images));
    }
    Ok(classes)
}

/// Lists the dataset in `dir`, refusing layouts a classifier cannot train on.
pub fn list(dir: &Path) -> Result<Listing, DataError> {
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::Invalid {
            path: dir.to_path_buf(),
            what: "no train/ folder: an image-folder dataset is DIR/train/<class>/*.png|jpg|jpeg, optionally with DIR/test/<class>/...".into(),
        });
    }
    let mut not_images = Vec::new();
    let train = split(&train_dir, &mut not_images)?;
    match train.len() {
        0 => return Err(DataError::Invalid { path: train_dir, what: "no class folders: put each class's images in a folder named for it".into() }),
        1 => return Err(DataError::Invalid { path: train_dir, what: format!("a single class ({}): a classifier needs two or more", train[0].0) }),
        n if n > 256 => return Err(DataError::Invalid { path: train_dir, what: format!("{n} classes: at most 256 are supported") }),
        _ => {}
    }
    let classes: Vec<String> = train.iter().map(|(name, _)| name.clone()).collect();
    let labelled = |split: Vec<(String, Vec<PathBuf>)>, root: &Path| -> Result<Vec<(PathBuf, u8)>, DataError> {
        let mut out = Vec::new();
        for (name, files) in split {
            let Some(label) = classes.iter().position(|c| *c == name) else {
                return Err(DataError::Invalid {
                    path: root.join(&name),
                    what: format!("class `{name}` is not among train/'s classes ({})", classes.join(", ")),
                });
            };
            out.extend(files.into_iter().map(|f| (f, label as u8)));
        }
        Ok(out)
    };
    let test_dir = dir.join("test");
    let test = if test_dir.is_dir() { Some(labelled(split(&test_dir, &mut not_images)?, &test_dir)?) } else { None };
    if test.as_ref().is_some_and(Vec::is_empty) {
        return Err(DataError::Invalid { path: test_dir, what: "no class folders in test/: remove it to hold a test split out of train/".into() });
    }
    Ok(Listing { train: labelled(train, &train_dir)?, classes, test, not_images })
}

/// What every image is converted to: channels (1 or 3) and a square side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub channels: usize,
    pub size: usize,
}

/// The channels and side of a dataset: those given, else read from the
/// training images' headers (no pixels decoded): their channel count, which
/// must be the same for all (alpha dropped), and the most common larger side.
/// Files whose header cannot be read are left to the decoder to count.
pub fn shape(dir: &Path, listing: &Listing, channels: Option<usize>, size: Option<usize>) -> Result<Shape, DataError> {
    if let (Some(channels), Some(size)) = (channels, size) {
        return Ok(Shape { channels, size });
    }
    let mut sides: std::collections::BTreeMap<u32, usize> = Default::default();
    let mut first_of: [Option<&Path>; 2] = [None, None];
    for (path, _) in &listing.train {
        let Some((w, h, c)) = header(path) else { continue };
        *sides.entry(w.max(h)).or_default() += 1;
        let slot = usize::from(c >= 3);
        first_of[slot].get_or_insert(path.as_path());
    }
    let channels = match (channels, first_of) {
        (Some(c), _) => c,
        (None, [Some(gray), Some(colour)]) => {
            return Err(DataError::Invalid {
                path: dir.join("train"),
                what: format!(
                    "images of mixed channel counts ({} has 1, {} has 3): pass --image-channels 1 or --image-channels 3 to convert them all",
                    gray.display(),
                    colour.display()
                ),
            })
        }
        (None, [_, Some(_)]) => 3,
        (None, _) => 1,
    };
    // The most common side; of equally common ones, the larger.
    let size = size.or_else(|| sides.iter().max_by_key(|(side, n)| (**n, **side)).map(|(side, _)| *side as usize));
    let size = size.ok_or_else(|| DataError::Invalid { path: dir.join("train"), what: "no training image could be read".into() })?;
    Ok(Shape { channels, size })
}

/// Width, height and channel count from an image file's header.
fn header(path: &Path) -> Option<(u32, u32, u8)> {
    use image::ImageDecoder;
    let decoder = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    let channels = decoder.color_type().channel_count();
    // Grey with alpha is grey; colour with alpha is colour.
    Some((w, h, if channels >= 3 { 3 } else { 1 }))
}

/// One image decoded, converted to `shape` (bilinear resize of the whole
/// image to a square, as torchvision's `Resize((s, s))`), channels first.
pub fn decode(bytes: &[u8], shape: Shape) -> Result<Vec<u8>, String> {
    use image::imageops::{resize, FilterType};
    // The JPEG decoder fills in a truncated file's missing rows without an
    // error: a JPEG must end with its end-of-image marker (trailing bytes allowed).
    if bytes.starts_with(&[0xFF, 0xD8]) && !bytes[bytes.len().saturating_sub(64)..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG: no end-of-image marker".into());
    }
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let side = shape.size as u32;
    if shape.channels == 1 {
        let gray = img.to_luma8();
        let gray = if gray.dimensions() == (side, side) { gray } else { resize(&gray, side, side, FilterType::Triangle) };
        return Ok(gray.into_raw());
    }
    let rgb = img.to_rgb8();
    let rgb = if rgb.dimensions() == (side, side) { rgb } else { resize(&rgb, side, side, FilterType::Triangle) };
    let plane = (side * side) as usize;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = px.0[c];
        }
    }
    Ok(chw)
}

/// A split decoded: the images that decoded, and the files that did not, with why.
pub struct Decoded {
    pub set: super::ImageSet,
    pub failed: Vec<(PathBuf, String)>,
}

/// Decodes `files` on every core, in their order; `done` is called as each
/// file is (for a progress bar).
pub fn decode_all(files: &[(PathBuf, u8)], shape: Shape, done: &(dyn Fn() + Sync)) -> Decoded {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len().max(1));
    let next = AtomicUsize::new(0);
    // Each thread's (file index, pixels or why not).
    type Share = Vec<(usize, Result<Vec<u8>, String>)>;
    let per_thread: Vec<Share> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, _)) = files.get(i) else { break mine };
                        mine.push((i, std::fs::read(path).map_err(|e| e.to_string()).and_then(|b| decode(&b, shape))));
                        done();
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a decoder thread panicked")).collect()
    });
    let mut results: Vec<Option<Result<Vec<u8>, String>>> = (0..files.len()).map(|_| None).collect();
    for (i, r) in per_thread.into_iter().flatten() {
        results[i] = Some(r);
    }
    let mut set = super::ImageSet { images: Vec::new(), labels: Vec::new(), channels: shape.channels, height: shape.size, width: shape.size };
    let mut failed = Vec::new();
    for ((path, label), result) in files.iter().zip(results) {
        match result.expect("every file was taken by a thread") {
            Ok(pixels) => {
                set.images.extend(pixels);
                set.labels.push(*label);
            }
            Err(why) => failed.push((path.clone(), why)),
        }
    }
    Decoded { set, failed }
}

/// A folder dataset decoded: its classes, training images and test images
/// (None where it has no `test/`).
pub struct Loaded {
    pub classes: Vec<String>,
    pub train: super::ImageSet,
    pub test: Option<super::ImageSet>,
}

const MAGIC: &[u8; 8] = b"ENASFLD1";

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheHeader {
    key: String,
    classes: Vec<String>,
    shape: Shape,
    train: usize,
    test: Option<usize>,
}

/// What the decoded arrays depend on: every file's path, length and
/// modification time, and the shape they are converted to.
fn cache_key(listing: &Listing, shape: Shape) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(format!("{}x{}|{}|", shape.channels, shape.size, listing.classes.join("/")));
    for (split, files) in [("train", Some(&listing.train)), ("test", listing.test.as_ref())] {
        h.update(split);
        for (path, label) in files.into_iter().flatten() {
            let meta = std::fs::metadata(path).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos());
            h.update(format!("{}|{label}|{:?}|{modified:?}\n", path.display(), meta.map(|m| m.len())));
        }
    }
    format!("{:x}", h.finalize())
}

/// The cached arrays, if the cache was written for `key` and is whole.
fn read_cache(path: &Path, key: &str) -> Option<Loaded> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
    let header: CacheHeader = serde_json::from_slice(rest.get(8..8 + len)?).ok()?;
    if header.key != key {
        return None;
    }
    let mut data = &rest[8 + len..];
    let image_len = header.shape.channels * header.shape.size * header.shape.size;
    let mut take = |n: usize| -> Option<super::ImageSet> {
        let (images, after) = data.split_at_checked(n * image_len)?;
        let (labels, after) = after.split_at_checked(n)?;
        data = after;
        Some(super::ImageSet {
            images: images.to_vec(),
            labels: labels.to_vec(),
            channels: header.shape.channels,
            height: header.shape.size,
            width: header.shape.size,
        })
    };
    let train = take(header.train)?;
    let test = match header.test {
        Some(n) => Some(take(n)?),
        None => None,
    };
    data.is_empty().then_some(Loaded { classes: header.classes, train, test })
}

fn write_cache(path: &Path, header: &CacheHeader, loaded: &Loaded) -> std::io::Result<()> {
    let json = serde_json::to_vec(header)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend((json.len() as u64).to_le_bytes());
    bytes.extend(json);
    for set in std::iter::once(&loaded.train).chain(loaded.test.as_ref()) {
        bytes.extend(&set.images);
        bytes.extend(&set.labels);
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(partial, path)
}

/// Where decoded folder datasets are kept, by what they were decoded from.
fn cache_path(key: &str) -> PathBuf {
    super::fetch::cache_dir().join("folders").join(format!("{key}.bin"))
}

/// Loads the folder dataset in `dir` as `shape`: from the cache when it holds
/// exactly these files decoded alike, else decoded (and cached). Files that
/// do not decode are left out and named in one note, or with `strict` are an
/// error. `progress(total)` gives what to call as each file is decoded.
pub fn load(dir: &Path, shape: Shape, strict: bool, progress: &dyn Fn(u64) -> Box<dyn Fn() + Sync>) -> Result<Loaded, DataError> {
    let listing = list(dir)?;
    if let Some(first) = listing.not_images.first().filter(|_| strict) {
        return Err(DataError::Invalid { path: first.clone(), what: "not a PNG or JPEG file (--strict)".into() });
    }
    let key = cache_key(&listing, shape);
    let path = cache_path(&key);
    if let Some(cached) = read_cache(&path, &key) {
        return Ok(cached);
    }
    let total = listing.train.len() + listing.test.as_ref().map_or(0, Vec::len);
    let done = progress(total as u64);
    let train = decode_all(&listing.train, shape, done.as_ref());
    let test = listing.test.as_ref().map(|t| decode_all(t, shape, done.as_ref()));
    let failed: Vec<&(PathBuf, String)> = train.failed.iter().chain(test.iter().flat_map(|t| &t.failed)).collect();
    if let Some((path, why)) = failed.first() {
        if strict {
            return Err(DataError::Invalid { path: path.clone(), what: format!("not a readable image: {why} (--strict)") });
        }
    }
    let left_out: Vec<String> = failed.iter().map(|(p, _)| p.display().to_string()).chain(listing.not_images.iter().map(|p| p.display().to_string())).collect();
    if !left_out.is_empty() {
        let shown: Vec<&str> = left_out.iter().take(3).map(String::as_str).collect();
        eprintln!(
            "note: {}: left out {} file{} that {} not a readable PNG or JPEG ({}{}); --strict makes this an error",
            dir.display(),
            left_out.len(),
            if left_out.len() == 1 { "" } else { "s" },
            if left_out.len() == 1 { "is" } else { "are" },
            shown.join(", "),
            if left_out.len() > 3 { ", ..." } else { "" }
        );
    }
    for (set, split) in std::iter::once((&train.set, "train")).chain(test.as_ref().map(|t| (&t.set, "test"))) {
        if set.is_empty() {
            return Err(DataError::Invalid { path: dir.join(split), what: "no image in it could be decoded".into() });
        }
    }
    let loaded = Loaded { classes: listing.classes, train: train.set, test: test.map(|t| t.set) };
    let header = CacheHeader { key, classes: loaded.classes.clone(), shape, train: loaded.train.len(), test: loaded.test.as_ref().map(super::ImageSet::len) };
    // A cache that cannot be written costs the next run a decode, nothing more.
    if let Err(e) = write_cache(&path, &header, &loaded) {
        eprintln!("note: {}: cannot cache the decoded images: {e}", path.display());
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn classes_in_name_order_and_test_labels_follow_train() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in ["train/dog/1.png", "train/cat/2.JPG", "train/cat/3.jpeg", "train/cat/notes.txt", "train/.DS_Store", "test/dog/4.png"] {
            touch(d, f);
        }
        let l = list(d).unwrap();
        assert_eq!(l.classes, ["cat", "dog"]);
        let labels: Vec<u8> = l.train.iter().map(|(_, y)| *y).collect();
        assert_eq!(labels, [0, 0, 1]);
        assert_eq!(l.test.as_ref().unwrap()[0].1, 1);
        assert_eq!(l.not_images, [d.join("train/cat/notes.txt")]);
    }

    #[test]
    fn layouts_a_classifier_cannot_use_are_named() {
        let err = |files: &[&str], empty_class: bool| {
            let tmp = tempfile::tempdir().unwrap();
            for f in files {
                touch(tmp.path(), f);
            }
            if empty_class {
                std::fs::create_dir_all(tmp.path().join("train/empty")).unwrap();
            }
            list(tmp.path()).unwrap_err().to_string()
        };
        assert!(err(&["other/a/1.png"], false).contains("no train/ folder"));
        assert!(err(&["train/only/1.png"], false).contains("a single class (only)"));
        assert!(err(&["train/a/1.png", "train/b/2.png"], true).contains("empty: an empty class folder"));
        assert!(err(&["train/a/1.png", "train/b/2.png", "test/c/3.png"], false).contains("class `c` is not among train/'s classes (a, b)"));
    }
}

//! The ImageGPT image processor: pixels → colour-cluster tokens and back, matching
//! transformers 5.23 `ImageGPTImageProcessorPil` (`image_processing_pil_imagegpt.py`, with
//! `image_transforms.rescale` / `normalize` and Pillow's resize) bit for bit.
//!
//! Per pixel channel `v` (uint8 after the PIL resize):
//! `x = f32(f64(v) · rescale_factor)` (rescale upcasts to float64, then casts to float32),
//! then `(x − mean) / std` in float32. Quantisation is numpy's
//! `d = (|x|²  − 2·x·c) + |c|²` with `|x|²` summed in float32 (the pixels' dtype) and the rest in
//! float64 (the clusters come from JSON as float64 and numpy promotes), `argmin` taking the
//! first index on ties. Inverse (the model docs): `rint(127.5 · (c + 1))`, ties to even, as uint8.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::load::load_rgb;
use super::resample::{resize, Filter, Rgb8};
use super::ImageError;
use crate::checkpoint::hub;

/// The file name a checkpoint folder stores the processor config under.
pub const CONFIG_NAME: &str = "preprocessor_config.json";

/// A validated `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct Processor {
    /// `[n, 3]` colour clusters, float64 as parsed.
    clusters: Vec<[f64; 3]>,
    /// `|c|²` per cluster, summed as numpy does (`(c0² + c1²) + c2²`).
    norms: Vec<f64>,
    height: usize,
    width: usize,
    do_resize: bool,
    filter: Filter,
    /// `lut[ch][v]`: the float32 model-space value of byte `v` in channel `ch`.
    lut: [[f32; 256]; 3],
    sha256: String,
    source: String,
}

impl Processor {
    /// Reads a `preprocessor_config.json`, or the one inside a checkpoint folder.
    pub fn open(path: &Path) -> Result<Processor, ImageError> {
        // A hub id (`openai/imagegpt-small`) that names nothing on disk: its snapshot in the
        // local Hugging Face cache, found the way `--weights` finds it.
        let resolved;
        let path = match path.to_str().filter(|s| hub::looks_like_id(s)) {
            Some(id) => {
                resolved = hub::snapshot_in(&hub::cache_dir(), id, "main")
                    .map_err(|source| ImageError::Hub {
                        id: id.to_string(),
                        source,
                    })?
                    .dir;
                resolved.as_path()
            }
            None => path,
        };
        let file: PathBuf = if path.is_dir() {
            path.join(CONFIG_NAME)
        } else {
            path.to_path_buf()
        };
        let name = file.display().to_string();
        let bytes = std::fs::read(&file).map_err(|source| ImageError::Read {
            path: name.clone(),
            source,
        })?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::ConfigJson {
                path: name.clone(),
                source,
            })?;
        Processor::build(&value, name, hex(&Sha256::digest(&bytes)))
    }

    /// Builds a processor from an already parsed config; its [`sha256`](Self::sha256) is that
    /// of the compact JSON serialisation (there is no file).
    pub fn from_value(value: &Value) -> Result<Processor, ImageError> {
        let text = serde_json::to_vec(value).unwrap_or_default();
        Processor::build(
            value,
            "preprocessor config".into(),
            hex(&Sha256::digest(&text)),
        )
    }

    fn build(v: &Value, source: String, sha256: String) -> Result<Processor, ImageError> {
        let bad = |reason: String| ImageError::Config {
            path: source.clone(),
            reason,
        };
        let flag = |key: &str, default: bool| -> Result<bool, ImageError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(bad(format!("`{key}` must be true or false, got {other}"))),
            }
        };
        if !v.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        if !flag("do_color_quantize", true)? {
            return Err(bad(
                "`do_color_quantize` is false: this processor gives pixel values, not tokens"
                    .into(),
            ));
        }
        let clusters = parse_clusters(v.get("clusters")).map_err(|p| bad(p.0))?;
        let (height, width) = parse_size(v.get("size")).map_err(|p| bad(p.0))?;
        let resample = match v.get("resample") {
            None | Some(Value::Null) => 2,
            Some(r) => r
                .as_i64()
                .ok_or_else(|| bad(format!("`resample` must be an integer, got {r}")))?,
        };
        let filter = Filter::from_pil(resample).ok_or_else(|| {
            bad(format!(
                "`resample` {resample} is not supported (1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING are)"
            ))
        })?;
        let do_rescale = flag("do_rescale", true)?;
        let do_normalize = flag("do_normalize", true)?;
        let factor = match v.get("rescale_factor") {
            None | Some(Value::Null) => 1.0 / 255.0,
            Some(f) => f
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| bad(format!("`rescale_factor` must be a number, got {f}")))?,
        };
        let mean = per_channel(v.get("image_mean"), "image_mean").map_err(|p| bad(p.0))?;
        let std = per_channel(v.get("image_std"), "image_std").map_err(|p| bad(p.0))?;
        if do_normalize && std.contains(&0.0) {
            return Err(bad("`image_std` has a zero".into()));
        }
        let mut lut = [[0f32; 256]; 3];
        for (ch, table) in lut.iter_mut().enumerate() {
            for (b, x) in table.iter_mut().enumerate() {
                let mut y = if do_rescale {
                    (b as f64 * factor) as f32
                } else {
                    b as f32
                };
                if do_normalize {
                    y = (y - mean[ch]) / std[ch];
                }
                *x = y;
            }
        }
        let norms = clusters
            .iter()
            .map(|c| (c[0] * c[0] + c[1] * c[1]) + c[2] * c[2])
            .collect();
        Ok(Processor {
            clusters,
            norms,
            height,
            width,
            do_resize: flag("do_resize", true)?,
            filter,
            lut,
            sha256,
            source,
        })
    }

    /// The model resolution `(height, width)`: `encode` gives `height · width` tokens.
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Number of colour clusters: tokens are `0..n_clusters()` (the model's SOS is this value).
    pub fn n_clusters(&self) -> usize {
        self.clusters.len()
    }

    /// Lower-case hex sha256 of the config file's bytes, for provenance.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where the config came from (a path, or "preprocessor config").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The processor resolved for a port that must give the same tokens (the web page's):
    /// the model size, whether to resize and with which PIL filter code, the per-channel byte
    /// → model-space table (float32 values, widened to float64 so JSON keeps them exactly) and
    /// the clusters. The nearest-cluster formula and the resampler are the port's to follow.
    pub fn tables(&self) -> Value {
        let lut: Vec<Vec<f64>> = self
            .lut
            .iter()
            .map(|t| t.iter().map(|&x| f64::from(x)).collect())
            .collect();
        serde_json::json!({
            "height": self.height,
            "width": self.width,
            "do_resize": self.do_resize,
            "resample": self.filter.pil_code(),
            "lut": lut,
            "clusters": self.clusters,
        })
    }

    /// Tokens of an RGB image (row-major `height · width` ids, no SOS).
    pub fn encode(&self, img: &Rgb8) -> Result<Vec<i64>, ImageError> {
        if img.width == 0 || img.height == 0 {
            return Err(ImageError::ZeroSize {
                path: "image".into(),
                width: img.width as u32,
                height: img.height as u32,
            });
        }
        let resized;
        let img = if self.do_resize {
            resized = resize(img, self.width, self.height, self.filter);
            &resized
        } else {
            img
        };
        Ok(img.data.chunks_exact(3).map(|p| self.nearest(p)).collect())
    }

    /// Reads, converts and encodes an image file.
    pub fn encode_file(&self, path: &Path) -> Result<Vec<i64>, ImageError> {
        let img = load_rgb(path)?;
        let tokens = self.encode(&img)?;
        if !self.do_resize && tokens.len() != self.height * self.width {
            return Err(ImageError::Config {
                path: path.display().to_string(),
                reason: format!(
                    "is {}x{} and `do_resize` is false, but the model takes {}x{}",
                    img.width, img.height, self.width, self.height
                ),
            });
        }
        Ok(tokens)
    }

    /// The nearest cluster of one RGB pixel, numpy's formula and order (see the module doc).
    fn nearest(&self, p: &[u8]) -> i64 {
        let x = [
            self.lut[0][usize::from(p[0])],
            self.lut[1][usize::from(p[1])],
            self.lut[2][usize::from(p[2])],
        ];
        let a2 = f64::from((x[0] * x[0] + x[1] * x[1]) + x[2] * x[2]);
        let x = x.map(f64::from);
        let mut best = (f64::INFINITY, 0usize);
        for (k, (c, &b2)) in self.clusters.iter().zip(&self.norms).enumerate() {
            let ab = (x[0] * c[0] + x[1] * c[1]) + x[2] * c[2];
            let d = (a2 - 2.0 * ab) + b2;
            // Strict `<`: the first index wins ties, as `np.argmin`.
            if d < best.0 {
                best = (d, k);
            }
        }
        best.1 as i64
    }

    /// The inverse: tokens (`height · width`, no SOS) → the clusters' colours as an image.
    pub fn decode_tokens(&self, tokens: &[i64]) -> Result<Rgb8, ImageError> {
        let expected = self.height * self.width;
        if tokens.len() != expected {
            return Err(ImageError::TokenCount {
                count: tokens.len(),
                expected,
                height: self.height,
                width: self.width,
            });
        }
        let mut data = Vec::with_capacity(expected * 3);
        for (index, &t) in tokens.iter().enumerate() {
            let c = usize::try_from(t)
                .ok()
                .and_then(|i| self.clusters.get(i))
                .ok_or(ImageError::Token {
                    index,
                    token: t,
                    n: self.clusters.len(),
                })?;
            // numpy's uint8 cast of values outside 0..=255 is undefined; clusters in [-1, 1]
            // never get there, others are clamped.
            data.extend(c.map(|v| (127.5 * (v + 1.0)).round_ties_even().clamp(0.0, 255.0) as u8));
        }
        Ok(Rgb8 {
            width: self.width,
            height: self.height,
            data,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_clusters(v: Option<&Value>) -> Result<Vec<[f64; 3]>, FieldProblem> {
    let rows = match v {
        None | Some(Value::Null) => return Err(FieldProblem("has no `clusters`".into())),
        Some(Value::Array(rows)) => rows,
        Some(_) => {
            return Err(FieldProblem(
                "`clusters` must be a list of [r, g, b] rows".into(),
            ))
        }
    };
    if rows.is_empty() {
        return Err(FieldProblem(
            "`clusters` is empty, expected shape [512, 3]".into(),
        ));
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let shape_err = || {
                let width = row.as_array().map_or("not a list".to_string(), |r| r.len().to_string());
                format!(
                    "`clusters` must have shape [n, 3] (512 for ImageGPT): row {i} has {width} values"
                )
            };
            let r = row.as_array().filter(|r| r.len() == 3).ok_or_else(|| FieldProblem(shape_err()))?;
            let mut out = [0.0; 3];
            for (o, x) in out.iter_mut().zip(r) {
                *o = x
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| FieldProblem(format!("`clusters` row {i} has a non-number {x}")))?;
            }
            Ok(out)
        })
        .collect()
}

/// What is wrong with a field of `preprocessor_config.json`, in words that name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldProblem(pub String);

/// The largest model side accepted: ImageGPT's published models are 32x32 (1024 positions);
/// the bound keeps a mistyped config from asking for gigabytes of resized pixels.
const MAX_SIDE: usize = 4096;

/// `size`: an int (square, as the hub's configs write it) or `{"height", "width"}`.
fn parse_size(v: Option<&Value>) -> Result<(usize, usize), FieldProblem> {
    let dim = |x: Option<&Value>, what: &str| -> Result<usize, FieldProblem> {
        x.and_then(Value::as_u64)
            .filter(|&n| (1..=MAX_SIDE as u64).contains(&n))
            .map(|n| n as usize)
            .ok_or_else(|| FieldProblem(format!("{what} must be an integer in 1..={MAX_SIDE}")))
    };
    match v {
        None | Some(Value::Null) => Ok((256, 256)), // the class default
        Some(n @ Value::Number(_)) => {
            let s = dim(Some(n), "`size`")?;
            Ok((s, s))
        }
        Some(Value::Object(m)) if m.contains_key("height") || m.contains_key("width") => Ok((
            dim(m.get("height"), "`size.height`")?,
            dim(m.get("width"), "`size.width`")?,
        )),
        Some(other) => Err(FieldProblem(format!(
            "`size` must be an integer or {{\"height\", \"width\"}}, got {other}"
        ))),
    }
}

/// `image_mean` / `image_std`: a number or three, default 0.5; float32 as numpy casts them.
fn per_channel(v: Option<&Value>, key: &str) -> Result<[f32; 3], FieldProblem> {
    let num = |x: &Value| x.as_f64().filter(|f| f.is_finite()).map(|f| f as f32);
    match v {
        None | Some(Value::Null) => Ok([0.5; 3]),
        Some(Value::Array(a)) if a.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = num(x).ok_or_else(|| FieldProblem(format!("`{key}` has a non-number {x}")))?;
            }
            Ok(out)
        }
        Some(x) => num(x)
            .map(|f| [f; 3])
            .ok_or_else(|| FieldProblem(format!("`{key}` must be a number or 3 numbers, got {x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two_clusters() -> Processor {
        Processor::from_value(&json!({
            "clusters": [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
            "size": 2,
        }))
        .expect("valid config")
    }

    #[test]
    fn nearest_cluster_and_ties_to_the_lowest_index() {
        let p = two_clusters();
        // 0 → -1.0 (cluster 0); 255 → 1.0 (clusters 1 and 2 tie: 1 wins).
        let img = Rgb8 {
            width: 2,
            height: 2,
            data: vec![0, 0, 0, 255, 255, 255, 10, 10, 10, 250, 250, 250],
        };
        assert_eq!(p.encode(&img).expect("encodes"), vec![0, 1, 0, 1]);
    }

    #[test]
    fn decode_maps_clusters_to_bytes_and_rejects_bad_tokens() {
        let p = Processor::from_value(&json!({
            // 127.5 · (c + 1): -1 → 0, 0 → 127.5 → 128 (the only exact half inside [-1, 1]),
            // 1 → 255.
            "clusters": [[-1.0, 0.0, 1.0]],
            "size": {"height": 1, "width": 1},
        }))
        .expect("valid config");
        assert_eq!(
            p.decode_tokens(&[0]).expect("decodes").data,
            vec![0, 128, 255]
        );
        assert_eq!(
            p.decode_tokens(&[1]).expect_err("refused").to_string(),
            "token 1 at position 0 is outside 0..1"
        );
        assert_eq!(
            p.decode_tokens(&[0, 0]).expect_err("refused").to_string(),
            "2 tokens do not make a 1x1 image (1 expected)"
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = |v: Value| Processor::from_value(&v).expect_err("refused").to_string();
        assert_eq!(
            err(json!({"clusters": [[0.0, 0.0]]})),
            "preprocessor config: `clusters` must have shape [n, 3] (512 for ImageGPT): row 0 has 2 values"
        );
        assert_eq!(
            err(json!({"size": 32})),
            "preprocessor config: has no `clusters`"
        );
        assert_eq!(
            err(json!({"clusters": [[0.0, 0.0, 0.0]], "size": {"height": 32, "width": 100000}})),
            "preprocessor config: `size.width` must be an integer in 1..=4096"
        );
        assert_eq!(
            err(json!({"clusters": [[0.0, 0.0, 0.0]], "resample": 0})),
            "preprocessor config: `resample` 0 is not supported (1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING are)"
        );
        assert_eq!(
            err(json!({"clusters": [[0.0, 0.0, 0.0]], "size": {"shortest_edge": 32}})),
            "preprocessor config: `size` must be an integer or {\"height\", \"width\"}, got {\"shortest_edge\":32}"
        );
    }
}

//! A calibration set: token-id sequences the float32 graph runs over, read from a folder of
//! images (encoded by the checkpoint's own image processor, SOS first and cut to the model's
//! positions, as the model reads an image) or a safetensors file of `input_ids` `[n, seq]` (int64; an `attention_mask` of the
//! same shape beside it trims each row to its right-padded length). Every id is checked against
//! the vocabulary and every row against `n_positions` before anything runs.

use std::path::Path;

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use super::CalibrateError;
use crate::config::ImageGptConfig;
use crate::image::Processor;

/// Image files a calibration folder may hold (by extension, any case).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Token-id rows and the set's checksum.
#[derive(Debug, Clone)]
pub struct CalibrationSet {
    /// One sequence per example (lengths may differ).
    pub rows: Vec<Vec<i64>>,
    /// sha256 (hex) of the file, or over a folder's image files (name and bytes, in name order).
    pub sha256: String,
    /// What it was read from, for messages.
    pub source: String,
}

impl CalibrationSet {
    /// Reads `path` — a folder of PNG / JPEG images or a safetensors file — for a model of
    /// `config` whose image processor is `processor_dir`'s (`preprocessor_config.json`).
    pub fn read(
        path: &Path,
        config: &ImageGptConfig,
        processor_dir: &Path,
    ) -> Result<CalibrationSet, CalibrateError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| CalibrateError::Read {
            path: shown.clone(),
            source,
        })?;
        let set = match meta.is_dir() {
            true => images(path, processor_dir, config)?,
            false => token_file(path)?,
        };
        set.check(config)?;
        Ok(set)
    }

    /// A set given as rows (a verify case's own inputs), with its checksum.
    pub fn from_rows(rows: Vec<Vec<i64>>, sha256: String, source: String) -> CalibrationSet {
        CalibrationSet {
            rows,
            sha256,
            source,
        }
    }

    /// Tokens over all rows.
    pub fn tokens(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    /// At least one non-empty row, every id in the vocabulary, no row past `n_positions`.
    pub fn check(&self, config: &ImageGptConfig) -> Result<(), CalibrateError> {
        let bad = |why: String| CalibrateError::Invalid {
            path: self.source.clone(),
            why,
        };
        if self.rows.iter().all(Vec::is_empty) {
            return Err(bad("no tokens to calibrate on".into()));
        }
        for (r, row) in self.rows.iter().enumerate() {
            if row.len() > config.n_positions {
                return Err(bad(format!(
                    "row {r} has {} tokens, more than the model's {} positions",
                    row.len(),
                    config.n_positions
                )));
            }
            let outside = row
                .iter()
                .position(|&id| usize::try_from(id).map_or(true, |id| id >= config.vocab_size));
            if let Some(p) = outside {
                return Err(bad(format!(
                    "input_ids[{r}][{p}] = {} is outside the vocabulary 0..{}",
                    row[p], config.vocab_size
                )));
            }
        }
        Ok(())
    }
}

/// Every image of `dir`, in name order, each as SOS plus its tokens.
fn images(
    dir: &Path,
    processor_dir: &Path,
    config: &ImageGptConfig,
) -> Result<CalibrationSet, CalibrateError> {
    let shown = dir.display().to_string();
    let read_err = |source| CalibrateError::Read {
        path: shown.clone(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CalibrateError::Invalid {
            path: shown,
            why: format!(
                "no image in it (expected {} files)",
                IMAGE_EXTENSIONS.join(", ")
            ),
        });
    }
    let processor = Processor::open(processor_dir).map_err(CalibrateError::Processor)?;
    let sos = config.vocab_size as i64 - 1;
    let mut hash = Sha256::new();
    let mut rows = Vec::with_capacity(files.len());
    for f in &files {
        let bytes = std::fs::read(f).map_err(|source| CalibrateError::Read {
            path: f.display().to_string(),
            source,
        })?;
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        let rgb = crate::image::load::decode_rgb(&bytes, &f.display().to_string())
            .map_err(CalibrateError::Image)?;
        let mut row = vec![sos];
        row.extend(processor.encode(&rgb).map_err(CalibrateError::Image)?);
        // A whole image and its start token are one more than the positions (1,024 pixels, 1,024
        // positions at the published sizes): the model never reads the last pixel as an input.
        row.truncate(config.n_positions);
        rows.push(row);
    }
    Ok(CalibrationSet {
        rows,
        sha256: hex(&hash.finalize()),
        source: shown,
    })
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
}

/// `input_ids` `[n, seq]` int64 of a safetensors file, each row trimmed to its
/// `attention_mask` when the file has one.
fn token_file(path: &Path) -> Result<CalibrationSet, CalibrateError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CalibrateError::Read {
        path: shown.clone(),
        source,
    })?;
    let bad = |why: String| CalibrateError::Invalid {
        path: shown.clone(),
        why,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        bad(format!(
            "neither a folder of images nor a safetensors file ({e})"
        ))
    })?;
    let (shape, ids) = int64_matrix(&st, "input_ids").map_err(&bad)?;
    let mask = match st.names().contains(&"attention_mask") {
        true => Some(int64_matrix(&st, "attention_mask").map_err(&bad)?),
        false => None,
    };
    let seq = shape[1];
    let mut rows: Vec<Vec<i64>> = ids.chunks(seq.max(1)).map(<[i64]>::to_vec).collect();
    if let Some((mshape, mask)) = mask {
        if mshape != shape {
            return Err(bad(format!(
                "attention_mask is {mshape:?}, input_ids {shape:?}"
            )));
        }
        for (row, m) in rows.iter_mut().zip(mask.chunks(seq.max(1))) {
            let len = m.iter().take_while(|&&v| v != 0).count();
            if m[len..].iter().any(|&v| v != 0) {
                return Err(bad(
                    "attention_mask is not right-padded (a 1 after a 0)".into()
                ));
            }
            row.truncate(len);
        }
    }
    Ok(CalibrationSet {
        rows,
        sha256: hex(&Sha256::digest(&bytes)),
        source: shown,
    })
}

/// A 2-D int64 tensor's shape and values.
fn int64_matrix(st: &SafeTensors<'_>, name: &str) -> Result<([usize; 2], Vec<i64>), String> {
    let t = st
        .tensor(name)
        .map_err(|_| format!("no `{name}` tensor (expected int64 [n, seq] token ids)"))?;
    if t.dtype() != Dtype::I64 {
        return Err(format!("`{name}` is {:?}, expected int64", t.dtype()));
    }
    let [n, seq] = t.shape() else {
        return Err(format!(
            "`{name}` has shape {:?}, expected [n, seq]",
            t.shape()
        ));
    };
    let values = t
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    Ok(([*n, *seq], values))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

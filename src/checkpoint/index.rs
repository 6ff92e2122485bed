//! Sharded checkpoints: the shard files a `*.index.json` names (`weight_map` values), beside
//! the index (HF `modeling_utils.py`'s sharding layout).

use std::path::{Path, PathBuf};

use super::store::WeightsError;

/// The shard files a `*.index.json` names (`weight_map` values), beside the index.
pub(crate) fn shard_files(index: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    let err = |reason: String| WeightsError::Index {
        path: index.display().to_string(),
        reason,
    };
    let path = || index.display().to_string();
    let text = std::fs::read_to_string(index).map_err(|source| WeightsError::IndexRead {
        path: path(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| WeightsError::IndexJson {
            path: path(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| err("no `weight_map` object".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names: Vec<&str> = Vec::with_capacity(map.len());
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| err(format!("`{tensor}` maps to a non-string")))?;
        // Shards live beside the index: refuse anything that would escape the folder.
        if file.contains('/') || file.contains('\\') || file == ".." || file.is_empty() {
            return Err(err(format!("shard name `{file}` is not a plain file name")));
        }
        names.push(file);
    }
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Err(err("`weight_map` is empty".into()));
    }
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_index_keeps_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = dir.path().join("model.safetensors.index.json");
        std::fs::write(&index, b"{\"weight_map\": ").expect("write");
        let err = shard_files(&index).expect_err("not JSON");
        assert!(matches!(err, WeightsError::IndexJson { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "invalid shard index {}: EOF while parsing a value at line 1 column 15",
                index.display()
            )
        );
        crate::base::assert_causes_show_in_the_message(&err);
        let missing = dir.path().join("none.index.json");
        let err = shard_files(&missing).expect_err("missing");
        assert!(matches!(err, WeightsError::IndexRead { .. }), "{err:?}");
        crate::base::assert_causes_show_in_the_message(&err);
    }
}

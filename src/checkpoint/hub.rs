//! Checkpoints by Hugging Face hub id (`openai/imagegpt-medium`): resolved in the local cache
//! the way `huggingface_hub` lays it out, or downloaded into that same layout with `hf-hub`
//! (so Python tools share the files). Cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`; a repo is `models--org--name/{refs/<revision> → commit,
//! snapshots/<commit>/<file> → ../../blobs/<etag>}`. Spec: huggingface_hub's
//! `constants.py` and `file_download.py` (`hf_hub_download`, `try_to_load_from_cache`).

use std::path::{Path, PathBuf};

/// Files a model folder needs, in the order they are fetched; the weights are one of
/// [`WEIGHT_CHOICES`].
const SIDE_FILES: [&str; 3] = [
    "config.json",
    "preprocessor_config.json",
    "generation_config.json",
];
/// Files that may be absent from a repository without making it unusable.
const OPTIONAL: [&str; 2] = ["preprocessor_config.json", "generation_config.json"];
/// Weight layouts in order of preference (safetensors wins, as in `from_pretrained`).
const WEIGHT_CHOICES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// A problem finding or fetching a checkpoint by hub id.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{0}` is not a hub id (expected org/name, letters, digits, `-`, `_`, `.`)")]
    BadId(String),
    #[error("`{0}` is not a valid revision (a branch, tag or commit hash)")]
    BadRevision(String),
    #[error("{repo}@{revision} is not in the Hugging Face cache (searched {searched}): pass --download to fetch it")]
    NotCached {
        repo: String,
        revision: String,
        searched: String,
    },
    #[error("{repo}@{revision} in the cache {dir} has no weights (none of {choices}): pass --download to fetch them")]
    NoWeights {
        repo: String,
        revision: String,
        dir: String,
        choices: String,
    },
    #[error("downloading {file} of {repo}: {reason}")]
    Download {
        repo: String,
        file: String,
        reason: String,
    },
    /// The hub client failed (the connection, the server's answer, the cache).
    #[error("downloading {file} of {repo}: {source}")]
    Client {
        repo: String,
        file: String,
        #[source]
        source: hf_hub::api::sync::ApiError,
    },
    /// A downloaded file that cannot be used (an index naming no shards).
    #[error("downloading {file} of {repo}: {source}")]
    Unusable {
        repo: String,
        file: String,
        // Boxed: every error that holds a HubError would otherwise carry a WeightsError's size.
        #[source]
        source: Box<super::store::WeightsError>,
    },
}

/// Where a checkpoint resolved from the hub came from, for provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOrigin {
    pub repo: String,
    pub commit: String,
}

/// A resolved snapshot folder.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub origin: HubOrigin,
}

/// Whether `s` reads as a hub id rather than a path: `org/name` with hub-legal characters,
/// and nothing by that name on disk.
pub fn looks_like_id(s: &str) -> bool {
    valid_id(s) && !Path::new(s).exists()
}

fn valid_id(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(s.split_once('/'), Some((org, name)) if part(org) && part(name) && !name.contains('/'))
}

/// A branch, tag or commit: path-safe (no `..`, no leading `/`), as refs/ holds it.
fn valid_revision(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 256
        && !r.starts_with('/')
        && r.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// The cache folders to search, first the one in use: `HF_HUB_CACHE`, else `HF_HOME/hub`,
/// else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(h) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join("hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("huggingface").join("hub")
}

/// `models--org--name`.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

fn check(repo: &str, revision: &str) -> Result<(), HubError> {
    if !valid_id(repo) {
        return Err(HubError::BadId(repo.into()));
    }
    if !valid_revision(revision) {
        return Err(HubError::BadRevision(revision.into()));
    }
    Ok(())
}

/// The snapshot of `repo` at `revision` in `cache`, if it is there with weights.
pub fn resolve_in(cache: &Path, repo: &str, revision: &str) -> Result<Snapshot, HubError> {
    let snapshot = snapshot_in(cache, repo, revision)?;
    let dir = &snapshot.dir;
    if !WEIGHT_CHOICES.iter().any(|w| dir.join(w).is_file()) {
        return Err(HubError::NoWeights {
            repo: repo.into(),
            revision: revision.into(),
            dir: dir.display().to_string(),
            choices: WEIGHT_CHOICES.join(", "),
        });
    }
    Ok(snapshot)
}

/// The snapshot folder of `repo` at `revision` in `cache`, whatever files it holds (a
/// processor config needs no weights).
pub fn snapshot_in(cache: &Path, repo: &str, revision: &str) -> Result<Snapshot, HubError> {
    check(repo, revision)?;
    let root = cache.join(repo_folder(repo));
    let not_cached = || HubError::NotCached {
        repo: repo.into(),
        revision: revision.into(),
        searched: format!(
            "{} (from HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)",
            root.display()
        ),
    };
    // A revision is a ref name (refs/<revision> holds the commit) or a commit itself.
    let commit = match std::fs::read_to_string(root.join("refs").join(revision)) {
        Ok(c) => c.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    if !valid_revision(&commit) || commit.contains('/') {
        return Err(not_cached());
    }
    let dir = root.join("snapshots").join(&commit);
    if !dir.is_dir() {
        return Err(not_cached());
    }
    Ok(Snapshot {
        dir,
        origin: HubOrigin {
            repo: repo.into(),
            commit,
        },
    })
}

/// [`resolve_in`] the cache in use.
pub fn resolve(repo: &str, revision: &str) -> Result<Snapshot, HubError> {
    resolve_in(&cache_dir(), repo, revision)
}

/// How to download.
#[derive(Debug, Clone)]
pub struct Download {
    /// `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    /// `HF_TOKEN`, else the token file `huggingface-cli login` wrote.
    pub token: Option<String>,
    pub progress: bool,
}

impl Download {
    /// Settings from the environment.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let token = env("HF_TOKEN").or_else(|| {
            let file = cache_dir().parent().map(|p| p.join("token"))?;
            std::fs::read_to_string(file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Self {
            endpoint: env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
            token,
            progress: true,
        }
    }
}

/// Fetches what the snapshot lacks (config, weights, processor and generation configs) into
/// `cache`, then resolves it. A file lands under a temporary name beside its blob and is
/// renamed only once whole (hf-hub's `.part` + rename), and its size is checked against the
/// server's before the snapshot links to it.
pub fn download_in(
    cache: &Path,
    repo: &str,
    revision: &str,
    how: &Download,
) -> Result<Snapshot, HubError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};

    check(repo, revision)?;
    let err = |file: &str, reason: String| HubError::Download {
        repo: repo.into(),
        file: file.into(),
        reason,
    };
    let client = |file: &str| {
        let file = file.to_string();
        move |source| HubError::Client {
            repo: repo.into(),
            file,
            source,
        }
    };
    let api = ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_endpoint(how.endpoint.trim_end_matches('/').to_string())
        .with_token(how.token.clone())
        .with_progress(how.progress)
        .build()
        .map_err(client("(client)"))?;
    let handle = api.repo(Repo::with_revision(
        repo.into(),
        RepoType::Model,
        revision.into(),
    ));
    let cached = resolve_in(cache, repo, revision).ok();
    let have = |f: &str| cached.as_ref().is_some_and(|s| s.dir.join(f).is_file());
    let fetch = |file: &str| -> Result<Option<PathBuf>, HubError> {
        if have(file) {
            return Ok(cached.as_ref().map(|s| s.dir.join(file)));
        }
        let url = handle.url(file);
        let meta = match api.metadata(&url) {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(client(file)(e)),
        };
        let path = handle.download(file).map_err(client(file))?;
        let got = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if got != meta.size() as u64 {
            // Never leave a short file where the cache expects a whole one.
            let blob = std::fs::canonicalize(&path).ok();
            let _ = std::fs::remove_file(&path);
            if let Some(b) = blob {
                let _ = std::fs::remove_file(b);
            }
            return Err(err(
                file,
                format!("received {got} bytes of {}: connection cut", meta.size()),
            ));
        }
        Ok(Some(path))
    };
    for file in SIDE_FILES {
        if fetch(file)?.is_none() && !OPTIONAL.contains(&file) {
            return Err(err(file, "not in the repository".into()));
        }
    }
    let mut found = false;
    for weights in WEIGHT_CHOICES {
        if let Some(path) = fetch(weights)? {
            if weights.ends_with(".index.json") {
                let shards =
                    super::index::shard_files(&path).map_err(|source| HubError::Unusable {
                        repo: repo.into(),
                        file: weights.into(),
                        source: Box::new(source),
                    })?;
                for shard in shards {
                    let name = shard.file_name().map(|n| n.to_string_lossy().into_owned());
                    if let Some(name) = name {
                        if fetch(&name)?.is_none() {
                            return Err(err(
                                &name,
                                "named by the index but not in the repository".into(),
                            ));
                        }
                    }
                }
            }
            found = true;
            break;
        }
    }
    if !found {
        return Err(err(
            WEIGHT_CHOICES.join(", ").as_str(),
            "the repository has none of these weight files".into(),
        ));
    }
    resolve_in(cache, repo, revision)
}

/// What `--weights`, `--variant`, `--revision` and `--download` name together: a path as
/// given, or the snapshot folder of a hub id (`--variant medium` alone meaning
/// `openai/imagegpt-medium`), resolved in the cache or downloaded into it. `None` when
/// nothing names weights. Kept here, not in the CLI, so every front end resolves alike.
pub fn locate(
    weights: Option<&str>,
    variant: Option<crate::config::Variant>,
    revision: &str,
    fetch: bool,
) -> Result<Option<(PathBuf, Option<HubOrigin>)>, HubError> {
    let repo = match weights {
        Some(w) if !looks_like_id(w) => return Ok(Some((PathBuf::from(w), None))),
        Some(id) => id.to_string(),
        None => match variant.and_then(crate::config::Variant::hub_repo) {
            Some(repo) => repo.to_string(),
            None => return Ok(None),
        },
    };
    let snap = if fetch {
        download(&repo, revision, &Download::from_env())?
    } else {
        resolve(&repo, revision)?
    };
    Ok(Some((snap.dir, Some(snap.origin))))
}

/// [`download_in`] the cache in use.
pub fn download(repo: &str, revision: &str, how: &Download) -> Result<Snapshot, HubError> {
    download_in(&cache_dir(), repo, revision, how)
}

fn is_not_found(e: &hf_hub::api::sync::ApiError) -> bool {
    matches!(e, hf_hub::api::sync::ApiError::RequestError(r)
        if matches!(**r, ureq::Error::StatusCode(404)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_revisions() {
        assert!(valid_id("openai/imagegpt-medium"));
        assert!(!valid_id("openai"));
        assert!(!valid_id("a/b/c"));
        assert!(!valid_id("../x"));
        assert!(valid_revision("refs/pr/3") && valid_revision("main"));
        assert!(!valid_revision("../../etc") && !valid_revision("/abs"));
        assert_eq!(
            repo_folder("openai/imagegpt-medium"),
            "models--openai--imagegpt-medium"
        );
    }
}

//! The legacy container of `torch.save(..., _use_new_zipfile_serialization=False)`
//! (`torch/serialization.py`, `_legacy_save`): five pickles back to back — the magic number
//! `0x1950a86a20f9469cfc6c`, the protocol version 1001, a `sys_info` dict, the state dict, the
//! sorted list of storage keys — then, for each key in that order, an int64 element count and
//! the storage's raw bytes.

use std::collections::HashMap;

use super::container::{pickle_problem, Container, Malformed, Problem, Storage};
use super::pickle::{self, Value};
use super::zip::ReadAt;
use crate::base::DataType;

/// The magic number, as LONG1 writes it (little-endian).
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL: i64 = 1001;
/// How much of the file's head is read to find the pickles (a state dict's is a few KB).
const MAX_PICKLES: u64 = 64 << 20;

/// Whether `head` starts like a legacy file: PROTO 2, then LONG1 of 10 bytes.
pub fn sniff(head: &[u8]) -> bool {
    head.starts_with(&[0x80, 0x02, 0x8a, 0x0a])
}

/// Reads the pickles and locates every storage.
pub(crate) fn read(src: &(impl ReadAt + ?Sized)) -> Result<Container, Problem> {
    let head_len = src.len().min(MAX_PICKLES);
    let mut head = vec![0u8; head_len as usize];
    src.read_exact_at(&mut head, 0)
        .map_err(|e| Malformed(format!("reading the header: {e}")))?;
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<pickle::Pickled, Problem> {
        let (p, used) = pickle::load(&head[pos..]).map_err(|e| match e {
            pickle::PickleError::Malformed { at, reason } => {
                Problem::Corrupt(format!("{what} pickle, byte {}: {reason}", pos + at))
            }
            refused => pickle_problem(what, refused),
        })?;
        pos += used;
        Ok(p)
    };
    let magic = next("magic number")?;
    if *magic.get(magic.root) != Value::BigInt(MAGIC.to_vec()) {
        return Err(Problem::Corrupt(
            "wrong magic number: not a torch checkpoint".into(),
        ));
    }
    let proto = next("protocol")?;
    if *proto.get(proto.root) != Value::Int(PROTOCOL) {
        return Err(Malformed(format!("protocol is not {PROTOCOL}")).into());
    }
    let sys = next("sys_info")?;
    check_little_endian(&sys)?;
    let main = next("state dict")?;
    let state = main
        .state_dict()
        .map_err(|e| pickle_problem("state dict", e))?;
    let keys = next("storage key list")?;
    let Value::List(items) = keys.get(keys.root) else {
        return Err(Problem::Corrupt("storage key list is not a list".into()));
    };
    // Element types by key, from the tensors that use them.
    let mut dtypes: HashMap<&str, DataType> = HashMap::new();
    for (_, t) in &state {
        dtypes.insert(&t.storage.key, t.storage.dtype);
    }
    let mut storages = HashMap::new();
    let mut at = pos as u64;
    for &id in items {
        let Value::Str(key) = keys.get(id) else {
            return Err(Problem::Corrupt("a storage key is not a string".into()));
        };
        let dtype = *dtypes
            .get(key.as_str())
            .ok_or_else(|| Malformed(format!("storage `{key}` is listed but no tensor uses it")))?;
        let mut count = [0u8; 8];
        src.read_exact_at(&mut count, at).map_err(|_| {
            Malformed(format!(
                "storage `{key}` starts past the end of the file: truncated"
            ))
        })?;
        let numel = u64::from_le_bytes(count);
        let data = at + 8;
        let bytes = dtype
            .byte_len(numel)
            .filter(|&b| data.checked_add(b).is_some_and(|end| end <= src.len()))
            .ok_or_else(|| {
                Malformed(format!(
                    "storage `{key}` ({numel} elements) runs past the end of the file: truncated"
                ))
            })?;
        storages.insert(
            key.clone(),
            Storage {
                offset: data,
                bytes,
            },
        );
        at = data + bytes;
    }
    Ok(Container {
        tensors: state,
        storages,
    })
}

/// `sys_info['little_endian']` must be true: the bytes are read as little-endian.
fn check_little_endian(sys: &pickle::Pickled) -> Result<(), Problem> {
    let Value::Dict(items) = sys.get(sys.root) else {
        return Err(Problem::Corrupt("sys_info is not a dict".into()));
    };
    for &(k, v) in items {
        if *sys.get(k) == Value::Str("little_endian".into()) && *sys.get(v) != Value::Bool(true) {
            return Err(Problem::Corrupt(
                "saved on a big-endian machine (sys_info little_endian is not True): only little-endian checkpoints are supported".into(),
            ));
        }
    }
    Ok(())
}

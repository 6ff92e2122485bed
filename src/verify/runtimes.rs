//! Opening the runtimes a verify run asked for: the ones that open, and why the others are
//! skipped — or a set-up error when a required one is missing.

use super::options::{VerifyError, VerifyOptions};
use super::report::RuntimeInfo;
use crate::runtime::{self, Runtime};

/// The runtimes that opened, and what happened to each requested one.
pub(crate) struct Runtimes {
    pub open: Vec<Box<dyn Runtime>>,
    pub info: Vec<RuntimeInfo>,
}

/// Opens `opts.runtimes` and `opts.required`; at least one must open.
pub(crate) fn open(opts: &VerifyOptions) -> Result<Runtimes, VerifyError> {
    let mut kinds = opts.runtimes.clone();
    for r in &opts.required {
        if !kinds.contains(r) {
            kinds.push(*r);
        }
    }
    let mut rt = Runtimes {
        open: vec![],
        info: vec![],
    };
    for kind in kinds {
        match runtime::open(kind, &opts.runtime) {
            Ok(r) => {
                rt.open.push(r);
                rt.info.push(RuntimeInfo::available(kind));
            }
            Err(e) if opts.required.contains(&kind) => return Err(VerifyError::Required(e)),
            Err(e) => rt.info.push(RuntimeInfo::skipped(kind, e.to_string())),
        }
    }
    if rt.open.is_empty() {
        let why: Vec<String> = rt.info.iter().map(|i| i.detail.clone()).collect();
        return Err(VerifyError::NoRuntime(why));
    }
    Ok(rt)
}

//! Finding the ONNX Runtime shared library for `ort`'s load-dynamic mode (the library comes
//! from the `onnxruntime` PyPI wheel, `onnxruntime/capi/libonnxruntime.so.<version>`), as every
//! runtime library is found ([`NativeLibrary`]).

use std::path::PathBuf;

use crate::runtime::model::RuntimeOptions;
pub use crate::runtime::native::LibraryError;
use crate::runtime::native::NativeLibrary;

/// ONNX Runtime's library, as its PyPI wheel ships it.
pub const LIBRARY: NativeLibrary = NativeLibrary {
    what: "ONNX Runtime",
    flag: "--ort-lib",
    env: "ORT_DYLIB_PATH",
    package: "onnxruntime",
    subdir: "capi",
    stem: "onnxruntime",
    hint: "Install it with `pip install onnxruntime==1.31.1` into the environment igpt-onnx is \
           installed in (a checkout: ./ci/setup.sh), or pass --ort-lib PATH (or set \
           ORT_DYLIB_PATH) to an onnxruntime/capi/libonnxruntime.so.*",
    system: true,
};

/// Finds the ONNX Runtime shared library: `--ort-lib`, then `ORT_DYLIB_PATH`, then the project's
/// `.venv`, then the `onnxruntime` package of the `python3` on `PATH`, then the system library
/// (see [`NativeLibrary::find`]).
pub fn discover_library(opts: &RuntimeOptions) -> Result<PathBuf, LibraryError> {
    LIBRARY.find(opts.ort_lib.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_versioned_library_and_ignores_providers() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
            "libonnxruntime_providers_cuda.so",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let found = LIBRARY.library_in(dir.path()).expect("found");
        assert!(
            found.ends_with("libonnxruntime.so.1.31.1"),
            "{}",
            found.display()
        );
        std::fs::write(dir.path().join("libonnxruntime.so"), b"").expect("write");
        let found = LIBRARY.library_in(dir.path()).expect("found");
        assert!(found.ends_with("libonnxruntime.so"), "{}", found.display());
    }
}

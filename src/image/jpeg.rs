//! JPEG → RGB8 with libjpeg-turbo's decoder, driven the way Pillow 13.0.0 drives it
//! (`libImaging/JpegDecode.c`, `PIL/JpegImagePlugin.py`), so the pixels are Pillow's own.
//!
//! The decoder is the libjpeg-turbo code that `mozjpeg-sys` builds from source with the C
//! compiler alone. Pillow's wheels use libjpeg-turbo's SIMD routines, which give the C code's
//! pixels on any valid file (accurate integer IDCT, fancy upsampling, colour conversion); on
//! corrupt entropy data the SIMD IDCT saturates where the C one wraps, so a damaged file may
//! decode differently here than in Pillow (and Pillow's own result then depends on the CPU's
//! SIMD flavour; with `JSIMD_FORCENONE=1` it is this code's). Pillow leaves the library's
//! defaults — `JDCT_ISLOW`, fancy upsampling, block smoothing — and so do we.
//!
//! What Pillow does, and what is done here:
//! - the mode comes from the component count (`JpegImagePlugin.SOF`): 1 → `L`, 3 → `RGB`,
//!   4 → `CMYK`, anything else is refused; the colour space in the file (YCbCr, RGB, CMYK,
//!   YCCK) is left to libjpeg, which reads the JFIF / Adobe markers;
//! - CMYK is unpacked as `CMYK;I` ("assume adobe conventions": every byte inverted) and then
//!   converted with `Convert.c`'s `cmyk2rgb`; grey is replicated;
//! - libjpeg's warnings (corrupt data it recovers from) are ignored, its errors are errors;
//! - a file that ends before the last row is decoded is refused: Pillow's source manager
//!   suspends there and `ImageFile.load` raises "image file is truncated" (unless
//!   `LOAD_TRUNCATED_IMAGES`, off by default). libjpeg's memory source warns
//!   `JWRN_JPEG_EOF` at exactly that point, which is turned into the refusal. Running out of
//!   data after the last row (a missing EOI) is accepted, as Pillow's `jpeg_finish_decompress`
//!   suspension is;
//! - EXIF orientation is not applied (`Image.open` does not).

use std::ffi::{c_char, c_int, c_ulong, CStr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg_sys as ffi;

/// `jpeglib.h`: the size of the buffer `format_message` writes (NUL included).
const JMSG_LENGTH_MAX: usize = 200;
/// `jpeglib.h`: `jpeg_read_header`'s return for a datastream of tables only.
const JPEG_HEADER_TABLES_ONLY: c_int = 2;

/// Why a JPEG was not decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The data ends before the image does (Pillow: "image file is truncated").
    Truncated,
    /// The header declares more pixels than `limit`; nothing was decoded.
    TooLarge { width: u32, height: u32 },
    /// A layout Pillow refuses (`JpegImagePlugin.SOF`).
    Unsupported(String),
    /// libjpeg's own error message.
    Corrupt(String),
}

/// A decoded image: `width × height` RGB8 pixels, row-major.
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// What the error manager unwinds with; caught in [`decode`] and nowhere else.
enum Unwind {
    Truncated,
    Error(String),
}

/// libjpeg's error manager followed by our state: libjpeg only sees the first field, through
/// `cinfo.common.err`, and the callbacks cast back (`repr(C)` keeps it first).
#[repr(C)]
struct ErrorMgr {
    mgr: ffi::jpeg_error_mgr,
    /// Set once every row is out: running out of data after that is not truncation.
    rows_done: bool,
}

/// `error_exit`: libjpeg cannot go on. Unwinds back to [`decode`] (mozjpeg-sys compiles the C
/// code with `-fexceptions` for this; libjpeg's own default would `exit()` the process).
extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let msg = message(cinfo);
    resume_unwind(Box::new(Unwind::Error(msg)));
}

/// `emit_message`: warnings (level −1) are counted and otherwise ignored, as Pillow's
/// `output` handler prints nothing — except the memory source's end-of-data warning before
/// the last row, which is where Pillow's suspending source would stop for good.
extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    // SAFETY: `cinfo.err` is the `ErrorMgr` that `Decompressor::new` installed.
    let err = unsafe { &mut *cinfo.err.cast::<ErrorMgr>() };
    if level < 0 {
        err.mgr.num_warnings += 1;
        if err.mgr.msg_code == ffi::JWRN_JPEG_EOF as c_int && !err.rows_done {
            resume_unwind(Box::new(Unwind::Truncated));
        }
    }
}

/// libjpeg's text for the pending message (its `format_message` fills a JMSG_LENGTH_MAX buffer).
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    let mut buf = [0u8; JMSG_LENGTH_MAX];
    // SAFETY: `cinfo.err` is valid for the decompressor's life; `format_message` writes at
    // most JMSG_LENGTH_MAX bytes, NUL included. The binding declares the buffer `&[u8; 80]`
    // (it is 200 in `jpeglib.h`) and libjpeg writes through it, so it is passed as the mutable pointer it really is.
    unsafe {
        let err = &*cinfo.err;
        let code = err.msg_code;
        let Some(format) = err.format_message else {
            return format!("libjpeg error {code}");
        };
        let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut c_char) =
            std::mem::transmute(format);
        format(cinfo, buf.as_mut_ptr().cast());
    }
    CStr::from_bytes_until_nul(&buf)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A decompression object and its error manager, destroyed on drop (also after an unwind:
/// `jpeg_destroy_decompress` is valid in any state).
struct Decompressor {
    cinfo: Box<ffi::jpeg_decompress_struct>,
    _err: Box<ErrorMgr>,
}

impl Decompressor {
    fn new() -> Decompressor {
        // SAFETY: both structs are plain C data for which all-zero is a valid value (null
        // pointers, `None` callbacks, zero enums); `jpeg_std_error` fills the manager's
        // defaults and `jpeg_create_decompress` initialises the rest, keeping `err`.
        unsafe {
            let mut err = Box::new(ErrorMgr {
                mgr: std::mem::zeroed(),
                rows_done: false,
            });
            ffi::jpeg_std_error(&mut err.mgr);
            err.mgr.error_exit = Some(error_exit);
            err.mgr.emit_message = Some(emit_message);
            let mut cinfo: Box<ffi::jpeg_decompress_struct> = Box::new(std::mem::zeroed());
            cinfo.common.err = &mut err.mgr;
            let mut d = Decompressor { cinfo, _err: err };
            ffi::jpeg_create_decompress(&mut *d.cinfo);
            d
        }
    }

    fn rows_done(&mut self) {
        // SAFETY: as in `emit_message`.
        unsafe { (*self.cinfo.common.err.cast::<ErrorMgr>()).rows_done = true };
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the object was created in `new`; destroying frees every libjpeg pool.
        unsafe { ffi::jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

/// Decodes `bytes` as Pillow's `Image.open(…).convert("RGB")` would, refusing from the header
/// an image of more than `limit` pixels (`max(1, w) · max(1, h)`, Pillow's count).
pub fn decode(bytes: &[u8], limit: u64) -> Result<Decoded, Failure> {
    guarded(|d| decode_with(d, bytes, limit))?
}

/// The width and height a JPEG's header declares, or `None` when libjpeg cannot read one.
pub fn header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    guarded(|d| {
        read_header(d, bytes);
        (d.cinfo.image_width, d.cinfo.image_height)
    })
    .ok()
}

/// Runs `f` on a fresh decompressor, turning libjpeg's unwinds into [`Failure`]s; the
/// decompressor is destroyed before returning either way.
fn guarded<T>(f: impl FnOnce(&mut Decompressor) -> T) -> Result<T, Failure> {
    let mut d = Decompressor::new();
    let result = catch_unwind(AssertUnwindSafe(|| f(&mut d)));
    drop(d);
    result.map_err(|payload| match payload.downcast::<Unwind>() {
        Ok(u) => match *u {
            Unwind::Truncated => Failure::Truncated,
            Unwind::Error(msg) => Failure::Corrupt(msg),
        },
        // A bug of ours, not libjpeg's: let it be the panic it is.
        Err(other) => resume_unwind(other),
    })
}

/// Points libjpeg at `bytes` and reads the header (unwinds on error or end of data).
fn read_header(d: &mut Decompressor, bytes: &[u8]) {
    // libjpeg's memory source takes an `unsigned long` length; a larger input is cut there,
    // which libjpeg then reports as the end of the data.
    let len = c_ulong::try_from(bytes.len()).unwrap_or(c_ulong::MAX);
    let cinfo = &mut *d.cinfo;
    // SAFETY: `bytes` outlives the decompressor (`guarded` drops it before returning); the
    // calls follow libjpeg's documented sequence; errors unwind out of them.
    unsafe {
        ffi::jpeg_mem_src(cinfo, bytes.as_ptr(), len);
        // Pillow reads past table-only datastreams (`JPEG_HEADER_TABLES_ONLY`) the same way.
        while ffi::jpeg_read_header(cinfo, 0) == JPEG_HEADER_TABLES_ONLY {}
    }
}

fn decode_with(d: &mut Decompressor, bytes: &[u8], limit: u64) -> Result<Decoded, Failure> {
    read_header(d, bytes);
    let cinfo = &mut *d.cinfo;
    let (width, height) = (cinfo.image_width, cinfo.image_height);
    if u64::from(width.max(1)) * u64::from(height.max(1)) > limit {
        return Err(Failure::TooLarge { width, height });
    }
    let components = cinfo.num_components;
    cinfo.out_color_space = match components {
        1 => ffi::J_COLOR_SPACE::JCS_GRAYSCALE,
        3 => ffi::J_COLOR_SPACE::JCS_RGB,
        4 => ffi::J_COLOR_SPACE::JCS_CMYK,
        n => {
            return Err(Failure::Unsupported(format!(
                "cannot handle {n}-layer images (Pillow reads 1, 3 or 4)"
            )))
        }
    };
    // SAFETY: header read; output colour space set.
    unsafe { ffi::jpeg_start_decompress(cinfo) };
    let (w, h) = (cinfo.output_width as usize, cinfo.output_height as usize);
    let channels = cinfo.output_components as usize;
    if (w, h) != (width as usize, height as usize) || channels != components as usize {
        return Err(Failure::Corrupt(format!(
            "unexpected output layout {w}x{h}x{channels}"
        )));
    }
    // The whole image at once, as Pillow allocates it: bounded by the header, checked above.
    let mut rgb: Vec<u8> = Vec::new();
    rgb.try_reserve_exact(w * h * 3)
        .map_err(|_| Failure::Corrupt(format!("cannot allocate a {w}x{h} image")))?;
    let mut row = vec![0u8; w * channels];
    for _ in 0..h {
        let mut ptr = row.as_mut_ptr();
        // SAFETY: `row` holds one output scanline (`output_width · output_components`).
        let n = unsafe { ffi::jpeg_read_scanlines(cinfo, &mut ptr, 1) };
        if n != 1 {
            // The memory source never suspends; treat it as the end of the data.
            return Err(Failure::Truncated);
        }
        match channels {
            1 => rgb.extend(row.iter().flat_map(|&v| [v, v, v])),
            3 => rgb.extend_from_slice(&row),
            _ => rgb.extend(row.chunks_exact(4).flat_map(cmyk_inverted_to_rgb)),
        }
    }
    d.rows_done();
    // SAFETY: every scanline has been read. An error here (a bad marker after the image)
    // is an error for Pillow too; running out of data is not (see `emit_message`).
    unsafe { ffi::jpeg_finish_decompress(&mut d.cinfo) };
    Ok(Decoded { width, height, rgb })
}

/// One libjpeg CMYK pixel → RGB as Pillow: unpacked with `CMYK;I` (each byte inverted), then
/// `Convert.c` `cmyk2rgb`: `nk = 255 − k; out = CLIP8(nk − MULDIV255(c, nk))` with
/// `MULDIV255(a, b) = ((a·b + 128) >> 8 + a·b + 128) >> 8`.
fn cmyk_inverted_to_rgb(px: &[u8]) -> [u8; 3] {
    let inv = |v: u8| i32::from(255 - v);
    let nk = 255 - inv(px[3]);
    let ch = |c: u8| {
        let t = inv(c) * nk + 128;
        (nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8
    };
    [ch(px[0]), ch(px[1]), ch(px[2])]
}

//! The zip container `torch.save` writes: a reader of the central directory and local headers,
//! nothing more (storages are stored uncompressed, so no inflater is needed). Spec: PKWARE
//! APPNOTE.TXT §4.3 (end of central directory, ZIP64 end record and locator, central file
//! headers, the ZIP64 extended-information extra field 0x0001, local file headers).
//!
//! Written here rather than taken from the `zip` crate: torch needs only entry names, sizes,
//! methods and data offsets, and the ~200 lines below check every size against the file before
//! anything is read or allocated, on files from strangers, without a second dependency tree.

use std::io;

use super::container::Malformed;

/// Bytes read from an offset of a file or a buffer of known length.
#[allow(clippy::len_without_is_empty)] // a source's length bounds reads; emptiness is no question
pub trait ReadAt {
    /// Total length.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`, or fails (past the end, I/O).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).ok();
        let src = start
            .and_then(|s| Some((s, s.checked_add(buf.len())?)))
            .and_then(|(s, e)| self.get(s..e))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// The largest central directory read (a state dict has one entry per storage: a few KB).
const MAX_DIRECTORY: u64 = 64 << 20;
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const LOCATOR_SIG: u32 = 0x0706_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// 0 = stored; anything else is compressed.
    pub method: u16,
    pub size: u64,
    pub compressed_size: u64,
    local_header: u64,
}

/// Little-endian fields of a header held in memory.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        let b = &self.0[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn u64(&self, at: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(a)
    }
}

fn read_vec(src: &(impl ReadAt + ?Sized), offset: u64, len: u64) -> Result<Vec<u8>, Malformed> {
    let end = offset.checked_add(len).filter(|&e| e <= src.len());
    if end.is_none() {
        return Err(Malformed(format!(
            "a record at byte {offset} of {len} bytes runs past the end of the file: truncated"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    src.read_exact_at(&mut buf, offset)
        .map_err(|e| format!("reading {len} bytes at {offset}: {e}"))?;
    Ok(buf)
}

/// Every entry of the archive, from its central directory.
pub fn entries(src: &(impl ReadAt + ?Sized)) -> Result<Vec<Entry>, Malformed> {
    let len = src.len();
    // The end record is 22 bytes plus a comment of at most 65535.
    let tail_len = len.min(22 + 0xffff);
    let tail = read_vec(src, len - tail_len, tail_len)?;
    let at = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| Fields(&tail).u32(i) == EOCD_SIG)
        .ok_or("no end-of-central-directory record: truncated or not a zip archive")?;
    let eocd = Fields(&tail[at..]);
    let eocd_pos = len - tail_len + at as u64;
    let (mut count, mut dir_size, mut dir_offset) = (
        u64::from(eocd.u16(10)),
        u64::from(eocd.u32(12)),
        u64::from(eocd.u32(16)),
    );
    if eocd.u16(4) != 0 || eocd.u16(6) != 0 {
        return Err("multi-disk archives are not supported".into());
    }
    // ZIP64: a locator right before the end record points at the 64-bit end record.
    if eocd_pos >= 20 {
        let loc = read_vec(src, eocd_pos - 20, 20)?;
        let loc = Fields(&loc);
        if loc.u32(0) == LOCATOR_SIG {
            let rec = read_vec(src, loc.u64(8), 56)?;
            let rec = Fields(&rec);
            if rec.u32(0) != EOCD64_SIG {
                return Err("ZIP64 locator points at no ZIP64 end record".into());
            }
            (count, dir_size, dir_offset) = (rec.u64(32), rec.u64(40), rec.u64(48));
        }
    }
    if dir_size > MAX_DIRECTORY {
        return Err(Malformed(format!(
            "central directory of {dir_size} bytes exceeds {MAX_DIRECTORY}"
        )));
    }
    // Each central header takes at least 46 bytes: a count beyond that is a lie.
    if count > dir_size / 46 {
        return Err(Malformed(format!(
            "{count} entries cannot fit a {dir_size}-byte central directory"
        )));
    }
    let dir = read_vec(src, dir_offset, dir_size)?;
    let mut out = Vec::with_capacity(count as usize);
    let mut pos = 0usize;
    for _ in 0..count {
        let head = dir
            .get(pos..pos + 46)
            .ok_or("central directory ends inside an entry")?;
        let h = Fields(head);
        if h.u32(0) != CENTRAL_SIG {
            return Err(Malformed(format!(
                "bad central header signature at directory byte {pos}"
            )));
        }
        if h.u16(8) & 1 != 0 {
            return Err("encrypted entries are not supported".into());
        }
        let (name_len, extra_len, comment_len) = (
            usize::from(h.u16(28)),
            usize::from(h.u16(30)),
            usize::from(h.u16(32)),
        );
        let name_end = pos + 46 + name_len;
        let extra_end = name_end + extra_len;
        let next = extra_end + comment_len;
        let name = dir
            .get(pos + 46..name_end)
            .ok_or("central directory ends inside an entry name")?;
        let extra = dir
            .get(name_end..extra_end)
            .ok_or("central directory ends inside an extra field")?;
        if next > dir.len() {
            return Err("central directory ends inside an entry comment".into());
        }
        let mut e = Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method: h.u16(10),
            compressed_size: u64::from(h.u32(20)),
            size: u64::from(h.u32(24)),
            local_header: u64::from(h.u32(42)),
        };
        apply_zip64(&mut e, extra)?;
        out.push(e);
        pos = next;
    }
    Ok(out)
}

/// Replaces 0xFFFFFFFF fields with the 64-bit values of the 0x0001 extra field, in the order
/// the spec gives (size, compressed size, local header offset).
fn apply_zip64(e: &mut Entry, mut extra: &[u8]) -> Result<(), Malformed> {
    const MAX: u64 = 0xffff_ffff;
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let n = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        let body = extra
            .get(4..4 + n)
            .ok_or_else(|| format!("extra field of `{}` overruns its header", e.name))?;
        if id == 1 {
            let mut vals = body.chunks_exact(8).map(|c| Fields(c).u64(0));
            for field in [&mut e.size, &mut e.compressed_size, &mut e.local_header] {
                if *field == MAX {
                    *field = vals
                        .next()
                        .ok_or_else(|| format!("ZIP64 field of `{}` is too short", e.name))?;
                }
            }
        }
        extra = &extra[4 + n..];
    }
    Ok(())
}

/// The absolute offset of an entry's data, from its local header; the data must lie inside
/// the file.
pub fn data_offset(src: &(impl ReadAt + ?Sized), e: &Entry) -> Result<u64, Malformed> {
    let head = read_vec(src, e.local_header, 30)
        .map_err(|r| format!("local header of `{}`: {r}", e.name))?;
    let h = Fields(&head);
    if h.u32(0) != LOCAL_SIG {
        return Err(Malformed(format!(
            "bad local header signature for `{}`",
            e.name
        )));
    }
    let start = e
        .local_header
        .checked_add(30 + u64::from(h.u16(26)) + u64::from(h.u16(28)))
        .ok_or("offset overflow")?;
    let end = start.checked_add(e.compressed_size);
    if end.is_none_or(|end| end > src.len()) {
        return Err(Malformed(format!(
            "`{}` ({} bytes at byte {start}) runs past the end of the file: truncated",
            e.name, e.compressed_size
        )));
    }
    Ok(start)
}

/// An entry's whole contents (stored entries only), at most `limit` bytes.
pub fn read_entry(
    src: &(impl ReadAt + ?Sized),
    e: &Entry,
    limit: u64,
) -> Result<Vec<u8>, Malformed> {
    if e.method != 0 {
        return Err(Malformed(format!(
            "`{}` is compressed (method {}): torch stores records uncompressed",
            e.name, e.method
        )));
    }
    if e.size != e.compressed_size {
        return Err(Malformed(format!(
            "`{}` is stored but its two sizes differ",
            e.name
        )));
    }
    if e.size > limit {
        return Err(Malformed(format!(
            "`{}` is {} bytes, over the {limit} limit",
            e.name, e.size
        )));
    }
    let at = data_offset(src, e)?;
    read_vec(src, at, e.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-entry stored archive, laid out by hand from the spec.
    fn archive(name: &str, data: &[u8]) -> Vec<u8> {
        let mut z = Vec::new();
        z.extend(LOCAL_SIG.to_le_bytes());
        z.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0, 0]);
        z.extend(name.as_bytes());
        z.extend(data);
        let dir_at = z.len() as u32;
        z.extend(CENTRAL_SIG.to_le_bytes());
        z.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0u8; 12]);
        z.extend(0u32.to_le_bytes());
        z.extend(name.as_bytes());
        let dir_len = z.len() as u32 - dir_at;
        z.extend(EOCD_SIG.to_le_bytes());
        z.extend([0, 0, 0, 0, 1, 0, 1, 0]);
        z.extend(dir_len.to_le_bytes());
        z.extend(dir_at.to_le_bytes());
        z.extend([0, 0]);
        z
    }

    #[test]
    fn reads_a_stored_entry() {
        let z = archive("a/data.pkl", b"hello");
        let e = entries(z.as_slice()).expect("valid archive");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "a/data.pkl");
        assert_eq!(data_offset(z.as_slice(), &e[0]), Ok(40));
        assert_eq!(
            read_entry(z.as_slice(), &e[0], 100).as_deref(),
            Ok(&b"hello"[..])
        );
    }

    #[test]
    fn truncation_is_named() {
        let z = archive("a/data.pkl", b"hello");
        let err = entries(&z[..z.len() - 30]).expect_err("truncated");
        assert!(err.0.contains("truncated"), "{err}");
    }
}

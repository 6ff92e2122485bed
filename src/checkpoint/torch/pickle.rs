//! A restricted unpickler for torch state dicts: it reads pickle opcodes as data, imports
//! nothing and calls nothing. Only the opcodes torch's own weights-only unpickler accepts
//! (`torch/_weights_only_unpickler.py`) are known, and only the globals a plain state dict
//! needs (`collections.OrderedDict`, the tensor rebuild functions, the typed `torch.*Storage`
//! classes) may appear; a "call" of one of them is evaluated here, by its meaning.
//! Opcode reference: CPython `Lib/pickletools.py`.
//!
//! Safety on files from strangers: every length is checked against the bytes that remain
//! before anything is allocated; values live in one arena and the memo holds arena indices,
//! so a memo reference is shared, never copied (a "memo bomb" costs one index per opcode);
//! nothing here recurses over values, and MARK nesting is bounded.

use std::collections::HashMap;

use crate::base::DataType;

/// MARKs open at once: state dicts need 2-3; a deeper stack is a hostile file.
const MAX_MARK_DEPTH: usize = 256;
/// Dimensions of one tensor: ImageGPT's are at most 4.
const MAX_RANK: usize = 16;

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// Something a plain state dict never holds (a global, a call, an opcode).
    #[error("{0}")]
    Refused(String),
    /// Bytes that are not a well-formed pickle.
    #[error("pickle byte {at}: {reason}")]
    Malformed { at: usize, reason: String },
}

/// A global the allow-list admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildFromTypeV2,
    TensorType,
    ParameterType,
    Storage(DataType),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") => Global::TensorType,
            ("torch.nn.parameter", "Parameter") => Global::ParameterType,
            ("torch", storage) => Global::Storage(storage_dtype(storage)?),
            _ => return None,
        })
    }
}

/// The element type of a typed storage class (`torch.FloatStorage`).
fn storage_dtype(class: &str) -> Option<DataType> {
    Some(match class {
        "FloatStorage" => DataType::Float32,
        "HalfStorage" => DataType::Float16,
        "BFloat16Storage" => DataType::BFloat16,
        "DoubleStorage" => DataType::Float64,
        "ByteStorage" => DataType::UInt8,
        "BoolStorage" => DataType::Bool,
        "CharStorage" => DataType::Int8,
        "ShortStorage" => DataType::Int16,
        "IntStorage" => DataType::Int32,
        "LongStorage" => DataType::Int64,
        _ => return None,
    })
}

/// A storage a persistent id names: `('storage', Type, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: DataType,
    /// Elements the storage holds, as the pickle declares.
    pub numel: u64,
}

/// A tensor: a view of a storage (offset in elements, sizes, strides in elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Index of a value in the arena.
pub type Id = usize;

/// A value the pickle built.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A LONG1 wider than 64 bits, little-endian two's complement (the legacy magic number).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set,
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// One unpickled object: the arena and the root.
#[derive(Debug)]
pub struct Pickled {
    values: Vec<Value>,
    pub root: Id,
}

impl Pickled {
    /// The value at `id`.
    pub fn get(&self, id: Id) -> &Value {
        // Ids are only ever handed out for pushed values.
        &self.values[id]
    }

    /// The root as a state dict: string keys to tensors, in file order.
    pub fn state_dict(&self) -> Result<Vec<(String, TensorRef)>, PickleError> {
        let Value::Dict(items) = self.get(self.root) else {
            return Err(PickleError::Refused(format!(
                "a top-level {} instead of a dict of tensors",
                self.kind(self.root)
            )));
        };
        items
            .iter()
            .map(|&(k, v)| {
                let Value::Str(key) = self.get(k) else {
                    return Err(PickleError::Refused(format!(
                        "a {} key in the state dict",
                        self.kind(k)
                    )));
                };
                match self.get(v) {
                    Value::Tensor(t) => Ok((key.clone(), t.clone())),
                    _ => Err(PickleError::Refused(format!(
                        "entry `{key}` holding a {} instead of a tensor",
                        self.kind(v)
                    ))),
                }
            })
            .collect()
    }

    /// A short name of a value's kind, for messages.
    pub fn kind(&self, id: Id) -> &'static str {
        kind(self.get(id))
    }
}

/// A short name of a value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Set => "set",
        Value::Global(_) => "global",
        Value::Storage(_) => "storage",
        Value::Tensor(_) => "tensor",
    }
}

/// Reads one pickle from the start of `bytes`; returns it and the bytes it took (through STOP).
pub fn load(bytes: &[u8]) -> Result<(Pickled, usize), PickleError> {
    let mut m = Machine {
        bytes,
        pos: 0,
        values: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    Ok((
        Pickled {
            values: m.values,
            root,
        },
        m.pos,
    ))
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    values: Vec<Value>,
    stack: Vec<Id>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl Machine<'_> {
    fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            at: self.pos,
            reason: reason.into(),
        }
    }

    /// The next `n` bytes; `n` is checked against what remains before anything is taken.
    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                self.malformed(format!(
                    "needs {n} bytes but only {} remain: truncated or corrupt",
                    self.bytes.len() - self.pos
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.le()?))
    }

    /// A length prefix as usize (it is then checked by `take`).
    fn len32(&mut self) -> Result<usize, PickleError> {
        usize::try_from(self.u32()?).map_err(|_| self.malformed("length does not fit"))
    }

    /// A newline-terminated ASCII line (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return Err(self.malformed("GLOBAL name without a newline within 256 bytes"));
        };
        let text = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.malformed("GLOBAL name is not UTF-8"))?
            .to_string();
        self.pos += n + 1;
        Ok(text)
    }

    fn push(&mut self, v: Value) -> Id {
        self.values.push(v);
        let id = self.values.len() - 1;
        self.stack.push(id);
        id
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => Err(self.malformed("stack underflow")),
        }
    }

    /// Everything pushed since the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let at = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK to pop to"))?;
        Ok(self.stack.split_off(at))
    }

    /// Replaces the top of the stack with a new value.
    fn replace_top(&mut self, v: Value) -> Result<(), PickleError> {
        self.pop()?;
        self.push(v);
        Ok(())
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO: 2 is what torch writes; up to 5 share the opcodes accepted here.
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.malformed(format!("pickle protocol {p} is unknown")));
                    }
                }
                b'.' => {
                    // STOP
                    let root = self.pop()?;
                    return Ok(root);
                }
                b'c' => {
                    // GLOBAL module\nname\n
                    let module = self.line()?;
                    let name = self.line()?;
                    match Global::lookup(&module, &name) {
                        Some(g) => {
                            self.push(Value::Global(g));
                        }
                        None => {
                            return Err(PickleError::Refused(format!("global {module}.{name}")))
                        }
                    }
                }
                b'R' => {
                    // REDUCE: callable(*args)
                    let args = self.pop()?;
                    let func = self.top()?;
                    let v = self.call(func, args)?;
                    self.replace_top(v)?;
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args)
                    let args = self.pop()?;
                    let cls = self.top()?;
                    let v = self.new_object(cls, args)?;
                    self.replace_top(v)?;
                }
                b'b' => {
                    // BUILD: only a dict's attributes (a state dict's `_metadata`), ignored.
                    self.pop()?;
                    let inst = self.top()?;
                    if !matches!(self.values[inst], Value::Dict(_)) {
                        return Err(PickleError::Refused(format!(
                            "BUILD of a {}",
                            self.kind(inst)
                        )));
                    }
                }
                b'(' => {
                    if self.marks.len() >= MAX_MARK_DEPTH {
                        return Err(
                            self.malformed(format!("MARKs nested deeper than {MAX_MARK_DEPTH}"))
                        );
                    }
                    self.marks.push(self.stack.len());
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items));
                }
                b')' => {
                    self.push(Value::Tuple(Vec::new()));
                }
                0x85..=0x87 => {
                    // TUPLE1..3
                    let n = usize::from(op - 0x84);
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push(Value::Tuple(items));
                }
                b']' => {
                    self.push(Value::List(Vec::new()));
                }
                b'}' => {
                    self.push(Value::Dict(Vec::new()));
                }
                0x8f => {
                    // EMPTY_SET (no ADDITEMS is accepted, so it stays empty)
                    self.push(Value::Set);
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'N' => {
                    self.push(Value::None);
                }
                0x88 => {
                    self.push(Value::Bool(true));
                }
                0x89 => {
                    self.push(Value::Bool(false));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()));
                }
                0x8a => {
                    // LONG1: n bytes, little-endian two's complement
                    let n = usize::from(self.u8()?);
                    let raw = self.take(n)?.to_vec();
                    self.push(long1(raw));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v));
                }
                b'X' => {
                    // BINUNICODE
                    let n = self.len32()?;
                    let raw = self.take(n)?;
                    let s = std::str::from_utf8(raw)
                        .map_err(|_| PickleError::Malformed {
                            at,
                            reason: "BINUNICODE string is not UTF-8".into(),
                        })?
                        .to_string();
                    self.push(Value::Str(s));
                }
                b'U' => {
                    // SHORT_BINSTRING: Python 2 str; text when it decodes.
                    let n = usize::from(self.u8()?);
                    let raw = self.take(n)?.to_vec();
                    let v = match String::from_utf8(raw) {
                        Ok(s) => Value::Str(s),
                        Err(e) => Value::Bytes(e.into_bytes()),
                    };
                    self.push(v);
                }
                b'B' | b'C' => {
                    // BINBYTES / SHORT_BINBYTES: harmless data, length-checked.
                    let n = if op == b'B' {
                        self.len32()?
                    } else {
                        usize::from(self.u8()?)
                    };
                    let raw = self.take(n)?.to_vec();
                    self.push(Value::Bytes(raw));
                }
                b'Q' => {
                    // BINPERSID: only torch storages.
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.push(v);
                }
                b'h' | b'j' => {
                    // BINGET / LONG_BINGET: share the memoised value.
                    let key = if op == b'h' {
                        self.u8()?.into()
                    } else {
                        self.u32()?
                    };
                    let id = *self
                        .memo
                        .get(&key)
                        .ok_or_else(|| self.malformed(format!("memo {key} was never stored")))?;
                    self.stack.push(id);
                }
                b'q' | b'r' => {
                    // BINPUT / LONG_BINPUT
                    let key = if op == b'q' {
                        self.u8()?.into()
                    } else {
                        self.u32()?
                    };
                    let id = self.top()?;
                    self.memo.insert(key, id);
                }
                other => {
                    return Err(PickleError::Refused(format!(
                        "pickle opcode {} at byte {at}",
                        opcode_name(other)
                    )))
                }
            }
        }
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        let target = self.top()?;
        match &mut self.values[target] {
            Value::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(PickleError::Refused(format!(
                "APPEND to a {}",
                self.kind(target)
            ))),
        }
    }

    fn set_items(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        let target = self.top()?;
        let pairs: Vec<(Id, Id)> = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        match &mut self.values[target] {
            Value::Dict(dict) => {
                dict.extend(pairs);
                Ok(())
            }
            _ => Err(PickleError::Refused(format!(
                "SETITEM on a {}",
                self.kind(target)
            ))),
        }
    }

    fn kind(&self, id: Id) -> &'static str {
        kind(&self.values[id])
    }

    fn tuple(&self, id: Id, what: &str) -> Result<Vec<Id>, PickleError> {
        match &self.values[id] {
            Value::Tuple(items) => Ok(items.clone()),
            _ => Err(self.malformed(format!("{what} is a {}, not a tuple", self.kind(id)))),
        }
    }

    fn int(&self, id: Id, what: &str) -> Result<i64, PickleError> {
        match &self.values[id] {
            Value::Int(v) => Ok(*v),
            _ => Err(self.malformed(format!("{what} is a {}, not an int", self.kind(id)))),
        }
    }

    /// A non-negative int that fits usize.
    fn index(&self, id: Id, what: &str) -> Result<usize, PickleError> {
        let v = self.int(id, what)?;
        usize::try_from(v).map_err(|_| self.malformed(format!("{what} is {v}")))
    }

    fn dims(&self, id: Id, what: &str) -> Result<Vec<usize>, PickleError> {
        let items = self.tuple(id, what)?;
        if items.len() > MAX_RANK {
            return Err(self.malformed(format!("{what} has {} dims", items.len())));
        }
        items.iter().map(|&d| self.index(d, what)).collect()
    }

    /// Evaluates REDUCE of an allow-listed callable.
    fn call(&self, func: Id, args: Id) -> Result<Value, PickleError> {
        let Value::Global(g) = self.values[func] else {
            return Err(PickleError::Refused(format!(
                "a call of a {}",
                self.kind(func)
            )));
        };
        let args = self.tuple(args, "call arguments")?;
        match g {
            Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Vec::new())),
            Global::RebuildTensorV2 => self.rebuild_tensor(&args),
            Global::RebuildParameter => {
                // (data, requires_grad, backward_hooks): the data is the tensor.
                match args.first().map(|&a| &self.values[a]) {
                    Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                    _ => Err(self.malformed("_rebuild_parameter without a tensor")),
                }
            }
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state): a plain tensor or Parameter rebuilt by func.
                let [f, ty, inner, _state] = args[..] else {
                    return Err(self.malformed("_rebuild_from_type_v2 takes 4 arguments"));
                };
                if !matches!(
                    self.values[ty],
                    Value::Global(Global::TensorType | Global::ParameterType)
                ) {
                    return Err(PickleError::Refused(
                        "_rebuild_from_type_v2 of a tensor subclass".into(),
                    ));
                }
                match self.values[f] {
                    Value::Global(Global::RebuildTensorV2 | Global::RebuildParameter) => {
                        self.call(f, inner)
                    }
                    _ => Err(PickleError::Refused(format!(
                        "_rebuild_from_type_v2 of a {}",
                        self.kind(f)
                    ))),
                }
            }
            other => Err(PickleError::Refused(format!("a call of {other:?}"))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Id]) -> Result<Value, PickleError> {
        if !(6..=7).contains(&args.len()) {
            return Err(self.malformed(format!("_rebuild_tensor_v2 with {} arguments", args.len())));
        }
        let Value::Storage(storage) = &self.values[args[0]] else {
            return Err(self.malformed("_rebuild_tensor_v2 without a storage"));
        };
        let size = self.dims(args[2], "tensor size")?;
        let stride = self.dims(args[3], "tensor stride")?;
        if size.len() != stride.len() {
            return Err(self.malformed("tensor size and stride differ in rank"));
        }
        Ok(Value::Tensor(TensorRef {
            storage: storage.clone(),
            offset: self.index(args[1], "storage offset")? as u64,
            size,
            stride,
        }))
    }

    /// NEWOBJ: `Parameter(data, requires_grad)` is its data; `OrderedDict()` a dict.
    fn new_object(&self, cls: Id, args: Id) -> Result<Value, PickleError> {
        let args = self.tuple(args, "NEWOBJ arguments")?;
        match self.values[cls] {
            Value::Global(Global::ParameterType) => match args.first().map(|&a| &self.values[a]) {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.malformed("Parameter without a tensor")),
            },
            Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Vec::new())),
            _ => Err(PickleError::Refused(format!(
                "NEWOBJ of a {}",
                self.kind(cls)
            ))),
        }
    }

    /// `('storage', StorageType, key, location, numel[, view_metadata])`.
    fn persistent(&self, pid: Id) -> Result<Value, PickleError> {
        let items = self.tuple(pid, "persistent id")?;
        let is_storage = items
            .first()
            .is_some_and(|&t| self.values[t] == Value::Str("storage".into()));
        if !is_storage || !(5..=6).contains(&items.len()) {
            return Err(PickleError::Refused(
                "a persistent id that is not a torch storage".into(),
            ));
        }
        let Value::Global(Global::Storage(dtype)) = self.values[items[1]] else {
            return Err(self.malformed("storage type is not a torch storage class"));
        };
        let key = match &self.values[items[2]] {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => return Err(self.malformed("storage key is neither str nor int")),
        };
        if key.is_empty() || key.len() > 64 {
            return Err(self.malformed("storage key is empty or longer than 64 bytes"));
        }
        if items.len() == 6 && self.values[items[5]] != Value::None {
            // Legacy view metadata (storage views) predate torch 1.0 state dicts.
            return Err(PickleError::Refused(format!(
                "a view of storage `{key}` (legacy storage views)"
            )));
        }
        let numel = self.index(items[4], "storage size")? as u64;
        Ok(Value::Storage(StorageRef { key, dtype, numel }))
    }
}

/// LONG1 payload as an int when it fits 64 bits.
fn long1(raw: Vec<u8>) -> Value {
    if raw.is_empty() {
        return Value::Int(0);
    }
    if raw.len() > 8 {
        return Value::BigInt(raw);
    }
    let negative = raw[raw.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
    buf[..raw.len()].copy_from_slice(&raw);
    Value::Int(i64::from_le_bytes(buf))
}

/// Names of the opcodes a hostile pickle uses, for the refusal.
fn opcode_name(op: u8) -> String {
    let name = match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        b'P' => "PERSID",
        b'2' => "DUP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        0x95 => "FRAME",
        0x94 => "MEMOIZE",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x8b => "LONG4",
        b'I' => "INT",
        b'L' => "LONG",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'F' => "FLOAT",
        b'p' => "PUT",
        b'g' => "GET",
        b'l' => "LIST",
        b'd' => "DICT",
        0x82..=0x84 => "EXT",
        _ => return format!("0x{op:02x}"),
    };
    format!("{name} (0x{op:02x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }

    #[test]
    fn refuses_unlisted_globals_by_name() {
        let mut p = vec![0x80, 2];
        p.extend(global("builtins", "eval"));
        p.push(b'.');
        assert_eq!(
            load(&p).expect_err("refused"),
            PickleError::Refused("global builtins.eval".into())
        );
    }

    #[test]
    fn long1_sign_extends() {
        assert_eq!(long1(vec![0xff]), Value::Int(-1));
        assert_eq!(long1(vec![0x00, 0x01]), Value::Int(256));
        assert!(matches!(long1(vec![1; 10]), Value::BigInt(_)));
    }

    #[test]
    fn memo_references_share_one_value() {
        // ] q0 ( h0 h0 h0 e . : a list holding itself three times, built without copies.
        let p = [b']', b'q', 0, b'(', b'h', 0, b'h', 0, b'h', 0, b'e', b'.'];
        let (v, used) = load(&p).expect("valid pickle");
        assert_eq!(used, p.len());
        assert_eq!(v.get(v.root), &Value::List(vec![0, 0, 0]));
    }

    #[test]
    fn lengths_are_checked_before_allocation() {
        let p = [b'X', 0xff, 0xff, 0xff, 0xff, b'a'];
        let err = load(&p).expect_err("refused");
        assert!(matches!(err, PickleError::Malformed { at: 5, .. }), "{err}");
    }
}

//! A restricted pickle virtual machine: it *interprets* the opcodes `torch.save` emits
//! (protocols 0–5, the binary ones fully, the protocol-0 text ones torch never writes only in
//! part) and builds a [`Value`] tree. It never calls anything: a global is a name looked up in
//! a fixed whitelist ([`classify_global`]), and `REDUCE`/`NEWOBJ`/`BUILD` on a whitelisted name
//! is translated into the value Python would have built (an OrderedDict, a tensor reference, a
//! `torch.device`, a numpy scalar, a set, …) or kept as an inert opaque [`Value::Object`]. A
//! global outside the whitelist (e.g. `os.system`) is refused with [`PickleProblem::Forbidden`].
//!
//! Invariants: mutable containers are shared through the memo like Python's (an `APPEND` to a
//! memoised list is seen by every reference to it); the result is converted to a plain owned
//! tree at `STOP`, refusing cycles and trees beyond [`MAX_DEPTH`] / [`MAX_EXPANDED_BYTES`]
//! (a small pickle that references one container many times cannot expand without bound).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{Global, StorageDType, StorageRef, TensorRef, Value};

/// Deepest nesting accepted in the result.
pub const MAX_DEPTH: usize = 512;
/// Largest result accepted, after expanding shared references: 64 bytes per value plus the
/// length of every string / bytes / big int (a real nnU-Net checkpoint needs about 1 MB).
pub const MAX_EXPANDED_BYTES: usize = 64 << 20;

#[derive(Debug)]
pub(crate) enum PickleProblem {
    /// Malformed stream at byte `offset`.
    Malformed { offset: usize, message: String },
    /// A global outside the whitelist.
    Forbidden { module: String, name: String },
}

fn malformed(offset: usize, message: impl Into<String>) -> PickleProblem {
    PickleProblem::Malformed {
        offset,
        message: message.into(),
    }
}

/// What a whitelisted global is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    Device,
    Size,
    NpDtype,
    NpScalar,
    CodecsEncode,
    Set,
    FrozenSet,
    Complex,
    ByteArray,
    Storage(StorageDType),
    /// A class or constant that is kept as an opaque name / object (never interpreted).
    Inert,
}

fn classify_global(module: &str, name: &str) -> Option<Known> {
    use Known::*;
    let k = match (module, name) {
        ("collections", "OrderedDict") => OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => RebuildFromTypeV2,
        ("torch", "device") => Device,
        ("torch", "Size") => Size,
        ("numpy", "dtype") => NpDtype,
        ("numpy.core.multiarray", "scalar") | ("numpy._core.multiarray", "scalar") => NpScalar,
        ("_codecs", "encode") => CodecsEncode,
        ("builtins", "set") | ("__builtin__", "set") => Set,
        ("builtins", "frozenset") | ("__builtin__", "frozenset") => FrozenSet,
        ("builtins", "complex") | ("__builtin__", "complex") => Complex,
        ("builtins", "bytearray") | ("__builtin__", "bytearray") => ByteArray,
        ("torch", s) if s.ends_with("Storage") => Storage(StorageDType::from_storage_class(s)?),
        ("torch", "Tensor")
        | ("torch._tensor", "Tensor")
        | ("torch.nn.parameter", "Parameter")
        | ("numpy", "ndarray")
        | ("numpy.core.multiarray", "_reconstruct")
        | ("numpy._core.multiarray", "_reconstruct") => Inert,
        (
            "torch",
            "float32" | "float16" | "bfloat16" | "float64" | "int64" | "int32" | "int16" | "int8"
            | "uint8" | "bool" | "strided" | "contiguous_format" | "channels_last"
            | "channels_last_3d" | "preserve_format",
        ) => Inert,
        _ => return None,
    };
    Some(k)
}

#[derive(Debug, Clone)]
struct NpDtype {
    descr: String,
    byteorder: char,
}

/// An inert object: its class, constructor arguments and `BUILD` state.
type OpaqueObject = (Global, Vec<Item>, Option<Item>);

/// A value while the VM runs; mutable containers are shared.
#[derive(Debug, Clone)]
enum Item {
    None,
    Bool(bool),
    Int(i128),
    BigInt(Rc<Vec<u8>>),
    Float(f64),
    Complex(f64, f64),
    Str(Rc<str>),
    Bytes(Rc<Vec<u8>>),
    List(Rc<RefCell<Vec<Item>>>),
    Tuple(Rc<Vec<Item>>),
    Set(Rc<RefCell<Vec<Item>>>),
    Dict(Rc<RefCell<Vec<(Item, Item)>>>),
    Global(Rc<Global>, Known),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    Device(Rc<str>),
    NpDtype(Rc<RefCell<NpDtype>>),
    Object(Rc<RefCell<OpaqueObject>>),
}

impl Item {
    fn type_name(&self) -> &'static str {
        match self {
            Item::None => "None",
            Item::Bool(_) => "bool",
            Item::Int(_) | Item::BigInt(_) => "int",
            Item::Float(_) => "float",
            Item::Complex(..) => "complex",
            Item::Str(_) => "str",
            Item::Bytes(_) => "bytes",
            Item::List(_) => "list",
            Item::Tuple(_) => "tuple",
            Item::Set(_) => "set",
            Item::Dict(_) => "dict",
            Item::Global(..) => "global",
            Item::Storage(_) => "storage",
            Item::Tensor(_) => "tensor",
            Item::Device(_) => "device",
            Item::NpDtype(_) => "numpy.dtype",
            Item::Object(_) => "object",
        }
    }
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    marks: Vec<Vec<Item>>,
    memo: HashMap<u64, Item>,
    /// Offset of the opcode being executed (for messages).
    op_at: usize,
}

/// Runs the pickle in `data` and returns its value.
pub(crate) fn unpickle(data: &[u8]) -> Result<Value, PickleProblem> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        op_at: 0,
    };
    let item = vm.run()?;
    let mut nodes = 0usize;
    let mut path = Vec::new();
    to_value(&item, 0, &mut nodes, &mut path)
}

impl<'a> Vm<'a> {
    fn err(&self, message: impl Into<String>) -> PickleProblem {
        malformed(self.op_at, message)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleProblem> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.err("unexpected end of pickle"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleProblem> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleProblem> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleProblem> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PickleProblem> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len_u64(&mut self) -> Result<usize, PickleProblem> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err("length does not fit in memory"))
    }
    fn line(&mut self) -> Result<&'a str, PickleProblem> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| self.err("unterminated text argument"))?;
        let s = std::str::from_utf8(&rest[..nl]).map_err(|_| self.err("text is not UTF-8"))?;
        self.pos += nl + 1;
        Ok(s)
    }
    fn utf8(&self, b: &[u8]) -> Result<Rc<str>, PickleProblem> {
        std::str::from_utf8(b)
            .map(Rc::from)
            .map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn pop(&mut self) -> Result<Item, PickleProblem> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }
    fn top(&mut self) -> Result<&mut Item, PickleProblem> {
        let at = self.op_at;
        self.stack
            .last_mut()
            .ok_or_else(|| malformed(at, "stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Item>, PickleProblem> {
        let saved = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        Ok(std::mem::replace(&mut self.stack, saved))
    }
    fn memo_get(&self, k: u64) -> Result<Item, PickleProblem> {
        self.memo
            .get(&k)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {k} not defined")))
    }
    fn memo_put(&mut self, k: u64) -> Result<(), PickleProblem> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.err("stack underflow"))?;
        self.memo.insert(k, top);
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Item, PickleProblem> {
        let known = classify_global(module, name).ok_or_else(|| PickleProblem::Forbidden {
            module: module.to_string(),
            name: name.to_string(),
        })?;
        Ok(Item::Global(
            Rc::new(Global {
                module: module.to_string(),
                name: name.to_string(),
            }),
            known,
        ))
    }

    fn run(&mut self) -> Result<Item, PickleProblem> {
        loop {
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                }
                0x95 => {
                    // FRAME: only a hint for buffering
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    let saved = std::mem::take(&mut self.stack);
                    self.marks.push(saved);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?.clone();
                    self.stack.push(t);
                }
                b'N' => self.stack.push(Item::None),
                0x88 => self.stack.push(Item::Bool(true)),
                0x89 => self.stack.push(Item::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Item::Int(v as i128));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Item::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Item::Int(v as i128));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(long_from_le(b));
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    let n = usize::try_from(n).map_err(|_| self.err("negative LONG4 length"))?;
                    let b = self.take(n)?;
                    self.stack.push(long_from_le(b));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Item::Float(f64::from_be_bytes(a)));
                }
                b'I' => {
                    let s = self.line()?;
                    let item = match s {
                        "00" => Item::Bool(false),
                        "01" => Item::Bool(true),
                        _ => Item::Int(
                            s.parse::<i128>()
                                .map_err(|_| self.err(format!("bad INT {s:?}")))?,
                        ),
                    };
                    self.stack.push(item);
                }
                b'L' => {
                    let s = self.line()?;
                    let s = s.strip_suffix('L').unwrap_or(s);
                    let v = s
                        .parse::<i128>()
                        .map_err(|_| self.err(format!("bad LONG {s:?}")))?;
                    self.stack.push(Item::Int(v));
                }
                b'F' => {
                    let s = self.line()?;
                    let v = s
                        .parse::<f64>()
                        .map_err(|_| self.err(format!("bad FLOAT {s:?}")))?;
                    self.stack.push(Item::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.stack.push(Item::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.stack.push(Item::Str(s));
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.stack.push(Item::Str(s));
                }
                b'U' => {
                    // SHORT_BINSTRING (py2 str): latin-1 bytes
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Item::Str(latin1(b)));
                }
                b'T' => {
                    let n = self.u32()? as i32;
                    let n = usize::try_from(n).map_err(|_| self.err("negative length"))?;
                    let b = self.take(n)?;
                    self.stack.push(Item::Str(latin1(b)));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Item::Bytes(Rc::new(b.to_vec())));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Item::Bytes(Rc::new(b.to_vec())));
                }
                0x8e | 0x96 => {
                    // BINBYTES8, BYTEARRAY8
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    self.stack.push(Item::Bytes(Rc::new(b.to_vec())));
                }
                b'}' => self
                    .stack
                    .push(Item::Dict(Rc::new(RefCell::new(Vec::new())))),
                b']' => self
                    .stack
                    .push(Item::List(Rc::new(RefCell::new(Vec::new())))),
                b')' => self.stack.push(Item::Tuple(Rc::new(Vec::new()))),
                0x8f => self
                    .stack
                    .push(Item::Set(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.stack.push(Item::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Item::List(Rc::new(RefCell::new(items))));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Item::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Item::Tuple(Rc::new(items)));
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Item::Set(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x90 => {
                    // ADDITEMS
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Item::Set(s) => s.borrow_mut().extend(items),
                        other => {
                            let t = other.type_name();
                            return Err(self.err(format!("ADDITEMS on {t}")));
                        }
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.setitems(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.setitems(pairs)?;
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let s = self.line()?;
                    let k = s
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("bad PUT {s:?}")))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'g' => {
                    let s = self.line()?;
                    let k = s
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("bad GET {s:?}")))?;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Item::Str(module), Item::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent_load(pid)?;
                    self.stack.push(s);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let Item::Tuple(args) = args else {
                        return Err(self.err("REDUCE arguments are not a tuple"));
                    };
                    let v = self.call(callable, &args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    // NEWOBJ cls args
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let Item::Tuple(args) = args else {
                        return Err(self.err("NEWOBJ arguments are not a tuple"));
                    };
                    let v = self.call(cls, &args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    // NEWOBJ_EX cls args kwargs
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let Item::Tuple(args) = args else {
                        return Err(self.err("NEWOBJ_EX arguments are not a tuple"));
                    };
                    if !matches!(&kwargs, Item::Dict(d) if d.borrow().is_empty()) {
                        return Err(self.err("NEWOBJ_EX with keyword arguments"));
                    }
                    let v = self.call(cls, &args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    self.build(state)?;
                }
                0x97 | 0x98 => {
                    return Err(self.err("out-of-band buffers (protocol 5) are not supported"))
                }
                other => {
                    return Err(self.err(format!(
                        "opcode 0x{other:02x} ({:?}) not supported",
                        other as char
                    )))
                }
            }
        }
    }

    fn pairs(&self, items: Vec<Item>) -> Result<Vec<(Item, Item)>, PickleProblem> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn append(&mut self, items: Vec<Item>) -> Result<(), PickleProblem> {
        match self.top()? {
            Item::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => {
                let t = other.type_name();
                Err(self.err(format!("APPEND to {t}")))
            }
        }
    }

    fn setitems(&mut self, pairs: Vec<(Item, Item)>) -> Result<(), PickleProblem> {
        match self.top()? {
            Item::Dict(d) => {
                let mut d = d.borrow_mut();
                for (k, v) in pairs {
                    // Python dict semantics: a repeated key keeps its first position.
                    if let Some(slot) = d.iter_mut().find(|(ek, _)| same_key(ek, &k)) {
                        slot.1 = v;
                    } else {
                        d.push((k, v));
                    }
                }
                Ok(())
            }
            other => {
                let t = other.type_name();
                Err(self.err(format!("SETITEM on {t}")))
            }
        }
    }

    fn persistent_load(&self, pid: Item) -> Result<Item, PickleProblem> {
        let Item::Tuple(t) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match &t[..] {
            [Item::Str(tag), Item::Global(_, Known::Storage(dtype)), Item::Str(key), Item::Str(location), Item::Int(numel)]
                if &**tag == "storage" =>
            {
                let numel = u64::try_from(*numel).map_err(|_| self.err("negative storage size"))?;
                Ok(Item::Storage(Rc::new(StorageRef {
                    key: key.to_string(),
                    dtype: *dtype,
                    location: location.to_string(),
                    numel,
                })))
            }
            _ => Err(self.err(
                "persistent id is not ('storage', <torch storage class>, key, location, numel)",
            )),
        }
    }

    fn call(&self, callable: Item, args: &[Item]) -> Result<Item, PickleProblem> {
        let Item::Global(g, known) = callable else {
            return Err(self.err(format!("call of a {}", callable.type_name())));
        };
        let bad = |what: &str| self.err(format!("{}.{}: {what}", g.module, g.name));
        Ok(match known {
            Known::OrderedDict => match args {
                [] => Item::Dict(Rc::new(RefCell::new(Vec::new()))),
                [Item::List(l)] => {
                    let mut pairs = Vec::new();
                    for p in l.borrow().iter() {
                        match p {
                            Item::Tuple(kv) if kv.len() == 2 => {
                                pairs.push((kv[0].clone(), kv[1].clone()))
                            }
                            _ => return Err(bad("items are not pairs")),
                        }
                    }
                    Item::Dict(Rc::new(RefCell::new(pairs)))
                }
                _ => return Err(bad("unexpected arguments")),
            },
            Known::RebuildTensorV2 | Known::RebuildTensor => {
                let (storage, offset, size, stride) = match args {
                    [s, o, sz, st, ..] => (s, o, sz, st),
                    _ => return Err(bad("too few arguments")),
                };
                let requires_grad = matches!(args.get(4), Some(Item::Bool(true)));
                let Item::Storage(storage) = storage else {
                    return Err(bad("first argument is not a storage"));
                };
                let offset = int_arg(offset).ok_or_else(|| bad("bad storage offset"))?;
                let shape = int_tuple(size).ok_or_else(|| bad("bad size"))?;
                let strides = int_tuple(stride).ok_or_else(|| bad("bad stride"))?;
                if shape.len() != strides.len() {
                    return Err(bad("size and stride differ in length"));
                }
                Item::Tensor(Rc::new(TensorRef {
                    storage: (**storage).clone(),
                    storage_offset: offset,
                    shape,
                    strides,
                    requires_grad,
                }))
            }
            Known::RebuildParameter | Known::RebuildParameterWithState => match args {
                [Item::Tensor(t), rg, ..] => {
                    let mut t = (**t).clone();
                    t.requires_grad = matches!(rg, Item::Bool(true));
                    Item::Tensor(Rc::new(t))
                }
                _ => return Err(bad("first argument is not a tensor")),
            },
            Known::RebuildFromTypeV2 => match args {
                [func @ Item::Global(..), Item::Global(_, Known::Inert), Item::Tuple(inner), _] => {
                    self.call(func.clone(), inner)?
                }
                _ => return Err(bad("unexpected arguments")),
            },
            Known::Device => match args {
                [Item::Str(s)] => Item::Device(s.clone()),
                [Item::Str(s), Item::Int(i)] => Item::Device(Rc::from(format!("{s}:{i}"))),
                [Item::Str(s), Item::None] => Item::Device(s.clone()),
                _ => return Err(bad("unexpected arguments")),
            },
            Known::Size => match args {
                [Item::Tuple(t)] => Item::Tuple(t.clone()),
                [] => Item::Tuple(Rc::new(Vec::new())),
                _ => return Err(bad("unexpected arguments")),
            },
            Known::NpDtype => match args {
                [Item::Str(d), ..] => Item::NpDtype(Rc::new(RefCell::new(NpDtype {
                    descr: d.to_string(),
                    byteorder: '=',
                }))),
                _ => return Err(bad("unexpected arguments")),
            },
            Known::NpScalar => match args {
                [Item::NpDtype(d), Item::Bytes(b)] => np_scalar(&d.borrow(), b)
                    .ok_or_else(|| bad("unsupported numpy scalar type or size"))?,
                _ => return Err(bad("unexpected arguments")),
            },
            Known::CodecsEncode => match args {
                [Item::Str(s), Item::Str(enc)] => match &**enc {
                    "latin1" | "latin-1" | "iso-8859-1" => {
                        let mut out = Vec::with_capacity(s.len());
                        for c in s.chars() {
                            let c = u8::try_from(c as u32)
                                .map_err(|_| bad("character outside latin-1"))?;
                            out.push(c);
                        }
                        Item::Bytes(Rc::new(out))
                    }
                    "utf-8" | "utf8" => Item::Bytes(Rc::new(s.as_bytes().to_vec())),
                    _ => return Err(bad("unsupported encoding")),
                },
                _ => return Err(bad("unexpected arguments")),
            },
            Known::Set | Known::FrozenSet => match args {
                [] => Item::Set(Rc::new(RefCell::new(Vec::new()))),
                [Item::List(l)] => Item::Set(Rc::new(RefCell::new(l.borrow().clone()))),
                [Item::Tuple(t)] => Item::Set(Rc::new(RefCell::new((**t).clone()))),
                [Item::Set(s)] => Item::Set(Rc::new(RefCell::new(s.borrow().clone()))),
                _ => return Err(bad("unexpected arguments")),
            },
            Known::Complex => match args {
                [re, im] => Item::Complex(
                    num_arg(re).ok_or_else(|| bad("bad real part"))?,
                    num_arg(im).ok_or_else(|| bad("bad imaginary part"))?,
                ),
                [re] => Item::Complex(num_arg(re).ok_or_else(|| bad("bad real part"))?, 0.0),
                _ => return Err(bad("unexpected arguments")),
            },
            Known::ByteArray => match args {
                [] => Item::Bytes(Rc::new(Vec::new())),
                [Item::Bytes(b)] => Item::Bytes(b.clone()),
                _ => return Err(bad("unexpected arguments")),
            },
            Known::Storage(_) => return Err(bad("storages are only valid as persistent ids")),
            Known::Inert => {
                Item::Object(Rc::new(RefCell::new(((*g).clone(), args.to_vec(), None))))
            }
        })
    }

    fn build(&mut self, state: Item) -> Result<(), PickleProblem> {
        let at = self.op_at;
        let target = self.top()?;
        match target {
            // OrderedDict / state_dict attributes such as `_metadata`: not needed, dropped.
            Item::Dict(_) => Ok(()),
            // Parameters' and tensors' python attributes.
            Item::Tensor(_) => Ok(()),
            Item::NpDtype(d) => {
                if let Item::Tuple(t) = &state {
                    if let Some(Item::Str(bo)) = t.get(1) {
                        d.borrow_mut().byteorder = bo.chars().next().unwrap_or('=');
                    }
                }
                Ok(())
            }
            Item::Object(o) => {
                o.borrow_mut().2 = Some(state);
                Ok(())
            }
            other => Err(malformed(at, format!("BUILD on {}", other.type_name()))),
        }
    }
}

fn latin1(b: &[u8]) -> Rc<str> {
    Rc::from(b.iter().map(|c| *c as char).collect::<String>())
}

fn same_key(a: &Item, b: &Item) -> bool {
    match (a, b) {
        (Item::Str(x), Item::Str(y)) => x == y,
        (Item::Int(x), Item::Int(y)) => x == y,
        (Item::Bool(x), Item::Bool(y)) => x == y,
        (Item::None, Item::None) => true,
        _ => false,
    }
}

fn long_from_le(b: &[u8]) -> Item {
    if b.is_empty() {
        return Item::Int(0);
    }
    if b.len() <= 16 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut a = [if neg { 0xFF } else { 0 }; 16];
        a[..b.len()].copy_from_slice(b);
        Item::Int(i128::from_le_bytes(a))
    } else {
        Item::BigInt(Rc::new(b.to_vec()))
    }
}

fn int_arg(i: &Item) -> Option<u64> {
    match i {
        Item::Int(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn num_arg(i: &Item) -> Option<f64> {
    match i {
        Item::Int(v) => Some(*v as f64),
        Item::Float(f) => Some(*f),
        _ => None,
    }
}

fn int_tuple(i: &Item) -> Option<Vec<u64>> {
    match i {
        Item::Tuple(t) => t.iter().map(int_arg).collect(),
        _ => None,
    }
}

fn np_scalar(d: &NpDtype, b: &[u8]) -> Option<Item> {
    let descr = d.descr.trim_start_matches(['<', '>', '=', '|']);
    let big = d.byteorder == '>' || d.descr.starts_with('>');
    let kind_char = descr.chars().next()?;
    let (kind, size) = descr.split_at(kind_char.len_utf8());
    let size: usize = size.parse().ok()?;
    if b.len() != size {
        return None;
    }
    let mut le = b.to_vec();
    if big {
        le.reverse();
    }
    Some(match (kind, size) {
        ("f", 8) => Item::Float(f64::from_le_bytes(le.try_into().ok()?)),
        ("f", 4) => Item::Float(f32::from_le_bytes(le.try_into().ok()?) as f64),
        ("f", 2) => Item::Float(half::f16::from_le_bytes(le.try_into().ok()?).to_f64()),
        ("i", 1 | 2 | 4 | 8) => {
            let neg = le[size - 1] & 0x80 != 0;
            let mut a = [if neg { 0xFF } else { 0 }; 16];
            a[..size].copy_from_slice(&le);
            Item::Int(i128::from_le_bytes(a))
        }
        ("u", 1 | 2 | 4 | 8) => {
            let mut a = [0u8; 16];
            a[..size].copy_from_slice(&le);
            Item::Int(i128::from_le_bytes(a))
        }
        ("b", 1) => Item::Bool(le[0] != 0),
        _ => return None,
    })
}

/// Converts the VM's shared graph into an owned tree. `path` holds the addresses of the
/// containers being converted (cycle detection).
fn to_value(
    item: &Item,
    depth: usize,
    nodes: &mut usize,
    path: &mut Vec<usize>,
) -> Result<Value, PickleProblem> {
    *nodes += 64
        + match item {
            Item::Str(s) => s.len(),
            Item::Bytes(b) | Item::BigInt(b) => b.len(),
            _ => 0,
        };
    if *nodes > MAX_EXPANDED_BYTES {
        return Err(malformed(
            0,
            format!("the value tree expands beyond {MAX_EXPANDED_BYTES} bytes"),
        ));
    }
    if depth > MAX_DEPTH {
        return Err(malformed(0, format!("nesting deeper than {MAX_DEPTH}")));
    }
    let mut enter = |addr: usize| -> Result<(), PickleProblem> {
        if path.contains(&addr) {
            return Err(malformed(0, "self-referencing container"));
        }
        path.push(addr);
        Ok(())
    };
    let list = |v: &[Item], nodes: &mut usize, path: &mut Vec<usize>| {
        v.iter()
            .map(|x| to_value(x, depth + 1, nodes, path))
            .collect::<Result<Vec<_>, _>>()
    };
    let out = match item {
        Item::None => Value::None,
        Item::Bool(b) => Value::Bool(*b),
        Item::Int(i) => Value::Int(*i),
        Item::BigInt(b) => Value::BigInt((**b).clone()),
        Item::Float(f) => Value::Float(*f),
        Item::Complex(a, b) => Value::Complex(*a, *b),
        Item::Str(s) => Value::Str(s.to_string()),
        Item::Bytes(b) => Value::Bytes((**b).clone()),
        Item::Device(d) => Value::Device(d.to_string()),
        Item::Tensor(t) => Value::Tensor((**t).clone()),
        Item::Storage(s) => Value::Storage((**s).clone()),
        Item::Global(g, _) => Value::Global((**g).clone()),
        Item::NpDtype(d) => Value::Global(Global {
            module: "numpy".into(),
            name: format!("dtype({})", d.borrow().descr),
        }),
        Item::Tuple(t) => {
            enter(Rc::as_ptr(t) as usize)?;
            let v = Value::Tuple(list(t, nodes, path)?);
            path.pop();
            v
        }
        Item::List(l) => {
            enter(Rc::as_ptr(l) as usize)?;
            let v = Value::List(list(&l.borrow(), nodes, path)?);
            path.pop();
            v
        }
        Item::Set(s) => {
            enter(Rc::as_ptr(s) as usize)?;
            let v = Value::Set(list(&s.borrow(), nodes, path)?);
            path.pop();
            v
        }
        Item::Dict(d) => {
            enter(Rc::as_ptr(d) as usize)?;
            let mut pairs = Vec::new();
            for (k, v) in d.borrow().iter() {
                pairs.push((
                    to_value(k, depth + 1, nodes, path)?,
                    to_value(v, depth + 1, nodes, path)?,
                ));
            }
            path.pop();
            Value::Dict(pairs)
        }
        Item::Object(o) => {
            enter(Rc::as_ptr(o) as usize)?;
            let o = o.borrow();
            let args = list(&o.1, nodes, path)?;
            let state = match &o.2 {
                Some(s) => Some(Box::new(to_value(s, depth + 1, nodes, path)?)),
                None => None,
            };
            path.pop();
            Value::Object {
                class: o.0.clone(),
                args,
                state,
            }
        }
    };
    Ok(out)
}

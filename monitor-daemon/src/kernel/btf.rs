//! Just enough of a BTF reader to find where a field lives in a kernel struct
//! (`task_struct.real_cred`, `task_struct.seccomp.mode`), so the eBPF side can read it with
//! `bpf_probe_read_kernel` on any kernel build. aya parses BTF too but does not expose member
//! offsets, and the one crate that does (btf-rs) is LGPL.
//!
//! Format: `include/uapi/linux/btf.h` and Documentation/bpf/btf.rst.

use std::collections::HashMap;

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// Not BTF, or cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// Unknown type kind (a newer kernel format).
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind {
        /// Type id.
        id: u32,
        /// Kind number.
        kind: u32,
    },
    /// The struct or field does not exist.
    #[error("no field {0} in the kernel's BTF")]
    NoField(String),
}

const MAGIC: u16 = 0xeb9f;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// struct or union.
    Composite {
        name: u32,
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict, type_tag: refers to another type.
    Alias(u32),
    Other,
}

/// Parsed kernel BTF: struct/union members by type id.
pub struct Btf {
    strings: Vec<u8>,
    /// Index 0 is the void type.
    types: Vec<Type>,
    by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    /// Reads `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> std::io::Result<Result<Self, BtfError>> {
        Ok(Self::parse(&std::fs::read("/sys/kernel/btf/vmlinux")?))
    }

    /// Parses little-endian BTF.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_bytes = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type::Other];
        let mut pos = 0;
        while pos < types_bytes.len() {
            let id = types.len() as u32;
            let name = u32_at(types_bytes, pos)?;
            let info = u32_at(types_bytes, pos + 4)?;
            let size_or_type = u32_at(types_bytes, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let (extra, ty) = match kind {
                1 | 14 | 17 => (4, Type::Other),     // int, var, decl_tag
                2 | 7 | 12 | 16 => (0, Type::Other), // ptr, fwd, func, float
                3 => (12, Type::Other),              // array
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let raw = u32_at(types_bytes, m + 8)?;
                        members.push(Member {
                            name: u32_at(types_bytes, m)?,
                            type_id: u32_at(types_bytes, m + 4)?,
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    (vlen * 12, Type::Composite { name, members })
                }
                6 | 13 => (vlen * 8, Type::Other), // enum, func_proto
                15 | 19 => (vlen * 12, Type::Other), // datasec, enum64
                8 | 9 | 10 | 11 | 18 => (0, Type::Alias(size_or_type)),
                kind => return Err(BtfError::UnknownKind { id, kind }),
            };
            pos += extra;
            types.push(ty);
        }
        let mut btf = Btf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if let Type::Composite { name, .. } = t {
                let n = btf.string(*name);
                if !n.is_empty() {
                    btf.by_name.entry(n.to_owned()).or_insert(id as u32);
                }
            }
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias(next)) => id = *next,
                _ => break,
            }
        }
        id
    }

    /// Bit offset of `field` in composite `id`, looking into anonymous members.
    fn find(&self, id: u32, field: &str) -> Option<(u32, u32)> {
        let Some(Type::Composite { members, .. }) = self.types.get(self.resolve(id) as usize)
        else {
            return None;
        };
        for m in members {
            let name = self.string(m.name);
            if name == field {
                return Some((m.bit_offset, m.type_id));
            }
            if name.is_empty()
                && let Some((off, ty)) = self.find(m.type_id, field)
            {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of a dotted path (`task_struct.seccomp.mode`).
    pub fn offset_of(&self, path: &str) -> Result<u64, BtfError> {
        let no = || BtfError::NoField(path.to_owned());
        let mut parts = path.split('.');
        let root = parts.next().ok_or_else(no)?;
        let mut id = *self.by_name.get(root).ok_or_else(no)?;
        let mut bits = 0u64;
        for field in parts {
            let (off, ty) = self.find(id, field).ok_or_else(no)?;
            bits += u64::from(off);
            id = ty;
        }
        if !bits.is_multiple_of(8) {
            return Err(no());
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF bytes: `struct inner { int a; int mode; }`,
    /// `struct outer { long x; union { int y; struct inner in; }; const struct inner *p; struct inner s; }`.
    fn sample() -> Vec<u8> {
        let mut strings = b"\0int\0inner\0a\0mode\0outer\0x\0y\0in\0p\0s\0".to_vec();
        let s = |name: &str, st: &[u8]| -> u32 {
            let pat = [name.as_bytes(), b"\0"].concat();
            st.windows(pat.len())
                .position(|w| w == pat.as_slice())
                .map(|p| p as u32)
                .expect("string")
        };
        let st = strings.clone();
        let mut t = Vec::new();
        let ty = |name: u32, kind: u32, vlen: u32, size: u32, extra: &[u32], t: &mut Vec<u8>| {
            for v in [name, (kind << 24) | vlen, size].iter().chain(extra) {
                t.extend_from_slice(&v.to_le_bytes());
            }
        };
        // 1: int
        ty(s("int", &st), 1, 0, 4, &[32], &mut t);
        // 2: struct inner { a @0, mode @32 }
        ty(
            s("inner", &st),
            4,
            2,
            8,
            &[s("a", &st), 1, 0, s("mode", &st), 1, 32],
            &mut t,
        );
        // 3: anonymous union { y: int @0, in: inner @0 }
        ty(0, 5, 2, 8, &[s("y", &st), 1, 0, s("in", &st), 2, 0], &mut t);
        // 4: const inner
        ty(0, 10, 0, 2, &[], &mut t);
        // 5: ptr to 4
        ty(0, 2, 0, 4, &[], &mut t);
        // 6: struct outer { x @0, <anon union> @64, p @128, s @192 }
        ty(
            s("outer", &st),
            4,
            4,
            32,
            &[
                s("x", &st),
                1,
                0,
                0,
                3,
                64,
                s("p", &st),
                5,
                128,
                s("s", &st),
                2,
                192,
            ],
            &mut t,
        );
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.append(&mut strings);
        out
    }

    #[test]
    fn offsets_through_anonymous_members_and_nesting() {
        let btf = Btf::parse(&sample()).expect("parse");
        assert_eq!(btf.offset_of("outer.x"), Ok(0));
        assert_eq!(btf.offset_of("outer.y"), Ok(8));
        assert_eq!(btf.offset_of("outer.in.mode"), Ok(12));
        assert_eq!(btf.offset_of("outer.p"), Ok(16));
        assert_eq!(btf.offset_of("outer.s.mode"), Ok(28));
        assert_eq!(
            btf.offset_of("outer.nope"),
            Err(BtfError::NoField("outer.nope".into()))
        );
        assert_eq!(
            btf.offset_of("missing.x"),
            Err(BtfError::NoField("missing.x".into()))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Btf::parse(b"hello"), Err(BtfError::Malformed(_))));
        let mut bad = sample();
        bad.truncate(30);
        assert!(matches!(Btf::parse(&bad), Err(BtfError::Malformed(_))));
    }

    #[test]
    fn reads_this_kernel_when_available() {
        // Pure parsing of a real file; skipped (with a note) where the kernel exposes no BTF.
        let Ok(parsed) = Btf::from_sys_fs() else {
            eprintln!("no /sys/kernel/btf/vmlinux here; real-BTF parse not exercised");
            return;
        };
        let btf = parsed.expect("kernel BTF parses");
        let real_cred = btf.offset_of("task_struct.real_cred").expect("real_cred");
        let cred = btf.offset_of("task_struct.cred").expect("cred");
        // include/linux/sched.h: ptracer_cred, real_cred, cred, in that order.
        assert_eq!(cred, real_cred + 8, "cred follows real_cred");
        assert_eq!(btf.offset_of("task_struct.ptracer_cred"), Ok(real_cred - 8));
        assert!(btf.offset_of("task_struct.seccomp.mode").is_ok());
    }
}

//! What an RDB file says about replication: the `repl-id` and `repl-offset` auxiliary
//! fields that Redis (4.0+) and Valkey write at the top of every RDB. A replica that loads
//! the RDB takes them as its replication id and offset and asks its upstream to continue
//! from there (`PSYNC <repl-id> <repl-offset + 1>`). Pure: parses bytes; the caller reads
//! the head of the file.

/// How many bytes of the file the caller should read: the auxiliary fields come first
/// and are small; any bigger head works too.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The replication history an RDB resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplPosition {
    pub repl_id: String,
    pub offset: i64,
}

const OP_AUX: u8 = 0xFA;

/// Reads `repl-id` and `repl-offset` from the head of an RDB file; `None` when the file is
/// not an RDB, the fields are missing (an RDB saved by a server with no replication
/// history), or the head is cut before them.
pub fn repl_position(head: &[u8]) -> Option<ReplPosition> {
    let mut r = Reader { buf: head, pos: 0 };
    let magic = if head.starts_with(b"REDIS") {
        5
    } else if head.starts_with(b"VALKEY") {
        6
    } else {
        return None;
    };
    r.pos = magic;
    while r.buf.get(r.pos).is_some_and(u8::is_ascii_digit) {
        r.pos += 1; // the version: four digits (REDIS0010), or more
    }
    let mut id = None;
    let mut offset = None;
    while r.byte()? == OP_AUX {
        let key = r.string()?;
        let value = r.string()?;
        match key.as_slice() {
            b"repl-id" => id = Some(String::from_utf8(value).ok()?),
            b"repl-offset" => offset = std::str::from_utf8(&value).ok()?.parse().ok(),
            _ => {}
        }
        if let (Some(repl_id), Some(offset)) = (&id, offset) {
            return Some(ReplPosition {
                repl_id: repl_id.clone(),
                offset,
            });
        }
    }
    None
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A length, or (for the `11` prefix) the kind of special encoding.
    fn length(&mut self) -> Option<(u64, bool)> {
        let first = self.byte()?;
        match first >> 6 {
            0 => Some((u64::from(first & 0x3F), false)),
            1 => Some((
                (u64::from(first & 0x3F) << 8) | u64::from(self.byte()?),
                false,
            )),
            2 if first == 0x80 => {
                let b = self.take(4)?;
                Some((u64::from(u32::from_be_bytes(b.try_into().ok()?)), false))
            }
            2 if first == 0x81 => {
                let b = self.take(8)?;
                Some((u64::from_be_bytes(b.try_into().ok()?), false))
            }
            3 => Some((u64::from(first & 0x3F), true)),
            _ => None,
        }
    }

    /// A string: raw, or an integer written in 1, 2 or 4 bytes (little-endian), returned
    /// as its decimal text. LZF-compressed strings never hold these fields; give up.
    fn string(&mut self) -> Option<Vec<u8>> {
        let (len, special) = self.length()?;
        if !special {
            return Some(self.take(usize::try_from(len).ok()?)?.to_vec());
        }
        let n: i64 = match len {
            0 => i64::from(self.byte()? as i8),
            1 => i64::from(i16::from_le_bytes(self.take(2)?.try_into().ok()?)),
            2 => i64::from(i32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some(n.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RDB head as Redis 7.0 writes it (aux fields, then a database selector).
    fn head(id: &str, offset_field: &[u8]) -> Vec<u8> {
        let mut v = b"REDIS0010".to_vec();
        let aux = |v: &mut Vec<u8>, k: &[u8], val: &[u8]| {
            v.push(OP_AUX);
            v.push(k.len() as u8);
            v.extend_from_slice(k);
            v.extend_from_slice(val);
        };
        let mut ver = vec![6u8];
        ver.extend_from_slice(b"7.0.15");
        aux(&mut v, b"redis-ver", &ver);
        aux(&mut v, b"redis-bits", &[0xC0, 64]);
        let mut idv = vec![id.len() as u8];
        idv.extend_from_slice(id.as_bytes());
        aux(&mut v, b"repl-id", &idv);
        aux(&mut v, b"repl-offset", offset_field);
        v.extend_from_slice(&[0xFE, 0x00]);
        v
    }

    const ID: &str = "8e1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";

    #[test]
    fn reads_the_id_and_an_integer_encoded_offset() {
        for (field, offset) in [
            (vec![0xC0, 42], 42),
            (vec![0xC1, 0x39, 0x30], 12345),
            (vec![0xC2, 0x40, 0x42, 0x0F, 0x00], 1_000_000),
            ([vec![10u8], b"9876543210".to_vec()].concat(), 9_876_543_210),
        ] {
            assert_eq!(
                repl_position(&head(ID, &field)),
                Some(ReplPosition {
                    repl_id: ID.into(),
                    offset
                }),
                "{field:?}"
            );
        }
    }

    #[test]
    fn no_history_no_position() {
        let mut v = b"REDIS0010".to_vec();
        v.extend_from_slice(&[0xFE, 0x00]);
        assert_eq!(repl_position(&v), None);
        assert_eq!(repl_position(b"not an rdb at all"), None);
        assert_eq!(repl_position(b""), None);
        let cut = head(ID, &[0xC0, 1]);
        assert_eq!(repl_position(&cut[..cut.len() - 6]), None);
    }

    #[test]
    fn valkey_magic_is_read_too() {
        let mut v = head(ID, &[0xC0, 7]);
        v.splice(0..5, b"VALKEY".iter().copied());
        assert_eq!(repl_position(&v).map(|p| p.offset), Some(7));
    }
}

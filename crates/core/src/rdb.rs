//! What an RDB file says: the `repl-id` and `repl-offset` auxiliary fields that Redis
//! (4.0+) and Valkey write at the top of every RDB (a replica that loads the RDB takes them
//! as its replication id and offset and asks its upstream to continue from there, `PSYNC
//! <repl-id> <repl-offset + 1>`), and whether a whole file is intact ([`Verifier`]: its
//! header, its format version, and its CRC64). Pure: parses bytes; the caller reads the
//! file.

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

/// The magic and format version at the head of an RDB: `REDIS0011` is (Redis, 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Written by Valkey with its own magic (`VALKEY...`), which Redis cannot load.
    pub valkey_magic: bool,
    pub version: u32,
}

/// Reads the magic and the format version; `None` when `head` is not an RDB.
pub fn header(head: &[u8]) -> Option<Header> {
    let (valkey_magic, rest) = if let Some(rest) = head.strip_prefix(b"REDIS") {
        (false, rest)
    } else if let Some(rest) = head.strip_prefix(b"VALKEY") {
        (true, rest)
    } else {
        return None;
    };
    // Redis writes four digits (REDIS0011); no opcode is an ASCII digit.
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits < 4 {
        return None;
    }
    let version = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some(Header {
        valkey_magic,
        version,
    })
}

/// The oldest RDB version that ends with a checksum (Redis 2.6+); every supported server
/// writes a newer one.
pub const FIRST_CHECKSUMMED_VERSION: u32 = 5;

/// An RDB found intact by [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub header: Header,
    /// The file's size.
    pub bytes: u64,
    /// The CRC64 the file ends with, which matched its content; `None` when the server
    /// that wrote it had `rdbchecksum no` (it writes 0): then only the header and the end
    /// marker were checked, and a cut or damaged file may pass.
    pub checksum: Option<u64>,
}

/// Why a file is not an intact RDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// It does not start with `REDIS` or `VALKEY` and a version.
    NotRdb,
    /// Its format is older than any supported server writes (no checksum to check).
    TooOld(u32),
    /// Shorter than an RDB can be, or it does not end with the end marker (0xFF) and a
    /// checksum: cut off.
    Truncated { bytes: u64 },
    /// The checksum it ends with does not match its content: damaged (or cut where the end
    /// marker happened to be).
    ChecksumMismatch { stored: u64, computed: u64 },
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::NotRdb => f.write_str(
                "not an RDB file (it does not start with REDIS or VALKEY and a version)",
            ),
            VerifyError::TooOld(v) => write!(
                f,
                "RDB version {v} is older than any supported server writes (it has no checksum)"
            ),
            VerifyError::Truncated { bytes } => write!(
                f,
                "truncated: it does not end with the RDB end marker and checksum ({bytes} bytes)"
            ),
            VerifyError::ChecksumMismatch { stored, computed } => write!(
                f,
                "damaged: its CRC64 is {computed:016x}, but it says {stored:016x}"
            ),
        }
    }
}

const OP_EOF: u8 = 0xFF;

/// The smallest RDB: magic, four digits, the end marker, eight checksum bytes.
const MIN_BYTES: u64 = 5 + 4 + 1 + 8;

static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// Checks a whole RDB fed in pieces of any size: its header, then (format 5 and newer)
/// that it ends with the end marker 0xFF and the little-endian CRC64 (Jones polynomial,
/// Redis's `crc64.c`) of every byte before the checksum.
pub struct Verifier {
    digest: crc::Digest<'static, u64>,
    /// The first bytes, until the header is known.
    head: Vec<u8>,
    /// The last 9 bytes seen (the end marker and the checksum, once the file ends), not
    /// yet in the digest.
    tail: Vec<u8>,
    bytes: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Verifier {
        Verifier {
            digest: CRC64.digest(),
            head: Vec::new(),
            tail: Vec::new(),
            bytes: 0,
        }
    }

    /// The next piece of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if self.head.len() < 16 {
            let want = (16 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..want]);
        }
        // Everything but the last 9 bytes goes into the digest now.
        let keep = 9;
        let total = self.tail.len() + data.len();
        if total <= keep {
            self.tail.extend_from_slice(data);
            return;
        }
        let flush = total - keep;
        let from_tail = flush.min(self.tail.len());
        self.digest.update(&self.tail[..from_tail]);
        self.tail.drain(..from_tail);
        let from_data = flush - from_tail;
        self.digest.update(&data[..from_data]);
        self.tail.extend_from_slice(&data[from_data..]);
    }

    /// The verdict on everything fed so far, taken as the whole file.
    pub fn finish(mut self) -> Result<Verified, VerifyError> {
        let header = header(&self.head).ok_or(if self.bytes < 9 {
            VerifyError::Truncated { bytes: self.bytes }
        } else {
            VerifyError::NotRdb
        })?;
        if header.version < FIRST_CHECKSUMMED_VERSION {
            return Err(VerifyError::TooOld(header.version));
        }
        if self.bytes < MIN_BYTES || self.tail.len() != 9 || self.tail[0] != OP_EOF {
            return Err(VerifyError::Truncated { bytes: self.bytes });
        }
        self.digest.update(&self.tail[..1]);
        let stored = u64::from_le_bytes(self.tail[1..9].try_into().unwrap_or_default());
        let computed = self.digest.finalize();
        let checksum = match stored {
            0 => None, // `rdbchecksum no`
            s if s == computed => Some(s),
            _ => return Err(VerifyError::ChecksumMismatch { stored, computed }),
        };
        Ok(Verified {
            header,
            bytes: self.bytes,
            checksum,
        })
    }
}

/// [`Verifier`] over a whole file in memory.
pub fn verify(bytes: &[u8]) -> Result<Verified, VerifyError> {
    let mut v = Verifier::new();
    v.update(bytes);
    v.finish()
}

/// Whether `server` can load an RDB with `header`: a format version no newer than the one
/// it writes, and Valkey's own magic only by Valkey. The error says why not.
pub fn loadable_by(header: Header, server: &crate::server::Server) -> Result<(), String> {
    if header.valkey_magic && server.kind != crate::server::Kind::Valkey {
        return Err(format!(
            "it was written by Valkey with its own format (VALKEY magic), which {server} cannot load"
        ));
    }
    let max = server.rdb_version();
    if header.version > max {
        return Err(format!(
            "it is RDB version {}, and {server} loads RDB versions up to {max} only",
            header.version
        ));
    }
    Ok(())
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

    /// RDBs saved by the servers of the test matrix (five keys in db 0, one in db 1).
    const FIXTURES: [(&str, &[u8], u32); 4] = [
        (
            "redis 6.2",
            include_bytes!("../../../tests/fixtures/rdb/redis-6.2.rdb"),
            9,
        ),
        (
            "redis 7.0",
            include_bytes!("../../../tests/fixtures/rdb/redis-7.0.rdb"),
            10,
        ),
        (
            "redis 8.0",
            include_bytes!("../../../tests/fixtures/rdb/redis-8.0.rdb"),
            12,
        ),
        (
            "valkey 8.1",
            include_bytes!("../../../tests/fixtures/rdb/valkey-8.1.rdb"),
            11,
        ),
    ];

    #[test]
    fn the_crc_is_redis_crc64_jones() {
        // The check value in Redis's crc64.c test: crc64(0, "123456789").
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn rdbs_saved_by_every_server_verify_in_any_piece_size() {
        for (server, bytes, version) in FIXTURES {
            let whole = verify(bytes).unwrap_or_else(|e| panic!("{server}: {e}"));
            assert_eq!(whole.header.version, version, "{server}");
            assert!(!whole.header.valkey_magic, "{server}");
            assert_eq!(whole.bytes, bytes.len() as u64);
            assert!(whole.checksum.is_some(), "{server}");
            for piece in [1, 2, 7, 9, 10, 64] {
                let mut v = Verifier::new();
                for chunk in bytes.chunks(piece) {
                    v.update(chunk);
                }
                assert_eq!(
                    v.finish().as_ref(),
                    Ok(&whole),
                    "{server}, pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn a_truncated_file_is_refused() {
        for (server, bytes, _) in FIXTURES {
            for cut in [
                0,
                5,
                9,
                17,
                bytes.len() / 2,
                bytes.len() - 9,
                bytes.len() - 1,
            ] {
                let err = verify(&bytes[..cut]).unwrap_err();
                assert!(
                    matches!(
                        err,
                        VerifyError::Truncated { .. } | VerifyError::ChecksumMismatch { .. }
                    ),
                    "{server} cut at {cut}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        for (server, bytes, _) in FIXTURES {
            for at in (9..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
                let mut damaged = bytes.to_vec();
                damaged[at] ^= 0x10;
                assert!(verify(&damaged).is_err(), "{server}: bit flipped at {at}");
            }
            let mut damaged = bytes.to_vec();
            damaged[0] = b'X';
            assert_eq!(verify(&damaged), Err(VerifyError::NotRdb));
        }
    }

    #[test]
    fn a_zero_checksum_means_the_server_did_not_compute_one() {
        let bytes = include_bytes!("../../../tests/fixtures/rdb/redis-7.0-nochecksum.rdb");
        let v = verify(bytes).unwrap();
        assert_eq!(v.checksum, None);
        // Only the end marker is left to catch a cut.
        assert!(verify(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn each_server_loads_its_own_rdb_version_and_older_ones_only() {
        use crate::server::{Kind, Server, Version};
        let s = |kind, v: &str| Server {
            kind,
            version: Version::parse(v).unwrap(),
        };
        let r62 = s(Kind::Redis, "6.2.14");
        let r70 = s(Kind::Redis, "7.0.15");
        let r80 = s(Kind::Redis, "8.0.2");
        let v81 = s(Kind::Valkey, "8.1.8");
        let h = |version| Header {
            valkey_magic: false,
            version,
        };
        assert!(loadable_by(h(9), &r62).is_ok());
        assert!(loadable_by(h(10), &r70).is_ok());
        let err = loadable_by(h(12), &r70).unwrap_err();
        assert!(
            err.contains("RDB version 12") && err.contains("up to 10"),
            "{err}"
        );
        assert!(loadable_by(h(12), &v81).is_err());
        assert!(loadable_by(h(11), &v81).is_ok());
        assert!(loadable_by(h(11), &r80).is_ok());
        let valkey = Header {
            valkey_magic: true,
            version: 11,
        };
        assert!(loadable_by(valkey, &r80).is_err());
        assert!(loadable_by(valkey, &v81).is_ok());
    }

    #[test]
    fn valkey_magic_is_read_too() {
        let mut v = head(ID, &[0xC0, 7]);
        v.splice(0..5, b"VALKEY".iter().copied());
        assert_eq!(repl_position(&v).map(|p| p.offset), Some(7));
    }
}
